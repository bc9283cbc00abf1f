"""The one small interface over where checkpoints are published: `Store`, and what it speaks.

A store holds repos; a repo holds revisions (branches): `step{N}` per checkpoint and `main`
(= the final step, plus the run's manifest). Both implementations (`local_store.LocalStore`,
`hub_store.HubStore`) give the same semantics, so the publisher, `suite pull` and
`suite verify` do not care which one they talk to.

This module depends on nothing of `suite.publish` but `metadata` (file digests) and `spec`
(repo ids): the implementations and `manifest` build on it, `store.open_store` chooses an
implementation, and nothing here imports any of them back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from suite.errors import SuiteError
from suite.publish.metadata import FileDigest, digest_folder
from suite.publish.spec import check_repo_id

__all__ = [
    "MANIFEST_CSV",
    "MANIFEST_FILES",
    "MANIFEST_JSON",
    "STORE_OWNED_FILES",
    "RemoteFile",
    "RepoNotFound",
    "RevisionNotFound",
    "Store",
    "check_repo_id",
    "compare_files",
]

#: Files of `main` that are not part of any checkpoint and survive a promotion.
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_FILES = (MANIFEST_JSON, MANIFEST_CSV)
#: Files a store may add on its own (the Hub's initial commit) and that checks ignore.
STORE_OWNED_FILES = (".gitattributes",)


class RevisionNotFound(SuiteError):
    """The repo exists but has no such revision."""


class RepoNotFound(SuiteError):
    """The store has no such repo."""


@dataclass(frozen=True)
class RemoteFile:
    """A file as the store describes it, without downloading it."""

    path: str  #: POSIX path inside the revision
    size: int  #: bytes
    sha256: str | None = None  #: when the store knows it (local store, Hub LFS files)
    git_sha1: str | None = None  #: git blob id (Hub regular files)

    @property
    def identity(self) -> str:
        """A content id comparable between files of the same store."""
        return f"sha256:{self.sha256}" if self.sha256 else f"git:{self.git_sha1}"

    def matches(self, digest: FileDigest) -> bool:
        if self.size != digest.size:
            return False
        if self.sha256 is not None:
            return self.sha256 == digest.sha256
        return self.git_sha1 == digest.git_sha1


class Store(ABC):
    """Where revisions live. Implementations: LocalStore, HubStore.

    The run's manifest on `main` is read and written through this interface by
    `suite.publish.manifest.read_manifest` / `write_manifest`.
    """

    #: How to reopen this store (`local:/path`, `hub`, `hub:https://…`); never holds a token.
    spec: str

    @abstractmethod
    def ensure_repo(self, repo: str) -> None:
        """Create the repo if it does not exist."""

    @abstractmethod
    def list_revisions(self, repo: str) -> list[str]:
        """Names of the repo's revisions (raises RepoNotFound)."""

    @abstractmethod
    def list_files(self, repo: str, revision: str) -> dict[str, RemoteFile]:
        """Files of a revision with their content ids (raises RevisionNotFound)."""

    @abstractmethod
    def publish(
        self, repo: str, revision: str, folder: Path, keep: tuple[str, ...] = ()
    ) -> list[str]:
        """Make `revision` hold exactly the files of `folder` (plus `keep` and store-owned files).

        Creates the revision if needed and transfers only files that are missing or
        different. Returns the paths that were added, changed or deleted (empty when the
        revision already matched, which is what makes publishing idempotent).
        """

    @abstractmethod
    def put_files(
        self,
        repo: str,
        revision: str,
        files: dict[str, bytes],
        expected_head: str | None = None,
    ) -> str | None:
        """Add or overwrite a few small files in a revision, leaving the others alone.

        With `expected_head` (a `head()` value), fail instead of writing when the revision
        moved since then. Returns the revision's new head (None: the store has no heads).
        """

    @abstractmethod
    def head(self, repo: str, revision: str) -> str | None:
        """Id of the revision's current commit, usable as a revision in `read_file`.

        None when the store has no commit ids (the local store, whose writes are atomic
        renames). Raises RevisionNotFound / RepoNotFound.
        """

    @abstractmethod
    def read_file(self, repo: str, revision: str, path: str) -> bytes | None:
        """Bytes of one file, None when the revision has no such file."""

    @abstractmethod
    def download(self, repo: str, revision: str) -> Path:
        """A local folder with the revision's files, ready for `from_pretrained`."""

    # --- shared behaviour -------------------------------------------------------------

    def publish_verified(
        self,
        repo: str,
        revision: str,
        folder: Path,
        keep: tuple[str, ...] = (),
        digests: dict[str, FileDigest] | None = None,
    ) -> list[str]:
        """`publish`, then check that the revision holds exactly `folder` (plus `keep`).

        `digests`: the folder's `digest_folder` when the caller has it. Raises SuiteError
        naming every file that is missing, different or extra on the store.
        """
        changed = self.publish(repo, revision, folder, keep)
        local = digests if digests is not None else digest_folder(Path(folder))
        self._check_published(revision, folder, local, self.list_files(repo, revision), keep)
        return changed

    @staticmethod
    def _check_published(
        revision: str,
        folder: Path,
        local: dict[str, FileDigest],
        remote: dict[str, RemoteFile],
        keep: tuple[str, ...],
    ) -> None:
        problems = compare_files(local, remote, keep=keep)
        if problems:
            raise SuiteError(f"published {revision} differs from {folder}: {'; '.join(problems)}")

    def promote_main(
        self,
        repo: str,
        revision: str,
        folder: Path | None = None,
        digests: dict[str, FileDigest] | None = None,
    ) -> list[str]:
        """Make `main` hold the checkpoint files of `revision` (keeping the manifest), verified."""
        source = folder if folder is not None else self.download(repo, revision)
        return self.publish_verified(repo, "main", source, keep=MANIFEST_FILES, digests=digests)

    def mismatches(self, repo: str, revision: str, folder: Path) -> list[str]:
        """How the published revision differs from the local folder (empty: identical)."""
        return compare_files(digest_folder(folder), self.list_files(repo, revision))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def compare_files(
    local: dict[str, FileDigest], remote: dict[str, RemoteFile], keep: tuple[str, ...] = ()
) -> list[str]:
    problems = []
    for path, digest in sorted(local.items()):
        if path not in remote:
            problems.append(f"{path}: missing")
        elif not remote[path].matches(digest):
            problems.append(f"{path}: content differs")
    for path in sorted(set(remote) - set(local) - set(keep) - set(STORE_OWNED_FILES)):
        problems.append(f"{path}: unexpected extra file")
    return problems
