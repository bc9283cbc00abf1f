"""Where a process sits in the distributed job: rank, world size, rendezvous address.

Three sources, in this order (docs/architecture.md, contract 5):

1. torchrun / the deepspeed launcher already exported ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
   ``MASTER_ADDR``, ``MASTER_PORT``: they win (a torchrun inside a SLURM job knows better than
   SLURM how many processes it started).
2. A SLURM job step (one task per rank, started by ``srun``): ``RANK=SLURM_PROCID``,
   ``WORLD_SIZE=SLURM_NTASKS``, ``LOCAL_RANK=SLURM_LOCALID``, master = first host of the node
   list, port derived from the job id (same on every rank, no communication needed).
3. Neither: one process, rank 0 of 1.

``apply()`` exports the torch.distributed variables, after which
``deepspeed.init_distributed()`` or ``torch.distributed.init_process_group("gloo")`` start
from them without MPI discovery. This module imports neither torch nor deepspeed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Literal

from suite.errors import ConfigError

Source = Literal["slurm", "torchrun", "single"]

#: Ports derived from a SLURM job id fall in [PORT_BASE, PORT_BASE + PORT_SPAN): above the
#: privileged range and Slurm's own 6817/6818, below Linux's ephemeral range (32768+), so the
#: port is not already taken by some outgoing connection on the master node.
PORT_BASE = 20000
PORT_SPAN = 10000

#: Used when a single process (or a world of one) has no MASTER_ADDR/MASTER_PORT.
SINGLE_MASTER_ADDR = "127.0.0.1"
SINGLE_MASTER_PORT = 29500

_TORCHRUN_MARKERS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistEnv:
    """One process's place in the job, as torch.distributed needs it."""

    rank: int
    """Global rank, 0 … world_size-1."""
    world_size: int
    """Number of processes (ranks) in the job."""
    local_rank: int
    """Rank among the processes on this node, 0 … local_world_size-1 (picks the GPU)."""
    local_world_size: int
    """Number of processes on this node."""
    master_addr: str
    """Host of rank 0, where the rendezvous store listens."""
    master_port: int
    """TCP port of the rendezvous store on master_addr."""
    source: Source
    """Where the values came from: "torchrun", "slurm" or "single"."""

    def __post_init__(self) -> None:
        if self.source not in ("slurm", "torchrun", "single"):
            raise ConfigError("source", self.source, "use 'slurm', 'torchrun' or 'single'")
        if self.world_size < 1:
            raise ConfigError("world_size", self.world_size, "must be at least 1")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(
                "rank", self.rank, f"must be in [0, world_size={self.world_size}) — {self}"
            )
        if not 1 <= self.local_world_size <= self.world_size:
            raise ConfigError(
                "local_world_size",
                self.local_world_size,
                f"must be in [1, world_size={self.world_size}] — {self}",
            )
        if not 0 <= self.local_rank < self.local_world_size:
            raise ConfigError(
                "local_rank",
                self.local_rank,
                f"must be in [0, local_world_size={self.local_world_size}) — {self}",
            )
        if not self.master_addr:
            raise ConfigError("master_addr", self.master_addr, "must name the host of rank 0")
        if not 1 <= self.master_port <= 65535:
            raise ConfigError("master_port", self.master_port, "must be a TCP port in [1, 65535]")

    @property
    def is_main(self) -> bool:
        """True on global rank 0 (the process that writes shared artifacts)."""
        return self.rank == 0


