"""SLURM job shapes from (ranks, TP): Pythia's real layouts, invalid requests, sbatch dry runs."""

from __future__ import annotations

import math
import re

import pytest
from omegaconf import OmegaConf

from suite.errors import ConfigError
from suite.launch.resources import (
    SlurmResources,
    SlurmSite,
    executor_params,
    render_sbatch,
    submitit_params,
)

GPU_SITE = SlurmSite(
    partition="gpu",
    account="eleuther",
    qos="high",
    constraint="a100",
    setup=("module load cuda/12.1", "source /opt/venv/bin/activate"),
    extra_sbatch={"exclusive": "", "reservation": "suite"},
    gpus_per_node=8,
    cpus_per_task=6,
    mem_per_gpu_gb=100,
    signal_delay_s=300,
    max_requeues=20,
)


def sbatch_flags(script: str) -> dict[str, str]:
    """`#SBATCH --key=value` lines of a script as a dict (flags without value map to '')."""
    flags = {}
    for match in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, flags=re.MULTILINE):
        flags[match.group(1)] = (match.group(2) or "").strip("'")
    return flags


# PYTHIA_FACTS.md: 70M on 32 GPUs (TP 1), 6.9B on 128 (TP 2), 12B on 256 (TP 4); 8 GPUs/node.
@pytest.mark.parametrize(
    ("gpus", "tp", "nodes", "dp"),
    [(32, 1, 4, 32), (64, 1, 8, 64), (128, 2, 16, 64), (256, 4, 32, 64)],
    ids=["70m", "1b", "6.9b", "12b"],
)
def test_pythia_layouts(tmp_path, gpus, tp, nodes, dp):
    resources = SlurmResources(gpus=gpus, tp=tp, time_minutes=24 * 60, site=GPU_SITE)
    assert (resources.nodes, resources.tasks_per_node, resources.gpus_per_node) == (nodes, 8, 8)
    assert resources.dp == dp and resources.dp * resources.tp == gpus
    assert resources.mem_gb == 800

    script = render_sbatch(resources, tmp_path / "%j", job_name=f"pythia-{gpus}")
    flags = sbatch_flags(script)
    assert flags["nodes"] == str(nodes)
    assert flags["ntasks-per-node"] == "8"
    assert flags["gpus-per-node"] == "8"
    assert flags["cpus-per-task"] == "6"
    assert flags["mem"] == "800GB"
    assert flags["time"] == "1440"
    assert flags["signal"] == "USR2@300"
    assert flags["partition"] == "gpu" and flags["account"] == "eleuther"
    assert flags["qos"] == "high" and flags["constraint"] == "a100"
    assert flags["exclusive"] == "" and flags["reservation"] == "suite"
    assert f"dp={dp} x tp={tp}" in flags["comment"]
    assert "module load cuda/12.1\nsource /opt/venv/bin/activate" in script
    # One task per rank: srun starts submitit's runner in every task.
    assert re.search(r"^srun .* -m submitit\.core\._submit ", script, flags=re.MULTILINE)


def test_small_run_fits_one_node_and_cpu_sites_request_no_gpus(tmp_path):
    site = SlurmSite(cpu_only=True, gpus_per_node=2)
    resources = SlurmResources(gpus=2, time_minutes=10, site=site)
    assert (resources.nodes, resources.tasks_per_node, resources.gpus_per_node) == (1, 2, 0)
    flags = sbatch_flags(render_sbatch(resources, tmp_path))
    assert flags["nodes"] == "1" and flags["ntasks-per-node"] == "2"
    assert "gpus-per-node" not in flags and "mem" not in flags and "partition" not in flags

    partial = SlurmResources(gpus=4, tp=2, site=SlurmSite(gpus_per_node=8))
    assert (partial.nodes, partial.tasks_per_node, partial.gpus_per_node) == (1, 4, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus": 6, "tp": 4}, r"^gpus=6: not divisible by tp=4; use a multiple of 4"),
        ({"gpus": 32, "tp": 16}, r"^tp=16: a tensor-parallel group must live inside one node"),
        (
            {"gpus": 12, "tp": 1},
            r"^gpus=12: spans 2 nodes but is not a multiple of gpus_per_node=8",
        ),
        ({"gpus": 24, "tp": 3}, r"^tp=3: does not divide gpus_per_node=8"),
        ({"gpus": 0}, r"^gpus=0: use a whole number >= 1"),
        ({"gpus": 8, "tp": 0}, r"^tp=0: use a whole number >= 1"),
        ({"gpus": 8, "time_minutes": -5}, r"^time_minutes=-5: use a whole number >= 1"),
        ({"gpus": 8, "time_minutes": 2}, r"^signal_delay_s=300: the warning must come before"),
        ({"gpus": 2.5}, r"^gpus=2.5: use a whole number >= 1"),
    ],
)
def test_invalid_requests_fail_before_submission(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SlurmResources(**{"time_minutes": 60, "site": GPU_SITE, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus_per_node": 0}, r"^gpus_per_node=0: use a whole number >= 1"),
        ({"cpus_per_task": -1}, r"^cpus_per_task=-1: use a whole number >= 1"),
        ({"mem_per_gpu_gb": 0}, r"^mem_per_gpu_gb=0: use a whole number >= 1"),
        ({"signal_delay_s": -1}, r"^signal_delay_s=-1: use a whole number of seconds >= 0"),
        ({"max_requeues": -2}, r"^max_requeues=-2: use a whole number >= 0"),
        ({"partition": ""}, r"^partition='': use a non-empty name, or null"),
        ({"extra_sbatch": {"nodes": "3"}}, r"^extra_sbatch.nodes='3': --nodes is derived"),
        ({"extra_sbatch": {"--ntasks_per_node": "3"}}, r"--ntasks-per-node is derived"),
    ],
)
def test_invalid_site_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SlurmSite(**kwargs)


def test_submitit_params_fit_the_hydra_launcher_schema():
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    resources = SlurmResources(gpus=128, tp=2, time_minutes=600, site=GPU_SITE)
    params = submitit_params(resources)
    # Merging into the launcher's structured config type-checks every key and value.
    merged = OmegaConf.merge(OmegaConf.structured(SlurmQueueConf), params)
    assert (merged.nodes, merged.tasks_per_node, merged.gpus_per_node) == (16, 8, 8)
    assert (merged.timeout_min, merged.mem_gb, merged.max_num_timeout) == (600, 800, 20)
    assert merged.signal_delay_s == 300 and merged.account == "eleuther"
    assert merged.additional_parameters["reservation"] == "suite"


def test_executor_params_are_accepted_by_submitit(tmp_path):
    import submitit

    resources = SlurmResources(gpus=16, tp=2, time_minutes=30, site=GPU_SITE)
    params = executor_params(resources)
    assert "max_num_timeout" not in params
    # The debug executor validates the generic keys; slurm_* keys must exist in submitit's
    # sbatch template (its own validation raises on unknown names).
    from submitit.slurm.slurm import _get_default_parameters

    slurm_keys = {key.removeprefix("slurm_") for key in params if key.startswith("slurm_")}
    assert slurm_keys <= set(_get_default_parameters())
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="debug")
    executor.update_parameters(**params)


