"""The Hydra application behind `suite sweep`: one job per (size, dataset, seed) run.

Hydra expands the multirun (`size=a,b dataset=x,y seed=1234,1`), the launcher runs each job — in this
process one after the other (basic launcher, the default) or as SLURM jobs with one task per
rank (`hydra/launcher=slurm`, submitit) — and each job trains its run with `train_run`.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager

import hydra
from omegaconf import DictConfig

import sweeps
from suite.config import RunKey
from suite.rundir import HYDRA_DIR

sweeps.register_schema()


@hydra.main(version_base=None, config_path="pkg://sweeps.conf", config_name="config")
def run_job(cfg: DictConfig):
    """One job of the sweep: validate the suite and train (or resume, or skip) its run."""
    from suite.settings import to_suite

    suite_cfg = to_suite(cfg)
    return execute_run(suite_cfg, suite_cfg.size, suite_cfg.dataset)


def execute_run(cfg, size: str, dataset: str):
    """Train one run; the trainer records its state in run.json, the sweep adds its own fields.

    When a stop signal interrupts training (time limit, preemption, `scontrol requeue`), the
    resume checkpoint is already saved and the run recorded as interrupted: the signal is
    handed to the handler installed before the trainer's — submitit's, which requeues the job.
    """
    from suite import console
    from suite.config import resolve_run
    from suite.launch.env import dist_env_from_environ
    from suite.rundir import run_dir
    from suite.train import train_run
    from suite.train.preemption import TrainingInterrupted

    console.configure()  # a SLURM job is a fresh process; in `suite sweep` this does nothing
    _set_job_defaults()
    run = resolve_run(cfg, size, dataset)
    directory = run_dir(cfg, run)
    is_main = dist_env_from_environ().rank == 0
    if is_main:
        fields = _slurm_fields()
        if fields:
            directory.update(**fields)
    console.run_started(run.run_name, directory.resume_step() or 0, run.train_steps)
    try:
        result = train_run(cfg, size, dataset)  # rank 0 logs to the run's train.log
    except TrainingInterrupted as stop:
        print(f"[{run.run_name}] {stop}", flush=True)
        stop.hand_over()  # submitit requeues the job (rank 0); every rank exits
        return None
    if is_main:
        console.run_finished(_finished_line(result))
    return result


def _finished_line(result) -> str:
    """One line for a finished (or already complete) run of the sweep."""
    if result.skipped:
        return f"[{result.run_name}] already complete at step {result.final_step}"
    losses = f"loss {result.final_loss:.4f}" if result.final_loss is not None else "no loss"
    if result.final_eval_loss is not None:
        losses += f", eval loss {result.final_eval_loss:.4f}"
    seconds = f"{result.wall_seconds:.0f}s"
    return f"[{result.run_name}] done — step {result.final_step}, {losses}, {seconds}"


def _slurm_fields() -> dict:
    """What the SLURM layer adds to a run's record: the job as squeue names it, how often it
    was requeued, and submitit's log file of rank 0 ({} outside SLURM)."""
    from suite.launch.env import slurm_job_label, slurm_restart_count

    label = slurm_job_label()
    if not label:
        return {}
    fields = {"slurm_job_id": label, "slurm_restarts": slurm_restart_count()}
    log = _submitit_log()
    if log:
        fields["logs"] = log
    return fields


def _set_job_defaults() -> None:
    """The thread count of a SLURM task (GPU nodes too) and, without a GPU, DS_ACCELERATOR=cpu —
    before DeepSpeed is imported (`suite.launch.env.cpu_job_defaults`)."""
    import os

    import torch

    from suite.launch.env import cpu_job_defaults

    defaults = cpu_job_defaults(torch.cuda.is_available())
    os.environ.update(defaults)
    if "OMP_NUM_THREADS" in defaults:
        torch.set_num_threads(int(defaults["OMP_NUM_THREADS"]))  # torch may have read it already


def _submitit_log() -> str | None:
    """This task's stdout file when the job was started by submitit (the Hydra launcher)."""
    import os

    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stdout)
    except (RuntimeError, ValueError, KeyError, OSError):
        return None


@contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def grids(runs: list[RunKey]) -> list[list[RunKey]]:
    """`runs` as Hydra multiruns, which are grids: one grid when the runs are a full grid of
    their sizes × datasets × seeds, else one per (dataset, seed) (the sizes left of each)."""
    axes = [list(dict.fromkeys(values)) for values in zip(*runs, strict=True)]
    if len(runs) == math.prod(len(values) for values in axes):
        return [list(runs)]
    by_line: dict[tuple[str, int], list[RunKey]] = {}
    for run in runs:
        by_line.setdefault((run.dataset, run.seed), []).append(run)
    return list(by_line.values())


def axis_overrides(grid: list[RunKey], replicated: bool) -> list[str]:
    """Hydra's overrides for one grid: each axis as a sweep of its values. `replicated`
    (several seeds) also gives each job its own Hydra directory, `hydra/{size}-{dataset}-seed{N}`
    (`SweepDir.hydra_job_dir`)."""
    sizes, datasets, seeds = (list(dict.fromkeys(values)) for values in zip(*grid, strict=True))
    axes = [
        f"size={','.join(sizes)}",
        f"dataset={','.join(datasets)}",
        f"seed={','.join(map(str, seeds))}",
    ]
    if replicated:
        axes.append(f"hydra.sweep.subdir={HYDRA_DIR}/${{size}}-${{dataset}}-seed${{seed}}")
    return axes


def launch(runs: list[RunKey], overrides: list[str], replicated: bool) -> None:
    """Run Hydra's multirun over exactly `runs` (`SuiteConfig.runs()` keys), grid by grid;
    `replicated`: the sweep has several seeds. Hydra exits (SystemExit) when a job failed."""
    for grid in grids(runs):
        # The axes last: Hydra takes the last value of a key, and each job's point is ours.
        with _argv(["suite-sweep", "--multirun", *overrides, *axis_overrides(grid, replicated)]):
            try:
                run_job()
            except SystemExit as exit_:
                if exit_.code:
                    raise  # a job failed: the grids after it do not start
