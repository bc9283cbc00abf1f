"""The model card of every published revision (`README.md`) and the suite's overview.

A card is a pure function of three things, so rendering it twice gives the same bytes:

- the checkpoint's `scaling_suite.json` (step, tokens, data fingerprint, batches hash,
  init recipe → parameter counts),
- a `CardContext`: what the suite config says about the run (suite, dataset, seeds, batch,
  the other runs, `publish.card`'s license / languages / Hub datasets / tags),
- the evaluation ledger's rows for this revision and its weights (`model-index`).

The trainer writes the card into each export (`export_checkpoint(card=…)`), so it is
published, hashed into the run's manifest and checked by `suite verify` like every other
file. It is not among the files `scaling_suite.json` fixes (`metadata.CARD_FILE`), and it is
no `.safetensors` file, so rewriting it never looks like changed weights to `suite eval`.
Evaluations arrive after publishing: `refresh_run` re-renders the card of every revision in
the manifest and commits it (and the manifest entry naming its new sha256) only where the
bytes differ — refreshing twice commits nothing. `write_overview` keeps one README on
`main` of the suite-level repo listing every run and its revisions.

The cards are built with `huggingface_hub.ModelCardData` (the YAML the Hub reads) and
`ModelCard`; the Markdown body is plain text assembled here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from suite.errors import SuiteError
from suite.publish.base import MANIFEST_CSV, MANIFEST_JSON, RepoNotFound, RevisionNotFound, Store
from suite.publish.manifest import Manifest, read_manifest, weights_fingerprint
from suite.publish.metadata import (
    CARD_FILE,
    METADATA_FILE,
    FileDigest,
    read_metadata,
)

if TYPE_CHECKING:
    from pathlib import Path

    from huggingface_hub import ModelCard


__all__ = [
    "CARD_FILE",
    "CardContext",
    "LedgerResult",
    "Refreshed",
    "RunSummary",
    "SuiteRun",
    "card_bytes",
    "refresh_run",
    "render_card",
    "render_overview",
    "results_for",
    "summarize_run",
    "write_card",
    "write_overview",
]

#: Tag every card of every suite carries (the Hub lists the suites under it).
SUITE_TAG = "scaling-suite"
LIBRARY = "transformers"
PIPELINE_TAG = "text-generation"
_CODE_URL = "https://github.com/EleutherAI/pythia"  # the suite this tool reproduces


@dataclass(frozen=True)
class SuiteRun:
    """One run of the suite, as the overview and the cards' "other runs" name it."""

    run_name: str
    repo_id: str
    size: str
    dataset: str
    seed: int  #: the run's point on the seed axis
    init_seed: int
    data_seed: int


@dataclass(frozen=True)
class CardContext:
    """What a card says about its run beyond the checkpoint's `scaling_suite.json`.

    Built from the suite config by `suite.cards.card_context` — by the trainer for the cards
    it exports and by `suite cards` / `suite eval` when they refresh them, so both render the
    same card. (This package stays below the suite config: it takes the context as data.)
    """

    suite: str  #: suite name (`SuiteConfig.name`)
    family: str  #: architecture family (`pythia`)
    model_class: str  #: the transformers class (`GPTNeoXForCausalLM`)
    ladder: str  #: size table of the suite
    run: SuiteRun  #: this run
    runs: tuple[SuiteRun, ...]  #: every run of the suite, this one included
    dataset_inputs: tuple[str, ...]  #: what the dataset was built from (`datasets.*.inputs`)
    deduplicated: bool  #: the dataset is the near-deduplicated one
    data_path: str  #: the prepared dataset (`suite batch --data`)
    global_batch: int  #: samples per update
    seq_len: int  #: tokens predicted per sample (samples hold seq_len + 1)
    train_steps: int  #: updates of the run
    schedule: str  #: the published steps, in words
    store: str  #: the store spec the run publishes to (`suite pull --store`)
    license: str  #: `publish.card.license`
    language: tuple[str, ...]  #: `publish.card.language`
    hub_datasets: tuple[str, ...]  #: `publish.card.hub_datasets[dataset]`
    tags: tuple[str, ...]  #: automatic tags, then `publish.card.tags`
    overview_repo: str | None  #: the suite-level repo (`suite.cards.overview_repo`), None: none


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --- the ledger's results of one revision ----------------------------------------------


