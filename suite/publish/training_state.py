"""Full training states on a second store tier: publish them, find them, verify them.

A *training state* is a complete resume checkpoint (`suite.train.resume`): DeepSpeed's model
and optimizer shards (fp32 master weights, Adam moments, the fp16 loss scaler), every rank's
RNG state and its file records, plus `training_state.json` naming the step, the data
position (batches consumed and their running hash), the parallel layout and ZeRO stage, the
run identity, the config hash and the sha256 of every file. It continues training exactly
(`suite train init_from=REPO@stepN`) or lets one study the optimizer.

Where: a sibling repo `{repo}-training-state` of the weights repo, one `step{N}` branch per
published state, in the run's own store. A sibling rather than extra files in the weights
revision, so `from_pretrained` / `snapshot_download` of `{repo}@step{N}` never downloads the
optimizer state (three times the weights for Adam in 16-bit training).

Publishing (`TrainingStatePublisher`, rank 0) is the weights publisher's machinery
(`suite.publish.publisher.QueuedPublisher`) with another kind of entry: `submit` hard-links
the just-saved resume checkpoint folder into `run_dir/training_state/step{N}` (metadata
only: the resume folder may be pruned later, the links keep the bytes) and persists a queue
entry (`run_dir/publish/training-state/{step}.json`) holding the store, the repo and the
fields of `training_state.json`; the worker hashes the files and writes
`training_state.json` (stage "hash"), publishes the folder with `Store.publish_verified`
(stage "upload": the store's listing checked against the sha256s), logs it, and only then
deletes the entry and the staged links. The same rules as for the weights: a store that
refuses for now (down, 429/503 with `Retry-After`, 5xx) leaves the state *pending*, retried
until the end-of-run drain is over and then finished by `suite publish RUN_DIR`
(`suite.publish.pending`, both kinds); a crash leaves the entry for the run's next start;
publishing is idempotent.

Continuing: `parse_init_from` reads `[STORE/]ORG/NAME@stepN`; `read_state_document` reads
the small `training_state.json` only (for identity checks); `fetch_training_state` downloads
the revision and checks every file against its sha256 before anything loads it.

Module-level imports are the standard library and light suite modules only (`suite.config`
validates `init_from` with `parse_init_from`), no HTTP client; stores are opened inside
functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from data_order.atomic import atomic_directory, write_json
from suite.errors import ConfigError, SuiteError
from suite.publish.metadata import FileDigest, digest_file, digest_folder, revision_for_step
from suite.publish.publisher import QueuedPublisher, Stage
from suite.publish.spec import absolute_store_spec, check_repo_id, parse_store_spec
from suite.rundir import PUBLISH_DIR, TRAINING_STATE_DIR

if TYPE_CHECKING:
    from suite.publish.base import Store
    from suite.publish.retry import RetryPolicy

__all__ = [
    "STATE_QUEUE_DIR",
    "TRAINING_STATE_FILE",
    "FetchedState",
    "InitFrom",
    "TrainingStatePublisher",
    "fetch_training_state",
    "parse_init_from",
    "pending_states",
    "read_state_document",
    "training_state_repo",
    "verify_state_folder",
]

log = logging.getLogger(__name__)

#: The metadata file of a published training state.
TRAINING_STATE_FILE = "training_state.json"
#: Bumped when the layout of `training_state.json` changes incompatibly.
TRAINING_STATE_FORMAT = 1
#: Inside the run directory's `PUBLISH_DIR`: queued training states, and the log of
#: published ones (this module owns both names; the weights publisher owns the rest).
STATE_QUEUE_DIR = f"{PUBLISH_DIR}/training-state"
STATE_PUBLISHED_LOG = f"{PUBLISH_DIR}/training-state.jsonl"

_INIT_FROM = re.compile(r"^(?P<where>.+)@step(?P<step>0|[1-9][0-9]*)$")
_INIT_FROM_FIX = (
    "use [STORE/]ORG/NAME@stepN: local:/path/to/store/ORG/NAME@step1000, hub:ORG/NAME@step1000, "
    "hub:https://endpoint/ORG/NAME@step1000, or ORG/NAME@step1000 (in publish.store)"
)


def training_state_repo(repo: str) -> str:
    """The repo holding the training states of the weights repo `repo`."""
    return f"{check_repo_id(repo)}-training-state"


@dataclass(frozen=True)
class InitFrom:
    """A published training state to continue from: store spec, weights repo, step."""

    store: str
    """Absolute store spec (`local:/abs/path`, `hub`, `hub:https://…`)."""
    repo: str
    """The *weights* repo (`ORG/NAME`), as `suite pull` names it."""
    step: int

    @property
    def revision(self) -> str:
        return revision_for_step(self.step)

    @property
    def state_repo(self) -> str:
        return training_state_repo(self.repo)

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision} ({self.store})"


def parse_init_from(text: str, default_store: str) -> InitFrom:
    """`[STORE/]ORG/NAME@stepN` → InitFrom; ConfigError naming `init_from` otherwise.

    Like a Hub URL, the repo is the last two path components after the store:
    `local:/data/store/local/mini-160k@step4` is repo `local/mini-160k` in store
    `local:/data/store`; `hub:org/run@step4` is the Hub at HF_ENDPOINT; without a store
    prefix the repo is in `default_store` (the run's `publish.store`).
    """
    match = _INIT_FROM.match(str(text))
    if not match:
        raise ConfigError("init_from", text, _INIT_FROM_FIX)
    where, step = match["where"], int(match["step"])
    if where.startswith("local:"):
        root, org, name = _split_repo(where.removeprefix("local:"), text)
        store = f"local:{root}"
    elif where.startswith("hub:"):
        rest = where.removeprefix("hub:")
        if "://" in rest:
            scheme, _, tail = rest.partition("://")
            host, org, name = _split_repo(tail, text)
            store = f"hub:{scheme}://{host}"
        else:
            store, (org, name) = "hub", _two_parts(rest, text)
    else:
        store, (org, name) = default_store, _two_parts(where, text)
    try:
        parse_store_spec(store, "init_from")
        check_repo_id(f"{org}/{name}", "init_from")
    except ConfigError:
        raise ConfigError("init_from", text, _INIT_FROM_FIX) from None
    return InitFrom(absolute_store_spec(store), f"{org}/{name}", step)


def _split_repo(path: str, text: str) -> tuple[str, str, str]:
    parts = path.rstrip("/").rsplit("/", 2)
    if len(parts) != 3 or not parts[0]:
        raise ConfigError("init_from", text, _INIT_FROM_FIX)
    return parts[0], parts[1], parts[2]


def _two_parts(repo: str, text: str) -> tuple[str, str]:
    parts = repo.split("/")
    if len(parts) != 2:
        raise ConfigError("init_from", text, _INIT_FROM_FIX)
    return parts[0], parts[1]


# --- publishing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StateEntry:
    """A queued training state (persisted as JSON in `STATE_QUEUE_DIR`)."""

    step: int
    folder: str
    """Absolute path of the staged folder (hard links to the resume checkpoint's files)."""
    store: str
    repo: str
    """The training-state repo (`{weights repo}-training-state`)."""
    document: dict
    """`training_state.json` without its `files` (added once they are hashed)."""
    attempts: int = 0
    """Failed attempts so far (over every process that tried)."""
    next_attempt_at: float | None = None
    """Unix time of the next attempt (None: at once)."""
    last_error: str | None = None
    """One line: why the last attempt failed."""

    @property
    def file_name(self) -> str:
        return f"{self.step:012d}.json"

    @property
    def revision(self) -> str:
        return revision_for_step(self.step)

    @property
    def revisions(self) -> tuple[str, ...]:
        return (self.revision,)


class TrainingStatePublisher(QueuedPublisher):
    """Publishes a run's training states to `{repo}-training-state` in a background thread,
    with the weights publisher's queue, retry and pending rules (`QueuedPublisher`)."""

    noun = "training state"
    pending_noun = "training state"
    queue_subdir = STATE_QUEUE_DIR
    published_log = STATE_PUBLISHED_LOG
    entry_type = StateEntry
    record_field = "training_state_pending"

    def __init__(
        self, run_dir: Path, store: Store, weights_repo: str, retry: RetryPolicy | None = None
    ):
        self._digests: dict[int, dict[str, FileDigest]] = {}  #: step -> hashed files
        super().__init__(run_dir, store, training_state_repo(weights_repo), retry)

    def _check_target(self) -> None:
        # Each entry names its store and repo: never publish one somewhere else.
        for entry in self.queued(self.run_dir):
            if (entry.store, entry.repo) != (self.store.spec, self.repo):
                raise ConfigError(
                    "publish target",
                    {"store": self.store.spec, "repo": self.repo},
                    f"{self.queue_dir / entry.file_name} publishes to {entry.repo} in "
                    f"{entry.store}; use that store and repo, or delete the entry",
                )

    def submit(self, checkpoint: Path, step: int, document: dict) -> Path:
        """Stage the resume checkpoint folder of `step` and queue it; returns at once.

        Cheap in the training loop: hard links (a copy across file systems), one fsync of
        the staged folder and one small queue file; hashing and uploading happen in the
        worker. `document`: the fields of `training_state.json` except `files`. Sharing
        inodes is safe because checkpoint files are never rewritten in place (a tag is
        saved again only after its folder was deleted), and the upload is verified against
        the digests of the staged files.
        """
        self._check_open()
        staged = self.run_dir / TRAINING_STATE_DIR / revision_for_step(step)
        with atomic_directory(staged) as tmp:
            for source in sorted(p for p in Path(checkpoint).rglob("*") if p.is_file()):
                target = tmp / source.relative_to(checkpoint)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except OSError:  # another file system: copy instead
                    shutil.copyfile(source, target)
        with self._cond:
            self._digests.pop(step, None)  # staged again: hash again
        self._enqueue(StateEntry(step, str(staged), self.store.spec, self.repo, dict(document)))
        return staged

    def knows(self, step: int) -> bool:
        """The state of `step` is queued, or was published by this run directory."""
        if (self.queue_dir / StateEntry(step, "", "", "", {}).file_name).exists():
            return True
        log_file = self.run_dir / STATE_PUBLISHED_LOG
        lines = log_file.read_text().splitlines() if log_file.is_file() else []
        revision = revision_for_step(step)
        return any(_revision_of(line) == revision for line in lines)

    def _stages(self, work) -> list[Stage]:
        entry: StateEntry = work.entry
        folder = Path(entry.folder)
        if not folder.is_dir():
            raise SuiteError(
                f"staged folder {folder} is missing, so the state cannot be published; "
                f"delete {self.queue_dir / entry.file_name}"
            )
        return [
            ("hash", lambda: self._hash(entry, folder)),
            ("upload", lambda: self._upload(entry, folder)),
        ]

    def _hash(self, entry: StateEntry, folder: Path) -> list[str]:
        """`training_state.json` with the sha256 of every staged file (once per process:
        the digests are kept for the upload's retries)."""
        # Hashed here, in the background: the files were fsynced by the resume save and are
        # never modified in place, so the digests are those of the saved checkpoint.
        digests = digest_folder(folder, exclude=(TRAINING_STATE_FILE,))
        document = entry.document | {
            "format": TRAINING_STATE_FORMAT,
            "files": {p: {"sha256": d.sha256, "size": d.size} for p, d in digests.items()},
        }
        write_json(folder / TRAINING_STATE_FILE, document)
        digests[TRAINING_STATE_FILE] = digest_file(folder / TRAINING_STATE_FILE)
        with self._cond:
            self._digests[entry.step] = digests
        return []

    def _upload(self, entry: StateEntry, folder: Path) -> list[str]:
        with self._cond:
            digests = self._digests[entry.step]
        self.store.ensure_repo(entry.repo)
        return self.store.publish_verified(entry.repo, entry.revision, folder, digests=digests)

    def _published(self, entry: StateEntry) -> None:
        with self._cond:
            self._digests.pop(entry.step, None)
        shutil.rmtree(entry.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # other states still staged: keep the folder
            Path(entry.folder).parent.rmdir()


def _revision_of(line: str) -> str | None:
    try:
        return json.loads(line).get("revision")
    except (ValueError, AttributeError):
        return None  # a line cut by a crash


def pending_states(run_dir: Path) -> list[StateEntry]:
    """Training states left queued in a run directory, in step order."""
    return TrainingStatePublisher.queued(run_dir)


# --- continuing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedState:
    """A downloaded, verified training state."""

    folder: Path
    """Local folder of the revision (DeepSpeed's checkpoint files + `training_state.json`)."""
    document: dict
    """`training_state.json`."""


def _open(source: InitFrom):
    from suite.publish.store import require_store

    return require_store(source.store, option="init_from")


def read_state_document(source: InitFrom) -> tuple[dict, str, str | None]:
    """(`training_state.json`, its sha256, the revision's commit id or None) without
    downloading the state itself. One line naming what is missing otherwise."""
    from suite.publish.base import RepoNotFound, RevisionNotFound

    store = _open(source)
    try:
        head = store.head(source.state_repo, source.revision)
        data = store.read_file(source.state_repo, head or source.revision, TRAINING_STATE_FILE)
    except RepoNotFound:
        raise SuiteError(
            f"init_from: {source.store} has no training states of {source.repo} (no repo "
            f"{source.state_repo}); the source run publishes them with "
            f"publish.training_state=[{source.step}]"
        ) from None
    except RevisionNotFound:
        steps = sorted(store.list_revisions(source.state_repo))
        raise SuiteError(
            f"init_from: {source.state_repo} ({source.store}) has no {source.revision}; "
            f"published training states: {', '.join(steps) or 'none'}"
        ) from None
    if data is None:
        raise SuiteError(
            f"init_from: {source.state_repo}@{source.revision} has no {TRAINING_STATE_FILE}; "
            "it was not published by suite (or is incomplete): choose another step"
        )
    try:
        document = json.loads(data)
        files = document["files"]
        int(document["step"])
    except (ValueError, KeyError, TypeError):
        raise SuiteError(
            f"init_from: {source.state_repo}@{source.revision}: {TRAINING_STATE_FILE} is "
            "unreadable; re-publish the state from the source run or choose another step"
        ) from None
    if document["step"] != source.step or not isinstance(files, dict):
        raise SuiteError(
            f"init_from: {source.state_repo}@{source.revision} holds the state of step "
            f"{document['step']}; re-publish it from the source run"
        )
    return document, hashlib.sha256(data).hexdigest(), head


def verify_state_folder(folder: Path, document: dict) -> None:
    """Every file `document` lists is in `folder` with its sha256 and size, and no other
    file is (a damaged state must never be loaded: it would continue a different run)."""
    want = document["files"]
    have = digest_folder(Path(folder), exclude=(TRAINING_STATE_FILE, ".gitattributes"))
    problems = []
    for path, digest in sorted(want.items()):
        got: FileDigest | None = have.get(path)
        if got is None:
            problems.append(f"{path} missing")
        elif got.sha256 != digest["sha256"] or got.size != digest["size"]:
            problems.append(f"{path} differs from its sha256 in {TRAINING_STATE_FILE}")
    problems += [f"{path} is not listed" for path in sorted(set(have) - set(want))]
    if problems:
        raise SuiteError(
            f"init_from: training state {folder} is damaged ({'; '.join(problems)}); "
            "re-publish it from the source run (`suite publish RUN_DIR`) or choose another step"
        )


def fetch_training_state(source: InitFrom, sha256: str) -> FetchedState:
    """Download the training state and verify every file; `sha256`: that of the
    `training_state.json` the run identity recorded (the state loaded is the one named)."""
    store = _open(source)
    folder = Path(store.download(source.state_repo, source.revision))
    data = (folder / TRAINING_STATE_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SuiteError(
            f"init_from: {source.state_repo}@{source.revision} changed while it was being "
            "read (re-published?); start the run again"
        )
    document = json.loads(data)
    verify_state_folder(folder, document)
    return FetchedState(folder, document)
