"""`suite sweep [overrides]`: the whole suite — prepare data, train every run, publish, report.

With no arguments: the embedded `mini` suite (8 tiny sizes × {stdlib, stdlib-deduped}) on the
local launcher and the local checkpoint store. Every run is validated before anything starts;
finished runs are skipped and interrupted ones resume, so running it again is cheap.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack, nullcontext

from data_order import DataError
from suite.errors import SuiteError
from suite.rundir import SweepDir, dataset_dir, sweep_dir


def _pending(cfg, runs) -> list:
    """The `RunKey` (size, dataset, seed) of every run not yet complete."""
    from suite.config import RunKey
    from suite.rundir import run_dir

    return [
        RunKey(run.size_name, run.dataset_name, run.seed)
        for run in runs
        if run_dir(cfg, run).read().status != "complete"
    ]


def _complete(sweep: SweepDir) -> int:
    """Runs of the sweep whose record says complete."""
    return sum(record.status == "complete" for record in sweep.records())


def _dry_run(cfg, runs, shapes, sweep: SweepDir) -> None:
    if shapes is None:
        for run in runs:
            print(
                f"{run.run_name}: {run.gpus} rank(s) = dp {run.dp} × tp {run.tp}, "
                f"{run.train_steps} updates (local launcher, nothing to submit)"
            )
        return
    from suite.launch.resources import render_sbatch

    for run in runs:
        resources = shapes[run.run_name]
        print(f"# ---- {run.run_name}: {resources.describe()} ----")
        print(render_sbatch(resources, sweep.submitit_dir / "%j", job_name=run.run_name))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite sweep",
        description="Run the whole suite as a Hydra multirun: prepare both datasets (cached by "
        "fingerprint), train every size × dataset with the same data order, publish every "
        "scheduled checkpoint, and write the report.",
        epilog="Examples: `suite sweep` (the mini suite, locally); "
        "`suite sweep sizes=[160k,250k] train_steps=40`; "
        "`suite sweep 'seeds=[1234,1,2]'` (seed replicates); "
        "`suite sweep suite=pythia hydra/launcher=slurm`.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the suite config")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="skip `suite eval` (the ledger over every published checkpoint) at the end",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every run and print the sbatch script of each (with hydra/launcher=slurm) "
        "or the run list (local); prepare, train and submit nothing",
    )
    args = parser.parse_intermixed_args(argv)
    with ExitStack() as logging_to:  # the sweep's log file, once the sweep directory is known
        return _sweep(args, logging_to)


def _sweep(args, logging_to: ExitStack) -> int:
    from suite import console

    console.configure()  # the terminal: events and warnings; library INFO to the log files
    started = time.time()
    try:
        from suite.config import resolve_all
        from suite.datasets import ensure_datasets
        from suite.settings import load_suite

        cfg = load_suite(args.overrides)
        runs = resolve_all(cfg)  # every run validated before anything starts
        from suite.data_seed import check_data_seeds

        check_data_seeds(cfg, runs)
        from suite.datasets import check_prepared_data

        check_prepared_data(cfg)  # past the end of the data, a broken pair (once prepared)
        sweep = sweep_dir(cfg)
        on_slurm = any(o.replace(" ", "") in ("hydra/launcher=slurm",) for o in args.overrides)
        if on_slurm:
            from suite.launch.suite_resources import slurm_resources

            shapes = {run.run_name: slurm_resources(cfg, run) for run in runs}  # validates all
        if args.dry_run:
            _dry_run(cfg, runs, shapes if on_slurm else None, sweep)
            return 0
        logging_to.enter_context(console.log_to(sweep.log_file))
        print(f"[sweep] suite {cfg.name!r}: {len(runs)} runs → {sweep.path}", flush=True)
        # What the sweep is made of: `suite status`/`report` show a run that never started.
        sweep.write_expected(
            cfg.name,
            [
                {
                    "run_name": r.run_name,
                    "size": r.size_name,
                    "dataset": r.dataset_name,
                    "seed": r.seed,
                    "init_seed": r.init_seed,
                    "data_seed": r.data_seed,
                }
                for r in runs
            ],
        )
        print("[sweep] preparing datasets (cached by fingerprint) …", flush=True)
        from suite.data_seed import build_orders

        # The order of every (data seed, epoch) the runs read, built once before they start.
        build_orders(cfg, list(ensure_datasets(cfg).values()))
        check_prepared_data(cfg)  # now with the sample counts of the datasets just built
        pending = _pending(cfg, runs)
        print(
            f"[sweep] {len(runs) - len(pending)} runs complete, {len(pending)} to train", flush=True
        )
        if pending:
            from suite.sweep_app import launch

            if on_slurm:
                print(
                    f"[sweep] submitting {len(pending)} SLURM jobs and waiting for them; "
                    f"details: `suite status {sweep.path}`",
                    flush=True,
                )
            try:
                done = len(runs) - len(pending)
                with (
                    console.sweep_display(f"sweep {cfg.name}", len(runs), done),
                    # SLURM jobs train elsewhere: their run.json records tell the progress.
                    console.watching(lambda: _complete(sweep)) if on_slurm else nullcontext(),
                ):
                    launch(pending, args.overrides, replicated=len(cfg.run_seeds()) > 1)
            except SystemExit as exit_:  # Hydra exits after reporting a failed job
                if exit_.code:
                    raise SuiteError("one or more runs failed (see the messages above)") from None
        ledger = None
        if not args.no_eval and on_slurm:
            print(
                "[sweep] evaluate on the cluster with `suite eval hydra/launcher=slurm` "
                "(one job per run) and the same overrides",
                flush=True,
            )
        elif not args.no_eval:
            from suite.eval.runner import evaluate_sweep

            # Only what is missing is evaluated: a rerun of a finished sweep plans and skips.
            print("[sweep] evaluating published checkpoints (suite eval) …", flush=True)
            ledger = evaluate_sweep(cfg, runs).ledger
            from suite.cards import refresh_cards

            # The evaluated revisions' model cards get their results (`suite cards`).
            print(refresh_cards(cfg, runs).line(), flush=True)
        report_dir = None
        if not args.no_report:
            from suite.report import write_report

            report_dir = write_report(sweep.path)
    except (SuiteError, DataError) as err:
        print(f"suite sweep: {err}", file=sys.stderr)
        return 2
    minutes = (time.time() - started) / 60
    first = runs[0]
    store = cfg.publish.store
    print(f"\n[sweep] done in {minutes:.1f} min.")
    print(f"  runs (metrics, logs):   {sweep.runs_dir}/  (each run's train.log)")
    print(f"  sweep log:              {sweep.log_file}")
    print(f"  published checkpoints:  {store}")
    if ledger:
        print(f"  evaluation ledger:      {ledger}")
    if report_dir:
        print(f"  report:                 {report_dir}/report.html (and summary.md)")
    last = cfg.checkpoint_schedule().steps()[-1]
    print("\nTry next:")
    print(f"  suite pull {first.repo_id} --step {last} --store {store}")
    print(f"  suite batch 7 --data {dataset_dir(cfg, first.dataset_name)} --decode")
    print(f"  suite report {sweep.path}")
    return 0
