"""The parallel layout of one run: ranks, TP/DP degrees, per-rank batch and nodes — one rule set.

Everything that needs the parallel arithmetic (the run's resolution in `suite.config`, the
SLURM job shape in `suite.launch.resources`, the process-group check and the rank → batch
mapping in the trainer, `suite plan`) asks one `ParallelLayout`, validated once when it is
made (torchtitan's `ParallelDims` model). Torch-free, so planning and launching stay light.

Rules (docs/architecture.md, contracts 3 and 5):

- world = dp × tp: `gpus` must be a multiple of `tp`;
- a TP group lies within one node: `tp <= gpus_per_node` always, and a job spanning several
  nodes runs the same number of ranks on each (`gpus` a multiple of `gpus_per_node`) with
  whole TP groups per node (`gpus_per_node % tp == 0`); a single-node job
  (`gpus <= gpus_per_node`) needs nothing more;
- global batch = micro_batch × dp × grad_accum.

Rank order is DeepSpeed AutoTP's device mesh `(data_parallel, tensor_parallel)`, row major:
`rank = dp_rank × tp + tp_rank`, so the TP ranks of one DP group are consecutive ranks — on
one node — and all of them train on the same rows.

Errors are `ConfigError`s naming the layout's own fields (`gpus`, `tp`, `micro_batch`,
`grad_accum`, `gpus_per_node`); callers re-key them to the field as the user writes it
(`resources.70m.tp`, `parallel.gpus`, `cluster.gpus_per_node`) with `rekeyed` (see
`suite.config.resolve_layout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suite.errors import ConfigError

#: The layout's input fields, in the order they are validated.
LAYOUT_FIELDS = ("gpus", "tp", "micro_batch", "grad_accum", "gpus_per_node")


@dataclass(frozen=True)
class ParallelLayout:
    """How the ranks of one run split into data- and tensor-parallel groups, and onto nodes."""

    gpus: int
    """World size: ranks of the run (GPUs; on CPU, processes). world = dp × tp."""
    tp: int = 1
    """Tensor-parallel degree (DeepSpeed AutoTP): ranks that share one copy of the model."""
    micro_batch: int = 1
    """Samples per rank per micro step."""
    grad_accum: int = 1
    """Micro steps per update."""
    gpus_per_node: int = 8
    """Ranks one node holds (the cluster's GPUs per node); a TP group never spans two nodes."""

    def __post_init__(self) -> None:
        for name in LAYOUT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "use a whole number >= 1")
        gpus, tp, per_node = self.gpus, self.tp, self.gpus_per_node
        if gpus % tp:
            raise ConfigError(
                "gpus",
                gpus,
                f"not divisible by tp={tp}; use a multiple of {tp} (e.g. {gpus - gpus % tp or tp})",
            )
        if tp > per_node:
            raise ConfigError(
                "tp",
                tp,
                f"a tensor-parallel group must live inside one node of gpus_per_node={per_node}; "
                f"use tp <= {per_node}",
            )
        if gpus > per_node and gpus % per_node:
            raise ConfigError(
                "gpus",
                gpus,
                f"spans {math.ceil(gpus / per_node)} nodes but is not a multiple of "
                f"gpus_per_node={per_node}; use a multiple of {per_node} (every node runs the "
                "same number of ranks)",
            )
        if gpus > per_node and per_node % tp:
            raise ConfigError(
                "tp",
                tp,
                f"does not divide gpus_per_node={per_node}, so a TP group would straddle "
                "two nodes; use a divisor of gpus_per_node",
            )

    @property
    def world_size(self) -> int:
        """Processes the job must start (= gpus = dp × tp)."""
        return self.gpus

    @property
    def dp(self) -> int:
        """Data-parallel degree: groups that see different rows of each batch."""
        return self.gpus // self.tp

    @property
    def global_batch(self) -> int:
        """Samples per update: micro_batch × dp × grad_accum."""
        return self.micro_batch * self.dp * self.grad_accum

    @property
    def nodes(self) -> int:
        """Nodes the job occupies."""
        return math.ceil(self.gpus / self.gpus_per_node)

    @property
    def ranks_per_node(self) -> int:
        """Ranks (SLURM tasks) on each node; the same on every node."""
        return self.gpus // self.nodes

    def _check_rank(self, rank: int) -> None:
        if not 0 <= rank < self.gpus:
            raise ConfigError("rank", rank, f"use a rank in 0 … {self.gpus - 1}")

    def dp_rank(self, rank: int) -> int:
        """The data-parallel group of global `rank` (which rows of each batch it trains on)."""
        self._check_rank(rank)
        return rank // self.tp

    def tp_rank(self, rank: int) -> int:
        """The position of global `rank` inside its tensor-parallel group."""
        self._check_rank(rank)
        return rank % self.tp

    def check_world(self, world_size: int) -> None:
        """Fail unless the job started exactly dp × tp processes."""
        if world_size != self.gpus:
            raise ConfigError(
                "world_size",
                world_size,
                f"dp × tp = {self.dp} × {self.tp} = {self.gpus} ranks but the job has "
                f"world_size={world_size} processes; start {self.gpus} processes "
                f"or change the run's gpus (= dp × tp) / tp",
            )


def rekeyed(err: ConfigError, key, suffix: str = "") -> ConfigError:
    """`err` with its field renamed by `key(field)` (as the user writes it), `suffix` on the fix."""
    return ConfigError(key(err.field), err.value, f"{err.fix}{suffix}")
