"""Errors that carry a message meant for the user (field, value, fix)."""


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (`\\n`, `\\x1e`, `\\u2028`),
    so that a message quoting what the user typed still prints as exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SuiteError(Exception):
    """A user-facing error: the CLI prints its message and exits non-zero, no traceback.

    Its message is one line whatever it quotes (a value holding a newline or another line
    separator prints escaped)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class ConfigError(SuiteError, ValueError):
    """An invalid configuration, detected before anything runs or is submitted."""

    def __init__(self, field: str, value: object, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"{field}={value!r}: {fix}")
