"""`benchmarks/gpu_check.sh`, the check a GPU machine runs once (README: "On a GPU machine").

A session may be lent one GPU for 15 minutes in all, so the script must work the first time:
its dry run is checked here on every change (every command printed, every run's config
resolved as `suite train` resolves it), and its real path — runs, probe, metrics, TP
comparison, results file, summary, exit codes — runs end to end on 2 gloo processes with the
smallest Pythia size.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from dist_helpers import REPO, train_env

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _check(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        env=train_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _commands(stdout: str) -> dict[str, str]:
    """The dry run's command line for each run tag."""
    lines = stdout.splitlines()
    return {
        re.match(r"\[(\S+)\]", line)[1]: lines[i + 1]
        for i, line in enumerate(lines)
        if line.startswith("[") and "config valid" in line
    }


@pytest.mark.parametrize(
    ("gpus", "tags"),
    [
        ("8", [f"{s}-{p}-fa2-tp{t}" for s in ("160m", "1b") for p in ("bf16", "fp16") for t in (1, 2)]),
        ("1", [f"{s}-{p}-fa2-tp1" for s in ("160m", "1b") for p in ("bf16", "fp16")]),
    ],
)  # fmt: skip
def test_dry_run_prints_and_validates_every_run(tmp_path, gpus, tags):
    out = tmp_path / "gpu.json"
    done = _check("--dry-run", "--gpus", gpus, "--work", str(tmp_path / "work"), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"dry run OK: {len(tags)} runs validated" in done.stdout
    commands = _commands(done.stdout)
    assert list(commands) == tags
    for tag, command in commands.items():
        size, precision, _, tp = tag.split("-")
        tp = int(tp.removeprefix("tp"))
        for override in (
            "suite=pythia", f"size={size}", f"precision={precision}", "train_steps=30",
            "attention=flash_attention_2", f"parallel.tp={tp}", f"parallel.gpus={gpus}",
            f"parallel.micro_batch={8 * tp}", f"global_batch={8 * int(gpus)}",
            "padded_vocab=50304", "publish.store=none", "eval.every=0",
        ):  # fmt: skip
            assert f" {override}" in command, (override, command)
        assert "DS_ACCELERATOR=cuda" in command and "gpu_probe.py" in command
        assert ("--nproc_per_node" in command) == (gpus != "1")
    assert not out.exists()  # a dry run never touches the results
    # The data every run reads: Pythia's shape, enough samples for 30 updates.
    sidecar = json.loads((tmp_path / "work" / "data" / "synthetic.json").read_text())
    assert (sidecar["seq_len"], sidecar["vocab_size"]) == (2048, 50277)
    assert sidecar["num_positions"] == 30 * 8 * int(gpus)


def test_dry_run_rejects_an_invalid_run_in_one_line(tmp_path):
    done = _check("--dry-run", "--sizes", "3b", "--work", str(tmp_path))
    assert done.returncode == 2
    assert "3b" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_out_of_budget_runs_are_skipped_and_reported(tmp_path):
    out = tmp_path / "gpu.json"
    args = ("--device", "cpu", "--sizes", "14m", "--precisions", "bf16", "--steps", "1")
    done = _check(
        *args, "--work", str(tmp_path), "--out", str(out), env={"GPU_CHECK_BUDGET_S": "1"}
    )
    assert done.returncode == 3, done.stdout + done.stderr  # incomplete, nothing failed
    result = json.loads(out.read_text())
    assert result["status"] == "incomplete"
    assert [r["status"] for r in result["runs"]] == ["skipped", "skipped"]
    assert "RESULT: INCOMPLETE" in done.stdout


@pytest.mark.slow
def test_the_real_path_end_to_end_on_gloo(tmp_path):
    """pythia-14m at seq 2048, TP=1 (dp 2) and TP=2 (dp 1), 2 updates, through the probe."""
    out = tmp_path / "gpu.json"
    args = ("--device", "cpu", "--gpus", "2", "--sizes", "14m", "--precisions", "bf16")
    done = _check(
        *args, "--steps", "2", "--micro-batch", "1", "--work", str(tmp_path), "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["status"] == "passed" and not result["failures"]
    runs = {r["tag"]: r for r in result["runs"]}
    assert list(runs) == ["14m-bf16-sdpa-tp1", "14m-bf16-sdpa-tp2"]
    for tp, run in zip((1, 2), runs.values(), strict=True):
        assert run["status"] == "ok" and run["updates"] == 2 and run["ranks_reported"] == 2
        assert (run["tp"], run["dp"], run["global_batch"]) == (tp, 2 // tp, 2)
        assert run["model"] == {
            "attn_implementation": "sdpa", "num_hidden_layers": 6, "hidden_size": 128,
            "num_attention_heads": 4, "vocab_size": 50304, "max_position_embeddings": 2048,
            "param_dtype": "bfloat16", "device": "cpu", "activation_checkpointing": True,
        }  # fmt: skip
        # Activation checkpointing really recomputes: 6 layers x 2 updates x (forward +
        # recomputation) SDPA calls per micro batch on every rank.
        assert [c["scaled_dot_product_attention"] for c in run["calls_per_rank"]] == [24, 24]
        assert run["tokens_per_s_per_gpu"] > 0 and run["plan_memory_gb"] > 0
        assert not (tmp_path / "runs" / run["tag"] / "pythia/runs/pythia-14m/exports").exists()
    (comparison,) = result["comparisons"]
    assert comparison["same_batches"] and comparison["ok"] and comparison["updates_compared"] == 2
    assert comparison["max_abs_loss_diff"] < 2e-3
    assert "RESULT: PASSED (2 runs)" in done.stdout

    # What the shell prints after its total time guard stopped the driver mid-run.
    stopped = json.loads(out.read_text()) | {"status": "running", "finished": None}
    out.write_text(json.dumps(stopped))
    summary = _check("--summary", "--out", str(out))
    assert summary.returncode == 1
    assert "stopped by the total time guard" in summary.stdout
    assert "RESULT: INCOMPLETE" in summary.stdout and "14m-bf16-sdpa-tp2" in summary.stdout
