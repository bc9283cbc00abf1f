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


class NoSpaceError(DataError):
    """The disk filled up while writing (ENOSPC, quota, file size limit); whatever was being
    written has been removed. `elsewhere` names the knob that writes to another disk."""

    def __init__(self, directory: object, need_bytes: int, free_bytes: int, elsewhere: str):
        self.directory, self.need_bytes, self.free_bytes = directory, need_bytes, free_bytes
        super().__init__(self.message(elsewhere))

    def message(self, elsewhere: str) -> str:
        return (
            f"no space left on {self.directory}: need ~{_human(self.need_bytes)} "
            f"({_human(self.free_bytes)} free); free space or set {elsewhere}"
        )


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"