def dist_env_from_environ(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read this process's DistEnv from the environment (torchrun, then SLURM, then single).

    Raises ConfigError naming the variable when a value is missing, not an integer, or
    inconsistent with the others.
    """
    env = os.environ if environ is None else environ
    if any(name in env for name in _TORCHRUN_MARKERS):
        return _from_torchrun(env)
    if "SLURM_PROCID" in env or "SLURM_NTASKS" in env:
        return _from_slurm(env)
    return DistEnv(0, 1, 0, 1, SINGLE_MASTER_ADDR, SINGLE_MASTER_PORT, "single")


def apply(dist_env: DistEnv, environ: MutableMapping[str, str] | None = None) -> None:
    """Export the variables torch.distributed's ``env://`` init and DeepSpeed read."""
    env = os.environ if environ is None else environ
    env["RANK"] = str(dist_env.rank)
    env["WORLD_SIZE"] = str(dist_env.world_size)
    env["LOCAL_RANK"] = str(dist_env.local_rank)
    env["LOCAL_WORLD_SIZE"] = str(dist_env.local_world_size)
    env["MASTER_ADDR"] = dist_env.master_addr
    env["MASTER_PORT"] = str(dist_env.master_port)


def slurm_restart_count(environ: Mapping[str, str] | None = None) -> int:
    """How often SLURM has requeued this job (SLURM_RESTART_COUNT; 0 on its first run).

    A job that finds itself restarted resumes from its latest checkpoint instead of starting
    over; the count is also worth logging next to each resume.
    """
    env = os.environ if environ is None else environ
    if not env.get("SLURM_RESTART_COUNT", "").strip():
        return 0
    count = _require_int(env, "SLURM_RESTART_COUNT", "")
    if count < 0:
        raise ConfigError("SLURM_RESTART_COUNT", count, "must be >= 0 (set by SLURM)")
    return count


def slurm_job_label(environ: Mapping[str, str] | None = None) -> str | None:
    """The job as squeue, scontrol and submitit's log folders name it, or None outside SLURM.

    An array task (the Hydra launcher submits runs of one shape as an array) is
    `ARRAYJOB_TASK`, e.g. "12_1"; its SLURM_JOB_ID is another number that no log path shows.
    """
    env = os.environ if environ is None else environ
    array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return env.get("SLURM_JOB_ID") or None


def cpu_job_defaults(has_cuda: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment a rank needs and that the site did not set (nothing to change when it is
    empty).

    - `DS_ACCELERATOR=cpu` (no GPU only): DeepSpeed otherwise probes for CUDA/XPU/NPU
      accelerators and picks one it then fails to use.
    - `OMP_NUM_THREADS` = the cores SLURM gave the task (`SLURM_CPUS_PER_TASK`, shared out
      from the node by `slurm.cpus_per_node`), on GPU nodes too: torch otherwise starts a
      thread per core of the node in every rank, and 8 ranks × all cores thrash the node
      during the host-side work a GPU rank still does (the init draws every parameter on the
      host, export copies and hashes, data reading). On CPU it also fixes the thread count,
      which CPU float sums depend on: a requeued job then computes bit for bit what the
      first one did.

    Values the environment already has (site `slurm.setup` lines, the user) are kept; outside
    SLURM nothing sets the threads (torchrun sets its own default).
    """
    env = os.environ if environ is None else environ
    defaults: dict[str, str] = {}
    if not has_cuda and "DS_ACCELERATOR" not in env:
        defaults["DS_ACCELERATOR"] = "cpu"
    cpus = env.get("SLURM_CPUS_PER_TASK", "").strip()
    if "OMP_NUM_THREADS" not in env and "SLURM_PROCID" in env:
        defaults["OMP_NUM_THREADS"] = cpus if cpus.isdigit() and int(cpus) > 0 else "1"
    return defaults


def master_port_for_job(job_id: int) -> int:
    """Rendezvous port for a SLURM job: a pure function of the id, so every rank agrees."""
    return PORT_BASE + job_id % PORT_SPAN


def _from_torchrun(env: Mapping[str, str]) -> DistEnv:
    rank = _require_int(env, "RANK", "torchrun/deepspeed sets RANK together with WORLD_SIZE")
    world_size = _require_int(
        env, "WORLD_SIZE", "torchrun/deepspeed sets WORLD_SIZE together with RANK"
    )
    local_rank = _require_int(
        env, "LOCAL_RANK", "torchrun/deepspeed sets LOCAL_RANK together with RANK"
    )
    # torchrun exports LOCAL_WORLD_SIZE, the deepspeed launcher LOCAL_SIZE.
    local_name = "LOCAL_WORLD_SIZE" if "LOCAL_WORLD_SIZE" in env else "LOCAL_SIZE"
    if local_name in env:
        local_world_size = _require_int(env, local_name, "")
    elif world_size == 1:
        local_world_size = 1
    else:
        raise ConfigError(
            "LOCAL_WORLD_SIZE",
            None,
            f"WORLD_SIZE={world_size} needs LOCAL_WORLD_SIZE (or LOCAL_SIZE): the number of "
            "processes on this node, as torchrun exports it",
        )
    if world_size == 1 and "MASTER_ADDR" not in env and "MASTER_PORT" not in env:
        master_addr, master_port = SINGLE_MASTER_ADDR, SINGLE_MASTER_PORT
    else:
        master_addr = env.get("MASTER_ADDR", "")
        if not master_addr:
            raise ConfigError(
                "MASTER_ADDR",
                master_addr or None,
                f"WORLD_SIZE={world_size} needs the host of rank 0 in MASTER_ADDR",
            )
        master_port = _require_int(
            env, "MASTER_PORT", f"WORLD_SIZE={world_size} needs the rendezvous port"
        )
    return _checked(
        rank, world_size, local_rank, local_world_size, master_addr, master_port, "torchrun"
    )


def _from_slurm(env: Mapping[str, str]) -> DistEnv:
    rank = _require_int(env, "SLURM_PROCID", "run each rank as a task of `srun`")
    world_size = _require_int(env, "SLURM_NTASKS", "submit with --ntasks (one task per rank)")
    if world_size > 1 and "SLURM_STEP_ID" not in env:
        # The batch script itself has SLURM_PROCID=0 and SLURM_NTASKS=N but is one process:
        # starting rank 0 of N here would wait forever for ranks that were never launched.
        raise ConfigError(
            "SLURM_STEP_ID",
            None,
            f"SLURM_NTASKS={world_size} but this is the batch script, not a job step: start "
            "one process per rank with `srun` (submitit does this)",
        )
    local_rank = _require_int(env, "SLURM_LOCALID", "run each rank as a task of `srun`")
    local_world_size = _slurm_local_world_size(env)
    nodelist_name = "SLURM_STEP_NODELIST" if "SLURM_STEP_NODELIST" in env else "SLURM_JOB_NODELIST"
    nodelist = env.get(nodelist_name, "")
    if not nodelist:
        raise ConfigError(
            "SLURM_JOB_NODELIST", None, "expected inside a SLURM job; run under sbatch/srun"
        )
    hosts = expand_hostlist(nodelist, variable=nodelist_name)
    # With Slurm's default block distribution, task 0 runs on the first host of the step.
    master_addr = env.get("MASTER_ADDR") or hosts[0]
    if "MASTER_PORT" in env:
        master_port = _require_int(env, "MASTER_PORT", "")
    else:
        master_port = master_port_for_job(
            _require_int(env, "SLURM_JOB_ID", "expected inside a SLURM job")
        )
    return _checked(
        rank, world_size, local_rank, local_world_size, master_addr, master_port, "slurm"
    )


def _slurm_local_world_size(env: Mapping[str, str]) -> int:
    """Tasks on this node: this node's entry of SLURM_STEP_TASKS_PER_NODE (e.g. ``2(x3),1``)."""
    name = (
        "SLURM_STEP_TASKS_PER_NODE"
        if "SLURM_STEP_TASKS_PER_NODE" in env
        else "SLURM_TASKS_PER_NODE"
    )
    if name not in env:
        return _require_int(env, "SLURM_NTASKS", "")
    counts: list[int] = []
    for part in env[name].split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ConfigError(name, env[name], "expected Slurm's form like '8(x2),4'")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    node_id = 0
    if len(counts) > 1:
        node_id = _require_int(env, "SLURM_NODEID", "expected inside a SLURM job step")
    if not 0 <= node_id < len(counts):
        raise ConfigError(
            "SLURM_NODEID", node_id, f"must index one of the {len(counts)} nodes of {name}"
        )
    return counts[node_id]


def _checked(
    rank: int,
    world_size: int,
    local_rank: int,
    local_world_size: int,
    master_addr: str,
    master_port: int,
    source: Source,
) -> DistEnv:
    """Build the DistEnv, naming the environment variable behind an inconsistent value."""
    names = {
        "torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
        "slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"),
    }[source]
    try:
        return DistEnv(
            rank, world_size, local_rank, local_world_size, master_addr, master_port, source
        )
    except ConfigError as error:
        field_to_variable = dict(
            zip(("rank", "world_size", "local_rank", "local_world_size"), names, strict=True)
        )
        field_to_variable["master_port"] = "MASTER_PORT"
        field_to_variable["master_addr"] = "MASTER_ADDR"
        variable = field_to_variable.get(error.field, error.field)
        raise ConfigError(variable, error.value, error.fix) from None


def _require_int(env: Mapping[str, str], name: str, fix: str) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        raise ConfigError(name, raw, f"missing; {fix}" if fix else "missing")
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, "must be an integer") from None


