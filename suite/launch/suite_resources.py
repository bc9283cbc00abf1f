"""A run's SLURM job shape, derived from the suite config (per-size resources + site)."""

from __future__ import annotations

from dataclasses import asdict

from suite.config import RunSpec, SuiteConfig
from suite.errors import ConfigError
from suite.launch.resources import SlurmResources, SlurmSite


def slurm_site(cfg: SuiteConfig) -> SlurmSite:
    site = asdict(cfg.slurm) | {"gpus_per_node": cfg.cluster.gpus_per_node}
    try:
        return SlurmSite(**site)
    except ConfigError as err:
        raise ConfigError(f"slurm.{err.field}", err.value, err.fix) from None


def slurm_resources(cfg: SuiteConfig, run: RunSpec) -> SlurmResources:
    """Nodes, tasks and GPUs of `run`'s job, validated with the field named as the user sets it."""
    where = f"resources.{run.size_name}" if run.size_name in cfg.resources else "default_resources"
    try:
        return SlurmResources(
            gpus=run.gpus, tp=run.tp, time_minutes=run.time_minutes, site=slurm_site(cfg)
        )
    except ConfigError as err:
        field = err.field if err.field.startswith("slurm.") else f"{where}.{err.field}"
        raise ConfigError(field, err.value, f"{err.fix} (run {run.run_name})") from None
