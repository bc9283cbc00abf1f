"""Through a real Slurm (started by the `slurm_cluster` fixture): ranks, submitit, requeue.

Every job here has 2 tasks (one per rank, gloo on CPU), as the mini sweep's DP=2 jobs do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from slurm_cluster import (  # noqa: F401  (slurm_cluster is a pytest fixture)
    REPO,
    RequeueProbe,
    gloo_allreduce_probe,
    job_info,
    slurm_cluster,
    submit,
    wait,
    wait_for_state,
)

from suite.launch.env import master_port_for_job
from suite.launch.resources import SlurmResources, SlurmSite, executor_params

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

#: Two ranks each contribute rank+1 → 1 + 2; exact in float32.
EXPECTED_SUM = 3.0


@pytest.fixture
def job_environment(monkeypatch):
    """sbatch exports the submitting environment: let the job import suite and the helpers."""
    paths = [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    # One gloo rank per core: keep torch from spawning a thread per core in each rank.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _output_of(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(folder.glob("*.out")))


def _assert_two_ranks_agree(records, node, job_id):
    assert sorted(r["rank"] for r in records) == [0, 1]
    for record in records:
        assert record["source"] == "slurm"
        assert record["world_size"] == record["torch_world_size"] == 2
        assert record["torch_rank"] == record["rank"]
        assert record["local_rank"] == record["rank"]  # one node: local == global
        assert record["master_addr"] == node
        assert record["master_port"] == master_port_for_job(int(job_id))
        assert record["job_id"] == str(job_id)
        assert record["all_reduce_sum"] == EXPECTED_SUM


def test_sbatch_srun_two_ranks_deepspeed_all_reduce(slurm_cluster, tmp_path, job_environment):  # noqa: F811
    script = f"""#!/bin/bash
#SBATCH --job-name=suite-gloo-probe
#SBATCH --ntasks=2
#SBATCH --time=10
#SBATCH --output={tmp_path}/slurm-%j.out
srun {sys.executable} -c 'import sys, slurm_cluster; slurm_cluster.gloo_allreduce_probe(sys.argv[1], "deepspeed")' {tmp_path}
"""
    job_id = submit(script)
    state = wait(job_id, timeout=240)
    assert state == "COMPLETED", f"job {job_id} {state}:\n{_output_of(tmp_path)}"
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    _assert_two_ranks_agree(records, slurm_cluster.node, job_id)
    assert {record["init"] for record in records} == {"deepspeed"}


def test_submitit_executor_with_suite_resources(slurm_cluster, tmp_path, job_environment):  # noqa: F811
    import submitit

    folder = tmp_path / "submitit"
    executor = submitit.AutoExecutor(folder=folder)
    assert executor.cluster == "slurm"
    site = SlurmSite(cpu_only=True, gpus_per_node=2, signal_delay_s=30, mem_per_gpu_gb=1)
    resources = SlurmResources(gpus=2, time_minutes=10, site=site)
    executor.update_parameters(name="suite-submitit-probe", **executor_params(resources))
    job = executor.submit(gloo_allreduce_probe, str(tmp_path))
    state = wait(job.job_id, timeout=240)
    assert state == "COMPLETED", f"job {job.job_id} {state}: {job.stderr()}"
    # No sacct here: submitit warns when it polls job states, and still reads the results.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = job.results()
    _assert_two_ranks_agree(records, slurm_cluster.node, job.job_id)
    info = job_info(job.job_id)
    assert info["NumTasks"] == "2" and info["NumNodes"] == "1"
    assert "dp=2 x tp=1" in info["Comment"]


def test_scontrol_requeue_runs_the_job_again(slurm_cluster, tmp_path, job_environment):  # noqa: F811
    """A requeued job runs again from the top and can tell it was requeued."""
    starts = tmp_path / "starts.txt"
    # Each run logs its restart count with the suite's helper; the first run then waits to be
    # requeued, the second finishes.
    probe = (
        "from suite.launch.env import slurm_restart_count as c; "
        f"open({str(starts)!r}, 'a').write(f'{{c()}}\\n')"
    )
    script = f"""#!/bin/bash
#SBATCH --job-name=suite-requeue-probe
#SBATCH --ntasks=2
#SBATCH --time=10
#SBATCH --requeue
#SBATCH --output={tmp_path}/slurm-%j.out
{sys.executable} -c "{probe}"
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then srun sleep 300; fi
srun true
"""
    job_id = submit(script)
    wait_for_state(job_id, "RUNNING", timeout=60)
    _wait_for_lines(starts, 1, timeout=60)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    state = wait(job_id, timeout=120)
    assert state == "COMPLETED", f"job {job_id} {state}:\n{_output_of(tmp_path)}"
    assert starts.read_text().split() == ["0", "1"]
    assert job_info(job_id)["Restarts"] == "1"


def _wait_for_lines(path: Path, count: int, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{path} did not get {count} line(s) in {timeout} s")


def test_submitit_requeues_a_job_signalled_before_its_time_limit(
    slurm_cluster,  # noqa: F811
    tmp_path,
    job_environment,
):
    """USR2 before the time limit → submitit checkpoints and requeues; the job runs again."""
    import submitit

    starts = tmp_path / "starts.txt"
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", slurm_max_num_timeout=2)
    site = SlurmSite(cpu_only=True, gpus_per_node=2, signal_delay_s=30)
    resources = SlurmResources(gpus=2, time_minutes=10, site=site)
    executor.update_parameters(name="suite-timeout-probe", **executor_params(resources))
    job = executor.submit(RequeueProbe(), str(starts))
    wait_for_state(job.job_id, "RUNNING", timeout=60)
    _wait_for_lines(starts, 2, timeout=60)  # both ranks are up
    job._interrupt(timeout=True)  # what SLURM sends signal_delay_s before the time limit
    state = wait(job.job_id, timeout=120)
    assert state == "COMPLETED", f"job {job.job_id} {state}: {job.stderr()}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert job.results() == [1, 1]  # both ranks of the second run saw one restart
    assert sorted(starts.read_text().splitlines()) == ["0 0", "0 1", "1 0", "1 1"]
    assert job_info(job.job_id)["Restarts"] == "1"
