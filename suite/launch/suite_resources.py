"""A run's SLURM job shape, derived from the suite config (per-size resources + site)."""

from __future__ import annotations

from dataclasses import asdict, replace

from suite.config import RunSpec, SuiteConfig, resource_key
from suite.errors import ConfigError
from suite.launch.resources import HostMemory, SlurmResources, SlurmSite

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
    from suite.planning import stop_warning_s

    # The warning before the time limit must cover finishing the update and saving a resume
    # checkpoint: raised per run above `slurm.signal_delay_s` when the model needs it.
    site = replace(slurm_site(cfg), signal_delay_s=stop_warning_s(cfg, run))
    try:
        return SlurmResources.for_layout(
            run.layout, time_minutes=run.time_minutes, site=site, host_memory=host_memory(cfg, run)
        )
    except ConfigError as err:
        field = _SITE_KEYS.get(err.field) or resource_key(cfg, run.size_name, err.field)
        raise ConfigError(field, err.value, f"{err.fix} (run {run.run_name})") from None


def largest_tensor_params(run: RunSpec) -> int:
    """Elements of the run's largest single parameter, unsplit: an embedding (V × d), the
    MLP's widest matrix (hidden × d) or the fused QKV (3d × d)."""
    spec, family = run.size, run.family
    return max(run.padded_vocab, family.mlp_hidden(spec), 3 * spec.d_model) * spec.d_model


def host_memory(cfg: SuiteConfig, run: RunSpec) -> HostMemory:
    """Host memory of the run's ranks, from its model (`suite/train/init.py`, `hooks.py`).

    Every rank fills its shard one parameter at a time from a full fp32 tensor drawn on the
    host, so its host peak is that one tensor; the shard itself lives on the GPU. On CPU-only
    sites the host is the device: add the rank's whole training state (`suite plan`'s
    per-rank estimate). Rank 0 also holds the gathered weights of an export in the training
    dtype and, cast, in the saved dtype.
    """
    from model_zoo import BYTES
    from suite.planning import plan_memory

    gb = 1e9
    per_rank = largest_tensor_params(run) * 4 / gb
    if cfg.slurm.cpu_only:
        per_rank += plan_memory(cfg, run).total / gb
    saved = cfg.publish.save_dtype or cfg.precision
    saved_bytes = BYTES.get(saved, 2 if saved in ("bfloat16", "float16") else 4)
    total = run.family.total_params(run.size, run.padded_vocab)
    return HostMemory(per_rank, total * (BYTES[cfg.precision] + saved_bytes) / gb)


#: `hydra.job.name` of a `suite eval` job (`suite.eval.slurm`): sized by `eval_resources`.
EVAL_JOB_NAME = "suite-eval"


def eval_resources(cfg: SuiteConfig, run: RunSpec) -> SlurmResources:
    """A `suite eval` job: one rank on one GPU (one CPU task on a CPU-only site), with the
    run's time limit and the suite's site: a checkpoint is evaluated whole, never sharded."""
    from suite.parallel import ParallelLayout

    layout = ParallelLayout(
        gpus=1, tp=1, micro_batch=1, grad_accum=1, gpus_per_node=cfg.cluster.gpus_per_node
    )
    return SlurmResources.for_layout(
        layout,
        time_minutes=run.time_minutes,
        site=slurm_site(cfg),
        host_memory=host_memory(cfg, run),
    )
