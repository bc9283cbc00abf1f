"""Background publishing: never stalls training on the network.

`QueuedPublisher` is the machinery every kind of publication shares; a subclass says what
one entry publishes: `Publisher` (here) an exported checkpoint — its weights revision, the
manifest, `main` for the final step — and `suite.publish.training_state.
TrainingStatePublisher` a full training state. Each kind has its own persistent queue in
the run directory (one JSON file per step, written atomically) and its own log of what it
published; the rules are the same for both:

`submit` persists a queue entry and returns; a worker thread publishes entries oldest first
in stages (each remembered once done, each idempotent), verifies the remote files against
the local sha256s, and only then deletes the entry.

An entry the store refuses for a reason that can pass (`suite.publish.retry.classify`: the
server is down, HTTP 429/503 with `Retry-After`, a 5xx) stays *pending*: its entry records
the failed attempts and the next-attempt time, and the worker moves on to later entries,
coming back to it when its backoff is over, and at once after any other entry went
through. A server's `Retry-After` holds every request to that server from every publisher
of the process (the weights and the training states of a run share one Hub). Only a failure
no retry can fix fails its entry, in one line. At the end (`drain`, `close`) the worker
keeps retrying for at most `RetryPolicy.drain_timeout_s`; what is still pending then stays
queued for `suite publish RUN_DIR` (`suite.publish.pending` sees both kinds together).

A crash leaves the entries on disk: a new publisher on the same run dir (a restarted run,
or `suite publish RUN_DIR`) picks them up and tries them at once. Publishing is idempotent,
so an entry that was half-done — or fully done but not yet deleted — costs one comparison,
not a duplicate.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from data_order.atomic import write_text
from suite.errors import ConfigError, SuiteError
from suite.publish.base import MANIFEST_FILES, Store, check_repo_id
from suite.publish.manifest import Manifest, ManifestEntry, read_manifest, write_manifest
from suite.publish.metadata import read_metadata
from suite.publish.retry import Failure, RetryPolicy, classify
from suite.publish.store import open_store, require_store
from suite.rundir import PUBLISH_DIR, RunDir

if TYPE_CHECKING:  # the suite config depends on suite.publish, never the other way round
    from suite.config import PublishConfig

__all__ = [
    "PUBLISHED_LOG",
    "PUBLISH_DIR",
    "QUEUE_DIR",
    "TARGET_FILE",
    "PublishError",
    "PublishPending",
    "Publisher",
    "QueueEntry",
    "QueuedPublisher",
    "RetryPolicy",
    "describe_pending",
    "finish",
    "pending_entries",
    "pending_revisions",
    "publish_pending",
    "read_queue",
    "read_target",
]

log = logging.getLogger(__name__)

#: Inside the run directory's `PUBLISH_DIR` (whose name `suite.rundir` owns), this module
#: owns the layout of the weights: their queue, the publish target and the log of
#: published checkpoints.
QUEUE_DIR = f"{PUBLISH_DIR}/queue"
TARGET_FILE = f"{PUBLISH_DIR}/target.json"
PUBLISHED_LOG = f"{PUBLISH_DIR}/published.jsonl"

#: Store spec -> monotonic time before which no request goes to it (the largest
#: `Retry-After` a server gave any publisher of this process).
_server_holds: dict[str, float] = {}
_server_holds_lock = threading.Lock()


def _held_until(spec: str) -> float:
    with _server_holds_lock:
        return _server_holds.get(spec, 0.0)


def _hold(spec: str, until: float) -> None:
    with _server_holds_lock:
        _server_holds[spec] = max(until, _server_holds.get(spec, 0.0))


class PublishError(SuiteError):
    """Some entries could not be published; their queue entries are kept for a retry."""


class PublishPending(PublishError):
    """The store still refused some entries when the wait was over (the Hub down, rate
    limits); they stay queued and `suite publish RUN_DIR` finishes them later."""


@dataclass(frozen=True)
class QueueEntry:
    export_dir: str  #: absolute path of the exported checkpoint folder
    revision: str  #: `step{N}`
    step: int  #: N
    final: bool  #: this checkpoint becomes `main`
    attempts: int = 0  #: failed attempts so far (over every process that tried)
    next_attempt_at: float | None = None  #: unix time of the next attempt (None: at once)
    last_error: str | None = None  #: one line: why the last attempt failed

    @property
    def file_name(self) -> str:
        return f"{self.step:012d}.json"

    @property
    def revisions(self) -> tuple[str, ...]:
        """The branches this entry publishes: its step, and `main` for the final step."""
        return (self.revision, "main") if self.final else (self.revision,)


def pending_revisions(entries: list) -> list[str]:
    """`step4, step8, main`: every branch the entries still owe the store, in step order."""
    ordered = sorted(entries, key=lambda e: e.step)
    return [revision for entry in ordered for revision in entry.revisions]


def describe_pending(owed: list[tuple[str, list[str]]]) -> str:
    """`5 revision(s) still pending (step0, …, main), 1 training state(s) still pending
    (step4)` from (noun, revisions) pairs; kinds that owe nothing are left out."""
    return ", ".join(
        f"{len(revisions)} {noun}(s) still pending ({', '.join(revisions)})"
        for noun, revisions in owed
        if revisions
    )


def read_queue(queue_dir: Path, entry_type: type, what: str = "queue entry") -> list:
    """The entries persisted in `queue_dir` (`entry_type` from each JSON file), step order."""
    if not queue_dir.is_dir():
        return []
    entries = []
    for path in sorted(queue_dir.glob("*.json")):
        try:
            entries.append(entry_type(**json.loads(path.read_text())))
        except (ValueError, TypeError) as err:
            raise SuiteError(f"{path}: unreadable {what} ({err}); delete it and resubmit") from None
    return sorted(entries, key=lambda e: e.step)


#: One stage of publishing an entry: its name (in errors) and the action, which returns the
#: paths it transferred.
Stage = tuple[str, Callable[[], list[str]]]


@dataclass
class _Work:
    """An entry the worker still has to publish, with what this process knows about it."""

    entry: Any  #: the kind's queue entry (`QueueEntry`, `StateEntry`)
    due: float  #: monotonic time of the next attempt
    failures: int = 0  #: failed attempts in this process (the backoff's exponent)
    done: set[str] = field(default_factory=set)  #: stages already done (no need to redo)
    changed: list[str] = field(default_factory=list)  #: files those stages transferred
    seconds: float = 0.0  #: time spent in attempts


class QueuedPublisher(ABC):
    """A persistent queue of entries published to `repo` in `store` by a background thread.

    A subclass names its kind (class attributes below), builds entries in its own `submit`
    (then `_enqueue`), and says how one entry is published (`_stages`) and what to clean up
    once it is (`_published`).
    """

    noun: ClassVar[str] = "checkpoint"
    """What one entry is, in messages."""
    pending_noun: ClassVar[str] = "revision"
    """What `pending_revisions` counts, in the end-of-run line (`describe_pending`)."""
    queue_subdir: ClassVar[str] = QUEUE_DIR
    """The queue's folder inside the run directory."""
    published_log: ClassVar[str] = PUBLISHED_LOG
    """One JSON line per published entry, inside the run directory."""
    entry_type: ClassVar[type] = QueueEntry
    record_field: ClassVar[str] = "publish_pending"
    """run.json: `{record_field}` (count) and `{record_field}_revisions` (the branches)."""

    def __init__(self, run_dir: Path, store: Store, repo: str, retry: RetryPolicy | None = None):
        self.run_dir = Path(run_dir).absolute()
        self.store = store
        self.repo = check_repo_id(repo)
        self.retry = retry or RetryPolicy()
        self.queue_dir = self.run_dir / self.queue_subdir
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self._check_target()
        self.published: list[str] = []
        self.failures: dict[str, str] = {}  #: revision -> why it failed for good
        self._cond = threading.Condition()  #: guards everything below; wakes the worker
        self._waiting: dict[int, _Work] = {}  #: step -> entry not yet published or failed
        self._drain_until: float | None = None  #: monotonic: set by drain()
        self._stop = threading.Event()
        self._closed = False
        for entry in self.queued(self.run_dir):  # a previous process's unfinished work
            log.info("resuming publication of %s %s", self.noun, entry.revision)
            self._waiting[entry.step] = _Work(entry, due=time.monotonic())
        self._thread = threading.Thread(
            target=self._work, name=f"suite-publish-{self.noun.replace(' ', '-')}", daemon=True
        )
        self._thread.start()

    # --- what a kind defines ----------------------------------------------------------

    @abstractmethod
    def _check_target(self) -> None:
        """Refuse (ConfigError) a run directory whose queue publishes elsewhere (another
        store or repo), before any work starts."""

    @abstractmethod
    def _stages(self, work: _Work) -> list[Stage]:
        """How `work.entry` is published; SuiteError when it cannot be (no retry helps)."""

    @abstractmethod
    def _published(self, entry) -> None:
        """After the entry is published, logged and deleted from the queue: local cleanup."""

    # --- the queue on disk ------------------------------------------------------------

    @classmethod
    def queued(cls, run_dir: Path) -> list:
        """This kind's entries left in a run dir (pending or failed), in step order."""
        return read_queue(Path(run_dir) / cls.queue_subdir, cls.entry_type, f"{cls.noun} entry")

    @classmethod
    def record(cls, revisions: list[str]) -> dict:
        """run.json's fields for the branches this kind still owes the store."""
        return {cls.record_field: len(revisions), f"{cls.record_field}_revisions": revisions}

    @classmethod
    def pending_fields(cls, run_dir: Path) -> dict:
        """`record` of what the run dir's queue of this kind holds."""
        return cls.record(pending_revisions(cls.queued(run_dir)))

    def _persist(self, entry) -> None:
        write_text(self.queue_dir / entry.file_name, json.dumps(asdict(entry)) + "\n")

    def _enqueue(self, entry) -> None:
        """Persist `entry` and hand it to the worker (the subclass's `submit` ends here)."""
        self._check_open()
        self._persist(entry)
        with self._cond:
            self._waiting[entry.step] = _Work(entry, due=time.monotonic())
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise SuiteError(
                f"{self.noun} publisher is closed: submit() after close() loses {self.noun}s"
            )

    # --- the end ----------------------------------------------------------------------

    @property
    def pending(self) -> list:
        """Entries not published yet that may still be (failed ones excluded), step order."""
        with self._cond:
            return sorted((w.entry for w in self._waiting.values()), key=lambda e: e.step)

    def drain(self) -> None:
        """Stop accepting work and keep retrying what is queued for at most
        `retry.drain_timeout_s` from the first call; returns at once (`close` waits).

        Lets two publishers drain side by side (a run's weights and training states)."""
        with self._cond:
            self._closed = True
            if self._drain_until is None:
                self._drain_until = time.monotonic() + self.retry.drain_timeout_s
            self._cond.notify_all()

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with wait, publish what is queued and raise on failures.

        With wait, pending entries are retried until the drain ends (`drain`); those the
        store still refuses then stay queued (`pending` names them) and close returns
        normally. It raises `PublishError` only for entries that failed for good. Without
        wait, the worker stops after the attempt in flight and everything else stays in the
        persisted queue for `suite publish RUN_DIR`.
        """
        if not wait:
            with self._cond:
                self._closed = True
                self._stop.set()
                self._cond.notify_all()
            return
        self.drain()
        self._thread.join()
        if self.failures:
            lines = "; ".join(f"{rev}: {why}" for rev, why in sorted(self.failures.items()))
            pending = pending_revisions(self.pending)
            also = f"; still pending: {', '.join(pending)}" if pending else ""
            raise PublishError(
                f"{len(self.failures)} {self.noun}(s) not published to {self.repo} "
                f"({self.store.spec}): {lines}{also}. They stay queued in {self.queue_dir}; "
                f"fix the cause, then run `suite publish {self.run_dir}`"
            )

    # --- worker -----------------------------------------------------------------------

    def _work(self) -> None:
        while (work := self._next_due()) is not None:
            self._attempt(work)

    def _next_due(self) -> _Work | None:
        """The oldest entry whose wait is over; blocks until there is one, or None when the
        worker should stop (close without wait, or a drain that is done or out of time)."""
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                candidates = list(self._waiting.values())
                if not candidates:
                    if self._drain_until is not None:
                        return None
                    self._cond.wait()
                    continue
                # Re-read on every wake-up: another publisher may have been told to wait.
                start = max(_held_until(self.store.spec), min(w.due for w in candidates))
                if self._drain_until is not None and start > self._drain_until:
                    return None  # nothing can be tried before the drain ends: leave it pending
                if start <= now:
                    return min((w for w in candidates if w.due <= now), key=lambda w: w.entry.step)
                self._cond.wait(start - now)
            return None

    def _attempt(self, work: _Work) -> None:
        try:
            stages = self._stages(work)
        except SuiteError as err:  # the entry's files are missing or damaged: no retry helps
            self._fail(work, str(err))
            return
        # Each stage is remembered once done, so a failure in a later stage does not redo
        # (or even re-check) an upload at the next attempt; every stage is idempotent
        # anyway, for attempts by another process.
        started = time.perf_counter()
        for stage, action in stages:
            if stage in work.done:
                continue
            try:
                work.changed += action()
            except Exception as err:  # classified: retry later, or fail for good
                work.seconds += time.perf_counter() - started
                failure = classify(err, stage)
                if failure.retryable:
                    self._defer(work, failure)
                else:
                    self._fail(work, failure.reason)
                return
            work.done.add(stage)
        work.seconds += time.perf_counter() - started
        self._done(work)

    def _defer(self, work: _Work, failure: Failure) -> None:
        """The store refused for now: the entry stays pending with its next-attempt time."""
        work.failures += 1
        delay = self.retry.delay(work.failures, failure.retry_after)
        now = time.monotonic()
        entry = replace(
            work.entry,
            attempts=work.entry.attempts + 1,
            next_attempt_at=time.time() + delay,
            last_error=failure.reason,
        )
        self._persist(entry)
        if failure.retry_after is not None:  # the server's wait holds every request to it
            _hold(self.store.spec, now + delay)
        with self._cond:
            work.entry, work.due = entry, now + delay
        log.warning(
            "publishing %s %s to %s failed (attempt %d): %s; still pending, retrying in %.1fs%s",
            self.noun,
            entry.revision,
            self.repo,
            entry.attempts,
            failure.reason,
            delay,
            " (the server's Retry-After)" if failure.retry_after is not None else "",
        )

    def _done(self, work: _Work) -> None:
        entry = work.entry
        record = {
            "revision": entry.revision,
            "step": entry.step,
            "repo": self.repo,
            "store": self.store.spec,
            "changed": work.changed,
            "seconds": round(work.seconds, 3),
            "attempts": entry.attempts + 1,
            "time": time.time(),
        }
        with open(self.run_dir / self.published_log, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        (self.queue_dir / entry.file_name).unlink(missing_ok=True)
        # Only after the store verified its copy and the entry is gone: a crash in between
        # leaves stray local files, never a queued entry without its files.
        self._published(entry)
        with self._cond:
            self.published.append(entry.revision)
            self._waiting.pop(entry.step, None)
            now = time.monotonic()
            for other in self._waiting.values():  # the store answers again: retry them now
                other.due = min(other.due, now)
        log.info(
            "published %s %s to %s (%s): %d file(s) transferred, verified, %.2fs",
            self.noun,
            entry.revision,
            self.repo,
            self.store.spec,
            len(work.changed),
            work.seconds,
        )

    def _fail(self, work: _Work, reason: str) -> None:
        """Failed for good (retrying cannot help); the entry stays on disk for
        `suite publish` once the cause is fixed."""
        with self._cond:
            self.failures[work.entry.revision] = reason
            self._waiting.pop(work.entry.step, None)
        log.error(
            "could not publish %s %s to %s: %s", self.noun, work.entry.revision, self.repo, reason
        )


class Publisher(QueuedPublisher):
    """Publishes a run's exports to `repo` in `store`, in a background thread: per entry the
    weights revision, `main` for the final step, and the manifest on `main`."""

    def __init__(
        self,
        run_dir: Path,
        store: Store,
        repo: str,
        retry: RetryPolicy | None = None,
        keep_exports: bool = True,
    ):
        self.keep_exports = keep_exports
        self._repo_ready = False
        self._manifest: Manifest | None = None  #: the store's manifest, once read
        super().__init__(run_dir, store, repo, retry)

    @classmethod
    def for_run(
        cls,
        publish_cfg: PublishConfig,
        run_dir: Path,
        repo_id: str,
        token: str | None = None,
    ) -> Publisher | None:
        """The publisher of one run as the suite config says, None for `publish.store=none`.

        Opens `publish_cfg.store` (with `token` for the Hub; None: huggingface_hub's own
        lookup), retries with `publish_cfg.retry_policy()`, and honours
        `publish_cfg.keep_exports`. Call `.submit(export_dir)` per checkpoint and `.close()`
        at the end. Starts the worker thread, and picks up entries a previous process left
        queued in `run_dir`.
        """
        store = open_store(publish_cfg.store, token=token)
        if store is None:
            return None
        return cls(
            run_dir,
            store,
            repo_id,
            publish_cfg.retry_policy(),
            keep_exports=publish_cfg.keep_exports,
        )

    def _check_target(self) -> None:
        target = {"store": self.store.spec, "repo": self.repo}
        path = self.run_dir / TARGET_FILE
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != target:
                raise ConfigError(
                    "publish target",
                    target,
                    f"{path} says this run publishes to {saved}; use the same store and repo "
                    "or delete that file to retarget the run",
                )
            return
        write_text(path, json.dumps(target, indent=2) + "\n")

    def submit(self, export_dir: Path) -> None:
        """Queue an export for publishing and return at once."""
        self._check_open()
        export_dir = Path(export_dir).absolute()
        meta = read_metadata(export_dir)
        self._enqueue(
            QueueEntry(
                str(export_dir),
                meta["revision"],
                meta["step"],
                meta["step"] == meta["total_steps"],
            )
        )

    def _stages(self, work: _Work) -> list[Stage]:
        entry = work.entry
        folder = Path(entry.export_dir)
        manifest_entry = ManifestEntry.from_export(folder)  # SuiteError: missing or damaged
        if manifest_entry.revision != entry.revision:
            raise SuiteError(
                f"{folder} holds {manifest_entry.revision}, queued as {entry.revision}"
            )
        stages: list[Stage] = [("upload", lambda: self._upload(entry, folder, manifest_entry))]
        if entry.final:
            stages.append(("promote main", lambda: self._promote(entry, folder, manifest_entry)))
        stages.append(("manifest", lambda: self._update_manifest(entry, manifest_entry)))
        return stages

    def _published(self, entry: QueueEntry) -> None:
        if not self.keep_exports:
            shutil.rmtree(entry.export_dir, ignore_errors=True)

    def _upload(self, entry: QueueEntry, folder: Path, manifest_entry: ManifestEntry) -> list[str]:
        if not self._repo_ready:
            self.store.ensure_repo(self.repo)
            self._repo_ready = True
        return self.store.publish_verified(
            self.repo, entry.revision, folder, digests=manifest_entry.files
        )

    def _promote(self, entry: QueueEntry, folder: Path, manifest_entry: ManifestEntry) -> list[str]:
        # main moves: the manifest in memory no longer names its head, so read it again.
        self._manifest = None
        return self.store.promote_main(
            self.repo, entry.revision, folder, digests=manifest_entry.files
        )

    def _update_manifest(self, entry: QueueEntry, manifest_entry: ManifestEntry) -> list[str]:
        # Kept in memory between checkpoints (read once, written per checkpoint); the write
        # names the head it was read from, so a manifest someone else wrote since is never
        # overwritten: the write fails, the cache is dropped and the retry reads it afresh.
        if self._manifest is None:
            self._manifest = read_manifest(self.store, self.repo) or Manifest(self.repo)
        manifest = self._manifest
        up_to_date = manifest.entries.get(entry.revision) == manifest_entry and (
            not entry.final or manifest.final_revision == entry.revision
        )
        if up_to_date:
            return []
        manifest.add(manifest_entry)
        if entry.final:
            manifest.final_revision = entry.revision
        try:
            write_manifest(self.store, self.repo, manifest)
        except Exception:
            self._manifest = None
            raise
        return list(MANIFEST_FILES)


def pending_entries(run_dir: Path) -> list[QueueEntry]:
    """Checkpoint queue entries left in a run dir, in step order."""
    return Publisher.queued(run_dir)


def read_target(run_dir: Path) -> dict:
    path = Path(run_dir) / TARGET_FILE
    if not path.is_file():
        raise SuiteError(
            f"{run_dir}: no {TARGET_FILE}; this run dir never published anything "
            "(pass a run dir whose trainer created a Publisher)"
        )
    return json.loads(path.read_text())


def finish(run_dir: Path, publishers: list[QueuedPublisher]) -> None:
    """Drain `publishers` side by side, record in run.json what each kind still owes, and
    raise when something is left (what `suite publish RUN_DIR` does, for any kinds).

    Raises `PublishError` (one line) for entries that failed for good, else
    `PublishPending` (one line, the queues kept) for entries the store still refused after
    `retry.drain_timeout_s`. A run dir without `run.json` (a bare publish dir) gets no record.
    """
    run_dir = Path(run_dir).absolute()
    for publisher in publishers:
        publisher.drain()
    errors = []
    try:
        for publisher in publishers:
            try:
                publisher.close(wait=True)
            except PublishError as err:
                errors.append(str(err))
    finally:
        record = RunDir(run_dir)
        if record.state_file.is_file():
            fields: dict = {}
            for kind in {type(p) for p in publishers}:
                fields |= kind.pending_fields(run_dir)
            record.update(**fields)
    if errors:
        raise PublishError(" Also: ".join(errors))
    owing = [p for p in publishers if p.pending]
    if owing:
        owed = describe_pending([(p.pending_noun, pending_revisions(p.pending)) for p in owing])
        last = owing[-1]
        why = last.pending[-1].last_error or "not tried before the wait was over"
        raise PublishPending(
            f"{owed} after {last.retry.drain_timeout_s:g}s: {why}; the queue is kept, run "
            f"`suite publish {run_dir}` again once {last.store.spec} answers"
        )


def publish_pending(
    run_dir: Path, store: Store | None = None, retry: RetryPolicy | None = None
) -> Publisher:
    """Finish publishing a run dir's queued checkpoints (`finish` with their publisher; a
    run's training states too: `suite.publish.pending.finish_pending`)."""
    target = read_target(run_dir)
    publisher = Publisher(run_dir, store or require_store(target["store"]), target["repo"], retry)
    finish(run_dir, [publisher])
    return publisher
