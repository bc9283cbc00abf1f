"""How hard the publisher tries before declaring a checkpoint failed.

Standard library only (plus `suite.errors`), so `suite.config.PublishConfig` validates its
retry fields with the very rules the publisher applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff, per checkpoint and per stage."""

    max_attempts: int = 6
    """Attempts per checkpoint (the first one included)."""
    initial_backoff_s: float = 2.0
    """Wait after the first failure; doubles after each further failure."""
    max_backoff_s: float = 60.0
    """Upper bound of one wait (the total wait is bounded by max_attempts × this)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts", self.max_attempts, "use at least 1 attempt")
        if self.initial_backoff_s < 0:
            raise ConfigError("initial_backoff_s", self.initial_backoff_s, "use a delay >= 0")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError(
                "max_backoff_s",
                self.max_backoff_s,
                f"use a value >= initial_backoff_s ({self.initial_backoff_s})",
            )

    def delay(self, failed_attempts: int) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * 2 ** (failed_attempts - 1))
