"""Resume checkpoints: model, optimizer, RNG, step and running batch hash, saved atomically.

Layout under `run_dir/resume/`: one DeepSpeed checkpoint folder per saved step (`step{N}/`,
every rank writes its shards plus `rng-rank{r}.pt`) and our own pointer `latest.json`. The
pointer is replaced (tmp + fsync + rename) only after every rank finished writing and the
folder was fsynced, so a crash mid-save leaves `latest.json` naming the previous, complete
checkpoint; the partial folder is deleted at the next start. Only the newest
`checkpoints.keep_resume` folders are kept. These are private to the run and separate from
the published `step{N}` exports.

Each rank also writes `files-rank{r}.json` into the folder: the size and an edge digest
(sha256 of the first and last 64 KiB) of every file it wrote. The pointer lists each kept
checkpoint with its step, batches hash and world size. At start `intact_latest` checks the
newest kept checkpoint against those records and falls back to the newest intact one (one
warning line naming the damaged one); with none intact the run refuses to start.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

from data_order.atomic import fsync_dir, fsync_file, write_text
from suite.errors import SuiteError
from suite.rundir import RESUME_DIR, RESUME_POINTER


class ResumeMismatch(SuiteError):
    """The run directory holds state of a different run (data, model or layout changed)."""


_ABSENT = object()  # a key one side of an identity lacks (printed as "absent")


def identity_diffs(saved: object, current: object, prefix: str = "") -> list[str]:
    """The leaf fields that differ, as `layout.tp: saved 1, now 2` (nested dicts walked, so
    a changed `model_config.rotary_pct` is named instead of both whole dicts printed)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        diffs = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            diffs += identity_diffs(saved.get(key, _ABSENT), current.get(key, _ABSENT), name)
        return diffs
    if saved == current:
        return []

    def shown(value: object) -> str:
        return "absent" if value is _ABSENT else repr(value)

    return [f"{prefix}: saved {shown(saved)}, now {shown(current)}"]


def check_identity(saved: dict, current: dict, where: Path) -> None:
    """Refuse to continue a run whose data, model or layout differ from what was saved."""
    diffs = identity_diffs(saved, current)
    if diffs:
        raise ResumeMismatch(
            f"{where} belongs to a different run — {'; '.join(diffs)}. Resuming would not "
            "train on the batches the run would have seen; restore the original settings "
            "(data, model, layout, train_steps) or use a new run directory (another root/name)"
        )


def _tag(step: int) -> str:
    return f"step{step}"