@dataclass(frozen=True)
class LedgerResult:
    """One ledger row as a card shows it."""

    task: str
    metric: str
    value: float
    stderr: float
    n: int
    dtype: str


def results_for(ledger, run: str, revision: str, weights_sha256: str) -> list[LedgerResult]:
    """The ledger's current results for one revision with these weights.

    The report's rule: stale rows dropped, the newest `evaluated_at` per (task, metric);
    rows of other weights (the revision was republished since) are not this card's.
    `ledger`: `suite.eval.ledger.read_ledger`'s frame (or None).
    """
    if ledger is None or not len(ledger):
        return []
    rows = ledger[
        (ledger["run"] == run)
        & (ledger["revision"] == revision)
        & (ledger["weights_sha256"] == weights_sha256)
        & ~ledger["stale"].astype(bool)
    ]
    rows = rows.sort_values("evaluated_at", kind="stable").drop_duplicates(
        ["task", "metric"], keep="last"
    )
    return sorted(
        (
            LedgerResult(
                str(r.task), str(r.metric), float(r.value), float(r.stderr), int(r.n), str(r.dtype)
            )
            for r in rows.itertuples(index=False)
        ),
        key=lambda r: (r.task, r.metric),
    )


# --- rendering --------------------------------------------------------------------------


def _count(n: int) -> str:
    """`162,816 (163K)`."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n:,} ({n / scale:.3g}{unit})"
    return f"{n:,}"


def _batches(step: int) -> str:
    """The batches a checkpoint at `step` (>= 1) has seen (contract 1)."""
    return "batch 0" if step == 1 else f"batches 0 … {step - 1:,}"


def _number(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.6g}"


def _params(meta: dict) -> tuple[int, int] | None:
    """(total, non-embedding) parameters from the export's init recipe; None for exports
    written before the recipe was recorded."""
    recipe = meta.get("init_recipe")
    if not recipe:
        return None
    from model_zoo.families import get_family
    from model_zoo.ladder import SizeSpec

    family, spec = get_family(recipe["family"]), SizeSpec(**recipe["size"])
    return family.total_params(spec, recipe["padded_vocab"]), family.non_embedding_params(spec)


def _store_flag(store: str) -> str:
    """` --store SPEC` for commands in a card; nothing for `none` (exports only)."""
    return "" if store == "none" else f" --store {store}"


def _card_data(context: CardContext, name: str | None, results: Sequence[LedgerResult]):
    from huggingface_hub import EvalResult, ModelCardData

    # The ledger's task is `task.name`, exactly; `dataset.type` names a Hub dataset where
    # the config gives one (a slash in it would read as a Hub id). NaN (fp16 overflow) is no
    # number the Hub accepts: the body's table shows it, model-index leaves it out.
    evals = [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name=r.task,
            dataset_type=_dataset_type(r.task, context),
            dataset_name=_task_title(r.task, context.run.dataset),
            dataset_split="heldout" if r.task == "ppl/heldout" else None,
            metric_type=r.metric,
            metric_value=r.value,
            metric_name=r.metric,
        )
        for r in results
        if math.isfinite(r.value)
    ]
    return ModelCardData(
        library_name=LIBRARY,
        pipeline_tag=PIPELINE_TAG,
        license=context.license,
        language=list(context.language),
        datasets=list(context.hub_datasets) or None,
        tags=list(context.tags),
        model_name=name if evals else None,
        eval_results=evals or None,
    )


def _dataset_type(task: str, context: CardContext) -> str:
    if task == "ppl/heldout" and context.hub_datasets:
        return context.hub_datasets[0]
    return task.replace("/", "-")


def _task_title(task: str, dataset: str) -> str:
    if task.startswith("ppl/"):
        which = task.removeprefix("ppl/")
        return f"{dataset} held-out split" if which == "heldout" else f"perplexity set {which}"
    return task


def _card(data, body: str) -> ModelCard:
    from huggingface_hub import ModelCard

    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n")


def render_card(
    context: CardContext, meta: dict, results: Sequence[LedgerResult] = ()
) -> ModelCard:
    """The card of the checkpoint whose `scaling_suite.json` is `meta`."""
    run, step = context.run, int(meta["step"])
    revision = meta["revision"]
    repo = run.repo_id
    params = _params(meta)
    final = meta["step"] == meta["total_steps"]
    others = [r for r in context.runs if r.repo_id != repo]
    lines = [
        f"# {run.run_name} — {revision}",
        "",
        f"**{run.run_name}** is one run of **{context.suite}**, a scaling suite in the manner of "
        f"[Pythia]({_CODE_URL}): {len({r.size for r in context.runs})} model size(s) × "
        f"{len({r.dataset for r in context.runs})} dataset(s)"
        + (
            f" × {len({r.seed for r in context.runs})} seeds"
            if len({r.seed for r in context.runs}) > 1
            else ""
        )
        + ", every run trained on the same data in the same order, every saved step published "
        "as a branch `step{N}` of its run's repo. It was trained and published with "
        "scaling-suite.",
        "",
        f"This revision, `{revision}`, holds the weights after **{step:,}** of "
        f"{context.train_steps:,} optimizer updates"
        + (f" ({_batches(step)})" if step else " — the initialization")
        + f": **{int(meta['tokens_seen']):,} tokens** seen."
        + (" It is the final checkpoint, also on `main`." if final else ""),
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| family | {context.family} (`{context.model_class}`) |",
        f"| size | {run.size} ({context.ladder} ladder)"
        + (
            f": {meta['init_recipe']['size']['n_layers']} layers, d_model "
            f"{meta['init_recipe']['size']['d_model']}, {meta['init_recipe']['size']['n_heads']} "
            "heads |"
            if params
            else " |"
        ),
    ]
    if params:
        lines += [
            f"| parameters | {_count(params[0])} |",
            f"| non-embedding parameters | {_count(params[1])} |",
            f"| vocabulary (padded) | {meta['init_recipe']['padded_vocab']:,} |",
            f"| training precision | {meta['init_recipe']['precision']} |",
        ]
    lines += [
        f"| weights dtype | {meta['dtype']} |",
        f"| sequence length | {context.seq_len:,} |",
        "",
        "## Training data",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | {run.dataset}"
        + (" (near-deduplicated)" if context.deduplicated else "")
        + f", built from {', '.join(f'`{i}`' for i in context.dataset_inputs)} |",
    ]
    if context.hub_datasets:
        lines.append(f"| on the Hub | {', '.join(context.hub_datasets)} |")
    lines += [
        f"| data fingerprint | `{meta['data_fingerprint']}` |",
        f"| batch | {context.global_batch:,} samples × {context.seq_len + 1:,} tokens |",
        f"| hash of the batches seen | `{meta['batches_hash']}` |",
        "",
        "## Load this checkpoint, or any other step",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{repo}", revision="{revision}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}", revision="{revision}")',
        "```",
        "",
        f'Every saved step is a branch: `revision="step{{N}}"` ({context.schedule}); '
        f"`manifest.csv` on `main` lists them with their tokens and weight hashes. With the "
        "suite's command line, which also finds a step by tokens seen:",
        "",
        "```bash",
        f"suite pull {repo} --step {step}{_store_flag(context.store)}",
        f"suite pull {repo} --tokens {int(meta['tokens_seen'])}{_store_flag(context.store)}",
        "```",
        "",
        "## Reproduce its data",
        "",
    ]
    batch = (
        f"suite batch {step - 1} --data {context.data_path} --seed {run.data_seed} "
        f"--global-batch {context.global_batch} --expect-fingerprint {meta['data_fingerprint']} "
        "--decode"
    )
    if step:
        lines += [
            f"Update *s* trains on batch *s − 1*, so this checkpoint has seen {_batches(step)}. "
            "The tokens of the last one, from the suite's prepared dataset (`suite prepare`); "
            "refused if that data is not the data this run saw:",
        ]
    else:
        lines += [
            "step0 has seen no data; its first update trains on batch 0. The tokens of any "
            "batch *i* of this run, on the suite's prepared dataset (`suite prepare`):",
        ]
        batch = batch.replace("suite batch -1", "suite batch 0", 1)
    lines += [
        "",
        "```bash",
        batch,
        "```",
        "",
        "## Seeds",
        "",
        f"Initialization seed {run.init_seed}, data-order seed {run.data_seed}"
        + (
            f" (the run's seed {run.seed})"
            if run.seed not in (run.init_seed, run.data_seed)
            else ""
        )
        + ". step0 is a pure function of the init recipe in `scaling_suite.json`: "
        f"`suite verify {repo} --deep{_store_flag(context.store)}` recomputes it bitwise.",
        "",
        "## Evaluation",
        "",
    ]
    results = list(results)
    if results:
        lines += [
            "From the suite's evaluation ledger (`suite eval`), for exactly these weights; also "
            "in this card's `model-index`.",
            "",
            "| task | metric | value | stderr | n | dtype |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.task} | {r.metric} | {_number(r.value)} | {_number(r.stderr)} | {r.n:,} | "
            f"{r.dtype} |"
            for r in results
        ]
    else:
        lines.append(
            "Not evaluated yet: `suite eval` writes the suite's ledger, and this card shows its "
            "results for this revision once `suite cards` (or `suite eval`) refreshed it."
        )
    lines += ["", "## The other runs of the suite", ""]
    if context.overview_repo:
        lines += [
            f"Overview of every run and revision: [{context.overview_repo}]"
            f"(/{context.overview_repo}).",
            "",
        ]
    lines += [
        f"- [{r.repo_id}](/{r.repo_id}) — {r.size}, {r.dataset}"
        + (f", seed {r.seed}" if len({o.seed for o in context.runs}) > 1 else "")
        for r in others
    ] or ["(this is the suite's only run)"]
    lines += [
        "",
        "## Provenance",
        "",
        f"Config hash `{meta['config_hash']}`, code `{meta['code_version']}`. "
        f"`{METADATA_FILE}` records the sha256 of every file of this revision (this card "
        "excepted: it is refreshed when evaluations arrive); `suite verify` checks them.",
    ]
    return _card(_card_data(context, f"{repo}@{revision}", results), "\n".join(lines))


def write_card(folder: Path, context: CardContext) -> Path:
    """Write `folder`'s card (`README.md`), from the `scaling_suite.json` in it."""
    path = folder / CARD_FILE
    path.write_bytes(card_bytes(render_card(context, read_metadata(folder))))
    return path


