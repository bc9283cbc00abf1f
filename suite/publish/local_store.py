"""A directory store: `root/<repo>/<revision>/…`, for air-gapped clusters and the default.

Each revision path is a symlink to an immutable version directory under
`root/<repo>/.versions/`. Publishing builds a complete new version (hard-linking files
that did not change, copying the others), fsyncs it and swaps the symlink with one
`rename`, so readers see the old revision or the new one, never a mix. Files are never
modified in place, which is what makes sharing them through hard links safe.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from data_order.atomic import fsync_dir, fsync_tree
from suite.publish.base import (
    STORE_OWNED_FILES,
    RemoteFile,
    RepoNotFound,
    RevisionNotFound,
    Store,
    check_repo_id,
)
from suite.publish.metadata import digest_file, digest_folder

_VERSIONS = ".versions"


class LocalStore(Store):
    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        self.spec = f"local:{self.root}"

    def _repo_dir(self, repo: str) -> Path:
        return self.root / check_repo_id(repo)

    def _revision_dir(self, repo: str, revision: str) -> Path:
        path = self._repo_dir(repo) / revision
        if not path.is_dir():
            if not self._repo_dir(repo).is_dir():
                raise RepoNotFound(f"repo {repo!r} not found in {self.spec}")
            raise RevisionNotFound(f"revision {revision!r} not found in {repo!r} ({self.spec})")
        return path

    def ensure_repo(self, repo: str) -> None:
        (self._repo_dir(repo) / _VERSIONS).mkdir(parents=True, exist_ok=True)

    def list_revisions(self, repo: str) -> list[str]:
        repo_dir = self._repo_dir(repo)
        if not repo_dir.is_dir():
            raise RepoNotFound(f"repo {repo!r} not found in {self.spec}")
        return sorted(p.name for p in repo_dir.iterdir() if p.is_symlink() and p.is_dir())

    def list_files(self, repo: str, revision: str) -> dict[str, RemoteFile]:
        folder = self._revision_dir(repo, revision)
        return {
            path: RemoteFile(path, d.size, sha256=d.sha256, git_sha1=d.git_sha1)
            for path, d in digest_folder(folder).items()
        }

    def publish(
        self, repo: str, revision: str, folder: Path, keep: tuple[str, ...] = ()
    ) -> list[str]:
        folder = Path(folder)
        wanted = {p: folder / p for p in digest_folder(folder)}
        return self._write_version(repo, revision, wanted, keep=keep, replace_all=True)

    def put_files(
        self,
        repo: str,
        revision: str,
        files: dict[str, bytes],
        expected_head: str | None = None,
    ) -> str | None:
        self._write_version(repo, revision, dict(files), keep=(), replace_all=False)
        return None

    def head(self, repo: str, revision: str) -> str | None:
        self._revision_dir(repo, revision)  # raises when there is no such revision
        return None

    def read_file(self, repo: str, revision: str, path: str) -> bytes | None:
        target = self._revision_dir(repo, revision) / path
        return target.read_bytes() if target.is_file() else None

    def download(self, repo: str, revision: str) -> Path:
        # The published directory itself (no copy): the revision's symlink, which keeps
        # naming the revision's current content even after a later re-publish.
        return self._revision_dir(repo, revision)

    def _write_version(
        self,
        repo: str,
        revision: str,
        wanted: dict[str, Path | bytes],
        keep: tuple[str, ...],
        replace_all: bool,
    ) -> list[str]:
        self.ensure_repo(repo)
        link = self._repo_dir(repo) / revision
        current = link.resolve() if link.is_dir() else None
        current_files = digest_folder(current) if current else {}
        # Carry over files we keep: everything for put_files, `keep` for a full publish.
        carried = {
            p: d
            for p, d in current_files.items()
            if p not in wanted and (not replace_all or p in keep or p in STORE_OWNED_FILES)
        }
        changed = sorted(set(current_files) - set(carried) - set(wanted))
        new_digests = {}
        for path, source in wanted.items():
            digest = digest_file(source) if isinstance(source, Path) else None
            if digest is not None:
                new_digests[path] = digest
            same = (
                path in current_files and digest is not None and current_files[path] == digest
            ) or (
                isinstance(source, bytes)
                and current is not None
                and (current / path).is_file()
                and (current / path).read_bytes() == source
            )
            if not same:
                changed.append(path)
        if not changed and current is not None:
            return []
        versions = self._repo_dir(repo) / _VERSIONS
        version = versions / f"{revision}-{uuid.uuid4().hex[:12]}"
        tmp = versions / f".{version.name}.tmp"
        try:
            tmp.mkdir(parents=True)
            for path in carried:
                _link_or_copy(current / path, tmp / path)
            for path, source in wanted.items():
                if isinstance(source, bytes):
                    (tmp / path).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / path).write_bytes(source)
                elif path in current_files and current_files[path] == new_digests[path]:
                    _link_or_copy(current / path, tmp / path)
                else:
                    _link_or_copy(source, tmp / path, copy=True)
            fsync_tree(tmp)
            os.replace(tmp, version)
            new_link = link.with_name(f".{revision}.{uuid.uuid4().hex}.link")
            os.symlink(os.path.relpath(version, link.parent), new_link)
            os.replace(new_link, link)  # the atomic switch
            fsync_dir(link.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        if current is not None and current.parent == versions:
            shutil.rmtree(current, ignore_errors=True)
        return sorted(set(changed))


def _link_or_copy(source: Path, target: Path, copy: bool = False) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not supported: copy instead
            pass
    shutil.copyfile(source, target)
