"""The .ci/slurm scripts' guard rails: stop only recorded pids, never clobber a site's config."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from slurm_cluster import SCRIPTS


def _run(script: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child stays a zombie until reaped; that is not alive.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def test_stop_stops_exactly_the_recorded_pids(tmp_path):
    recorded = subprocess.Popen(["sleep", "60"])
    impostor = subprocess.Popen(["sleep", "60"])  # recorded under another program's name
    bystander = subprocess.Popen(["sleep", "60"])  # not recorded at all
    try:
        (tmp_path / "started.pids").write_text(
            f"sleep {recorded.pid}\nslurmd {impostor.pid}\nmunged 2147483000\n"
        )
        result = _run("stop.sh", str(tmp_path))
        assert result.returncode == 0, result.stderr
        recorded.wait(timeout=15)
        assert recorded.returncode == -15  # SIGTERM
        assert _alive(impostor.pid) and _alive(bystander.pid)
        assert f"pid {impostor.pid} is now 'sleep', not slurmd; leaving it alone" in result.stderr
        assert "munged (pid 2147483000) already gone" in result.stdout
        assert (tmp_path / "started.pids").read_text() == ""
    finally:
        for process in (recorded, impostor, bystander):
            process.kill()
            process.wait()


def test_stop_without_pid_file_is_a_no_op(tmp_path):
    result = _run("stop.sh", str(tmp_path / "never-started"))
    assert result.returncode == 0 and "nothing to stop" in result.stdout


@pytest.mark.parametrize("script", ["start.sh", "stop.sh"])
def test_scripts_need_a_state_dir(script):
    result = _run(script)
    assert result.returncode == 2 and "usage:" in result.stderr


@pytest.mark.skipif(shutil.which("slurmctld") is None, reason="Slurm not installed")
def test_start_refuses_to_overwrite_a_foreign_slurm_conf(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=the-sites-own\n")
    before = time.monotonic()
    result = _run("start.sh", str(tmp_path / "state"), env={"SLURM_CI_CONF": str(conf)})
    assert result.returncode == 1
    assert f"{conf} exists and was not written by this script" in result.stderr
    assert conf.read_text() == "ClusterName=the-sites-own\n"
    assert (tmp_path / "state" / "started.pids").read_text() == ""
    assert time.monotonic() - before < 30  # refused up front, started nothing


@pytest.mark.skipif(shutil.which("slurmctld") is None, reason="Slurm not installed")
def test_install_is_a_quick_no_op_when_installed():
    result = _run("install.sh")
    assert result.returncode == 0 and "already installed" in result.stdout