def card_bytes(card: ModelCard) -> bytes:
    return str(card).encode()


def _digest(data: bytes) -> FileDigest:
    """`metadata.digest_file` of bytes in memory (sha256 and git's blob id)."""
    blob = hashlib.sha1(b"blob %d\0" % len(data))
    blob.update(data)
    return FileDigest(hashlib.sha256(data).hexdigest(), blob.hexdigest(), len(data))


# --- refreshing the published cards -----------------------------------------------------


@dataclass
class Refreshed:
    """What `refresh_run` did for one run."""

    checked: list[str] = field(default_factory=list)  #: revisions whose card was rendered
    updated: list[str] = field(default_factory=list)  #: branches committed to (`main` too)


def refresh_run(store: Store, context: CardContext, ledger=None) -> Refreshed:
    """Make every revision in the run's manifest hold its current card; idempotent.

    For each revision: render its card (its `scaling_suite.json`, `context`, the ledger's
    rows for it). Where the manifest names another sha256 for it, commit it to the branch
    (unless the branch holds it already: a refresh cut short before its manifest commit)
    and record it in the manifest, so `suite verify` keeps passing; `main` gets the
    manifest and (for the final revision) the same card in one commit. The manifest is
    trusted for what the branches hold — `suite verify` checks exactly that — so a refresh
    with nothing to do costs one small read per revision and commits nothing. A run not
    published yet is skipped.
    """
    repo = context.run.repo_id
    out = Refreshed()
    manifest = _manifest(store, repo)
    if manifest is None:
        return out
    main_files: dict[str, bytes] = {}
    manifest_changed = False
    for entry in manifest.sorted_entries():
        try:
            head = store.head(repo, entry.revision)
        except RevisionNotFound:  # listed but gone: `suite verify` reports it, no card to fix
            continue
        ref = head or entry.revision  # a commit where the store has them: one consistent view
        meta = _read_meta(store, repo, ref, entry.revision)
        # The weights the revision holds now, as `suite eval` fingerprints them.
        weights = weights_fingerprint({p: FileDigest(**d) for p, d in meta["files"].items()})
        results = results_for(ledger, context.run.run_name, entry.revision, weights)
        data = card_bytes(render_card(context, meta, results))
        digest = _digest(data)
        out.checked.append(entry.revision)
        if entry.files.get(CARD_FILE) == digest:
            continue
        remote = store.list_files(repo, ref).get(CARD_FILE)
        if remote is None or not remote.matches(digest):
            # expected_head: a branch that moved since it was read is refused, not overwritten.
            store.put_files(repo, entry.revision, {CARD_FILE: data}, expected_head=head)
            out.updated.append(entry.revision)
        entry.files[CARD_FILE] = digest
        manifest_changed = True
        if entry.revision == manifest.final_revision:  # main = the final revision's files
            main_files[CARD_FILE] = data
    if manifest_changed or main_files:
        _commit_main(store, manifest, main_files)
        if main_files:
            out.updated.append("main")
    return out