def expand_hostlist(hostlist: str, variable: str = "SLURM_JOB_NODELIST") -> list[str]:
    """Expand Slurm hostlist syntax: ``node[01-03,7],gpu5`` → node01 node02 node03 node7 gpu5.

    Zero padding follows the range's start (``[08-10]`` → 08 09 10); several bracket groups in
    one name expand as a product (``r[1-2]n[1-2]`` → r1n1 r1n2 r2n1 r2n2), as in
    ``scontrol show hostnames``.
    """
    hosts: list[str] = []
    for item in _split_top_level(hostlist, variable):
        hosts += _expand_one(item, hostlist, variable)
    if not hosts:
        raise ConfigError(variable, hostlist, "expected at least one host name")
    return hosts


def _split_top_level(hostlist: str, variable: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in hostlist:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if depth not in (0, 1):
            raise ConfigError(variable, hostlist, "unbalanced or nested '[' ']' in the host list")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ConfigError(variable, hostlist, "unbalanced '[' ']' in the host list")
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def _expand_one(item: str, hostlist: str, variable: str) -> list[str]:
    match = re.match(r"([^\[]*)\[([^\]]*)\](.*)$", item)
    if match is None:
        return [item]
    prefix, ranges, rest = match.groups()
    suffixes = _expand_one(rest, hostlist, variable) if rest else [""]
    hosts = []
    for part in ranges.split(","):
        bounds = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if bounds is None:
            raise ConfigError(variable, hostlist, f"bad range {part!r}: expected N or N-M")
        start, end = bounds.group(1), bounds.group(2) or bounds.group(1)
        if int(end) < int(start):
            raise ConfigError(variable, hostlist, f"range {part!r} runs backwards")
        width = len(start)
        for number in range(int(start), int(end) + 1):
            hosts += [f"{prefix}{number:0{width}d}{suffix}" for suffix in suffixes]
    return hosts
