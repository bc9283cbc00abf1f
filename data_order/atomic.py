"""Crash-safe writes: temp name, fsync, rename. A reader never sees a half-written artifact.

The one implementation of atomic files and folders for the whole project: every temporary
name is unique (uuid: threads and processes may write the same target concurrently), every
file is fsynced before its rename and the parent folder after it (without that, a crash can
lose the rename).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np


def temp_sibling(path: Path, suffix: str = "tmp") -> Path:
    """A unique hidden name next to `path` (same folder, so a rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{suffix}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make a written file's bytes durable (what a crash or power loss would otherwise drop)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (bottom-up)."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


class AtomicFile:
    """A file written under a temporary sibling name; `commit()` puts it in place at once.

    For writers that stream over time (e.g. `IndexedWriter`); `atomic_file` wraps it for a
    `with` block. Until `commit()` no reader sees anything at `path`; `abort()` leaves no trace.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_sibling(self.path)
        self.file: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit()/abort()

    def commit(self) -> Path:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        # On a full disk close() fails to flush the buffer; the temp file goes all the same.
        with contextlib.suppress(OSError):
            self.file.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive `flock` on `path` (created if absent), released on exit: one writer per
    dataset name (build) or order artifact (order_store) across processes and ranks."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """`with atomic_file(path) as f: f.write(...)`: `path` is replaced only if the block succeeds."""
    target = AtomicFile(path)
    try:
        yield target.file
    except BaseException:
        target.abort()
        raise
    target.commit()


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old content or the new, never half."""
    with atomic_file(path) as f:
        f.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, array)


@contextlib.contextmanager
def atomic_directory(final: Path, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder; when the block succeeds it becomes `final` in one
    rename (everything in it fsynced first). On an exception it is removed, `final` untouched.

    `replace=True`: an existing `final` is moved aside and removed after the new one is in
    place, so `final` is at every instant absent, the complete old or the complete new folder.
    `replace=False`: an existing `final` is never clobbered; when another process published it
    meanwhile (e.g. two array tasks preparing the same data) it wins and the new folder is
    dropped; callers that care re-read `final` afterwards.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        _swap_in(tmp, final, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_leftovers(final: Path) -> list[Path]:
    """Remove the temporary siblings of `final` a killed writer left (`.<name>.<uuid>.tmp`,
    and `.old` when it died between the two renames of a replace); returns them.

    Only while holding the lock that serialises the writers of `final`: a live writer's
    temporary folder looks the same.
    """
    # Exactly `temp_sibling`'s names: `.corpus.<uuid>.tmp` is not `.corpus.v2.<uuid>.tmp`.
    ours = re.compile(rf"\.{re.escape(final.name)}\.[0-9a-f]{{32}}\.(tmp|old)")
    found = [
        p for p in final.parent.glob(f".{glob.escape(final.name)}.*") if ours.fullmatch(p.name)
    ]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def _swap_in(tmp: Path, final: Path, replace: bool) -> None:
    if replace and final.exists():
        old = temp_sibling(final, "old")
        os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        shutil.rmtree(old)
        return
    try:
        os.rename(tmp, final)  # fails on an existing non-empty folder: never clobbers
    except OSError:
        if not final.is_dir():
            raise
        return  # another process's folder was kept; the caller's `finally` removes tmp
    fsync_dir(final.parent)