def _manifest(store: Store, repo: str) -> Manifest | None:
    """The run's manifest; None when the repo or its manifest does not exist (yet)."""
    try:
        return read_manifest(store, repo)
    except RepoNotFound:
        return None


def _read_meta(store: Store, repo: str, ref: str, revision: str) -> dict:
    raw = store.read_file(repo, ref, METADATA_FILE)
    if raw is None:
        raise SuiteError(
            f"{repo}@{revision} ({store.spec}) has no {METADATA_FILE}; check the repo with "
            f"`suite verify {repo}`"
        )
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise SuiteError(
            f"{repo}@{revision} ({store.spec}): {METADATA_FILE} is not JSON; check the repo "
            f"with `suite verify {repo}`"
        ) from None


def _commit_main(store: Store, manifest: Manifest, files: dict[str, bytes]) -> None:
    """The manifest (JSON + CSV) and `files` in one commit on `main`, refused when `main`
    moved since the manifest was read (`write_manifest`'s rule)."""
    files = {
        **files,
        MANIFEST_JSON: manifest.to_json_bytes(),
        MANIFEST_CSV: manifest.to_csv_bytes(),
    }
    manifest.base_commit = store.put_files(
        manifest.repo, "main", files, expected_head=manifest.base_commit
    )


# --- the suite's overview ---------------------------------------------------------------


