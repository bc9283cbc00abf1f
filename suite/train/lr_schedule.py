"""The learning-rate schedule as a pure function of the update number (Pythia's shape).

Linear warmup from 0 to the peak over the first `warmup_fraction` of the updates, then a
cosine decay that reaches `min_lr_ratio × peak` exactly at the last update. Being a pure
function of the step, the schedule has no state to save or restore on resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suite.errors import ConfigError


@dataclass(frozen=True)
class LRSchedule:
    """Warmup + cosine decay; `lr(s)` is the rate used by update `s` (1-based)."""

    peak: float
    """Peak learning rate, reached at the end of warmup."""
    total_steps: int
    """Number of updates of the run; the cosine ends at this update."""
    warmup_fraction: float = 0.01
    """Fraction of the updates spent warming up (Pythia: 1% → 1430 of 143,000)."""
    min_lr_ratio: float = 0.1
    """Final rate as a fraction of the peak (Pythia: 10%)."""

    def __post_init__(self) -> None:
        if not self.peak > 0:
            raise ConfigError("optim.lr", self.peak, "use a positive peak learning rate")
        if self.total_steps < 1:
            raise ConfigError("train_steps", self.total_steps, "use at least one update")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(
                "optim.warmup_fraction", self.warmup_fraction, "use a value in [0, 1)"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("optim.min_lr_ratio", self.min_lr_ratio, "use a value in [0, 1]")

    @property
    def warmup_steps(self) -> int:
        # round(), not int(): 0.01 × 143,000 must give Pythia's 1430 despite float error.
        return round(self.warmup_fraction * self.total_steps)

    def __call__(self, step: int) -> float:
        """Learning rate of update `step` (1 … total_steps)."""
        if not 1 <= step <= self.total_steps:
            raise ConfigError("step", step, f"updates are numbered 1 … {self.total_steps}")
        warmup = self.warmup_steps
        if step <= warmup:
            return self.peak * step / warmup
        floor = self.peak * self.min_lr_ratio
        decay_steps = self.total_steps - warmup
        if decay_steps == 0:
            return floor
        progress = (step - warmup) / decay_steps  # in (0, 1]; 1 at the last update
        return floor + (self.peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
