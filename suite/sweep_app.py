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
    """Train one run, recording its state in run.json (rank 0 only).

    When a stop signal interrupts training (time limit, preemption, `scontrol requeue`), the
    resume checkpoint is already saved: the run is recorded as interrupted and the signal is
    handed to the handler installed before the trainer's — submitit's, which requeues the job.
    """
    from suite.config import resolve_run
    from suite.launch.env import dist_env_from_environ
    from suite.train import train_run
    from suite.train.preemption import TrainingInterrupted

    _set_cpu_job_defaults()
    run = resolve_run(cfg, size, dataset)
    try:
        with SweepRunRecorder(cfg, run, enabled=dist_env_from_environ().rank == 0) as recorder:
            result = train_run(cfg, size, dataset)
            recorder.info["resumed_from"] = result.resumed_from
            return result
    except TrainingInterrupted as stop:
        print(f"[{run.run_name}] {stop}", flush=True)
        stop.hand_over()  # submitit requeues the job (rank 0); every rank exits


def _set_cpu_job_defaults() -> None:
    """DS_ACCELERATOR and the thread count of a GPU-less job, before DeepSpeed is imported."""
    import os

    import torch

    from suite.launch.env import cpu_job_defaults

    defaults = cpu_job_defaults(torch.cuda.is_available())
    os.environ.update(defaults)
    if "OMP_NUM_THREADS" in defaults:
        torch.set_num_threads(int(defaults["OMP_NUM_THREADS"]))  # torch may have read it already


class SweepRunRecorder:
    """`runinfo.RunRecorder` plus what a sweep job adds: the SLURM job as squeue names it,
    submitit's log file, restarts, and an `interrupted` state for a run stopped by a signal
    (its resume checkpoint saved; SLURM requeues it) instead of `failed`."""

    def __init__(self, cfg, run, enabled: bool = True):
        from suite.runinfo import RunRecorder

        self._recorder = RunRecorder(cfg, run, enabled)
        self.info = self._recorder.info

    def __enter__(self) -> SweepRunRecorder:
        from suite.launch.env import slurm_job_label, slurm_restart_count
        from suite.runinfo import write_run_info

        self._recorder.__enter__()
        if self._recorder.enabled and slurm_job_label():
            self.info["slurm_job_id"] = slurm_job_label()
            self.info["slurm_restarts"] = slurm_restart_count()
            log = _submitit_log()
            if log:
                self.info["logs"] = log
            write_run_info(self._recorder.directory, self.info)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        from suite.runinfo import write_run_info
        from suite.train.preemption import TrainingInterrupted

        self._recorder.__exit__(exc_type, exc, tb)
        if self._recorder.enabled and isinstance(exc, TrainingInterrupted):
            self.info["status"] = "interrupted"
            self.info["interrupted_at"] = exc.step
            self.info["interrupted_by"] = exc.signal_name
            self.info.pop("error", None)
            write_run_info(self._recorder.directory, self.info)


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