@dataclass
class RunSummary:
    """One run as the overview lists it."""

    run: SuiteRun
    revisions: list[str] = field(default_factory=list)  #: published, in step order
    final: str | None = None  #: the revision on `main` (None: still training)
    tokens: int | None = None  #: tokens of the newest revision
    params: tuple[int, int] | None = None  #: (total, non-embedding) parameters
    evaluated: str | None = None  #: the newest revision with results in the ledger
    results: list[LedgerResult] = field(default_factory=list)  #: that revision's results


def summarize_run(store: Store | None, run: SuiteRun, ledger=None) -> RunSummary:
    """What the overview says about `run`: its manifest, the parameter counts of its newest
    revision, its newest evaluated revision (ledger rows of the published weights)."""
    out = RunSummary(run)
    manifest = _manifest(store, run.repo_id) if store is not None else None
    if manifest is None or not manifest.entries:
        return out
    entries = manifest.sorted_entries()
    out.revisions = [e.revision for e in entries]
    out.final, out.tokens = manifest.final_revision, entries[-1].tokens_seen
    newest = entries[-1].revision
    try:
        out.params = _params(_read_meta(store, run.repo_id, newest, newest))
    except RevisionNotFound:  # listed but gone (`suite verify` says so): counts unknown
        out.params = None
    for entry in reversed(entries):
        # The manifest's weights (one read per run, not one per revision); a revision whose
        # weights differ from its manifest entry fails `suite verify` anyway.
        results = results_for(ledger, run.run_name, entry.revision, entry.weights_sha256)
        if results:
            out.evaluated, out.results = entry.revision, results
            break
    return out


