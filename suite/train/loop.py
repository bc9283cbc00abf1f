"""The training loop: one optimizer update per iteration, every side effect a hook.

Update `s` (1-based) sets the scheduled learning rate, trains on batch `s-1` (this rank's
rows, in `grad_accum` micro steps) and reports loss, lr, grad norm, tokens/s and the hash of
the global batch. Logging, evaluation, exports and resume checkpoints are `Hook`s.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from suite.train.batches import EMPTY_BATCHES_HASH, BatchSource, chain_hash
from suite.train.engine import set_learning_rate
from suite.train.lr_schedule import LRSchedule

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where the run stands; everything else follows from `step`."""

    step: int = 0
    """Optimizer updates done (checkpoint `step{N}` is taken with step == N)."""
    batches_hash: str = EMPTY_BATCHES_HASH
    """Running hash over the global batches 0 … step-1 (kept on the logging rank)."""
    tokens_per_step: int = 0
    """Predicted tokens per update: global_batch × seq_len."""
    last_loss: float | None = None
    """Loss of the latest update (global-batch mean)."""
    last_eval: dict = field(default_factory=dict)
    """Latest evaluation record."""

    @property
    def tokens_seen(self) -> int:
        return self.step * self.tokens_per_step


class Hook:
    """A side effect of the training loop; override what you need, the rest does nothing.

    Hooks run in descending `priority` (ties keep the order they were given in), the same
    order at every call. `on_end` runs after the last update of a finished run; `on_error`
    when training raised (a crash, an interrupt, a failed hook); `close` always, last, once.
    """

    priority: ClassVar[int] = 0
    """Higher runs earlier (the `Priority` values name the order of the built-in hooks)."""

    def on_start(self, trainer: Trainer) -> None:
        """Before the first update of this process (after a resume: at the resumed step)."""

    def after_update(self, trainer: Trainer, record: dict) -> None:
        """After every update; `record` is the update's metrics line."""

    def on_end(self, trainer: Trainer) -> None:
        """After the run's last update (not called when training raised)."""

    def on_error(self, trainer: Trainer, error: BaseException) -> None:
        """Training raised `error` (which is re-raised after every hook saw it)."""

    def close(self) -> None:
        """Release what the hook holds (files, threads); always called, once."""


class Priority(IntEnum):
    """The order of the built-in hooks: the update's metrics line, then evaluation, the
    checkpoint export, the resume checkpoint, and last the stop-signal check (so that a
    stopping run has written everything of its final update first)."""

    METRICS = 100
    EVAL = 80
    EXPORT = 60
    RESUME = 40
    PREEMPTION = 0


