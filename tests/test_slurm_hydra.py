"""hydra/launcher=slurm on a real Slurm: every run of a multirun gets its own job shape."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from slurm_cluster import REPO, slurm_cluster  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

APP = """
import json, os
from pathlib import Path

import hydra


@hydra.main(version_base=None, config_path=".", config_name="app")
def main(cfg):
    rank = os.environ["SLURM_PROCID"]
    record = {
        "ranks": cfg.ranks,
        "ntasks": int(os.environ["SLURM_NTASKS"]),
        "job_id": os.environ["SLURM_JOB_ID"],
        "rank": int(rank),
    }
    Path(cfg.out_dir, f"ranks{cfg.ranks}-rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - _self_
  - override hydra/launcher: slurm
hydra:
  searchpath: [file://{conf}]
  sweep:
    dir: {tmp}/multirun
ranks: 1
out_dir: {tmp}/out
# What the suite config gives each run: its ranks and the site (a 2-"GPU" CPU node here).
slurm:
  gpus: ${{ranks}}
  time_minutes: 5
  site:
    cpu_only: true
    gpus_per_node: 2
    signal_delay_s: 30
"""


#: Hydra instantiates launchers only from the `hydra_plugins` namespace package. Until the
#: repo ships this module (hydra_plugins/scaling_suite_launcher/__init__.py), the test
#: provides it on the job's PYTHONPATH.
PLUGIN_SHIM = """
from suite.launch.hydra_launcher import PerRunSlurmLauncher as _PerRunSlurmLauncher


class PerRunSlurmLauncher(_PerRunSlurmLauncher):
    \"\"\"Registered with Hydra as `hydra/launcher=slurm` (sweeps/conf/hydra/launcher/slurm.yaml).\"\"\"
"""


def _plugin_path(tmp_path) -> list[str]:
    if importlib.util.find_spec("hydra_plugins.scaling_suite_launcher") is not None:
        return []
    package = tmp_path / "plugin" / "hydra_plugins" / "scaling_suite_launcher"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN_SHIM)
    return [str(tmp_path / "plugin")]


def _write_app(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "app.yaml").write_text(
        textwrap.dedent(CONFIG).format(conf=REPO / "sweeps" / "conf", tmp=tmp_path)
    )


def _run_multirun(tmp_path, sweep: str):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), *_plugin_path(tmp_path), os.environ.get("PYTHONPATH", "")]
        ),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), "--multirun", f"ranks={sweep}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=tmp_path,
    )


def test_each_run_gets_its_own_job_shape(slurm_cluster, tmp_path):  # noqa: F811
    _write_app(tmp_path)
    result = _run_multirun(tmp_path, "1,2")
    assert result.returncode == 0, result.stdout + result.stderr
    records = sorted(
        (json.loads(path.read_text()) for path in (tmp_path / "out").glob("*.json")),
        key=lambda r: (r["ranks"], r["rank"]),
    )
    assert [(r["ranks"], r["ntasks"], r["rank"]) for r in records] == [
        (1, 1, 0),
        (2, 2, 0),
        (2, 2, 1),
    ]
    # Two shapes → two separate SLURM jobs; both ranks of the 2-rank run share one job.
    assert records[0]["job_id"] != records[1]["job_id"] == records[2]["job_id"]


def test_an_invalid_run_stops_the_sweep_before_any_submission(slurm_cluster, tmp_path):  # noqa: F811
    _write_app(tmp_path)
    # 3 ranks on nodes of 2 would need 2 nodes with uneven tasks: rejected up front.
    result = _run_multirun(tmp_path, "2,3")
    assert result.returncode != 0
    assert "gpus=3: spans 2 nodes but is not a multiple of gpus_per_node=2" in result.stderr
    assert not (tmp_path / "multirun" / ".submitit").exists()
    assert list((tmp_path / "out").iterdir()) == []