def render_overview(
    context: CardContext, runs: Sequence[RunSummary], hub_datasets: Sequence[str] = ()
) -> ModelCard:
    """The suite-level README: every run, its revisions, and its newest evaluation.

    `context`: any run's context (its suite-level fields are read); `hub_datasets`: every
    dataset of the suite on the Hub (the cards' `datasets`, all of them)."""
    sizes = _unique(r.run.size for r in runs)
    datasets = _unique(r.run.dataset for r in runs)
    seeds = _unique(str(r.run.seed) for r in runs)
    lines = [
        f"# {context.suite}",
        "",
        f"A scaling suite in the manner of [Pythia]({_CODE_URL}): {len(runs)} runs, "
        f"sizes {', '.join(sizes)} × datasets {', '.join(datasets)}"
        + (f" × seeds {', '.join(seeds)}" if len(seeds) > 1 else "")
        + f" ({context.family}, `{context.model_class}`), every run trained on the same data "
        f"in the same order ({context.global_batch:,} samples × {context.seq_len + 1:,} tokens "
        f"per update, {context.train_steps:,} updates). Each run is a repo; each saved step a "
        f"branch `step{{N}}` ({context.schedule}) with its own model card.",
        "",
        "## Runs",
        "",
        "| run | size | parameters | non-embedding | dataset | seeds (init / data) | "
        "revisions | final | tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for found in runs:
        run, params = found.run, found.params
        if found.revisions:
            revisions = f"{len(found.revisions)} ({found.revisions[0]} … {found.revisions[-1]})"
            final, tokens = found.final or "training", f"{found.tokens:,}"
        else:
            revisions, final, tokens = "not published yet", "—", "—"
        lines.append(
            f"| [{run.run_name}](/{run.repo_id}) | {run.size} | "
            f"{_count(params[0]) if params else '—'} | {_count(params[1]) if params else '—'} | "
            f"{run.dataset} | {run.init_seed} / {run.data_seed} | {revisions} | {final} | "
            f"{tokens} |"
        )
    evaluated = [r for r in runs if r.results]
    lines += ["", "## Evaluation", ""]
    if evaluated:
        columns = sorted({(x.task, x.metric) for r in evaluated for x in r.results})
        lines += [
            "The newest evaluated revision of each run, from the suite's ledger (`suite eval`); "
            "each revision's card holds its own results (`model-index`).",
            "",
            "| run | revision | " + " | ".join(f"{t} {m}" for t, m in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for r in evaluated:
            values = {(x.task, x.metric): x.value for x in r.results}
            cells = " | ".join(_number(values.get(c, math.nan)) for c in columns)
            lines.append(f"| {r.run.run_name} | {r.evaluated} | {cells} |")
    else:
        lines.append("No evaluation yet: `suite eval` fills the ledger, `suite cards` this page.")
    example = runs[0].run.repo_id if runs else context.run.repo_id
    lines += [
        "",
        "## Load any run at any step",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{example}", '
        f'revision="step{context.train_steps}")',
        "```",
        "",
        f"or `suite pull {example} --step {context.train_steps}{_store_flag(context.store)}`.",
    ]
    data = _card_data(context, None, ())
    data.datasets = list(hub_datasets) or None
    return _card(data, "\n".join(lines))


def write_overview(
    store: Store,
    repo: str,
    context: CardContext,
    runs: Sequence[RunSummary],
    hub_datasets: Sequence[str] = (),
) -> bool:
    """Commit the overview to `main` of `repo` when it differs; True when committed."""
    data = card_bytes(render_overview(context, runs, hub_datasets))
    try:
        head = store.head(repo, "main")
        current = store.read_file(repo, head or "main", CARD_FILE)
    except (RepoNotFound, RevisionNotFound):
        head, current = None, None
    if current == data:
        return False
    store.ensure_repo(repo)
    if head is None:
        try:
            head = store.head(repo, "main")  # the Hub's initial commit of a new repo
        except RevisionNotFound:
            head = None
    store.put_files(repo, "main", {CARD_FILE: data}, expected_head=head)
    return True
