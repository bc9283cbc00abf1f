"""The terminal and the log files: what a person watching the suite sees, and where the rest goes.

One place configures Python logging for a process (`configure`):

- the terminal gets the suite's events, one line each, and every WARNING or ERROR of any
  library (stderr, `LEVEL logger: message`); INFO chatter — DeepSpeed's op build and its gcc
  probes, Hydra's launcher lines, the publisher's line per checkpoint — never reaches it;
- everything (INFO and up of every logger, and the lines the process prints) goes to log
  files, timestamped: the sweep's `sweep.log` (`SweepDir.log_file`) and, while a run
  trains, the run's `train.log` (`RunDir.log_file`) — `log_to`;
- on a terminal `suite sweep` draws one live display (`sweep_display`: runs done/total, the
  current run, its step and last loss, ETAs; rich); anywhere else (CI, pipes, SLURM logs)
  the same events are plain lines, with no carriage return or cursor code in them.

Hydra leaves logging alone (`hydra/job_logging: none` and `hydra/hydra_logging: none` in
sweeps/conf/config.yaml), so nothing else configures the root logger. tqdm bars follow the
same rule where the suite draws them (`data_order.tokenize`: `disable=None`, off when not a
tty); huggingface_hub's and transformers' bars are switched off while training.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

#: The logger of the lines the process prints while a log file is open (`_LineTee`).
STDOUT_LOGGER = "stdout"
#: The suite's events shown in the live display instead of as lines (still in the logs).
EVENTS_LOGGER = "suite.events"
FILE_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
TERMINAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Set to 1 to get plain lines even on a terminal (screen recordings, `script`, debugging).
PLAIN_ENV = "SUITE_PLAIN_CONSOLE"

_lock = threading.RLock()
_sweep: _Sweep | None = None


class _TerminalHandler(logging.Handler):
    """WARNING and up, one line each, to whatever `sys.stderr` is when the record comes (the
    live display's proxy, pytest's capture) rather than the stream of start-up."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter(TERMINAL_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def configure() -> None:
    """Logging for this process, once (later calls do nothing): the root logger at INFO,
    WARNING and up on the terminal, Python warnings as log records. Handlers others put on
    the root (Hydra's default job logging, `basicConfig`) are replaced; file handlers and
    pytest's capture are kept."""
    root = logging.getLogger()
    with _lock:
        if any(isinstance(h, _TerminalHandler) for h in root.handlers):
            return
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:  # a console handler: ours replaces it
                root.removeHandler(handler)
        root.addHandler(_TerminalHandler())
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)


def adopt(name: str) -> None:
    """Route a library logger that prints on its own (DeepSpeed's: a handler on the stdout
    of import time, no propagation) through ours, so its warnings reach the terminal in our
    format — above a live display, not through it — and its records the log files. Only
    once `configure` ran; its level stays the library's."""
    root = logging.getLogger()
    if not any(isinstance(h, _TerminalHandler) for h in root.handlers):
        return
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            logger.removeHandler(handler)
    logger.propagate = True


@contextmanager
def log_to(path: str | Path | None):
    """While the block runs, every log record (INFO and up) and every line printed on stdout
    also go to `path` (appended, timestamped; None: nothing). Nested files each get the
    records of their own block: the sweep's log holds its runs' lines too."""
    if path is None:
        yield
        return
    configure()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    # One tee for the outermost file: a nested one would log each printed line twice.
    tee = None if isinstance(sys.stdout, _LineTee) else _LineTee(sys.stdout)
    if tee is not None:
        sys.stdout = tee
    try:
        yield
    except Exception:
        # The traceback behind the one line the command prints: in this file only.
        handler.handle(
            logging.LogRecord(
                "suite", logging.ERROR, __file__, 0, "stopped by this error:", None, sys.exc_info()
            )
        )
        raise
    finally:
        if tee is not None:
            tee.flush_partial()
            if sys.stdout is tee:
                sys.stdout = tee.stream
        root.removeHandler(handler)
        handler.close()


class _LineTee:
    """stdout that also logs each complete line it is given (logger `stdout`, INFO), so the
    log files read like the terminal, in order with the libraries' records."""

    def __init__(self, stream):
        self.stream = stream
        self._partial = ""
        self._log = logging.getLogger(STDOUT_LOGGER)
        self._inside = threading.local()  # a handler that prints must not loop back here
        self._lines = threading.Lock()  # print() writes text and "\n" apart; threads print

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        if getattr(self._inside, "active", False):
            return written
        self._inside.active = True
        try:
            with self._lines:
                *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                if line.strip():
                    self._log.info(line.rstrip("\r"))
        finally:
            self._inside.active = False
        return written

    def flush_partial(self) -> None:
        with self._lines:
            partial, self._partial = self._partial, ""
        if partial.strip():
            self._log.info(partial)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str):  # encoding, errors, buffer …: those of the terminal
        return getattr(self.stream, name)


def terminal_stream():
    """The stream under our tee and the live display's proxy (what a display draws on)."""
    from rich.file_proxy import FileProxy

    stream = sys.stdout
    while isinstance(stream, _LineTee | FileProxy):
        stream = stream.stream if isinstance(stream, _LineTee) else stream.rich_proxied_file
    return stream


