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
    """Train one run, recording its state in run.json (rank 0 only)."""
    from suite.config import resolve_run
    from suite.launch.env import dist_env_from_environ
    from suite.runinfo import RunRecorder
    from suite.train import train_run

    run = resolve_run(cfg, size, dataset)
    with RunRecorder(cfg, run, enabled=dist_env_from_environ().rank == 0):
        return train_run(cfg, size, dataset)


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
