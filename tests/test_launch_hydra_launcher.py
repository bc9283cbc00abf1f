"""Per-run SLURM parameters for the Hydra launcher, from a run's `slurm` config node."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from slurm_cluster import REPO

from suite.errors import ConfigError
from suite.launch.hydra_launcher import launcher_params_for_run, resources_from_config

LAUNCHER_DEFAULTS = {
    "submitit_folder": "/sweep/.submitit/%j",
    "nodes": 1,
    "tasks_per_node": 1,
    "gpus_per_node": None,
    "timeout_min": 60,
    "partition": "from-launcher",
    "account": None,
    "signal_delay_s": 120,
    "max_num_timeout": 10,
    "additional_parameters": {"mail-type": "FAIL"},
}


def test_run_config_sets_the_job_shape_and_keeps_launcher_site_fallbacks():
    config = OmegaConf.create(
        {
            "size": {"gpus": 128, "tp": 2},
            "slurm": {
                "gpus": "${size.gpus}",
                "tp": "${size.tp}",
                "time_minutes": 1440,
                "site": {"account": "eleuther", "mem_per_gpu_gb": 64, "max_requeues": 30},
            },
        }
    )
    resources = resources_from_config(config)
    params = launcher_params_for_run(LAUNCHER_DEFAULTS, resources)
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (16, 8, 8)
    assert (params["timeout_min"], params["mem_gb"], params["max_num_timeout"]) == (1440, 512, 30)
    assert params["partition"] == "from-launcher"  # the run's site left it null
    assert params["account"] == "eleuther"
    assert params["additional_parameters"]["mail-type"] == "FAIL"
    assert "dp=64 x tp=2" in params["additional_parameters"]["comment"]
    assert LAUNCHER_DEFAULTS["nodes"] == 1  # the launcher's own params are not mutated


def test_runs_without_slurm_node_keep_the_launcher_params():
    assert resources_from_config(OmegaConf.create({"size": "70m"})) is None
    assert launcher_params_for_run(LAUNCHER_DEFAULTS, None) == LAUNCHER_DEFAULTS


@pytest.mark.parametrize(
    ("slurm", "message"),
    [
        (
            {"gpus": 8, "nodes": 2},
            r"^slurm.nodes=2: unknown field; use one of \['gpus', 'time_minutes', 'tp'\]",
        ),
        ({"gpus": 8, "site": {"partitoin": "x"}}, r"^slurm.site.partitoin='x': unknown field"),
        ({"gpus": 6, "tp": 4}, r"^gpus=6: not divisible by tp=4"),
        ([1, 2], r"^slurm=\[1, 2\]: expected a mapping"),
    ],
)
def test_bad_run_resources_are_named(slurm, message):
    with pytest.raises(ConfigError, match=message):
        resources_from_config(OmegaConf.create({"slurm": slurm}))


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("local", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
        ("slurm", "hydra_plugins.scaling_suite_launcher.PerRunSlurmLauncher"),
    ],
)
def test_launcher_configs_compose(tmp_path, launcher, target):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    (tmp_path / "app.yaml").write_text(
        f"hydra:\n  searchpath: [file://{REPO / 'sweeps' / 'conf'}]\n"
    )
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        config = compose("app", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert config.hydra.launcher._target_ == target
    if launcher == "slurm":
        # submitit_slurm's schema underneath, with our requeue/warning defaults on top.
        assert config.hydra.launcher.max_num_timeout == 10
        assert config.hydra.launcher.signal_delay_s == 120
        assert config.hydra.launcher.submitit_folder.endswith("/.submitit/%j")
        assert "account" in config.hydra.launcher and "qos" in config.hydra.launcher
