"""Crash-safe writes: temp name, fsync, rename. A reader never sees a half-written artifact."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old content or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: threads of one process may write the same file concurrently.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)  # without it a crash can lose the rename


def write_json(path: Path, obj: object) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(tmp: Path, final: Path, replace: bool) -> bool:
    """Move a fully written folder into place in one rename; False if another was kept.

    Without `replace`, a folder that another process published meanwhile (e.g. two array
    tasks preparing the same data) wins: `tmp` is deleted and the caller re-reads `final`.
    """
    fsync_dir(tmp)
    if replace and final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash)
    else:
        try:
            os.rename(tmp, final)  # fails on an existing non-empty folder: never clobbers
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp)
            return False
    fsync_dir(final.parent)
    return True
