"""When the publisher tries a checkpoint again, and which failures are worth a retry.

A checkpoint the store refuses for a reason that can pass (the server is down, rate limits
with HTTP 429/503 and `Retry-After`, a 5xx, a moved branch head) is never given up: it
stays *pending* in the persistent queue with its next-attempt time, and the publisher keeps
working through later checkpoints meanwhile (Pythia lost branches to upload rate limits,
pythia#94, #107). Only a failure no retry can fix — a 4xx such as a bad token, a published
file that differs from the one we wrote, a missing or damaged export — fails its checkpoint.

Standard library only (plus `suite.errors`), so `suite.config.PublishConfig` validates its
retry fields with the very rules the publisher applies, and the classification reads HTTP
errors by duck typing (`err.response.status_code`, `.headers`) instead of importing a client.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

from suite.errors import ConfigError, SuiteError

#: HTTP statuses that say "not now" rather than "never": timeout, conflict / precondition
#: failed (the branch moved; the retry looks again), locked, too early, rate limited.
RETRYABLE_4XX = frozenset({408, 409, 412, 423, 425, 429})
#: Statuses whose `Retry-After` header the publisher honours.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff per checkpoint, `Retry-After` honoured, a bounded final drain."""

    initial_backoff_s: float = 2.0
    """Wait after a checkpoint's first failed attempt; doubles after each further failure."""
    max_backoff_s: float = 60.0
    """Upper bound of one backoff wait (a pending checkpoint is retried at least this often)."""
    max_retry_after_s: float = 600.0
    """Upper bound on a server's `Retry-After` (HTTP 429/503): the publisher waits what the
    server asks, up to this, before its next request to that server."""
    drain_timeout_s: float = 300.0
    """At the end of a run (and in `suite publish`), how long to keep retrying checkpoints
    that are still pending; after it the run ends normally and names the command that
    finishes them. No new attempt starts after it; one in flight completes."""

    def __post_init__(self) -> None:
        for name in ("initial_backoff_s", "max_retry_after_s", "drain_timeout_s"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "use a duration >= 0 seconds")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError(
                "max_backoff_s",
                self.max_backoff_s,
                f"use a value >= initial_backoff_s ({self.initial_backoff_s})",
            )

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next attempt: the server's `Retry-After` (capped) when it gave
        one, else the exponential backoff."""
        if retry_after is not None:
            return min(self.max_retry_after_s, retry_after)
        return min(self.max_backoff_s, self.initial_backoff_s * 2 ** (failed_attempts - 1))


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    reason: str
    """One line: what failed."""
    retryable: bool
    """True: the checkpoint stays pending; False: it failed (retrying cannot help)."""
    retry_after: float | None = None
    """Seconds the server asked us to wait (HTTP 429/503 `Retry-After`), when it did."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    huggingface_hub's own backoff reads only the delay-seconds form; a date in the past is
    0, an unparsable value None.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; a zone-less one is read the same way
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def http_status(err: BaseException) -> int | None:
    """The HTTP status of an error that carries a response (huggingface_hub, requests, httpx)."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


#: Errors of the local file system that no retry fixes (a missing export, a file where the
#: store's folder should be, no permission).
LOCAL_FILE_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def classify(err: BaseException, stage: str) -> Failure:
    """Whether a failed publishing attempt is worth a retry, and how long the server asked
    us to wait. `stage` names the step that failed (upload, promote main, manifest)."""
    reason = f"{stage}: {type(err).__name__}: {err}".splitlines()[0]
    status = http_status(err)
    if status is not None:
        headers = getattr(err.response, "headers", None) or {}
        retry_after = (
            parse_retry_after(headers.get("Retry-After"))
            if status in RETRY_AFTER_STATUSES
            else None
        )
        retryable = status >= 500 or status in RETRYABLE_4XX
        return Failure(reason, retryable, retry_after)
    if isinstance(err, (ConnectionError, TimeoutError)):
        return Failure(reason, True)
    if isinstance(err, LOCAL_FILE_ERRORS):
        return Failure(reason, False)  # our export or store folder is wrong: no retry helps
    if isinstance(err, SuiteError):
        # Our own checks (a published file differs from the one we wrote, a damaged export,
        # no such repo) fail for good; a store that cannot be reached says so and retries.
        return Failure(reason, bool(getattr(err, "retryable", False)))
    # Anything else comes from the network stack or the server (a dropped connection, a
    # malformed answer): the checkpoint stays pending rather than being lost to a hiccup.
    return Failure(reason, True)
