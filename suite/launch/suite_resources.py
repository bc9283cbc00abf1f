"""A run's SLURM job shape, derived from the suite config (per-size resources + site)."""

from __future__ import annotations

from dataclasses import asdict

from suite.config import RunSpec, SuiteConfig, resource_key
from suite.errors import ConfigError
from suite.launch.resources import SlurmResources, SlurmSite

#: Fields of a job's errors that the user sets outside the run's resources.
_SITE_KEYS = {"signal_delay_s": "slurm.signal_delay_s", "gpus_per_node": "cluster.gpus_per_node"}


def slurm_site(cfg: SuiteConfig) -> SlurmSite:
    site = asdict(cfg.slurm) | {"gpus_per_node": cfg.cluster.gpus_per_node}
    try:
        return SlurmSite(**site)
    except ConfigError as err:
        field = _SITE_KEYS.get(err.field, f"slurm.{err.field}")
        raise ConfigError(field, err.value, err.fix) from None


def slurm_resources(cfg: SuiteConfig, run: RunSpec) -> SlurmResources:
    """Nodes, tasks and GPUs of `run`'s job, from its resolved layout (`run.layout`, validated
    by `resolve_run`); an error names the field as the user sets it."""
    site = slurm_site(cfg)
    try:
        return SlurmResources.for_layout(run.layout, time_minutes=run.time_minutes, site=site)
    except ConfigError as err:
        field = _SITE_KEYS.get(err.field) or resource_key(cfg, run.size_name, err.field)
        raise ConfigError(field, err.value, f"{err.fix} (run {run.run_name})") from None
