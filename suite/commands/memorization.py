"""`suite memorization [overrides]`: Pythia's extractable memorization of every published
checkpoint into the evaluation ledger.

For every run in scope (`sizes=`, `datasets=`, or one `size=`/`dataset=`) and every published
`step{N}` (or `memorization.steps=`): prompt with the first `memorization.prompt_tokens` of
each of a seeded sample of training sequences (`memorization.batches`, `samples`, `seed`),
generate `continuation_tokens` greedily, and record the exact-match fraction and the mean
token accuracy (task `memorization`) in `{sweep}/eval/ledger.parquet`, the per-sequence
results under `{sweep}/eval/memorization/`. Only what is missing is evaluated, so a second
run does nothing and a killed one continues (`suite.memorization`).
"""

from __future__ import annotations

import argparse
import sys

from data_order import DataError
from suite.errors import SuiteError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite memorization",
        description="Extractable memorization (Pythia; Biderman et al. 2023) of a seeded "
        "sample of training sequences at every published checkpoint, into "
        "{sweep}/eval/ledger.parquet (task `memorization`); idempotent and resumable.",
        epilog="Examples: `suite memorization` (the mini suite); `suite memorization "
        "sizes=[160k] memorization.batches=[0,39] memorization.samples=256`; "
        "`suite memorization memorization.name=control memorization.steps=[160] "
        "memorization.batches=[160,199]` (batches past training: a never-seen control, "
        "task `memorization/control` beside the main sample).",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the suite config")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the checkpoints that would be evaluated and evaluate nothing",
    )
    args = parser.parse_intermixed_args(argv)
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
        if not runs:
            from suite.errors import ConfigError

            if cfg.size is not None:
                key, value, scope = (
                    "size",
                    cfg.size,
                    sorted({r.size_name for r in resolve_all(cfg)}),
                )
            else:
                key, value = "dataset", cfg.dataset
                scope = sorted({r.dataset_name for r in resolve_all(cfg)})
            raise ConfigError(
                key, value, f"not among the runs in scope ({', '.join(scope)}); pick one of them"
            )
        if args.dry_run:
            return _dry_run(cfg, runs)
        from suite.memorization import evaluate_memorization

        outcome = evaluate_memorization(cfg, runs)
    except (SuiteError, DataError) as err:
        print(f"suite memorization: {err}", file=sys.stderr)
        return 2
    print(
        f"[memorization] done in {outcome.seconds:.1f}s: {outcome.evaluated} checkpoint(s) "
        f"evaluated, {outcome.checkpoints} in scope; ledger {outcome.ledger} "
        f"({outcome.rows} rows)"
    )
    return 0


def _dry_run(cfg, runs) -> int:
    from suite.memorization import batch_range, plan, task_name

    plans, sequences, notes = plan(cfg, runs)
    for note in notes:
        print(f"[memorization] {note}")
    for run_plan in plans:
        sample = sequences[run_plan.run.run_name]
        first, last = batch_range(cfg.memorization, run_plan.run.train_steps)
        print(
            f"{run_plan.run.run_name}: {len(run_plan.pending)} of {len(run_plan.checkpoints)} "
            f"checkpoint(s) to evaluate ({task_name(cfg.memorization)}: "
            f"{len(sample.positions)} sequences of batches {first}..{last})"
        )
    return 0