def test_dry_run_prints_the_script_and_rejects_bad_requests(capsys):
    from suite.launch.dry_run import main

    assert main(["--gpus", "256", "--tp", "4", "--partition", "gpu", "--sbatch", "exclusive"]) == 0
    out = capsys.readouterr().out
    flags = sbatch_flags(out)
    assert (flags["nodes"], flags["ntasks-per-node"], flags["gpus-per-node"]) == ("32", "8", "8")
    assert flags["exclusive"] == "" and "dp=64 x tp=4" in out

    assert main(["--gpus", "6", "--tp", "4"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: gpus=6: not divisible by tp=4; use a multiple of 4 (e.g. 4)"
    )


def test_cpus_per_task_shares_out_the_node():
    site = SlurmSite(gpus_per_node=8, cpus_per_node=96)
    assert SlurmResources(gpus=16, tp=2, site=site).cpus_per_task == 12
    assert SlurmResources(gpus=2, tp=2, site=site).cpus_per_task == 48  # 2 ranks on the node
    assert SlurmResources(gpus=8, site=SlurmSite(cpus_per_task=3)).cpus_per_task == 3
    params = submitit_params(SlurmResources(gpus=16, tp=2, site=site))
    assert params["cpus_per_task"] == 12


def test_mem_is_derived_from_the_model_and_checked_against_the_node():
    from suite.launch.resources import HostMemory

    memory = HostMemory(per_rank_gb=1.04, rank0_gb=71.1)
    site = SlurmSite(gpus_per_node=8, host_overhead_gb=8)
    resources = SlurmResources(gpus=256, tp=4, site=site, host_memory=memory)
    assert resources.mem_gb == 144  # ceil(8 × (1.04 + 8) + 71.1)
    # Set by hand: the site's number wins.
    by_hand = SlurmSite(gpus_per_node=8, mem_per_gpu_gb=100)
    assert SlurmResources(gpus=8, site=by_hand, host_memory=memory).mem_gb == 800
    assert SlurmResources(gpus=8, site=SlurmSite()).mem_gb is None  # nothing known
    with pytest.raises(ConfigError, match=r"^mem_per_node_gb=128: the run needs 144 GB"):
        SlurmResources(gpus=256, tp=4, site=SlurmSite(mem_per_node_gb=128), host_memory=memory)


def test_pythia_runs_get_mem_and_cpus_from_their_model():
    """Through the suite config: 12b needs its largest tensor per rank (the 50688 × 5120
    embedding, 1.04 GB fp32) plus rank 0's export copy, not 47 GB per rank."""
    from suite.config import resolve_run
    from suite.launch.suite_resources import host_memory, slurm_resources
    from suite.settings import load_suite

    cfg = load_suite(["suite=pythia", "slurm.cpus_per_node=96", "slurm.host_overhead_gb=6"])
    run = resolve_run(cfg, "12b", "pile")
    memory = host_memory(cfg, run)
    assert memory.per_rank_gb == pytest.approx(50688 * 5120 * 4 / 1e9)
    params = run.family.total_params(run.size, run.padded_vocab)
    assert memory.rank0_gb == pytest.approx(params * 4 / 1e9)  # fp16 gathered + fp16 saved
    resources = slurm_resources(cfg, run)
    assert resources.cpus_per_task == 96 // resources.tasks_per_node
    per_node = resources.tasks_per_node * (memory.per_rank_gb + 6) + memory.rank0_gb
    assert resources.mem_gb == math.ceil(per_node) < 47 * resources.tasks_per_node
