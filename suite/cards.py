"""The suite's model cards, seen from the suite config: what each card says about its run
(`card_context`), which runs the suite has (`suite_runs`), and the refresh of a whole sweep
(`refresh_cards`: `suite cards`, the end of `suite eval`).

Rendering and the store side live in `suite.publish.model_card`, which never imports the
suite config (the config imports `suite.publish`); this module is the bridge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from suite.errors import ConfigError, SuiteError, one_line
from suite.publish.model_card import SUITE_TAG, CardContext, SuiteRun

if TYPE_CHECKING:
    from suite.config import RunSpec, SuiteConfig

__all__ = ["CardsOutcome", "card_context", "overview_repo", "refresh_cards", "suite_runs"]


def card_context(cfg: SuiteConfig, run: RunSpec, store: str) -> CardContext:
    """The card context of `run` (a resolved `RunSpec`) publishing to `store` (its spec)."""
    from suite.rundir import dataset_dir

    card = cfg.publish.card
    dataset = cfg.datasets[run.dataset_name]
    return CardContext(
        suite=cfg.name,
        family=cfg.family,
        model_class=run.family.hf_model_class,
        ladder=cfg.ladder,
        run=_suite_run(run),
        runs=suite_runs(cfg),
        dataset_inputs=tuple(dataset.inputs) if not dataset.path else (dataset.path,),
        deduplicated=dataset.deduplicate,
        data_path=str(dataset_dir(cfg, run.dataset_name)),
        global_batch=run.global_batch,
        seq_len=run.seq_len,
        train_steps=run.train_steps,
        schedule=_schedule_text(cfg.checkpoint_schedule().steps()),
        store=store,
        license=card.license,
        language=tuple(card.language),
        hub_datasets=tuple(card.hub_datasets.get(run.dataset_name, ())),
        tags=tuple(dict.fromkeys([SUITE_TAG, cfg.family, cfg.name, *card.tags])),
        overview_repo=overview_repo(cfg) if card.overview else None,
    )


def overview_repo(cfg: SuiteConfig) -> str:
    """The suite-level repo holding the overview: `{org}/{repo_prefix or name}` — the runs'
    repos are `{org}/{prefix}-{size}…`, so it never collides with one of them."""
    return f"{cfg.publish.org}/{cfg.publish.repo_prefix or cfg.name}"


def suite_runs(cfg: SuiteConfig) -> tuple[SuiteRun, ...]:
    """Every run of the suite: those `sweep.json` expects (written by `suite sweep`), else
    the config's. Not the config's when a sweep exists: `suite eval sizes=[160k]` narrows
    the config, and must not shrink the cards' list of the other runs nor the overview."""
    from suite.config import resolve_run
    from suite.rundir import sweep_dir

    expected = sweep_dir(cfg).expected()
    if expected:
        try:
            return tuple(
                SuiteRun(
                    r["run_name"],
                    f"{cfg.publish.org}/{r['run_name']}",
                    r["size"],
                    r["dataset"],
                    int(r["seed"]),
                    int(r.get("init_seed", r["seed"])),
                    int(r.get("data_seed", r["seed"])),
                )
                for r in expected
            )
        except (KeyError, TypeError, ValueError):
            pass  # a sweep.json from another version: the config's runs below
    runs = []
    for key in cfg.runs():
        try:  # only names are needed; a run that cannot resolve cannot exist either
            runs.append(_suite_run(resolve_run(cfg, key.size, key.dataset, seed=key.seed)))
        except ConfigError:
            continue
    return tuple(runs)


def _suite_run(run: RunSpec) -> SuiteRun:
    return SuiteRun(
        run.run_name,
        run.repo_id,
        run.size_name,
        run.dataset_name,
        run.seed,
        run.init_seed,
        run.data_seed,
    )


def _schedule_text(steps: Sequence[int]) -> str:
    """`154 checkpoints: 0, 1, 2, 4, 8, 16, 32, 64, …, 141000, 142000, 143000`."""
    shown = ", ".join(map(str, steps))
    if len(steps) > 12:
        shown = f"{', '.join(map(str, steps[:8]))}, …, {', '.join(map(str, steps[-3:]))}"
    return f"{len(steps)} checkpoints: {shown}"


@dataclass
class CardsOutcome:
    """What a refresh did."""

    revisions: int = 0  #: published revisions whose card was checked
    updated: list[str] = field(default_factory=list)  #: `repo@branch` committed to
    overview: str | None = None  #: the overview repo, when the suite has one
    overview_written: bool = False  #: it was committed (False: it was current)

    def line(self) -> str:
        done = f"{len(self.updated)} branch(es) updated" if self.updated else "all up to date"
        overview = ""
        if self.overview:
            state = "written" if self.overview_written else "unchanged"
            overview = f"; overview {self.overview} {state}"
        return f"[cards] {self.revisions} revision card(s) checked, {done}{overview}"


def refresh_cards(cfg: SuiteConfig, runs: Sequence[RunSpec] | None = None) -> CardsOutcome:
    """Refresh the cards of `runs` (None: every run of the config) from the sweep's ledger,
    each in the store it published to (its run.json says; else `publish.store`), then the
    overview of every run of the suite (`suite_runs`) in the suite's `publish.store`."""
    from pyarrow import ArrowException

    from suite.config import resolve_all
    from suite.eval.ledger import read_ledger
    from suite.publish.model_card import refresh_run, summarize_run, write_overview
    from suite.publish.spec import absolute_store_spec
    from suite.publish.store import open_store
    from suite.rundir import sweep_dir

    sweep = sweep_dir(cfg)
    try:
        ledger = read_ledger(sweep.ledger_path)
    except (OSError, ArrowException) as err:
        raise SuiteError(
            f"{sweep.ledger_path}: unreadable ({one_line(str(err))[:200]}); delete it and run "
            "`suite eval` (it rebuilds the ledger from eval/parts), then refresh the cards"
        ) from None
    stores: dict[str, object] = {}

    def store_of(run_name: str):
        spec = sweep.run(run_name).read().info.get("store") or cfg.publish.store
        spec = absolute_store_spec(spec)
        if spec not in stores:
            stores[spec] = open_store(spec)
        return stores[spec]

    outcome = CardsOutcome()
    context = None
    for run in resolve_all(cfg) if runs is None else runs:
        store = store_of(run.run_name)
        if store is None:  # publish.store=none: nothing published, no card to refresh
            continue
        context = card_context(cfg, run, store.spec)
        done = refresh_run(store, context, ledger)
        outcome.revisions += len(done.checked)
        outcome.updated += [f"{run.repo_id}@{branch}" for branch in done.updated]
    suite_store = open_store(absolute_store_spec(cfg.publish.store))
    if context is not None and context.overview_repo and suite_store is not None:
        summaries = [summarize_run(store_of(r.run_name), r, ledger) for r in suite_runs(cfg)]
        if any(s.revisions for s in summaries):  # no repo for a suite that published nothing
            card = cfg.publish.card
            hub_datasets = [d for name in cfg.datasets for d in card.hub_datasets.get(name, [])]
            outcome.overview = context.overview_repo
            outcome.overview_written = write_overview(
                suite_store, outcome.overview, context, summaries, list(dict.fromkeys(hub_datasets))
            )
    return outcome
