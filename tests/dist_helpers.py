"""Run the real `suite train` command in 1 or N gloo processes (torchrun) for tests.

Every process gets `DS_ACCELERATOR=cpu` (DeepSpeed on CPU, gloo) and `OMP_NUM_THREADS=1`: a
fixed thread count makes CPU float reductions reproducible run to run (the resume test
compares bits), and 2 processes × 1 thread fit the 2-core CI machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(
        PYTHONPATH=str(REPO),
        DS_ACCELERATOR="cpu",
        OMP_NUM_THREADS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.update(extra or {})
    return env


def train_command(overrides: list[str], nproc: int = 1) -> list[str]:
    """`suite train OVERRIDES`, under torchrun with `nproc` gloo processes when nproc > 1."""
    if nproc == 1:
        return [sys.executable, "-m", "suite.cli", "train", *overrides]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "suite.cli", "train", *overrides,
    ]  # fmt: skip


def run_train(overrides: list[str], nproc: int = 1, timeout: float = 300, cwd: Path | None = None):
    """Run to completion; returns the CompletedProcess (stdout+stderr text)."""
    return subprocess.run(
        train_command(overrides, nproc),
        env=train_env(),
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_train(overrides: list[str], log: Path, nproc: int = 1, cwd: Path | None = None):
    """Start in the background (for kill tests); output goes to `log`."""
    handle = open(log, "w")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        train_command(overrides, nproc),
        env=train_env(),
        cwd=cwd or REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def run_python(code: str, timeout: float = 300, cwd: Path | None = None):
    """Run a Python snippet in a fresh interpreter with the training environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=train_env(),
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: Tolerances for comparing runs whose parallel layout differs (TP=2 vs TP=1, DP=2 vs DP=1,
#: activation checkpointing on vs off). TP/DP change only the order of float32 additions
#: (row-parallel all-reduce of partial matmuls; DP averaging of two half-batch gradients vs
#: one full-batch mean). Each such reordering perturbs a value by ~1 ulp (6e-8 relative);
#: Adam normalizes updates, so over 24 updates the perturbation grows to ~1e-6 on losses of
#: ~5 and ~1e-5 on weights of ~0.02-1 (measured: 1.4e-6 and 8.8e-6). The tolerances leave
#: ~50x margin yet stay far below what a real bug gives (a wrong shard, wrong rows or a
#: missing gradient reduction changes losses by >1e-2 within a few updates).
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 5e-4


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert a command succeeded, showing the end of its output when it did not."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def mini_run_dir(root: Path, size: str = "160k") -> Path:
    """The run directory of `mini-{size}` under a test's suite root."""
    return root / "mini" / "runs" / f"mini-{size}"
