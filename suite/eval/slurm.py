"""`suite eval hydra/launcher=slurm`: one SLURM job per run, through the sweep's launcher.

The same Hydra multirun as `suite sweep` (`suite.sweep_app.grids`, `axis_overrides`) and the
same launcher (`PerRunSlurmLauncher`), with this module's job function, which evaluates its
one run. The job is named `EVAL_JOB_NAME` (`hydra.job.name`), and the launcher gives such a
job one task on one GPU (`suite.launch.suite_resources.eval_resources`) instead of the run's training shape. Jobs write
their parts only; this process merges the ledger once they have all returned.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import sweeps
from suite.launch.suite_resources import EVAL_JOB_NAME, eval_resources

sweeps.register_schema()


@hydra.main(version_base=None, config_path="pkg://sweeps.conf", config_name="config")
def run_eval_job(cfg: DictConfig):
    """One job: evaluate the run (size, dataset[, seed]) it was given; parts only."""
    from suite.config import resolve_all
    from suite.eval.runner import evaluate_sweep
    from suite.settings import to_suite

    suite_cfg = to_suite(cfg)
    runs = [
        r
        for r in resolve_all(suite_cfg)
        if r.size_name == suite_cfg.size and r.dataset_name == suite_cfg.dataset
    ]
    evaluate_sweep(suite_cfg, runs, merge=False)


def job_overrides(overrides: list[str]) -> list[str]:
    """The user's overrides plus the job name that tells the launcher this is an eval job."""
    return [*overrides, f"hydra.job.name={EVAL_JOB_NAME}"]


def launch_eval(cfg, runs, overrides: list[str], dry_run: bool) -> int:
    """Submit one job per run (or print their sbatch scripts), then merge the ledger."""
    from suite.eval.runner import merge_ledger
    from suite.launch.resources import render_sbatch
    from suite.rundir import sweep_dir

    sweep = sweep_dir(cfg)
    shapes = {run.run_name: eval_resources(cfg, run) for run in runs}  # validates all first
    if dry_run:
        for run in runs:
            print(f"# ---- {run.run_name} (suite eval): {shapes[run.run_name].describe()} ----")
            print(
                render_sbatch(
                    shapes[run.run_name], sweep.submitit_dir / "%j", job_name=run.run_name
                )
            )
        return 0
    from suite.config import RunKey
    from suite.errors import SuiteError
    from suite.sweep_app import _argv, axis_overrides, grids

    keys = [RunKey(r.size_name, r.dataset_name, r.seed) for r in runs]
    replicated = len({k.seed for k in keys}) > 1
    for grid in grids(keys):
        argv = ["suite-eval", "--multirun", *job_overrides(overrides)]
        with _argv([*argv, *axis_overrides(grid, replicated)]):
            try:
                run_eval_job()
            except SystemExit as exit_:
                if exit_.code:
                    raise SuiteError("one or more evaluation jobs failed (see above)") from None
    ledger = merge_ledger(cfg)
    print(f"[eval] ledger {sweep.ledger_path} ({len(ledger)} rows)")
    return 0
