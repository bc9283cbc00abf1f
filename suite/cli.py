"""The `suite` command: a thin dispatcher to one module per sub-command.

Sub-command modules are imported lazily so that data commands (`suite batch`,
`suite prepare`) never pay for importing torch, deepspeed or transformers.
Each module in `suite.commands` exposes `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import traceback
import typing

from suite.errors import SuiteError, one_line

COMMANDS: dict[str, tuple[str, str]] = {
    "plan": (
        "suite.commands.plan",
        "table of every run the sweep would launch (no weights allocated)",
    ),
    "prepare": (
        "suite.commands.prepare",
        "tokenize, deduplicate, pack and order the suite's datasets",
    ),
    "batch": (
        "suite.commands.batch",
        "reproduce the exact tokens of any batch, per rank, decodable",
    ),
    "seen": (
        "suite.commands.seen",
        "where a document or passage was trained on, and the first checkpoint that saw it",
    ),
    "train": ("suite.commands.train", "train one run of the suite (DeepSpeed TP x DP)"),
    "sweep": (
        "suite.commands.sweep",
        "run the whole suite: prepare, train every run, publish, report",
    ),
    "publish": (
        "suite.commands.publish",
        "finish publishing a run directory's pending checkpoints",
    ),
    "pull": ("suite.commands.pull", "print the local path of a run's checkpoint at a step"),
    "verify": ("suite.commands.verify", "check what was published against the manifests"),
    "status": ("suite.commands.status", "state of every run of a sweep directory"),
    "eval": (
        "suite.commands.eval",
        "evaluate every published checkpoint into the ledger (perplexity, lm-eval tasks)",
    ),
    "memorization": (
        "suite.commands.memorization",
        "extractable memorization of sampled training sequences at every checkpoint (ledger)",
    ),
    "cards": (
        "suite.commands.cards",
        "refresh the model cards of published revisions (ledger results) and the overview",
    ),
    "report": ("suite.commands.report", "tables and plots of a finished sweep"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: suite COMMAND [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`suite COMMAND --help` describes one command; `suite --debug COMMAND ...`"]
    lines += [f"(or {DEBUG_ENV}=1) shows the traceback behind a one-line error."]
    return "\n".join(lines)


#: Set (to anything but "" or "0") to see the traceback behind a one-line error.
DEBUG_ENV = "SUITE_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class _TracebackOnError(io.TextIOBase):
    """stderr for `--debug`: the first write made while an exception is being handled
    prints that exception's traceback first.

    Every command catches its user errors and prints one line from inside its `except`
    block, so this shows the traceback behind that line without each command having to
    know about debugging (and without changing what a normal run prints).
    """

    def __init__(self, stream: typing.TextIO):
        self._stream = stream
        self._shown: set[int] = set()

    def write(self, text: str) -> int:
        err = sys.exc_info()[1]
        if err is not None and id(err) not in self._shown:
            self._shown.add(id(err))
            self._stream.write("".join(traceback.format_exception(err)))
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:  # progress bars draw as they would without --debug
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # anywhere: no command has an option of that name
        argv = [arg for arg in argv if arg != "--debug"]
        os.environ[DEBUG_ENV] = "1"  # inherited by torchrun/srun workers started from here
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"suite: unknown command {name!r}; {_closest_command(name)}", file=sys.stderr)
        return 2
    if debug_enabled() and not isinstance(sys.stderr, _TracebackOnError):
        sys.stderr = _TracebackOnError(sys.stderr)
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # e.g. `suite plan --format csv | head`: not an error
        sys.stderr.close()
        return 0
    except SuiteError as err:  # a command that let a user error through: still one line
        if debug_enabled():
            raise
        print(f"suite {name}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the filesystem refused (a file in the way, read-only, full)
        if debug_enabled():
            raise
        print(f"suite {name}: {describe_os_error(err)}", file=sys.stderr)
        return 1


def _closest_command(name: str) -> str:
    """The fix for an unknown command: the closest one, else the list (one line)."""
    import difflib

    close = difflib.get_close_matches(name.lower(), COMMANDS, n=1, cutoff=0.6)
    if close:
        return f"did you mean `suite {close[0]}`? (`suite --help` lists the commands)"
    return f"use one of: {', '.join(COMMANDS)} (`suite --help` describes them)"


def describe_os_error(err: OSError) -> str:
    """One line for a filesystem or network fault: what failed (on which path), what to do."""
    import errno

    path = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    reason = str(err.strerror or err) or type(err).__name__  # TimeoutError() says nothing
    what = f"{path}: {reason}" if path else reason
    code = errno.errorcode.get(err.errno or 0, "")
    if not path and (err.errno is None or isinstance(err, ConnectionError | TimeoutError)):
        # No file involved: a socket or an HTTP client's error (requests' are OSErrors).
        fix = "a connection failed; check the network and the endpoint, then run it again"
    elif err.errno == errno.ENOSPC:
        fix = "free some space or point root=/--out at another filesystem, then run it again"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the folder writable or choose another path (root=, --out, --store)"
    elif err.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        fix = "a file is in the way of a folder (or the reverse): check the path"
    elif err.errno == errno.ENOENT:
        fix = "check that the path exists"
    else:
        fix = "check the path and its filesystem"
    return one_line(f"{what}{f' [{code}]' if code else ''}; {fix} (--debug shows the traceback)")


if __name__ == "__main__":
    sys.exit(main())