@contextmanager
def _printing_above(console):
    """Printed lines go above the live display (rich's `FileProxy`), under our tee when a
    log file is open — rich's own redirect would put its proxy over the tee and the lines
    would no longer reach the log."""
    from rich.file_proxy import FileProxy

    holder, stream = None, sys.stdout
    while isinstance(stream, _LineTee):
        holder, stream = stream, stream.stream
    proxy = FileProxy(console, stream)
    if holder is None:
        sys.stdout = proxy
    else:
        holder.stream = proxy
    try:
        yield
    finally:
        proxy.flush()
        if holder is None:
            if sys.stdout is proxy:
                sys.stdout = stream
        else:
            holder.stream = stream


def interactive() -> bool:
    """A person is watching: stdout is a terminal (not a pipe, a file, CI or a SLURM log)."""
    if os.environ.get(PLAIN_ENV, "") not in ("", "0") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return terminal_stream().isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def event(line: str) -> None:
    """One event (a run started or finished, an op being built): a line on the terminal —
    above the live display when there is one — and in the open log files."""
    print(line, flush=True)


def training_step(label: str, step: int, total: int, loss: float, line: str | None) -> None:
    """A training update of run `label` (rank 0). With a live display it moves the display
    and `line` goes to the log files only; without one `line` (given every few updates by
    `LogHook`) is printed as one event."""
    sweep = _sweep
    if sweep is None or sweep.progress is None:
        if line is not None:
            event(line)
        return
    sweep.step(label, step, total, loss)
    if line is not None:
        logging.getLogger(EVENTS_LOGGER).info(line)


def run_started(label: str, step: int, total: int) -> None:
    """The sweep starts (or resumes at `step`) training run `label`."""
    if _sweep is not None:
        _sweep.start_run(label, step, total)


def run_finished(line: str) -> None:
    """A run of the sweep is done: one event line, `(done/total runs)` appended in a sweep."""
    if _sweep is not None:
        _sweep.finish_run()
        line = f"{line} ({_sweep.runs()})"
    event(line)


@contextmanager
def watching(complete_runs, every_s: float = 30.0):
    """For runs that train in other processes (SLURM jobs): every `every_s` seconds count the
    complete runs with `complete_runs()` (`SweepDir.records()`), and when the count grew, move
    the sweep's display and print `[sweep] k/N runs complete` — the terminal is not silent
    for the days a cluster sweep takes. A count that fails (a record being replaced) waits
    for the next tick."""
    sweep = _sweep
    if sweep is None:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every_s):
            try:
                done = int(complete_runs())
            except Exception:  # the next tick reads again
                continue
            if done > sweep.done_runs:
                sweep.set_done(done)
                event(f"[sweep] {sweep.runs()} complete")

    thread = threading.Thread(target=watch, name="suite-sweep-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def sweep_display(title: str, total_runs: int, done_runs: int):
    """A sweep of `total_runs` (`done_runs` already complete) while the block runs: on a
    terminal one live display, the lines printed meanwhile above it (it stays on screen at
    the end); elsewhere only the count in each run's closing line."""
    global _sweep
    if _sweep is not None:  # nested (a sweep inside a sweep): the outer one shows
        yield
        return
    sweep = _Sweep(title, total_runs, done_runs, live=interactive())
    try:
        if sweep.progress is None:
            _sweep = sweep
            yield
        else:
            with sweep.progress, _printing_above(sweep.progress.console):
                _sweep = sweep
                yield
    finally:
        _sweep = None


class _Sweep:
    """The runs of a sweep, done and total; `live`: two rich progress rows — the sweep (runs
    done/total, its ETA) and the current run (step, last loss, its ETA). rich estimates the
    ETAs from the recent rate; the sweep row advances by fractions of a run, so its ETA
    moves while a run trains."""

    def __init__(self, title: str, total_runs: int, done_runs: int, live: bool):
        self.total_runs, self.done_runs = total_runs, done_runs
        self.progress = None
        self._run = None
        if not live:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[count]:>16}"),
            TextColumn("{task.fields[loss]:>12}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=terminal_stream()),
            redirect_stdout=False,  # `_printing_above`
            redirect_stderr=True,
        )
        self._sweep = self.progress.add_task(
            title, total=total_runs, completed=done_runs, count=self.runs(), loss=""
        )

    def runs(self) -> str:
        return f"{self.done_runs}/{self.total_runs} runs"

    def start_run(self, label: str, step: int, total: int) -> None:
        if self.progress is None:
            return
        if self._run is not None:
            self.progress.remove_task(self._run)
        self._run = self.progress.add_task(
            label, total=total, completed=step, count=f"step {step}/{total}", loss=""
        )

    def step(self, label: str, step: int, total: int, loss: float) -> None:
        if self._run is None:
            self.start_run(label, step, total)
        self.progress.update(
            self._run, completed=step, count=f"step {step}/{total}", loss=f"loss {loss:.4f}"
        )
        self.progress.update(self._sweep, completed=self.done_runs + step / max(total, 1))

    def finish_run(self) -> None:
        self.set_done(self.done_runs + 1)
        if self._run is not None:
            self.progress.remove_task(self._run)
            self._run = None

    def set_done(self, done: int) -> None:
        self.done_runs = done
        if self.progress is not None:
            self.progress.update(self._sweep, completed=done, count=self.runs())
