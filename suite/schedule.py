"""Which optimizer steps get a checkpoint: a pure function of a small config.

Contract 1 (docs/architecture.md): checkpoint `step{s}` holds the weights after `s` updates and
`step0` is the initialization. The Pythia schedule is {0} ∪ {1, 2, 4, …, 512} ∪
{1000, 2000, …, 143000} — 154 checkpoints for 143,000 updates — and the mini suite uses the
same rule with smaller numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from suite.errors import ConfigError


@dataclass(frozen=True)
class CheckpointSchedule:
    """The set of optimizer steps after which a checkpoint is exported and published."""

    log_until: int = 512
    """Powers of two 1, 2, 4, … up to and including this step get a checkpoint (0 disables)."""
    every: int = 1000
    """Every multiple of this many steps gets a checkpoint (must be > 0)."""
    total_steps: int = 143000
    """Number of optimizer updates of the run; the final step always gets a checkpoint."""
    extra: tuple[int, ...] = ()
    """Additional steps to checkpoint (each in [0, total_steps])."""
    include_zero: bool = True
    """Export `step0`, the initialization, before the first update."""

    def __post_init__(self) -> None:
        if not isinstance(self.total_steps, int) or self.total_steps < 1:
            raise ConfigError("total_steps", self.total_steps, "use a positive number of updates")
        if not isinstance(self.every, int) or self.every <= 0:
            raise ConfigError(
                "every", self.every, "use a positive interval (set it to total_steps for none)"
            )
        if not isinstance(self.log_until, int) or self.log_until < 0:
            raise ConfigError(
                "log_until", self.log_until, "use 0 to disable log-spaced steps or a positive step"
            )
        if self.log_until > self.total_steps:
            raise ConfigError(
                "log_until", self.log_until, f"use a step <= total_steps ({self.total_steps})"
            )
        # Hydra/YAML hand us lists; a tuple keeps the dataclass hashable and immutable.
        object.__setattr__(self, "extra", tuple(self.extra))
        for step in self.extra:
            if not isinstance(step, int) or isinstance(step, bool):
                raise ConfigError("extra", self.extra, f"steps must be integers, got {step!r}")
            if not 0 <= step <= self.total_steps:
                raise ConfigError(
                    "extra", self.extra, f"every extra step must be in [0, {self.total_steps}]"
                )

    @cached_property
    def _steps(self) -> tuple[int, ...]:
        steps = {self.total_steps, *self.extra}
        if self.include_zero:
            steps.add(0)
        power = 1
        while power <= self.log_until:
            steps.add(power)
            power *= 2
        steps.update(range(self.every, self.total_steps + 1, self.every))
        return tuple(sorted(steps))

    def steps(self) -> list[int]:
        """Sorted, unique checkpoint steps."""
        return list(self._steps)

    def is_checkpoint(self, step: int) -> bool:
        """True when `step` (number of updates done) is a scheduled checkpoint."""
        return step in self._step_set

    @cached_property
    def _step_set(self) -> frozenset[int]:
        return frozenset(self._steps)

    @property
    def final_step(self) -> int:
        return self.total_steps
