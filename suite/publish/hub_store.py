"""The Hugging Face Hub (or a self-hosted mirror) as a store, through `huggingface_hub`.

One repo per run, one branch per checkpoint (`step{N}`), `main` = the final step plus the
run's manifest. The token is handed to `HfApi` and nothing else: it is not part of `spec`,
`repr`, log lines, metadata or saved configs.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile

try:  # the HTTP client package the installed huggingface_hub is built on
    from httpx2 import TransportError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import TransportError

from suite.errors import SuiteError
from suite.publish.base import (
    STORE_OWNED_FILES,
    RemoteFile,
    RepoNotFound,
    RevisionNotFound,
    Store,
    check_repo_id,
)
from suite.publish.metadata import FileDigest, digest_folder

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")


class StoreUnreachable(SuiteError):
    """The store's server cannot be reached (refused, timed out, DNS, offline mode).

    Not a user error: the CLI exits 1 with this one line. The publisher keeps the checkpoint
    pending and retries it (`retryable`, read by `suite.publish.retry.classify`); the queue
    stays on disk for `suite publish`.
    """

    retryable = True


def _unreachable_reason(err: BaseException) -> str | None:
    """Why the server could not be reached, if that is what `err` (or its cause) says."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OfflineModeIsEnabled):
            return "HF_HUB_OFFLINE is set; unset it to talk to the Hub"
        if isinstance(seen, TransportError):  # connect/read errors and timeouts
            return (str(seen).strip().splitlines() or [type(seen).__name__])[0]
        seen = seen.__cause__ or seen.__context__
    return None


