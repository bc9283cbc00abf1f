"""DistEnv from the environment: torchrun wins, then SLURM, then a single process."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from suite.errors import ConfigError
from suite.launch.env import (
    PORT_BASE,
    PORT_SPAN,
    DistEnv,
    apply,
    dist_env_from_environ,
    expand_hostlist,
    master_port_for_job,
    slurm_restart_count,
)

# What `srun --ntasks=2` exports to task 1 of job 41 on one node (checked on our test cluster).
SLURM_STEP_RANK1 = {
    "SLURM_JOB_ID": "41",
    "SLURM_PROCID": "1",
    "SLURM_NTASKS": "2",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "0",
    "SLURM_STEP_ID": "0",
    "SLURM_JOB_NODELIST": "vm",
    "SLURM_STEP_NODELIST": "vm",
    "SLURM_STEP_TASKS_PER_NODE": "2",
    "SLURM_TASKS_PER_NODE": "2",
}

TORCHRUN_RANK3 = {
    "RANK": "3",
    "WORLD_SIZE": "8",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "10.0.0.7",
    "MASTER_PORT": "29400",
}


def test_single_process_without_launcher_variables():
    env = dist_env_from_environ({"PATH": "/usr/bin"})
    assert env == DistEnv(0, 1, 0, 1, "127.0.0.1", 29500, "single")
    assert env.is_main


def test_torchrun_variables():
    env = dist_env_from_environ(TORCHRUN_RANK3)
    assert env == DistEnv(3, 8, 1, 2, "10.0.0.7", 29400, "torchrun")


def test_torchrun_wins_over_slurm():
    env = dist_env_from_environ({**SLURM_STEP_RANK1, **TORCHRUN_RANK3})
    assert env.source == "torchrun"
    assert (env.rank, env.world_size) == (3, 8)


def test_deepspeed_launcher_local_size():
    environ = dict(TORCHRUN_RANK3)
    del environ["LOCAL_WORLD_SIZE"]
    environ["LOCAL_SIZE"] = "4"
    assert dist_env_from_environ(environ).local_world_size == 4


def test_torchrun_world_of_one_needs_no_master():
    env = dist_env_from_environ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert (env.world_size, env.master_addr, env.master_port) == (1, "127.0.0.1", 29500)


def test_slurm_step():
    env = dist_env_from_environ(SLURM_STEP_RANK1)
    assert env == DistEnv(1, 2, 1, 2, "vm", master_port_for_job(41), "slurm")


def test_slurm_master_is_first_host_and_local_world_from_this_node():
    environ = {
        **SLURM_STEP_RANK1,
        "SLURM_PROCID": "13",
        "SLURM_NTASKS": "16",
        "SLURM_LOCALID": "5",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
    }
    env = dist_env_from_environ(environ)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (13, 16, 5, 8)
    assert env.master_addr == "gpu07"


def test_slurm_uneven_tasks_per_node():
    environ = {
        **SLURM_STEP_RANK1,
        "SLURM_PROCID": "8",
        "SLURM_NTASKS": "9",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "1",
        "SLURM_STEP_TASKS_PER_NODE": "8,1",
    }
    assert dist_env_from_environ(environ).local_world_size == 1


def test_slurm_master_port_override_and_default_range():
    assert dist_env_from_environ({**SLURM_STEP_RANK1, "MASTER_PORT": "23456"}).master_port == 23456
    for job_id in (0, 1, 9999, 10000, 123456789):
        port = master_port_for_job(job_id)
        assert PORT_BASE <= port < PORT_BASE + PORT_SPAN
        assert port == master_port_for_job(job_id)  # deterministic: every rank agrees
    assert master_port_for_job(41) != master_port_for_job(42)


def test_slurm_batch_script_with_many_tasks_is_an_error():
    environ = {k: v for k, v in SLURM_STEP_RANK1.items() if not k.startswith("SLURM_STEP")}
    environ["SLURM_PROCID"] = environ["SLURM_LOCALID"] = "0"
    with pytest.raises(ConfigError, match=r"SLURM_STEP_ID=None: SLURM_NTASKS=2 .*srun"):
        dist_env_from_environ(environ)


def test_slurm_batch_script_with_one_task_is_single_rank():
    environ = {
        "SLURM_JOB_ID": "7",
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_NODELIST": "vm",
        "SLURM_TASKS_PER_NODE": "1",
    }
    env = dist_env_from_environ(environ)
    assert (env.rank, env.world_size, env.source) == (0, 1, "slurm")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SLURM_PROCID": "two"}, r"^SLURM_PROCID='two': must be an integer$"),
        ({"SLURM_PROCID": "2"}, r"^SLURM_PROCID=2: must be in \[0, world_size=2\)"),
        ({"SLURM_LOCALID": "2"}, r"^SLURM_LOCALID=2: must be in \[0, local_world_size=2\)"),
        ({"SLURM_NTASKS": ""}, r"^SLURM_NTASKS='': missing; submit with --ntasks"),
        ({"SLURM_JOB_NODELIST": "", "SLURM_STEP_NODELIST": ""}, r"^SLURM_JOB_NODELIST=None"),
        ({"SLURM_STEP_NODELIST": "node[1-"}, r"^SLURM_STEP_NODELIST='node\[1-': unbalanced"),
        ({"SLURM_STEP_TASKS_PER_NODE": "two"}, r"^SLURM_STEP_TASKS_PER_NODE='two'"),
        ({"SLURM_JOB_ID": "abc"}, r"^SLURM_JOB_ID='abc': must be an integer$"),
        ({"MASTER_PORT": "70000"}, r"^MASTER_PORT=70000: must be a TCP port"),
    ],
)
def test_bad_slurm_values_name_the_variable(changes, message):
    with pytest.raises(ConfigError, match=message):
        dist_env_from_environ({**SLURM_STEP_RANK1, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"RANK": "8"}, r"^RANK=8: must be in \[0, world_size=8\)"),
        ({"RANK": "-1"}, r"^RANK=-1: must be in"),
        ({"WORLD_SIZE": "0"}, r"^WORLD_SIZE=0: must be at least 1$"),
        ({"WORLD_SIZE": None}, r"^WORLD_SIZE=None: missing; torchrun"),
        ({"LOCAL_RANK": "2"}, r"^LOCAL_RANK=2: must be in \[0, local_world_size=2\)"),
        ({"LOCAL_WORLD_SIZE": "9"}, r"^LOCAL_WORLD_SIZE=9: must be in \[1, world_size=8\]"),
        ({"LOCAL_WORLD_SIZE": None}, r"^LOCAL_WORLD_SIZE=None: WORLD_SIZE=8 needs"),
        ({"MASTER_ADDR": None}, r"^MASTER_ADDR=None: WORLD_SIZE=8 needs the host"),
        ({"MASTER_PORT": "x"}, r"^MASTER_PORT='x': must be an integer$"),
    ],
)
def test_bad_torchrun_values_name_the_variable(changes, message):
    environ = dict(TORCHRUN_RANK3)
    for name, value in changes.items():
        if value is None:
            environ.pop(name)
        else:
            environ[name] = value
    with pytest.raises(ConfigError, match=message):
        dist_env_from_environ(environ)


def test_apply_exports_torch_distributed_variables():
    environ: dict[str, str] = {"SLURM_PROCID": "1"}
    apply(DistEnv(1, 2, 1, 2, "vm", 21234, "slurm"), environ)
    assert environ == {
        "SLURM_PROCID": "1",
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "vm",
        "MASTER_PORT": "21234",
    }
    # Applied variables read back as the same env (torchrun branch now).
    assert dist_env_from_environ(environ) == DistEnv(1, 2, 1, 2, "vm", 21234, "torchrun")


@pytest.mark.parametrize(
    ("hostlist", "hosts"),
    [
        ("vm", ["vm"]),
        ("node[01-03,7],gpu5", ["node01", "node02", "node03", "node7", "gpu5"]),
        ("gpu[08-10]", ["gpu08", "gpu09", "gpu10"]),
        ("a[1-2]b[08-09]", ["a1b08", "a1b09", "a2b08", "a2b09"]),
        ("n[9-11]", ["n9", "n10", "n11"]),
        ("x1,y[3],z", ["x1", "y3", "z"]),
    ],
)
def test_expand_hostlist(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts
    # Where Slurm is installed, scontrol is the reference.
    if shutil.which("scontrol"):
        reference = subprocess.run(
            ["scontrol", "show", "hostnames", hostlist], capture_output=True, text=True
        )
        if reference.returncode == 0:
            assert reference.stdout.split() == hosts


@pytest.mark.parametrize(
    ("hostlist", "message"),
    [
        ("node[1-3", "unbalanced"),
        ("node1-3]", "unbalanced"),
        ("node[3-1]", "runs backwards"),
        ("node[a-b]", "bad range"),
        ("node[[1]]", "nested"),
        ("", "at least one host"),
    ],
)
def test_expand_hostlist_errors(hostlist, message):
    with pytest.raises(
        ConfigError, match=rf"^SLURM_JOB_NODELIST={re.escape(repr(hostlist))}: .*{message}"
    ):
        expand_hostlist(hostlist)


def test_slurm_restart_count():
    assert slurm_restart_count({}) == 0
    assert slurm_restart_count({"SLURM_RESTART_COUNT": ""}) == 0
    assert slurm_restart_count({"SLURM_RESTART_COUNT": "3"}) == 3
    with pytest.raises(ConfigError, match=r"^SLURM_RESTART_COUNT='x': must be an integer$"):
        slurm_restart_count({"SLURM_RESTART_COUNT": "x"})
    with pytest.raises(ConfigError, match=r"^SLURM_RESTART_COUNT=-1: must be >= 0"):
        slurm_restart_count({"SLURM_RESTART_COUNT": "-1"})
