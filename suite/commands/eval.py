"""`suite eval [overrides]`: evaluate every published checkpoint of the sweep into the ledger.

For every run in scope (`sizes=`, `datasets=`) and every published `step{N}` revision (or
`eval.steps=`), read from the store the run published to: perplexity on the held-out split
(`ppl/heldout`) and on `eval.perplexity_sets`, the built-in `heldout_continuation` task and
any `eval.tasks` through lm-evaluation-harness. Results go to `{sweep}/eval/ledger.parquet`
(contract 7); only what is missing is evaluated, so a second run does nothing and a killed
one continues. `hydra/launcher=slurm` evaluates one run per SLURM job.
"""

from __future__ import annotations

import argparse
import os
import sys

from data_order import DataError
from suite.errors import SuiteError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite eval",
        description="Evaluate every published checkpoint of the sweep (perplexity, built-in "
        "and lm-eval tasks) into {sweep}/eval/ledger.parquet; idempotent and resumable.",
        epilog="Examples: `suite eval` (the mini suite); `suite eval sizes=[160k] "
        "eval.steps=[0,160]`; `suite eval eval.tasks=[lambada_openai] suite=pythia`; "
        "`suite eval hydra/launcher=slurm --dry-run`.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the suite config")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be evaluated (with hydra/launcher=slurm: the job of each run) "
        "and evaluate nothing",
    )
    args = parser.parse_intermixed_args(argv)
    if not sys.stderr.isatty():  # the harness's per-request bars would flood a log
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        from suite.config import resolve_all
        from suite.settings import load_suite

        cfg = load_suite(args.overrides)
        # `size=`/`dataset=` (the single-run keys) narrow the sweep as `sizes=`/`datasets=` do.
        runs = [
            run
            for run in resolve_all(cfg)
            if cfg.size in (None, run.size_name) and cfg.dataset in (None, run.dataset_name)
        ]
        on_slurm = any(o.replace(" ", "") == "hydra/launcher=slurm" for o in args.overrides)
        if on_slurm:
            from suite.eval.slurm import launch_eval

            return launch_eval(cfg, runs, args.overrides, dry_run=args.dry_run)
        if args.dry_run:
            return _dry_run(cfg, runs)
        from suite.eval.runner import evaluate_sweep

        outcome = evaluate_sweep(cfg, runs)
    except (SuiteError, DataError) as err:
        print(f"suite eval: {err}", file=sys.stderr)
        return 2
    print(
        f"[eval] done in {outcome.seconds:.1f}s: {outcome.evaluated} checkpoint(s) evaluated, "
        f"{outcome.checkpoints} in scope; ledger {outcome.ledger} ({outcome.rows} rows, "
        f"{outcome.stale} stale)"
    )
    return _refresh_cards(cfg, runs)


def _dry_run(cfg, runs) -> int:
    from suite.eval.runner import plan_sweep

    plans, _, notes = plan_sweep(cfg, runs)
    for note in notes:
        print(f"[eval] {note}")
    for plan in plans:
        todo = plan.pending
        tasks = sorted({t.name for ts in plan.todo.values() for t in ts})
        print(
            f"{plan.run.run_name}: {len(todo)} of {len(plan.checkpoints)} checkpoint(s) to "
            f"evaluate" + (f" ({', '.join(tasks)})" if tasks else "")
        )
    return 0


def _refresh_cards(cfg, runs) -> int:
    """The evaluated revisions' model cards get their results (`suite cards`)."""
    from suite.cards import refresh_cards

    try:
        print(refresh_cards(cfg, runs).line())
    except (SuiteError, DataError) as err:
        print(
            f"suite eval: the ledger is written but the model cards are not refreshed: {err}; "
            "run `suite cards` with the same overrides once that is fixed",
            file=sys.stderr,
        )
        return 1
    return 0
