"""A real single-node Slurm for the tests: a session fixture plus submit/wait helpers.

Use it from a test module with::

    from slurm_cluster import slurm_cluster  # noqa: F401  (pytest fixture)

The fixture starts the cluster with `.ci/slurm/start.sh` only when `sinfo` does not answer,
and at the end of the session stops exactly the daemons it started (by the pids start.sh
recorded) — a cluster that was already running is used and left alone. When Slurm is not
installed the fixture fails under CI (CI=true: the pipeline must install it with
`.ci/slurm/install.sh`) and skips elsewhere.

There is no accounting daemon, so `sacct` does not work: job states come from
`scontrol show job`, which keeps finished jobs for MinJobAge (an hour in our slurm.conf).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import submitit

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / ".ci" / "slurm"
REQUIRED_BINARIES = (
    "sbatch",
    "srun",
    "squeue",
    "scontrol",
    "sinfo",
    "slurmctld",
    "slurmd",
    "munged",
)

#: Job states after which a job will not run again by itself.
TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
    }
)


@dataclass
class SlurmCluster:
    """The cluster the tests submit to."""

    node: str
    """Name of the single compute node (what SLURM_JOB_NODELIST holds)."""
    state_dir: Path | None
    """start.sh's state directory (logs, pids), or None when an existing cluster was reused."""
    started_pids: dict[str, int] = field(default_factory=dict)
    """Daemons started for this session, name → pid; stopped at the session's end."""

    def submit(self, script_text: str, *sbatch_args: str) -> str:
        return submit(script_text, *sbatch_args)

    def wait(self, job_id: str, timeout: float = 120.0) -> str:
        return wait(job_id, timeout)

    def job_state(self, job_id: str) -> str:
        return job_state(job_id)


