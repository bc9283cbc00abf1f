"""Errors that carry a message meant for the user (field, value, fix)."""


class SuiteError(Exception):
    """A user-facing error: the CLI prints its message and exits non-zero, no traceback."""


class ConfigError(SuiteError, ValueError):
    """An invalid configuration, detected before anything runs or is submitted."""

    def __init__(self, field: str, value: object, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"{field}={value!r}: {fix}")
