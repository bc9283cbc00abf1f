"""`suite cards [overrides]`: refresh the model card of every published revision of the sweep
and the suite's overview.

Each revision's `README.md` is re-rendered from its `scaling_suite.json`, the suite config
(`publish.card`) and the evaluation ledger (its results become the card's `model-index`),
and committed only where it differs; the run's manifest records the new sha256, so
`suite verify` keeps passing, and the weights are untouched, so `suite eval` sees no change.
Running it twice commits nothing. The overview (`publish.card.overview`) is `README.md` on
`main` of `{org}/{repo_prefix or name}`. `suite eval` ends with the same refresh; run this
after `suite eval hydra/launcher=slurm`, or after changing `publish.card`.
"""

from __future__ import annotations

import argparse
import sys

from data_order import DataError
from suite.errors import ConfigError, SuiteError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite cards",
        description="Refresh the model card (README.md, with the ledger's results as "
        "model-index) of every published revision of the sweep, and the suite's overview; "
        "commits only what changed.",
        epilog="Examples: `suite cards`; `suite cards suite=pythia publish.card.license=mit`.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the suite config")
    args = parser.parse_args(argv)
    try:
        from suite.cards import refresh_cards
        from suite.rundir import sweep_dir
        from suite.settings import load_suite

        cfg = load_suite(args.overrides)
    except (SuiteError, DataError) as err:  # the overrides or the config: the user's to fix
        print(f"suite cards: {err}", file=sys.stderr)
        return 2
    sweep = sweep_dir(cfg)
    if not sweep.is_sweep() and not sweep.path.exists():  # a typo in root= or name=
        print(
            f"suite cards: no sweep at {sweep.path} (no such folder); run `suite sweep` "
            "first, or point root=/name= at the sweep whose cards to refresh",
            file=sys.stderr,
        )
        return 2
    try:
        _check_runs_match(cfg, sweep)
        outcome = refresh_cards(cfg)
    except (ConfigError, DataError) as err:
        print(f"suite cards: {err}", file=sys.stderr)
        return 2
    except SuiteError as err:  # the store refused or holds something unreadable
        print(f"suite cards: {err}", file=sys.stderr)
        return 1
    print(outcome.line())
    return 0


def _check_runs_match(cfg, sweep) -> None:
    """Refuse a config whose runs differ from what was trained (the cards would describe
    other updates, batch or sequence length than the weights they sit beside)."""
    from suite.config import resolve_all

    for run in resolve_all(cfg):
        info = sweep.run(run.run_name).read().info or {}
        trained = info.get("identity") or {}
        for key, now, saved in (
            ("train_steps", run.train_steps, trained.get("train_steps")),
            ("global_batch", run.global_batch, (trained.get("layout") or {}).get("global_batch")),
            ("seq_len", run.seq_len, info.get("seq_len")),
        ):
            if saved is not None and saved != now:
                raise ConfigError(
                    key,
                    now,
                    f"{run.run_name} was trained with {key}={saved}; give the overrides it was "
                    "trained with, or the cards would describe another run",
                )