def submit(script_text: str, *sbatch_args: str) -> str:
    """Submit a batch script (given as text, fed to sbatch's stdin); return the job id."""
    result = subprocess.run(
        ["sbatch", "--parsable", *sbatch_args],
        input=script_text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
    # --parsable prints "jobid" or "jobid;cluster".
    return result.stdout.strip().split(";")[0]


def job_info(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Restarts, NodeList, ExitCode, …)."""
    result = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", str(job_id)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scontrol show job {job_id} failed: {result.stderr.strip()}")
    # Values may contain spaces (Comment, Command): split only before "CamelCaseKey=".
    info: dict[str, str] = {}
    for token in re.split(r"\s+(?=[A-Z][A-Za-z0-9_:/]*=)", result.stdout.strip()):
        key, sep, value = token.partition("=")
        if sep:
            info[key] = value
    return info


def job_state(job_id: str) -> str:
    """Current state of a job: PENDING, RUNNING, COMPLETED, FAILED, … (no sacct needed)."""
    return job_info(job_id)["JobState"]


def wait(job_id: str, timeout: float = 120.0, poll_s: float = 0.25) -> str:
    """Poll until the job reaches a terminal state; return it. TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = job_state(job_id)
        if state in TERMINAL_STATES:
            return state
        time.sleep(poll_s)
    raise TimeoutError(
        f"job {job_id} still {state} after {timeout:.0f} s: {job_info(job_id)}\n{_squeue()}"
    )


def wait_for_state(job_id: str, wanted: str, timeout: float = 60.0, poll_s: float = 0.1) -> None:
    """Poll until the job is in state `wanted` (e.g. RUNNING)."""
    deadline = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = job_state(job_id)
        if state == wanted:
            return
        if state in TERMINAL_STATES:
            break
        time.sleep(poll_s)
    raise TimeoutError(f"job {job_id} is {state}, never became {wanted}: {job_info(job_id)}")


def _squeue() -> str:
    result = subprocess.run(["squeue"], capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def _node_if_answering() -> str | None:
    """The idle/mixed/allocated node's name when a cluster answers, else None."""
    # `scontrol ping` answers at once; sinfo retries an absent controller for ~10 s.
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if ping.returncode != 0 or "is UP" not in ping.stdout:
        return None
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--format=%N %T"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    name, _, node_state = result.stdout.split("\n")[0].partition(" ")
    usable = node_state.rstrip("*").split("+")[0] in {"idle", "mixed", "allocated", "completing"}
    return name if usable else None


def _read_pids(state_dir: Path) -> dict[str, int]:
    pids: dict[str, int] = {}
    pid_file = state_dir / "started.pids"
    if pid_file.exists():
        for line in pid_file.read_text().splitlines():
            if line.strip():
                name, pid = line.split()
                pids[name] = int(pid)
    return pids


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node Slurm; started (and stopped afterwards) only if none answers."""
    missing = [binary for binary in REQUIRED_BINARIES if shutil.which(binary) is None]
    if missing:
        message = (
            f"Slurm is not installed (missing {', '.join(missing)}); "
            "run `bash .ci/slurm/install.sh` (as root) first"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)

    node = _node_if_answering()
    if node is not None:
        yield SlurmCluster(node=node, state_dir=None)
        return

    # Short path: slurmd's unix sockets live under the spool dir (108-byte limit).
    state_dir = Path(tempfile.mkdtemp(prefix="suite-slurm-"))
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPTS / "start.sh"), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    pids = _read_pids(state_dir)
    if result.returncode != 0:
        # start.sh already stopped what it started; say why it failed.
        pytest.fail(
            f".ci/slurm/start.sh failed ({result.returncode}):\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    node = _node_if_answering()
    if node is None:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(state_dir)], timeout=60)
        pytest.fail(f"start.sh succeeded but sinfo does not answer:\n{result.stdout}")
    print(f"\nslurm cluster up in {time.monotonic() - started:.1f} s: {result.stdout.strip()}")
    try:
        yield SlurmCluster(node=node, state_dir=state_dir, started_pids=pids)
    finally:
        stop = subprocess.run(
            ["bash", str(SCRIPTS / "stop.sh"), str(state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if stop.returncode != 0:
            print(f"stop.sh failed: {stop.stdout}{stop.stderr}")


def gloo_allreduce_probe(out_dir: str, init: str = "torch") -> dict[str, object]:
    """Run in each task of a SLURM job: rank from the environment, then a gloo all_reduce.

    Each rank contributes rank+1, so the sum over a world of n is n(n+1)/2. The record is
    returned (submitit) and written to out_dir/rank{rank}.json (plain sbatch/srun).
    """
    import json

    import torch
    import torch.distributed as dist

    from suite.launch.env import apply, dist_env_from_environ

    env = dist_env_from_environ()
    apply(env)
    # Both start from env:// (the variables apply() exported); the trainer uses DeepSpeed's,
    # which skips its MPI discovery only when all five variables are present.
    if init == "deepspeed":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
    else:
        dist.init_process_group("gloo")
    try:
        value = torch.tensor([float(env.rank + 1)])
        dist.all_reduce(value)
        record = {
            "rank": env.rank,
            "world_size": env.world_size,
            "local_rank": env.local_rank,
            "master_addr": env.master_addr,
            "master_port": env.master_port,
            "source": env.source,
            "torch_rank": dist.get_rank(),
            "torch_world_size": dist.get_world_size(),
            "all_reduce_sum": value.item(),
            "job_id": os.environ.get("SLURM_JOB_ID"),
            "init": init,
        }
    finally:
        dist.destroy_process_group()
    target = Path(out_dir) / f"rank{env.rank}.json"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(target)
    return record


class RequeueProbe(submitit.helpers.Checkpointable):
    """A submitit job that logs each start and waits on the first one to be signalled.

    As a Checkpointable, submitit requeues it when it gets the pre-timeout/preemption signal
    (USR2) — the path a long training run takes at its time limit.
    """

    def __call__(self, starts_file: str) -> int:
        from suite.launch.env import dist_env_from_environ, slurm_restart_count

        restarts = slurm_restart_count()
        rank = dist_env_from_environ().rank
        with open(starts_file, "a") as starts:
            starts.write(f"{restarts} {rank}\n")
        if restarts == 0:
            time.sleep(300)  # interrupted by the test long before this ends
        return restarts
