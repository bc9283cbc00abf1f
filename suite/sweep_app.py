"""The Hydra application behind `suite sweep`: one job per (size, dataset) run.

Hydra expands the multirun (`size=a,b dataset=x,y`), the launcher runs each job — in this
process one after the other (basic launcher, the default) or as SLURM jobs with one task per
rank (`hydra/launcher=slurm`, submitit) — and each job trains its run with `train_run`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import hydra
from omegaconf import DictConfig

import sweeps

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
    from suite.config import resolve_run
    from suite.launch.env import dist_env_from_environ
    from suite.rundir import run_dir
    from suite.train import train_run
    from suite.train.preemption import TrainingInterrupted

    _set_job_defaults()
    run = resolve_run(cfg, size, dataset)
    if dist_env_from_environ().rank == 0:
        fields = _slurm_fields()
        if fields:
            run_dir(cfg, run).update(**fields)
    try:
        return train_run(cfg, size, dataset)
    except TrainingInterrupted as stop:
        print(f"[{run.run_name}] {stop}", flush=True)
        stop.hand_over()  # submitit requeues the job (rank 0); every rank exits


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


def launch(runs: list[tuple[str, str]], overrides: list[str]) -> None:
    """Run Hydra's multirun over exactly `runs` (a full grid of their sizes × datasets)."""
    sizes = sorted({size for size, _ in runs}, key=[s for s, _ in runs].index)
    datasets = sorted({ds for _, ds in runs}, key=[d for _, d in runs].index)
    argv = ["suite-sweep", "--multirun", f"size={','.join(sizes)}", f"dataset={','.join(datasets)}"]
    with _argv(argv + list(overrides)):
        run_job()
