"""The slurm_cluster fixture without Slurm: a failure under CI, a skip elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from slurm_cluster import REPO

PROBE = """
from slurm_cluster import slurm_cluster  # noqa: F401


def test_needs_slurm(slurm_cluster):
    pass
"""


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_missing_slurm(tmp_path, ci, outcome):
    (tmp_path / "test_probe.py").write_text(PROBE)
    empty_bin = tmp_path / "bin"  # a PATH on which no Slurm binary is found
    empty_bin.mkdir()
    environment = {
        **os.environ,
        "PATH": str(empty_bin),
        "CI": ci,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rse", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=tmp_path,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "Slurm is not installed (missing sbatch" in result.stdout
    assert "bash .ci/slurm/install.sh" in result.stdout
    assert (result.returncode != 0) == (ci == "true")
