"""A submitit SLURM launcher for Hydra whose job shape comes from each run's own config.

hydra-submitit-launcher's `submitit_slurm` builds one executor from the launcher config and
submits every job of the multirun with it, so all runs get the same nodes/tasks. Interpolating
`${...}` in the launcher config does not help: the launcher is instantiated once, from the
sweep's base config, before any run's overrides are applied. A suite needs 8 nodes for one
size and 32 for another, so this launcher reads the `slurm` node of each run's composed
config (SlurmResources fields: gpus, tp, time_minutes, site), validates it, and submits runs
with identical resources together as one job array. Every run is validated before the first
submission: one bad size stops the sweep with nothing submitted.

Runs whose config has no `slurm` node are submitted exactly as `submitit_slurm` would.
Select it with `hydra/launcher=slurm` (sweeps/conf/hydra/launcher/slurm.yaml).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from suite.errors import ConfigError
from suite.launch.resources import SlurmResources, SlurmSite, submitit_params

log = logging.getLogger(__name__)

#: Where a (non-suite) run's config holds its SLURM resources.
RESOURCES_KEY = "slurm"

#: Launcher fields that stay with the launcher config when the run's site leaves them unset.
_SITE_FALLBACKS = ("partition", "account", "qos", "constraint", "setup")


def resources_from_config(config: Any, key: str = RESOURCES_KEY) -> SlurmResources | None:
    """The SlurmResources of a composed run config, or None when it has no job shape.

    A suite run (a config with `ladder`, `size` and `dataset`) gets its shape from the suite
    itself: per-size resources and the `slurm` site settings (`suite.launch.suite_resources`).
    Any other Hydra app can give an explicit `slurm` node: gpus, tp, time_minutes, site.
    """
    if OmegaConf.select(config, "ladder", default=None) is not None:
        return _suite_run_resources(config)
    node = OmegaConf.select(config, key, default=None)
    if node is None:
        return None
    spec = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(spec, dict):
        raise ConfigError(key, spec, "expected a mapping of gpus, tp, time_minutes, site")
    spec = dict(spec)
    site_spec = spec.pop("site", None) or {}
    allowed_site = set(SlurmSite.__dataclass_fields__)
    allowed = set(SlurmResources.__dataclass_fields__) - {"site", "host_memory"}
    for name, names, where in ((spec, allowed, key), (site_spec, allowed_site, f"{key}.site")):
        unknown = sorted(set(name) - names)
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}",
                name[unknown[0]],
                f"unknown field; use one of {sorted(names)}",
            )
    return SlurmResources(site=SlurmSite(**site_spec), **spec)


def _suite_run_resources(config: Any) -> SlurmResources | None:
    from omegaconf import open_dict, read_write

    from suite.config import resolve_run
    from suite.launch.suite_resources import EVAL_JOB_NAME, eval_resources, slurm_resources
    from suite.settings import to_suite

    task_config = config.copy()
    with read_write(task_config), open_dict(task_config):
        task_config.pop("hydra", None)
    suite_cfg = to_suite(task_config)
    if suite_cfg.size is None or suite_cfg.dataset is None:
        return None
    run = resolve_run(suite_cfg, suite_cfg.size, suite_cfg.dataset)
    if OmegaConf.select(config, "hydra.job.name", default=None) == EVAL_JOB_NAME:
        return eval_resources(suite_cfg, run)  # `suite eval`: one rank, not the training shape
    return slurm_resources(suite_cfg, run)


def launcher_params_for_run(
    base: dict[str, Any], resources: SlurmResources | None
) -> dict[str, Any]:
    """The launcher's params with the run's job shape (and set site values) laid over them."""
    params = dict(base)
    if resources is None:
        return params
    for name, value in submitit_params(resources).items():
        if name == "additional_parameters":
            params[name] = {**(params.get(name) or {}), **value}
        elif value is not None or name not in _SITE_FALLBACKS:
            params[name] = value
    return params


class PerRunSlurmLauncher(SlurmLauncher):
    """`submitit_slurm`, with nodes/tasks/GPUs/time per run from the run's `slurm` config."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        # Validate every run first: nothing is submitted if any run's request is invalid.
        groups: dict[str, list[int]] = {}
        for position, overrides in enumerate(job_overrides):
            run_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            params = launcher_params_for_run(self.params, resources_from_config(run_config))
            groups.setdefault(json.dumps(params, sort_keys=True), []).append(position)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")

        # Keys shared by all submitit executors go unprefixed, the rest as slurm_<key>.
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        results: list[JobReturn | None] = [None] * len(job_overrides)
        pending = []
        for params_json, positions in groups.items():
            params = json.loads(params_json)
            executor = submitit.AutoExecutor(
                cluster="slurm",
                folder=params["submitit_folder"],
                slurm_max_num_timeout=params["max_num_timeout"],
            )
            executor.update_parameters(
                **{
                    name if name in generic else f"slurm_{name}": value
                    for name, value in params.items()
                    if name not in ("submitit_folder", "max_num_timeout")
                }
            )
            job_params = []
            for position in positions:
                number = initial_job_idx + position
                overrides = list(job_overrides[position])
                log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
                job_params.append(
                    (
                        overrides,
                        "hydra.sweep.dir",
                        number,
                        f"job_id_for_{number}",
                        Singleton.get_state(),
                    )
                )
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
            pending += list(zip(positions, jobs, strict=True))
        for position, job in pending:
            results[position] = job.results()[0]
        return [result for result in results if result is not None]