def _reports_unreachable(method: Callable[P, R]) -> Callable[P, R]:
    """Turn a connection failure in a store call into one `StoreUnreachable` line instead of
    a long httpx traceback; every other error passes through unchanged."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except StoreUnreachable:
            raise
        except (TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError) as err:
            reason = _unreachable_reason(err)
            if reason is None:  # a LocalEntryNotFoundError about the cache, not the network
                raise
            store = args[0]
            raise StoreUnreachable(
                f"cannot reach {getattr(store, 'endpoint', store)}: {reason}"
            ) from None

    return wrapper


@dataclass(frozen=True)
class _KnownCommit:
    """A commit this store made and listed: where the next step branch can start."""

    commit: str
    files: dict[str, RemoteFile]


class HubStore(Store):
    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        cache_dir: Path | None = None,
    ):
        import huggingface_hub.constants

        # Read HF_ENDPOINT now rather than trusting the value frozen at import time.
        self.endpoint = (
            endpoint or os.environ.get("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT
        ).rstrip("/")
        self.spec = f"hub:{endpoint}" if endpoint else "hub"
        self._token = token
        # Like HF_ENDPOINT, honour HF_HUB_CACHE/HF_HOME as they are now, not at import time.
        if cache_dir is None and os.environ.get("HF_HUB_CACHE"):
            cache_dir = Path(os.environ["HF_HUB_CACHE"])
        elif cache_dir is None and os.environ.get("HF_HOME"):
            cache_dir = Path(os.environ["HF_HOME"]) / "hub"
        self._cache_dir = cache_dir
        self._api = HfApi(endpoint=self.endpoint, token=token)
        self._last_step: dict[str, _KnownCommit] = {}  #: repo -> last step commit made here

    def __repr__(self) -> str:
        return f"HubStore(endpoint={self.endpoint!r})"

    @_reports_unreachable
    def ensure_repo(self, repo: str) -> None:
        self._api.create_repo(check_repo_id(repo), exist_ok=True)

    @_reports_unreachable
    def list_revisions(self, repo: str) -> list[str]:
        try:
            refs = self._api.list_repo_refs(check_repo_id(repo))
        except RepositoryNotFoundError:
            raise RepoNotFound(f"repo {repo!r} not found on {self.endpoint}") from None
        return sorted(branch.name for branch in refs.branches)

    @_reports_unreachable
    def head(self, repo: str, revision: str) -> str:
        if _COMMIT_ID.match(revision):
            return revision  # already a commit: its content cannot change
        try:
            return self._api.repo_info(check_repo_id(repo), revision=revision).sha
        except RevisionNotFoundError:
            raise RevisionNotFound(
                f"revision {revision!r} not found in {repo!r} on {self.endpoint}"
            ) from None
        except RepositoryNotFoundError:
            raise RepoNotFound(f"repo {repo!r} not found on {self.endpoint}") from None

    def _files_at(self, repo: str, commit: str) -> dict[str, RemoteFile]:
        files = {}
        for entry in self._api.list_repo_tree(repo, revision=commit, recursive=True):
            if isinstance(entry, RepoFile):
                sha256 = entry.lfs.sha256 if entry.lfs is not None else None
                git_sha1 = None if sha256 else entry.blob_id
                files[entry.path] = RemoteFile(entry.path, entry.size, sha256, git_sha1)
        return files

    @_reports_unreachable
    def list_files(self, repo: str, revision: str) -> dict[str, RemoteFile]:
        return self._files_at(repo, self.head(repo, revision))

    def _start(self, repo: str, revision: str) -> tuple[str, dict[str, RemoteFile]]:
        """Make sure `revision` exists; its head commit and files.

        A new step branch starts from the previous step this store committed, whose files
        it already knows: one request instead of three (create, resolve head, list files),
        and the unchanged files (config, tokenizer) need no upload. Every other case (the
        first step, `main`, a branch that already exists after a restart) asks the server.
        """
        base = self._last_step.get(repo)
        if revision != "main" and base is not None:
            try:
                self._api.create_branch(repo, branch=revision, revision=base.commit)
                return base.commit, base.files
            except HfHubHTTPError as err:
                if err.response is None or err.response.status_code != 409:
                    raise
                # 409: the branch exists (an earlier attempt or run): look at what it holds.
        if revision != "main":
            self._api.create_branch(check_repo_id(repo), branch=revision, exist_ok=True)
        head = self.head(repo, revision)
        return head, self._files_at(repo, head)

    def _publish(
        self,
        repo: str,
        revision: str,
        folder: Path,
        keep: tuple[str, ...],
        digests: dict[str, FileDigest] | None,
        verify: bool,
    ) -> list[str]:
        folder = Path(folder)
        check_repo_id(repo)
        head, remote = self._start(repo, revision)
        local = digests if digests is not None else digest_folder(folder)
        operations: list = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path))
            for path, digest in local.items()
            if not (path in remote and remote[path].matches(digest))
        ]
        operations += [
            CommitOperationDelete(path_in_repo=path)
            for path in sorted(set(remote) - set(local) - set(keep) - set(STORE_OWNED_FILES))
        ]
        if operations:
            # parent_commit: if anything moved the branch since we looked at it, fail
            # instead of committing on top of content we did not see (the retry re-lists).
            commit = self._api.create_commit(
                repo,
                operations,
                commit_message=f"{revision}: {len(operations)} file(s) from scaling-suite",
                revision=revision,
                parent_commit=head,
            )
            head = commit.oid
            if verify:  # what the new commit really holds, listed by the server
                remote = self._files_at(repo, head)
        if verify:
            self._check_published(revision, folder, local, remote, keep)
            if revision != "main":
                self._last_step[repo] = _KnownCommit(head, remote)
        return sorted(op.path_in_repo for op in operations)

    @_reports_unreachable
    def publish(
        self, repo: str, revision: str, folder: Path, keep: tuple[str, ...] = ()
    ) -> list[str]:
        return self._publish(repo, revision, folder, keep, digests=None, verify=False)

    @_reports_unreachable
    def publish_verified(
        self,
        repo: str,
        revision: str,
        folder: Path,
        keep: tuple[str, ...] = (),
        digests: dict[str, FileDigest] | None = None,
    ) -> list[str]:
        # Verifies against the listing of the commit just made: no second head lookup.
        return self._publish(repo, revision, folder, keep, digests, verify=True)

    @_reports_unreachable
    def put_files(
        self,
        repo: str,
        revision: str,
        files: dict[str, bytes],
        expected_head: str | None = None,
    ) -> str:
        if revision != "main":
            self._api.create_branch(check_repo_id(repo), branch=revision, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=io.BytesIO(data))
            for path, data in files.items()
        ]
        # create_commit skips files whose oid the server already has: no empty commits.
        commit = self._api.create_commit(
            repo,
            operations,
            commit_message=f"update {', '.join(files)}",
            revision=revision,
            parent_commit=expected_head,
        )
        return commit.oid

    @_reports_unreachable
    def read_file(self, repo: str, revision: str, path: str) -> bytes | None:
        # Pin the branch to its current commit first: given a branch name, hf_hub_download
        # falls back to the cached copy when the server errors, and a stale manifest read
        # that way would drop entries on the next write. A commit's content is immutable.
        commit = self.head(repo, revision)
        try:
            local = hf_hub_download(
                check_repo_id(repo),
                path,
                revision=commit,
                endpoint=self.endpoint,
                token=self._token,
                cache_dir=self._cache_dir,
            )
        except (EntryNotFoundError, RemoteEntryNotFoundError):
            return None
        except RevisionNotFoundError:
            raise RevisionNotFound(f"revision {revision!r} not found in {repo!r}") from None
        except RepositoryNotFoundError:
            raise RepoNotFound(f"repo {repo!r} not found on {self.endpoint}") from None
        return Path(local).read_bytes()

    @_reports_unreachable
    def download(self, repo: str, revision: str) -> Path:
        commit = self.head(repo, revision)  # see read_file: never a stale cached snapshot
        try:
            return Path(
                snapshot_download(
                    check_repo_id(repo),
                    revision=commit,
                    endpoint=self.endpoint,
                    token=self._token,
                    cache_dir=self._cache_dir,
                )
            )
        except RevisionNotFoundError:
            raise RevisionNotFound(f"revision {revision!r} not found in {repo!r}") from None
        except RepositoryNotFoundError:
            raise RepoNotFound(f"repo {repo!r} not found on {self.endpoint}") from None