def read_latest(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RESUME_DIR / RESUME_POINTER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # only our atomic writer writes it: damage is not a crash
        raise SuiteError(
            f"{path}: unreadable ({err}); delete {path.parent} to restart the run"
        ) from None


#: Bytes hashed at each end of a file for its edge digest.
EDGE_BYTES = 64 * 1024


def _files_record(rank: int) -> str:
    return f"files-rank{rank}.json"


def edge_digest(path: Path, size: int) -> str:
    """sha256 of the first and last `EDGE_BYTES` of a file.

    Why not the whole file: a full hash of a large run's optimizer shards would read
    gigabytes at every save and again at every start; sizes plus both ends catch what
    actually happens to checkpoints (truncation, a deleted or half-copied file, another
    run's file, a zeroed header) in constant time. Bit rot in the middle is not caught.
    """
    digest = hashlib.sha256(f"edges-v1:{size}:".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            handle.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def _describe_files(folder: Path, paths: list[Path]) -> dict[str, dict]:
    """{path relative to the checkpoint folder: {size, edges}} of files a rank wrote."""
    files = {}
    for path in paths:
        size = path.stat().st_size
        rel = os.path.relpath(path.resolve(), folder.resolve())
        files[Path(rel).as_posix()] = {"size": size, "edges": edge_digest(path, size)}
    return files


def checkpoint_damage(folder: Path, world: int | None) -> str | None:
    """Why the checkpoint in `folder` cannot be loaded, or None if it matches its records.

    `world` None: saved before files were recorded; only the folder's presence is checked.
    """
    if not folder.is_dir():
        return "folder missing"
    if world is None:
        return None
    for rank in range(world):
        record = folder / _files_record(rank)
        try:
            files = json.loads(record.read_text())["files"]
        except FileNotFoundError:
            return f"{record.name} missing"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{record.name} unreadable ({type(err).__name__})"
        for rel, want in sorted(files.items()):
            path = folder / rel
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return f"{rel} missing"
            if size != want["size"]:
                return f"{rel} has {size:,} bytes, {want['size']:,} when saved"
            if edge_digest(path, size) != want["edges"]:
                return f"{rel} differs from what was saved"
    return None


def _checkpoints(latest: dict) -> list[dict]:
    """The pointer's kept checkpoints, oldest first: {tag, step, batches_hash, world}.

    A pointer written before checkpoints were listed knows only its newest one (world
    None: no file records to check against).
    """
    if "checkpoints" in latest:
        return list(latest["checkpoints"])
    return [{"tag": latest["tag"], "step": latest["step"], "batches_hash": latest["batches_hash"]}]


def intact_latest(run_dir: Path, latest: dict, warn: bool = True) -> dict:
    """`latest`, or — if its checkpoint is damaged — a pointer to the newest intact one.

    Every rank calls this with the same files on disk and reaches the same answer; only
    `warn` (rank 0) prints. Raises SuiteError when no kept checkpoint is intact: starting
    again from step 0 would silently discard the run's progress, so that is left to the
    user (deleting the resume folder).
    """
    root = Path(run_dir) / RESUME_DIR
    entries = _checkpoints(latest)
    damaged: list[str] = []
    for index in range(len(entries) - 1, -1, -1):
        entry = entries[index]
        reason = checkpoint_damage(root / entry["tag"], entry.get("world"))
        if reason is None:
            break
        damaged.append(f"{root / entry['tag']} ({reason})")
    else:
        raise SuiteError(
            f"{root}: no intact resume checkpoint — {'; '.join(damaged)}; delete {root} to "
            "restart the run from step 0 (exports and published revisions stay)"
        )
    if not damaged:
        return latest
    if warn:
        print(
            f"suite train: warning: resume checkpoint {'; '.join(damaged)} is damaged; "
            f"resuming from step {entry['step']} instead",
            file=sys.stderr,
            flush=True,
        )
    good = entries[: index + 1]
    return latest | {
        "step": entry["step"],
        "tag": entry["tag"],
        "batches_hash": entry["batches_hash"],
        "checkpoints": good,
        "kept": [e["tag"] for e in good],
    }


def remove_partial(run_dir: Path, latest: dict | None) -> None:
    """Delete checkpoint folders that `latest` does not vouch for (crashed saves, and
    damaged ones `intact_latest` fell back from); if it fell back, point the pointer at
    the checkpoint actually used, so `suite status` and the next save agree with it."""
    root = Path(run_dir) / RESUME_DIR
    if not root.is_dir():
        return
    kept = set(latest.get("kept", [])) if latest else set()
    for path in root.iterdir():
        if path.is_dir() and path.name not in kept:
            shutil.rmtree(path, ignore_errors=True)
    if latest is not None and (read_latest(run_dir) or {}).get("tag") != latest["tag"]:
        write_text(root / RESUME_POINTER, json.dumps(latest, indent=2, sort_keys=True) + "\n")


def _rng_state() -> dict:
    import numpy as np
    import torch

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_resume(
    engine, run_dir: Path, step: int, batches_hash: str, identity: dict, keep: int, rank: int
) -> None:
    """Collective: every rank writes and fsyncs its own part; rank 0 then publishes the pointer.

    DeepSpeed writes shard-parallel (each rank its optimizer partition, the first rank of
    each TP slice the model states). Each rank fsyncs exactly the files it wrote — recorded
    through the engine's checkpoint writer — because on a shared filesystem (NFS, Lustre)
    an fsync from another node (rank 0) does not make them durable.
    """
    import torch
    import torch.distributed as dist

    root = Path(run_dir) / RESUME_DIR
    tag = _tag(step)
    written = _recording_writes(engine)
    try:
        engine.save_checkpoint(str(root), tag=tag, client_state={"step": step}, save_latest=False)
    finally:
        del engine.checkpoint_engine.save  # back to the class's own method
    folder = root / tag
    folder.mkdir(parents=True, exist_ok=True)
    rng_file = folder / f"rng-rank{rank}.pt"
    torch.save(_rng_state(), rng_file)
    paths = [Path(path) for path in [*written, rng_file]]
    for path in paths:
        fsync_file(path)
    # What this rank wrote, checked at the next start (`intact_latest`); write_text is
    # atomic and fsyncs the file, the folder fsync below makes its name durable.
    record = {"rank": rank, "files": _describe_files(folder, paths)}
    write_text(folder / _files_record(rank), json.dumps(record, indent=1, sort_keys=True))
    fsync_dir(folder)
    dist.barrier()  # every rank's files are durable before the pointer may name them
    if rank == 0:
        previous = read_latest(run_dir)
        entry = {
            "tag": tag,
            "step": step,
            "batches_hash": batches_hash,
            "world": dist.get_world_size(),
        }
        # A tag saved again (after a fall-back) replaces its old entry; folders that are
        # gone are no longer checkpoints.
        older = [
            e
            for e in (_checkpoints(previous) if previous else [])
            if e["tag"] != tag and (root / e["tag"]).is_dir()
        ]
        checkpoints = [*older, entry][-keep:]
        kept = [e["tag"] for e in checkpoints]
        latest = {
            "step": step,
            "tag": tag,
            "batches_hash": batches_hash,
            "identity": identity,
            "kept": kept,
            "checkpoints": checkpoints,
        }
        write_text(root / RESUME_POINTER, json.dumps(latest, indent=2, sort_keys=True) + "\n")
        for path in root.iterdir():
            if path.is_dir() and path.name not in kept:
                shutil.rmtree(path, ignore_errors=True)
    dist.barrier()


def _recording_writes(engine) -> list[str]:
    """Record the paths the engine's checkpoint writer saves to (an instance attribute
    shadows its `save`; the caller deletes it afterwards)."""
    written: list[str] = []
    checkpoint_engine = engine.checkpoint_engine
    original = checkpoint_engine.save

    def save(state_dict, path: str):
        result = original(state_dict, path)
        written.append(path)
        return result

    checkpoint_engine.save = save
    return written


def load_resume(engine, run_dir: Path, latest: dict, rank: int) -> tuple[int, str]:
    """Restore model, optimizer and RNG from `latest`; returns (step, batches_hash)."""
    root = Path(run_dir) / RESUME_DIR
    load_checkpoint_folder(
        engine,
        root / latest["tag"],
        latest["step"],
        rank,
        fix=f"delete {root} to restart the run from scratch",
    )
    return int(latest["step"]), str(latest["batches_hash"])


def load_checkpoint_folder(engine, folder: Path, step: int, rank: int, fix: str) -> None:
    """Load a checkpoint folder `save_resume` wrote (a resume checkpoint, or a published
    training state: the same files) into the engine, and this rank's RNG state.

    The LR scheduler is not loaded: the schedule is a pure function of the step.
    """
    import torch

    folder = Path(folder)
    load_path, client = engine.load_checkpoint(
        str(folder.parent),
        tag=folder.name,
        load_optimizer_states=True,
        load_lr_scheduler_states=False,
    )
    if load_path is None or client.get("step") != step:
        raise SuiteError(f"{folder}: could not load the checkpoint of step {step}; {fix}")
    _set_rng_state(torch.load(folder / f"rng-rank{rank}.pt", weights_only=False))
