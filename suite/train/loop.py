"""The training loop: one optimizer update per iteration, every side effect a hook.

Update `s` (1-based) sets the scheduled learning rate, trains on batch `s-1` (this rank's
rows, in `grad_accum` micro steps) and reports loss, lr, grad norm, tokens/s and the hash of
the global batch. Logging, evaluation, exports and resume checkpoints are `Hook`s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from suite.train.batches import EMPTY_BATCHES_HASH, BatchSource, chain_hash
from suite.train.engine import set_learning_rate
from suite.train.lr_schedule import LRSchedule


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


class Hook(Protocol):
    def on_start(self, trainer: Trainer) -> None: ...

    def after_update(self, trainer: Trainer, record: dict) -> None: ...

    def on_end(self, trainer: Trainer) -> None: ...


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
        import torch.nn.functional as F

        step = self.state.step + 1
        started = time.perf_counter()
        lr = self.schedule(step)
        set_learning_rate(self.engine, lr)
        rows = torch.from_numpy(self.source.rows(step))
        device = self.engine.device
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        grad_norm = None
        for index, micro in enumerate(rows):
            micro = micro.to(device, non_blocking=True)
            logits = self.engine(input_ids=micro[:, :-1]).logits
            # Our own loss over all seq_len targets (HF's `labels` would drop the last one).
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), micro[:, 1:].reshape(-1)
            )
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
        if self.is_main:
            batch_hash = self.source.global_hash(step)
            self.state.batches_hash = chain_hash(self.state.batches_hash, batch_hash)
            record["batch_hash"] = batch_hash
        if device.type == "cuda":
            torch.cuda.synchronize()
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

    def _clip(self) -> float:
        import torch

        params = [p for p in self.engine.module.parameters() if p.grad is not None]
        if self.clip_in_trainer:
            return float(torch.nn.utils.clip_grad_norm_(params, self.clip_in_trainer))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))


def train_loop(trainer: Trainer, hooks: list[Hook]) -> TrainState:
    """Run updates until the schedule's last step; hooks see every update."""
    for hook in hooks:
        hook.on_start(trainer)
    while trainer.state.step < trainer.total_steps:
        record = trainer.update()
        for hook in hooks:
            hook.after_update(trainer, record)
    for hook in hooks:
        hook.on_end(trainer)
    return trainer.state
