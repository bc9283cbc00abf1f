"""Distributed start-up and the parallel dimensions of a run (world = dp × tp).

Rank layout (DeepSpeed AutoTP's device mesh `(data_parallel, tensor_parallel)`, row major):
`rank = dp_rank × tp + tp_rank`, so the TP ranks of one DP group are consecutive ranks —
on one node — and all of them train on the same rows.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from suite.errors import ConfigError, SuiteError
from suite.launch.env import DistEnv, apply, dist_env_from_environ


@dataclass(frozen=True)
class ParallelDims:
    """How the ranks of a run split into data- and tensor-parallel groups."""

    dp: int
    """Data-parallel degree: groups that see different rows of each batch."""
    tp: int
    """Tensor-parallel degree: ranks that share one copy of the model, split by AutoTP."""
    world_size: int
    """Processes of the job; must equal dp × tp."""

    def __post_init__(self) -> None:
        for name in ("dp", "tp", "world_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "use a positive integer")
        if self.dp * self.tp != self.world_size:
            raise ConfigError(
                "world_size",
                self.world_size,
                f"dp × tp = {self.dp} × {self.tp} = {self.dp * self.tp} ranks but the job has "
                f"world_size={self.world_size} processes; start {self.dp * self.tp} processes "
                f"or change the run's gpus (= dp × tp) / tp",
            )

    def dp_rank(self, rank: int) -> int:
        return rank // self.tp

    def tp_rank(self, rank: int) -> int:
        return rank % self.tp


def free_loopback_port() -> int:
    """A TCP port nobody listens on right now (for a single process without a launcher)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed() -> DistEnv:
    """Join (or reuse) the process group from torchrun, SLURM or nothing (world of one).

    Reusing an initialized group lets the sweep train several runs in one process.
    """
    import torch.distributed as dist

    env = dist_env_from_environ()
    if env.source == "single" and "MASTER_PORT" not in os.environ:
        # Several single-process runs may start at once on one machine (tests, the local
        # launcher): a fixed port would make the second one fail to bind.
        env = DistEnv(0, 1, 0, 1, "127.0.0.1", free_loopback_port(), "single")
    if not dist.is_initialized():
        apply(env)
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend(), auto_mpi_discovery=False)
    elif dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
        raise SuiteError(
            f"a process group is already initialized as rank {dist.get_rank()} of "
            f"{dist.get_world_size()}, but the environment says rank {env.rank} of "
            f"{env.world_size}; run each job in a fresh process"
        )
    if backend() == "nccl":
        import torch

        torch.cuda.set_device(env.local_rank)
    return env


def shutdown_distributed() -> None:
    """Destroy the process group at the end of a command (not between runs of a sweep)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
