"""Damaged resume checkpoints: the trainer falls back to the newest intact one, or refuses.

One module-scoped uninterrupted reference run and one run killed (SIGKILL) after at least
two resume saves; each test damages its own copy of the killed run's root (a truncated file
of the newest checkpoint, its folder deleted, every kept checkpoint damaged) and restarts
`suite train` on it. A run that falls back must finish with the reference's weights, bit
for bit (same thread count and kernels; the older checkpoint's optimizer and RNG state).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from dist_helpers import check_ok, mini_run_dir, run_train, start_train
from safetensors.numpy import load_file

pytestmark = pytest.mark.slow

STEPS = 24
RESUME_EVERY = 4


def _overrides(root: Path, data: Path) -> list[str]:
    return [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        "publish.store=none", "seq_len=32", "global_batch=8", "default_resources.micro_batch=8",
        f"train_steps={STEPS}", "padded_vocab=512", "checkpoints.log_until=4",
        "checkpoints.every=8", f"checkpoints.resume_every={RESUME_EVERY}",
        "checkpoints.keep_resume=2", "eval.every=8", "eval.samples=16",
    ]  # fmt: skip


def _pointer(run_dir: Path) -> dict:
    return json.loads((run_dir / "resume" / "latest.json").read_text())


def _final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(run_dir / "exports" / f"step{STEPS}" / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    check_ok(run_train(_overrides(root, tiny_data)))
    return mini_run_dir(root)


@pytest.fixture(scope="module")
def killed_root(tiny_data, tmp_path_factory) -> Path:
    """A root whose run was SIGKILLed with two resume checkpoints kept (read-only: copy it)."""
    root = tmp_path_factory.mktemp("killed")
    pointer = mini_run_dir(root) / "resume" / "latest.json"
    process = start_train(_overrides(root, tiny_data), root.parent / "killed.log")
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        try:
            if len(json.loads(pointer.read_text())["kept"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass  # not written yet (the writer renames it into place: never half a file)
        time.sleep(0.002)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert alive, (root.parent / "killed.log").read_text()[-3000:]
    latest = _pointer(mini_run_dir(root))
    assert len(latest["kept"]) == 2 and latest["step"] < STEPS, latest
    return root


def _copy(killed_root: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """A private copy of the killed run: (root, run_dir, pointer)."""
    root = tmp_path / "root"
    shutil.copytree(killed_root, root)
    run_dir = mini_run_dir(root)
    return root, run_dir, _pointer(run_dir)


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if p.suffix == ".pt"), key=lambda p: p.stat().st_size)


def _assert_falls_back(result, run_dir: Path, reference: Path, damaged: Path, older: int):
    check_ok(result)
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1, result.stderr
    assert str(damaged) in warnings[0] and f"resuming from step {older}" in warnings[0]
    assert "Traceback" not in result.stderr
    assert f"resuming at step {older}" in result.stdout
    want, have = _final_weights(reference), _final_weights(run_dir)
    assert set(want) == set(have)
    assert all(np.array_equal(want[name], have[name]) for name in want)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert sorted(set(steps)) == list(range(1, STEPS + 1))  # redone updates logged once
    latest = _pointer(run_dir)
    kept = sorted(p.name for p in (run_dir / "resume").iterdir() if p.is_dir())
    assert kept == sorted(latest["kept"]) and len(kept) <= 2  # nothing damaged left behind
    from suite.train.resume import checkpoint_damage

    for entry in latest["checkpoints"]:
        assert checkpoint_damage(run_dir / "resume" / entry["tag"], entry["world"]) is None
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_truncated_file_of_the_newest_checkpoint_falls_back(
    reference, killed_root, tiny_data, tmp_path
):
    root, run_dir, latest = _copy(killed_root, tmp_path)
    newest = run_dir / "resume" / latest["tag"]
    victim = _largest_file(newest)
    with open(victim, "r+b") as handle:
        handle.truncate(victim.stat().st_size // 2)
    older = latest["checkpoints"][0]["step"]
    assert older == latest["step"] - RESUME_EVERY
    result = run_train(_overrides(root, tiny_data))
    _assert_falls_back(result, run_dir, reference, newest, older)


def test_deleted_newest_checkpoint_folder_falls_back(reference, killed_root, tiny_data, tmp_path):
    root, run_dir, latest = _copy(killed_root, tmp_path)
    newest = run_dir / "resume" / latest["tag"]
    shutil.rmtree(newest)
    older = latest["checkpoints"][0]["step"]
    result = run_train(_overrides(root, tiny_data))
    _assert_falls_back(result, run_dir, reference, newest, older)


def test_no_intact_checkpoint_refuses_in_one_line_and_deletes_nothing(
    killed_root, tiny_data, tmp_path
):
    root, run_dir, latest = _copy(killed_root, tmp_path)
    resume = run_dir / "resume"
    shutil.rmtree(resume / latest["tag"])
    oldest = resume / latest["kept"][0]
    victim = _largest_file(oldest)
    with open(victim, "r+b") as handle:
        handle.truncate(100)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    record_before = (run_dir / "run.json").read_text()
    result = run_train(_overrides(root, tiny_data))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no intact resume checkpoint" in lines[0] and f"delete {resume}" in lines[0]
    assert f"{victim.name} has 100 bytes" in lines[0]
    # Refused before anything started: the damaged state is left for the user to inspect.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before
    assert (run_dir / "run.json").read_text() == record_before
