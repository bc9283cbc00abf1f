"""Distributed start-up: join the process group from torchrun, SLURM or nothing.

The parallel arithmetic of a run (world = dp × tp, which rank trains on which rows) is its
`suite.parallel.ParallelLayout` (`run.layout`, or `suite.config.resolve_layout(cfg, size)`
before the data is open): check the world with `layout.check_world(env.world_size)` and map a
rank to its data-parallel group with `layout.dp_rank(env.rank)`.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from suite.errors import SuiteError
from suite.launch.env import DistEnv, apply, dist_env_from_environ


def free_loopback_port() -> int:
    """A TCP port nobody listens on right now (for a single process without a launcher)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(timeout_minutes: float = 60) -> DistEnv:
    """Join (or reuse) the process group from torchrun, SLURM or nothing (world of one).

    Reusing an initialized group lets the sweep train several runs in one process.
    `timeout_minutes` bounds how long a collective may wait for a straggler before the job
    fails (`cluster.collective_timeout_minutes`); torch's NCCL default of 10 minutes is
    shorter than a rank-0 export or resume save of a large model can take.
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

        from suite.train.comm_op import shm_op_for

        with shm_op_for(env.world_size, env.rank):  # CPU: not built for one process
            deepspeed.init_distributed(
                dist_backend=backend(),
                auto_mpi_discovery=False,
                timeout=timedelta(minutes=timeout_minutes),
            )
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
