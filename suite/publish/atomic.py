"""Atomic file and directory writes: a reader sees the old artifact or the new one, never half.

Everything is written under a temporary name in the same directory, fsynced, then renamed.
Single files use data_order's writer (one implementation for the whole project).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from data_order.atomic import fsync_dir, write_bytes


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (bottom-up)."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(dirpath))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `final` as a whole.

    An existing `final` is moved aside first and removed after the new one is in place, so
    at every instant `final` is either absent, the complete old version or the complete new
    one. On an exception the temporary directory is removed and `final` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
