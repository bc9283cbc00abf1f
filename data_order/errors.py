"""User-facing errors of `data_order` (it must not import `suite`, so it has its own).

Every message names the field or file, the offending value and the fix. The `suite`
commands catch `DataError` next to `suite.errors.SuiteError` and print it without a
traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """A problem with a dataset, its inputs or a request against it, meant for the user."""


class DataConfigError(DataError):
    """An invalid setting (a config field or a CLI flag)."""

    def __init__(self, field: str, value: object, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"{field}={value!r}: {fix}")


class DataFormatError(DataError):
    """A file on disk that does not follow the format it claims (truncated, bad header...)."""


class FingerprintMismatch(DataError):
    """A dataset whose fingerprint differs from the one a run or checkpoint recorded."""
