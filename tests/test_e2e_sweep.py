"""The main job end to end: `suite sweep` on a shortened mini suite, then again (no training).

Same code path as the README's first command (`suite sweep`): prepare both datasets, train
every run with DeepSpeed, publish every scheduled checkpoint to the local store, report.
Shortened: 2 sizes, 12 updates, the stdlib's `encodings` package as the corpus (it holds
real near-duplicates, so the deduplicated dataset really differs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CORPUS = str(Path(sysconfig.get_paths()["stdlib"]) / "encodings" / "*.py")
SIZES = ["160k", "250k"]
STEPS = 12
EXPECTED_STEPS = [0, 1, 2, 4, 6, 12]  # log-spaced to 4, every 6, final


def sweep(root: Path, *extra: str, extensions: Path | None = None) -> subprocess.CompletedProcess:
    overrides = [
        f"root={root}",
        f"sizes=[{','.join(SIZES)}]",
        f"train_steps={STEPS}",
        "checkpoints.log_until=4",
        "checkpoints.every=6",
        "checkpoints.resume_every=6",
        "eval.every=6",
        "eval.samples=8",
        "seq_len=64",
        "data.vocab_size=512",
        f"datasets={{stdlib:{{inputs:[{CORPUS}]}},stdlib-deduped:{{inputs:[{CORPUS}]}}}}",
        *extra,
    ]
    env = os.environ | {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "2"}
    if extensions is not None:  # an empty folder: a DeepSpeed op build would show up here
        env["TORCH_EXTENSIONS_DIR"] = str(extensions)
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", "sweep", *overrides],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_json(run_dir / "metrics.jsonl", lines=True)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "torch_extensions").mkdir()
    result = sweep(root, extensions=root / "torch_extensions")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root, result


def test_every_run_completes_and_publishes_every_scheduled_step(finished_sweep):
    from suite.publish.store import open_store

    root, result = finished_sweep
    store = open_store(f"local:{root}/store")
    runs = sorted((root / "mini" / "runs").iterdir())
    assert [r.name for r in runs] == [
        "mini-160k",
        "mini-160k-deduped",
        "mini-250k",
        "mini-250k-deduped",
    ]
    for run_dir in runs:
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "complete", info
        revisions = store.list_revisions(f"local/{run_dir.name}")
        assert sorted(int(r[4:]) for r in revisions if r.startswith("step")) == EXPECTED_STEPS
        assert "main" in revisions
        train = metrics(run_dir).dropna(subset=["loss"])
        assert list(train["step"]) == list(range(1, STEPS + 1))
        # publish.keep_exports=false (mini): exports go once the store verified its copy.
        assert not list((run_dir / "exports").glob("step*"))
        assert not list((run_dir / "publish" / "queue").glob("*.json"))
    assert "suite pull local/mini-160k --step 12" in result.stdout


def test_the_console_in_a_pipe_has_one_line_per_event_and_the_logs_the_rest(finished_sweep):
    """As CI and SLURM see it (stdout is a pipe): no library INFO, gcc line, Hydra line or
    carriage return on the terminal; the sweep's and the runs' log files hold them."""
    root, result = finished_sweep
    terminal = result.stdout + result.stderr
    chatter = ("\r", "INFO", "gcc", "HYDRA", "Launching", "published checkpoint step")
    assert [text for text in chatter if text in terminal] == []
    lines = result.stdout.splitlines()
    assert all(len(re.findall(r"\[mini-[^\]]+\] ", line)) <= 1 for line in lines)
    for run in ("mini-160k", "mini-250k-deduped"):
        assert f"[{run}] starting — tp 1 × dp 1, {STEPS} updates" in result.stdout
        steps = [line.split()[2] for line in lines if line.startswith(f"[{run}] step ")]
        assert steps[-1] == f"{STEPS}/{STEPS}" and len(steps) == len(set(steps)) > 1
        (done,) = [line for line in lines if line.startswith(f"[{run}] done — step {STEPS},")]
        assert re.search(r"\([1-4]/4 runs\)$", done)
    run_log = (root / "mini" / "runs" / "mini-160k" / "train.log").read_text()
    assert "INFO [suite.publish.publisher] published checkpoint step0" in run_log
    assert "INFO [compilers.C.base] gcc " in run_log  # DeepSpeed probing its ops at start-up
    assert f"INFO [stdout] [mini-160k] step {STEPS}/{STEPS}" in run_log
    sweep_log = (root / "mini" / "sweep.log").read_text()
    assert "Launching 4 jobs locally" in sweep_log
    assert list((root / "torch_extensions").iterdir()) == []  # one process: no shm op built


def test_runs_of_one_dataset_see_identical_batches_and_datasets_differ(finished_sweep):
    root, _ = finished_sweep
    runs = root / "mini" / "runs"

    def hashes(name):
        return list(metrics(runs / name).dropna(subset=["loss"])["batch_hash"])

    assert hashes("mini-160k") == hashes("mini-250k")
    assert hashes("mini-160k-deduped") == hashes("mini-250k-deduped")
    assert hashes("mini-160k") != hashes("mini-160k-deduped")


def test_report_numbers_come_from_the_metrics(finished_sweep):
    root, _ = finished_sweep
    report = root / "mini" / "report"
    table = pd.read_csv(report / "runs.csv")
    assert len(table) == 4 and set(table["status"]) == {"complete"}
    for _, row in table.iterrows():
        logged = metrics(root / "mini" / "runs" / row["run"])
        assert row["final_train_loss"] == pytest.approx(logged["loss"].dropna().iloc[-1])
        assert row["final_eval_loss"] == pytest.approx(logged["eval_loss"].dropna().iloc[-1])
        assert row["checkpoints_published"] == len(EXPECTED_STEPS)
        assert row["tokens"] == STEPS * 16 * 64
    for name in ("loss_vs_tokens.png", "scaling.png", "dedup_difference.png", "summary.md"):
        assert (report / name).stat().st_size > 0


def test_second_sweep_trains_nothing(finished_sweep):
    root, _ = finished_sweep
    runs = root / "mini" / "runs"
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/metrics.jsonl")}
    again = sweep(root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 runs complete, 0 to train" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/metrics.jsonl")} == before
