"""Background publishing of exported checkpoints: never stalls training on the network.

`submit(export_dir)` persists a queue entry (`run_dir/publish/queue/<step>.json`, written
atomically) and returns; a worker thread publishes entries in order with bounded
exponential backoff, verifies the remote files against the local sha256s, updates the
manifest on `main`, promotes the final step to `main`, and only then deletes the entry.
A crash leaves the entries on disk: a new `Publisher` on the same run dir (a restarted run,
or `suite publish RUN_DIR`) picks them up. Publishing is idempotent, so an entry that was
half-done — or fully done but not yet deleted — costs one comparison, not a duplicate.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from data_order.atomic import write_text
from suite.errors import ConfigError, SuiteError
from suite.publish.base import MANIFEST_FILES, Store, check_repo_id
from suite.publish.manifest import Manifest, ManifestEntry, read_manifest, write_manifest
from suite.publish.metadata import read_metadata
from suite.publish.retry import RetryPolicy
from suite.publish.store import open_store, require_store
from suite.rundir import PUBLISH_DIR

if TYPE_CHECKING:  # the suite config depends on suite.publish, never the other way round
    from suite.config import PublishConfig

__all__ = [
    "PUBLISHED_LOG",
    "PUBLISH_DIR",
    "QUEUE_DIR",
    "TARGET_FILE",
    "PublishError",
    "Publisher",
    "QueueEntry",
    "RetryPolicy",
    "pending_entries",
    "publish_pending",
    "read_target",
]

log = logging.getLogger(__name__)

#: Inside the run directory's `PUBLISH_DIR` (whose name `suite.rundir` owns), this module
#: owns the layout: the queue, the publish target and the log of published checkpoints.
QUEUE_DIR = f"{PUBLISH_DIR}/queue"
TARGET_FILE = f"{PUBLISH_DIR}/target.json"
PUBLISHED_LOG = f"{PUBLISH_DIR}/published.jsonl"


class PublishError(SuiteError):
    """Some checkpoints could not be published; their queue entries are kept for a retry."""


@dataclass(frozen=True)
class QueueEntry:
    export_dir: str  #: absolute path of the exported checkpoint folder
    revision: str  #: `step{N}`
    step: int  #: N
    final: bool  #: this checkpoint becomes `main`

    @property
    def file_name(self) -> str:
        return f"{self.step:012d}.json"


_STOP = object()


class Publisher:
    """Publishes a run's exports to `repo` in `store`, in a background thread."""

    def __init__(
        self,
        run_dir: Path,
        store: Store,
        repo: str,
        retry: RetryPolicy | None = None,
        keep_exports: bool = True,
    ):
        self.run_dir = Path(run_dir).absolute()
        self.keep_exports = keep_exports
        self.store = store
        self.repo = check_repo_id(repo)
        self.retry = retry or RetryPolicy()
        self.queue_dir = self.run_dir / QUEUE_DIR
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self._save_target()
        self.published: list[str] = []
        self.failures: dict[str, str] = {}
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._closed = False
        self._repo_ready = False
        self._manifest: Manifest | None = None  #: the store's manifest, once read
        for entry in pending_entries(self.run_dir):  # a previous process's unfinished work
            log.info("resuming publication of %s from %s", entry.revision, entry.export_dir)
            self._queue.put(entry)
        self._thread = threading.Thread(target=self._work, name="suite-publisher", daemon=True)
        self._thread.start()

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

    def _save_target(self) -> None:
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

    # --- trainer-facing API -----------------------------------------------------------

    def submit(self, export_dir: Path) -> None:
        """Queue an export for publishing and return at once."""
        if self._closed:
            raise SuiteError("publisher is closed: submit() after close() loses checkpoints")
        export_dir = Path(export_dir).absolute()
        meta = read_metadata(export_dir)
        entry = QueueEntry(
            str(export_dir), meta["revision"], meta["step"], meta["step"] == meta["total_steps"]
        )
        write_text(self.queue_dir / entry.file_name, json.dumps(entry.__dict__) + "\n")
        self._queue.put(entry)

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with wait, publish everything queued and raise on failures.

        Without wait, the worker stops after the checkpoint in flight and the rest stays in
        the persisted queue for `suite publish RUN_DIR`.
        """
        self._closed = True
        if not wait:
            self._stop.set()
        self._queue.put(_STOP)
        if not wait:
            return
        self._thread.join()
        if self.failures:
            lines = "; ".join(f"{rev}: {why}" for rev, why in sorted(self.failures.items()))
            raise PublishError(
                f"{len(self.failures)} checkpoint(s) not published to {self.repo} "
                f"({self.store.spec}): {lines}. They stay queued in {self.queue_dir}; "
                f"run `suite publish {self.run_dir}` to retry"
            )

    # --- worker -----------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            entry = self._queue.get()
            if entry is _STOP:
                return
            self._publish_with_retries(entry)

    def _publish_with_retries(self, entry: QueueEntry) -> None:
        # Each stage is retried on its own, so a failure while updating the manifest does
        # not redo (or even re-check) the upload; every stage is idempotent.
        folder = Path(entry.export_dir)
        try:
            manifest_entry = ManifestEntry.from_export(folder)
            if manifest_entry.revision != entry.revision:
                raise SuiteError(
                    f"{folder} holds {manifest_entry.revision}, queued as {entry.revision}"
                )
        except SuiteError as err:  # the export itself is damaged: retrying cannot help
            self._fail(entry, str(err))
            return
        started = time.perf_counter()
        stages = [("upload", lambda: self._upload(entry, folder, manifest_entry))]
        if entry.final:
            stages.append(("promote main", lambda: self._promote(entry, folder, manifest_entry)))
        stages.append(("manifest", lambda: self._update_manifest(entry, manifest_entry)))
        changed: list[str] = []
        for stage, action in stages:
            result = self._retrying(entry, stage, action)
            if result is None:
                return
            changed += result
        self._done(entry, changed, time.perf_counter() - started)

    def _retrying(
        self, entry: QueueEntry, stage: str, action: Callable[[], list[str]]
    ) -> list[str] | None:
        """`action()` with bounded exponential backoff; None once it has failed for good."""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return action()
            except Exception as err:  # network, server, verification: all worth a retry
                reason = f"{stage}: {type(err).__name__}: {err}".splitlines()[0]
                if attempt == self.retry.max_attempts:
                    self._fail(entry, f"{reason} (after {attempt} attempts)")
                    return None
                delay = self.retry.delay(attempt)
                log.warning(
                    "publishing %s to %s failed (attempt %d/%d): %s; retrying in %.1fs",
                    entry.revision,
                    self.repo,
                    attempt,
                    self.retry.max_attempts,
                    reason,
                    delay,
                )
                if self._stop.wait(delay):
                    return None  # close(wait=False): the entry stays queued on disk
        return None

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

    def _done(self, entry: QueueEntry, changed: list[str], seconds: float) -> None:
        record = {
            "revision": entry.revision,
            "step": entry.step,
            "repo": self.repo,
            "store": self.store.spec,
            "changed": changed,
            "seconds": round(seconds, 3),
            "time": time.time(),
        }
        with open(self.run_dir / PUBLISHED_LOG, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        (self.queue_dir / entry.file_name).unlink(missing_ok=True)
        if not self.keep_exports:
            # Only after the store verified its copy and the queue entry is gone: a crash in
            # between leaves a stray export, never a queued entry without its files.
            shutil.rmtree(entry.export_dir, ignore_errors=True)
        self.published.append(entry.revision)
        log.info(
            "published %s to %s (%s): %d file(s) transferred, verified, %.2fs",
            entry.revision,
            self.repo,
            self.store.spec,
            len(changed),
            seconds,
        )

    def _fail(self, entry: QueueEntry, reason: str) -> None:
        self.failures[entry.revision] = reason
        log.error("could not publish %s to %s: %s", entry.revision, self.repo, reason)


def pending_entries(run_dir: Path) -> list[QueueEntry]:
    """Queue entries left in a run dir, in step order."""
    queue_dir = Path(run_dir) / QUEUE_DIR
    if not queue_dir.is_dir():
        return []
    entries = []
    for path in sorted(queue_dir.glob("*.json")):
        try:
            entries.append(QueueEntry(**json.loads(path.read_text())))
        except (ValueError, TypeError) as err:
            raise SuiteError(
                f"{path}: unreadable queue entry ({err}); delete it and resubmit"
            ) from None
    return sorted(entries, key=lambda e: e.step)


def read_target(run_dir: Path) -> dict:
    path = Path(run_dir) / TARGET_FILE
    if not path.is_file():
        raise SuiteError(
            f"{run_dir}: no {TARGET_FILE}; this run dir never published anything "
            "(pass a run dir whose trainer created a Publisher)"
        )
    return json.loads(path.read_text())


def publish_pending(
    run_dir: Path, store: Store | None = None, retry: RetryPolicy | None = None
) -> Publisher:
    """Finish publishing a run dir's queued checkpoints (what `suite publish RUN_DIR` does)."""
    target = read_target(run_dir)
    publisher = Publisher(run_dir, store or require_store(target["store"]), target["repo"], retry)
    publisher.close(wait=True)
    return publisher
