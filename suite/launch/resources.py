"""SLURM resources of one run: from its parallel needs (ranks, TP) to sbatch parameters.

One task per rank (docs/architecture.md, contract 5). A run wanting ``gpus`` ranks with tensor
parallel degree ``tp`` on nodes of ``gpus_per_node`` GPUs gets
``nodes = ceil(gpus / gpus_per_node)`` nodes with ``gpus / nodes`` tasks (and GPUs) each; a TP
group never spans two nodes. The arithmetic and its rules are the run's
``suite.parallel.ParallelLayout`` (the same object planning and the trainer use); everything is
validated before anything is submitted.

``submitit_params()`` gives the parameters of ``hydra_submitit_launcher``'s ``submitit_slurm``
launcher; ``render_sbatch()`` the sbatch script submitit would submit, for dry runs — it uses
submitit's own script generation, so what is printed is what would run.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import ConfigError
from suite.parallel import ParallelLayout

#: sbatch flags that SlurmResources sets itself; extra_sbatch may not override them (it would
#: silently desynchronise the job's shape from the ranks the trainer expects).
_DERIVED_FLAGS = frozenset(
    {
        "nodes",
        "ntasks",
        "ntasks-per-node",
        "gpus",
        "gpus-per-node",
        "gpus-per-task",
        "cpus-per-task",
        "mem",
        "time",
        "signal",
        "partition",
        "account",
        "qos",
        "constraint",
    }
)


@dataclass(frozen=True)
class SlurmSite:
    """What a cluster looks like and how jobs are submitted there (no code edits per site)."""

    partition: str | None = None
    """Partition (queue) to submit to; None uses the cluster's default partition."""
    account: str | None = None
    """Account charged for the jobs (sbatch --account); None: the user's default."""
    qos: str | None = None
    """Quality of service (sbatch --qos); None: the account's default."""
    constraint: str | None = None
    """Node feature constraint, e.g. "a100&ib" (sbatch --constraint)."""
    setup: tuple[str, ...] = ()
    """Shell lines run in the batch script before the ranks start (module load, conda activate…)."""
    extra_sbatch: dict[str, str] = field(default_factory=dict)
    """Further sbatch flags, name without dashes → value, e.g. {"exclusive": "", "reservation": "x"}."""
    gpus_per_node: int = 8
    """GPUs per node on this cluster (on CPU-only clusters: tasks to place per node)."""
    cpus_per_task: int = 1
    """CPU cores per rank (data loading, tokenization, host-side work); see `cpus_per_node`."""
    cpus_per_node: int | None = None
    """CPU cores of a node. When set, each task gets `cpus_per_node // tasks per node` cores
    (a whole node's cores shared out among its ranks) instead of `cpus_per_task`."""
    mem_per_gpu_gb: int | None = None
    """Host memory per rank in GB, set by hand: the job asks for this × tasks per node. None:
    derived from the run's model (`SlurmResources.host_memory`)."""
    mem_per_node_gb: int | None = None
    """Host memory of a node in GB: a run whose derived request exceeds it is refused before
    anything is submitted. None: not checked."""
    host_overhead_gb: float | None = None
    """Host memory of one rank besides model tensors, in GB: CUDA context, torch, DeepSpeed and
    NCCL buffers, the tokenizer and batch reader, Python. None: 8 on GPU nodes (a CUDA rank's
    context and libraries take several GB), 1 on CPU-only sites (measured on CPU: ~0.3 GB
    after imports)."""
    cpu_only: bool = False
    """A cluster without GPUs: ranks are CPU tasks (gloo) and no GPUs are requested."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which SLURM sends the warning signal (USR2, submitit's)
    so the run can save a resume checkpoint and requeue itself."""
    max_requeues: int = 10
    """How many times a run that hit its time limit is requeued (submitit's max_num_timeout);
    preemptions do not count. The trainer resumes exactly, so requeueing is safe."""

    def __post_init__(self) -> None:
        # Hydra hands lists and DictConfigs; store plain immutable values.
        object.__setattr__(self, "setup", tuple(str(line) for line in self.setup))
        object.__setattr__(
            self, "extra_sbatch", {str(k): str(v) for k, v in dict(self.extra_sbatch).items()}
        )
        _positive("gpus_per_node", self.gpus_per_node)
        _positive("cpus_per_task", self.cpus_per_task)
        for name in ("cpus_per_node", "mem_per_gpu_gb", "mem_per_node_gb"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.host_overhead_gb is not None and (
            isinstance(self.host_overhead_gb, bool)
            or not (isinstance(self.host_overhead_gb, int | float) and self.host_overhead_gb >= 0)
        ):
            raise ConfigError(
                "host_overhead_gb", self.host_overhead_gb, "use a number of GB >= 0 (e.g. 8)"
            )
        if not isinstance(self.signal_delay_s, int) or self.signal_delay_s < 0:
            raise ConfigError(
                "signal_delay_s", self.signal_delay_s, "use a whole number of seconds >= 0"
            )
        if not isinstance(self.max_requeues, int) or self.max_requeues < 0:
            raise ConfigError("max_requeues", self.max_requeues, "use a whole number >= 0")
        for name in ("partition", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(name, value, "use a non-empty name, or null for the default")
        for flag in self.extra_sbatch:
            normalized = flag.lstrip("-").replace("_", "-")
            if normalized in _DERIVED_FLAGS:
                raise ConfigError(
                    f"extra_sbatch.{flag}",
                    self.extra_sbatch[flag],
                    f"--{normalized} is derived from the run's resources or a site field; "
                    "set that instead",
                )


@dataclass(frozen=True)
class HostMemory:
    """Host (CPU) memory one run's ranks need at their peak, from its model
    (`suite.launch.suite_resources.host_memory`), without the site's per-rank overhead."""

    per_rank_gb: float
    """Every rank: model tensors on the host at its peak (on GPU sites one full tensor while
    the init fills a shard; on CPU-only sites all of the rank's training state)."""
    rank0_gb: float = 0.0
    """Rank 0 besides: the gathered copy of every weight it exports."""


@dataclass(frozen=True)
class SlurmResources:
    """The job shape of one run: `gpus` ranks (one SLURM task each) with TP degree `tp`.

    The parallel arithmetic and its rules are the run's `ParallelLayout` (`layout`): nodes,
    tasks per node and dp come from it, and an invalid (gpus, tp, gpus_per_node) fails with the
    layout's error. `for_layout` makes the job of a run whose layout is already resolved.
    """

    gpus: int
    """Total ranks the run wants (world size = dp × tp). On CPU-only sites: tasks."""
    tp: int = 1
    """Tensor-parallel degree; a TP group must fit inside one node."""
    time_minutes: int = 60
    """Time limit of one job (sbatch --time); longer runs requeue and resume."""
    site: SlurmSite = field(default_factory=SlurmSite)
    """Cluster-wide settings (partition, account, GPUs per node, …)."""
    host_memory: HostMemory | None = None
    """What the run's model needs in host memory; None: not known (no `--mem` is derived)."""

    def __post_init__(self) -> None:
        # Not a field: the job's fields stay what a `slurm` config node may set.
        layout = ParallelLayout(gpus=self.gpus, tp=self.tp, gpus_per_node=self.site.gpus_per_node)
        object.__setattr__(self, "_layout", layout)
        _positive("time_minutes", self.time_minutes)
        mem, node = self.mem_gb, self.site.mem_per_node_gb
        if mem is not None and node is not None and mem > node:
            raise ConfigError(
                "mem_per_node_gb",
                node,
                f"the run needs {mem} GB of host memory per node ({self.tasks_per_node} "
                "rank(s)); use nodes with more memory, fewer ranks per node, or set "
                "mem_per_gpu_gb by hand",
            )
        if self.site.signal_delay_s >= self.time_minutes * 60:
            raise ConfigError(
                "signal_delay_s",
                self.site.signal_delay_s,
                f"the warning must come before the time limit ({self.time_minutes} min); "
                "lower it or raise time_minutes",
            )

    @classmethod
    def for_layout(
        cls,
        layout: ParallelLayout,
        time_minutes: int = 60,
        site: SlurmSite | None = None,
        host_memory: HostMemory | None = None,
    ) -> SlurmResources:
        """The job of a run with an already resolved layout (e.g. `run.layout`).

        The site must have the layout's `gpus_per_node` (both come from the suite's
        `cluster.gpus_per_node`); `resources.layout` is then the run's own layout.
        """
        site = site if site is not None else SlurmSite(gpus_per_node=layout.gpus_per_node)
        if site.gpus_per_node != layout.gpus_per_node:
            raise ConfigError(
                "gpus_per_node",
                site.gpus_per_node,
                f"the run's layout was resolved for gpus_per_node={layout.gpus_per_node}; "
                "give the site the same",
            )
        resources = cls(
            gpus=layout.gpus,
            tp=layout.tp,
            time_minutes=time_minutes,
            site=site,
            host_memory=host_memory,
        )
        object.__setattr__(resources, "_layout", layout)
        return resources

    @property
    def layout(self) -> ParallelLayout:
        """The run's parallel layout (ranks, dp × tp, nodes) this job is shaped from."""
        return self._layout

    @property
    def dp(self) -> int:
        """Data-parallel degree (world = dp × tp)."""
        return self.layout.dp

    @property
    def nodes(self) -> int:
        """Nodes the job asks for."""
        return self.layout.nodes

    @property
    def tasks_per_node(self) -> int:
        """SLURM tasks (ranks) per node."""
        return self.layout.ranks_per_node

    @property
    def gpus_per_node(self) -> int:
        """GPUs requested per node: one per task, 0 on CPU-only sites."""
        return 0 if self.site.cpu_only else self.tasks_per_node

    @property
    def cpus_per_task(self) -> int:
        """CPU cores per task: the node's cores shared out among its ranks where the site
        gives `cpus_per_node`, else the site's `cpus_per_task`."""
        if self.site.cpus_per_node is None:
            return self.site.cpus_per_task
        return max(1, self.site.cpus_per_node // self.tasks_per_node)

    @property
    def mem_gb(self) -> int | None:
        """Host memory requested per node (sbatch --mem), or None for the site default.

        The site's `mem_per_gpu_gb` × tasks if set by hand; else derived from the model:
        every rank's peak plus the site's per-rank overhead, and rank 0's export copy (--mem
        is the same for every node, so each node is sized for the one that holds rank 0).
        """
        if self.site.mem_per_gpu_gb is not None:
            return self.site.mem_per_gpu_gb * self.tasks_per_node
        if self.host_memory is None:
            return None
        overhead = self.site.host_overhead_gb
        if overhead is None:
            overhead = 1.0 if self.site.cpu_only else 8.0
        per_rank = self.host_memory.per_rank_gb + overhead
        return math.ceil(per_rank * self.tasks_per_node + self.host_memory.rank0_gb)

    def describe(self) -> str:
        """One line for logs and the sbatch comment."""
        return (
            f"world={self.gpus} (dp={self.dp} x tp={self.tp}) on {self.nodes} node(s) x "
            f"{self.tasks_per_node} task(s), {self.gpus_per_node} GPU(s)/node"
        )


def submitit_params(resources: SlurmResources) -> dict[str, Any]:
    """Parameters for hydra_submitit_launcher's `submitit_slurm` launcher (its field names).

    Usable as `hydra.launcher.<key>=<value>` overrides or merged into the launcher node.
    Unset site values are None, the launcher's own "not requested" value.
    """
    site = resources.site
    additional: dict[str, Any] = {"comment": f"scaling-suite {resources.describe()}"}
    # sbatch takes boolean flags without a value; submitit writes `--flag` for True.
    additional.update({k: (True if v == "" else v) for k, v in site.extra_sbatch.items()})
    return {
        "nodes": resources.nodes,
        "tasks_per_node": resources.tasks_per_node,
        # --gpus-per-node=0 is rejected by clusters without GPU GRES: leave it out instead.
        "gpus_per_node": resources.gpus_per_node or None,
        "cpus_per_task": resources.cpus_per_task,
        "mem_gb": resources.mem_gb,
        "timeout_min": resources.time_minutes,
        "partition": site.partition,
        "account": site.account,
        "qos": site.qos,
        "constraint": site.constraint,
        "setup": list(site.setup) or None,
        "signal_delay_s": site.signal_delay_s,
        "max_num_timeout": site.max_requeues,
        "additional_parameters": additional,
    }


def executor_params(resources: SlurmResources) -> dict[str, Any]:
    """The same request as `submitit.AutoExecutor.update_parameters(**...)` keywords.

    (`max_num_timeout` is an executor constructor argument: `slurm_max_num_timeout=`.)
    """
    generic = {"nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min"}
    params = {}
    for key, value in submitit_params(resources).items():
        if value is None or key == "max_num_timeout":
            continue
        params[key if key in generic else f"slurm_{key}"] = value
    return params


def render_sbatch(
    resources: SlurmResources,
    folder: str | Path,
    job_name: str = "suite",
    command: str | None = None,
) -> str:
    """The sbatch script submitit would submit for this run — nothing is submitted.

    `command` defaults to submitit's own runner (`python -u -m submitit.core._submit FOLDER`),
    which is what the Hydra submitit launcher runs inside the job.
    """
    from submitit.slurm import slurm as submitit_slurm

    if command is None:
        command = (
            f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
        )
    renames = submitit_slurm.SlurmExecutor._equivalence_dict()
    sbatch_kwargs: dict[str, Any] = {"job_name": job_name}
    for key, value in submitit_params(resources).items():
        if value is None or key == "max_num_timeout":
            continue
        name = renames.get(key, key)
        sbatch_kwargs[name] = submitit_slurm._convert_mem(value) if name == "mem" else value
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, **sbatch_kwargs)


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, value, "use a whole number >= 1")