class Trainer:
    """The engine, the data and the schedule of one run, stepping one update at a time."""

    def __init__(
        self,
        engine,
        source: BatchSource,
        schedule: LRSchedule,
        state: TrainState,
        rank: int,
        world_size: int,
        flops_per_token: int | None = None,
        peak_flops: float | None = None,
        clip_in_trainer: float | None = None,
        loss_chunk_tokens: int = 0,
    ):
        self.engine = engine
        self.source = source
        self.schedule = schedule
        self.state = state
        self.rank = rank
        self.world_size = world_size
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.clip_in_trainer = clip_in_trainer
        """Max grad norm when the trainer (not DeepSpeed) clips; 0 = only measure the norm."""
        self.loss_chunk_tokens = loss_chunk_tokens
        """Positions per chunk of the output head + loss (`suite.train.loss`); 0 = unchunked."""
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-hash")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    def update(self) -> dict:
        """One optimizer update on batch `step` (0-based = step-1 after increment)."""
        import torch
        import torch.distributed as dist

        from suite.train.loss import engine_lm_loss

        step = self.state.step + 1
        started = time.perf_counter()
        # The global batch's hash (rank 0: read 1024 × 2049 tokens and sha256 them at Pythia's
        # size) is computed in a thread while this rank trains, not on the critical path.
        pending_hash = self._hasher.submit(self.source.global_hash, step) if self.is_main else None
        lr = self.schedule(step)
        set_learning_rate(self.engine, lr)
        rows = torch.from_numpy(self.source.rows(step))
        device = self.engine.device
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        grad_norm = None
        for index, micro in enumerate(rows):
            micro = micro.to(device, non_blocking=True)
            # Our own loss over all seq_len targets (HF's `labels` would drop the last one),
            # the head and loss chunked so full-vocabulary fp32 logits are never materialized
            # for the whole micro batch (computed inside `engine(...)`: see engine_lm_loss).
            loss = engine_lm_loss(self.engine, micro[:, :-1], micro[:, 1:], self.loss_chunk_tokens)
            self.engine.backward(loss)
            if self.clip_in_trainer is not None and index == len(rows) - 1:
                grad_norm = self._clip()
            self.engine.step()
            loss_sum += loss.detach().float()
        if self.world_size > 1:
            # TP ranks hold identical losses, so the mean over all ranks is the DP mean.
            dist.all_reduce(loss_sum)
        mean_loss = float(loss_sum) / (self.world_size * len(rows))
        if grad_norm is None:
            grad_norm = self.engine.get_global_grad_norm()
        record = {
            "step": step,
            "loss": mean_loss,
            "lr": lr,
            "tokens": step * self.state.tokens_per_step,
        }
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        # fp16: an update whose gradients overflowed is skipped by DeepSpeed (weights
        # unchanged, loss scale lowered). It still counts as an update: its batch was
        # consumed, and step, LR and checkpoint schedule stay functions of the batch index
        # (as Pythia's iteration counter did); the metrics line says so.
        record["skipped"] = not self.engine.was_step_applied()
        record["skipped_updates"] = int(getattr(self.engine, "skipped_steps", 0))
        scale = getattr(self.engine.optimizer, "cur_scale", None)
        if scale is not None:
            record["loss_scale"] = float(scale)
        if pending_hash is not None:
            batch_hash = pending_hash.result()
            self.state.batches_hash = chain_hash(self.state.batches_hash, batch_hash)
            record["batch_hash"] = batch_hash
        if device.type == "cuda":
            torch.cuda.synchronize()
            # This rank's peak so far, to hold against the plan's memory estimate.
            record["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        elapsed = time.perf_counter() - started
        record["tokens_per_s"] = self.state.tokens_per_step / elapsed
        record["step_seconds"] = elapsed
        if self.flops_per_token and self.peak_flops and device.type == "cuda":
            record["mfu"] = (
                record["tokens_per_s"] * self.flops_per_token / (self.peak_flops * self.world_size)
            )
        self.state.step = step
        self.state.last_loss = mean_loss
        return record

    def close(self) -> None:
        """Stop the hashing thread (the engine is the caller's to destroy)."""
        self._hasher.shutdown(wait=True)

    def _clip(self) -> float:
        import torch

        params = [p for p in self.engine.module.parameters() if p.grad is not None]
        if self.clip_in_trainer:
            return float(torch.nn.utils.clip_grad_norm_(params, self.clip_in_trainer))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))


def ordered(hooks: list[Hook]) -> list[Hook]:
    """Hooks in the order they run: descending priority, stable."""
    return sorted(hooks, key=lambda hook: -hook.priority)


def run_update(trainer: Trainer, hooks: list[Hook]) -> dict:
    """One update and its hooks (`hooks` already `ordered`)."""
    record = trainer.update()
    for hook in hooks:
        hook.after_update(trainer, record)
    return record


def train_loop(trainer: Trainer, hooks: list[Hook]) -> TrainState:
    """Run updates until the schedule's last step; hooks see every update.

    On an exception every hook's `on_error` runs (a failing one is logged, not allowed to
    hide the original error), then the error propagates; `close` runs in every case.
    """
    hooks = ordered(hooks)
    try:
        for hook in hooks:
            hook.on_start(trainer)
        while trainer.state.step < trainer.total_steps:
            run_update(trainer, hooks)
        for hook in hooks:
            hook.on_end(trainer)
    except BaseException as error:
        for hook in hooks:
            try:
                hook.on_error(trainer, error)
            except Exception:  # the original error is the one to report
                log.exception("%s.on_error failed", type(hook).__name__)
        raise
    finally:
        for hook in hooks:
            try:
                hook.close()
            except Exception:  # every hook gets its close
                log.exception("%s.close failed", type(hook).__name__)
    return trainer.state
