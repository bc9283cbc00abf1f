"""The training loop without DeepSpeed: hook order and lifecycle, skipped fp16 updates.

A small stand-in for the DeepSpeed engine (the calls `Trainer.update` makes: forward,
backward, step, was_step_applied, skipped_steps, the optimizer's loss scale) wraps a real
torch model, so the loop's own accounting is tested exactly; the real engine is exercised by
the multi-process tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from suite.train.hooks import LogHook, MetricsFile
from suite.train.loop import Hook, Priority, Trainer, TrainState, train_loop
from suite.train.lr_schedule import LRSchedule

VOCAB, SEQ, ROWS = 16, 6, 2


class FakeFp16Engine:
    """Applies AdamW updates except at the steps in `overflow_at`, where — like DeepSpeed's
    dynamic loss scaler — it skips the update, halves the scale and counts the skip."""

    def __init__(self, overflow_at: set[int]):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Embedding(VOCAB, 8), torch.nn.Linear(8, VOCAB))
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=1e-2)
        self.optimizer.cur_scale = 4096.0
        self.device = torch.device("cpu")
        self.overflow_at = overflow_at
        self.skipped_steps = 0
        self._updates = 0
        self._applied = False

    def __call__(self, input_ids):
        return type("Out", (), {"logits": self.module(input_ids)})()

    def backward(self, loss):
        loss.backward()

    def step(self):
        self._updates += 1
        self._applied = self._updates not in self.overflow_at
        if self._applied:
            self.optimizer.step()
        else:
            self.skipped_steps += 1
            self.optimizer.cur_scale /= 2
        self.optimizer.zero_grad()

    def was_step_applied(self) -> bool:
        return self._applied

    def get_global_grad_norm(self):
        return None


class Rows:
    """Batch `s-1` of update `s`: a deterministic function of the step, like BatchSource."""

    def rows(self, step: int) -> np.ndarray:
        rng = np.random.default_rng(step)
        return rng.integers(0, VOCAB, size=(1, ROWS, SEQ + 1), dtype=np.int64)

    def global_hash(self, step: int) -> str:
        return f"batch{step - 1}"


def _trainer(engine, steps: int) -> Trainer:
    return Trainer(
        engine, Rows(), LRSchedule(1e-2, steps, 0.0, 0.1), TrainState(tokens_per_step=ROWS * SEQ),
        rank=0, world_size=1,
    )  # fmt: skip


def test_skipped_fp16_updates_count_as_steps_and_are_logged(tmp_path):
    engine = FakeFp16Engine(overflow_at={1, 2})
    trainer = _trainer(engine, steps=5)
    weights = []

    class Snapshot(Hook):
        def on_start(self, trainer):
            weights.append(trainer.engine.module[1].weight.detach().clone())

        def after_update(self, trainer, record):
            weights.append(trainer.engine.module[1].weight.detach().clone())

    metrics = MetricsFile(tmp_path / "metrics.jsonl", resumed_step=0)
    train_loop(trainer, [LogHook(metrics, "t", every=100), Snapshot()])
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5]  # a skipped update is a step
    assert [line["skipped"] for line in lines] == [True, True, False, False, False]
    assert [line["skipped_updates"] for line in lines] == [1, 2, 2, 2, 2]
    assert [line["loss_scale"] for line in lines] == [2048.0, 1024.0, 1024.0, 1024.0, 1024.0]
    assert [line["batch_hash"] for line in lines] == [f"batch{i}" for i in range(5)]
    # The weights after a skipped update are the weights before it (step1 = step2 = step0).
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[1], weights[2])
    assert not torch.equal(weights[2], weights[3])


def test_a_nonfinite_loss_is_written_as_null_never_as_infinity(tmp_path):
    metrics = MetricsFile(tmp_path / "metrics.jsonl", resumed_step=0)
    metrics.write({"step": 1, "loss": float("inf"), "grad_norm": float("nan"), "lr": 1e-3})
    metrics.close()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "Infinity" not in text and "NaN" not in text
    line = json.loads(text)
    assert line["loss"] is None and line["grad_norm"] is None and line["lr"] == 1e-3
    assert line["nonfinite"] == ["loss", "grad_norm"]


class Recorder(Hook):
    def __init__(self, name: str, log: list, priority: int, fail_at: int | None = None):
        self.name, self.log, self.priority, self.fail_at = name, log, priority, fail_at

    def on_start(self, trainer):
        self.log.append((self.name, "start"))

    def after_update(self, trainer, record):
        self.log.append((self.name, record["step"]))
        if record["step"] == self.fail_at:
            raise RuntimeError("disk full")

    def on_end(self, trainer):
        self.log.append((self.name, "end"))

    def on_error(self, trainer, error):
        self.log.append((self.name, f"error: {error}"))

    def close(self):
        self.log.append((self.name, "close"))


def test_hooks_run_by_priority_and_close_always_runs():
    log: list = []
    hooks = [Recorder("low", log, Priority.RESUME), Recorder("high", log, Priority.METRICS)]
    train_loop(_trainer(FakeFp16Engine(set()), steps=2), hooks)
    assert log == [
        ("high", "start"), ("low", "start"), ("high", 1), ("low", 1), ("high", 2), ("low", 2),
        ("high", "end"), ("low", "end"), ("high", "close"), ("low", "close"),
    ]  # fmt: skip


def test_a_failing_update_reaches_every_on_error_then_close_and_is_raised():
    log: list = []
    hooks = [Recorder("a", log, 10, fail_at=2), Recorder("b", log, 0)]
    with pytest.raises(RuntimeError, match="disk full"):
        train_loop(_trainer(FakeFp16Engine(set()), steps=5), hooks)
    assert ("a", 2) in log and ("b", 2) not in log  # b never saw the failed update
    assert log[-4:] == [
        ("a", "error: disk full"), ("b", "error: disk full"), ("a", "close"), ("b", "close"),
    ]  # fmt: skip
    assert ("a", "end") not in log


def test_built_in_hook_order_is_metrics_eval_export_resume_preemption():
    from suite.train.hooks import EvalHook, ExportHook, ResumeHook
    from suite.train.preemption import PreemptionHook

    order = [LogHook, EvalHook, ExportHook, ResumeHook, PreemptionHook]
    assert [hook.priority for hook in order] == sorted(
        (hook.priority for hook in order), reverse=True
    )


def test_an_export_failing_in_the_background_stops_training_with_its_error(tmp_path):
    from suite.schedule import CheckpointSchedule
    from suite.train.hooks import ExportHook

    class FullDisk:
        def load(self, state):
            raise OSError(28, "No space left on device")

        def release(self):
            pass

    hook = ExportHook(
        schedule=CheckpointSchedule(log_until=0, every=1, total_steps=3),
        export_model=FullDisk(),
        publisher=None,
        gathers=True,
        exports_dir=tmp_path / "exports",
        tokenizer_file=tmp_path / "tokenizer.json",
        eos_token="<eos>",
        meta_fields={
            "run_name": "t", "data_fingerprint": "a" * 64, "config_hash": "c" * 64,
            "total_steps": 3,
        },
    )  # fmt: skip
    trainer = _trainer(FakeFp16Engine(set()), steps=3)
    log: list = []
    with pytest.raises(OSError, match="No space left"):
        train_loop(trainer, [hook, Recorder("probe", log, Priority.RESUME)])
    # step0's export was written in the background while update 1 ran; its error surfaced
    # at the next export (step 1), before any later update, and every hook was closed.
    assert trainer.state.step == 1
    assert ("probe", "close") in log and hook._writer is None
