"""Resume checkpoints: model, optimizer, RNG, step and running batch hash, saved atomically.

Layout under `run_dir/resume/`: one DeepSpeed checkpoint folder per saved step (`step{N}/`,
every rank writes its shards plus `rng-rank{r}.pt`) and our own pointer `latest.json`. The
pointer is replaced (tmp + fsync + rename) only after every rank finished writing and the
folder was fsynced, so a crash mid-save leaves `latest.json` naming the previous, complete
checkpoint; the partial folder is deleted at the next start. Only the newest
`checkpoints.keep_resume` folders are kept. These are private to the run and separate from
the published `step{N}` exports.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from data_order.atomic import fsync_dir, fsync_file, write_text
from suite.errors import SuiteError
from suite.rundir import RESUME_DIR, RESUME_POINTER


class ResumeMismatch(SuiteError):
    """The run directory holds state of a different run (data, model or layout changed)."""


def check_identity(saved: dict, current: dict, where: Path) -> None:
    """Refuse to continue a run whose data, model or layout differ from what was saved."""
    diffs = [
        f"{key}: saved {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
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


def remove_partial(run_dir: Path, latest: dict | None) -> None:
    """Delete checkpoint folders that `latest.json` does not vouch for (crashed saves)."""
    root = Path(run_dir) / RESUME_DIR
    if not root.is_dir():
        return
    kept = set(latest.get("kept", [])) if latest else set()
    for path in root.iterdir():
        if path.is_dir() and path.name not in kept:
            shutil.rmtree(path, ignore_errors=True)


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
    (root / tag).mkdir(parents=True, exist_ok=True)
    rng_file = root / tag / f"rng-rank{rank}.pt"
    torch.save(_rng_state(), rng_file)
    for path in [*written, rng_file]:
        fsync_file(Path(path))
    fsync_dir(root / tag)
    dist.barrier()  # every rank's files are durable before the pointer may name them
    if rank == 0:
        previous = read_latest(run_dir)
        kept = [*(previous.get("kept", []) if previous else []), tag][-keep:]
        latest = {
            "step": step,
            "tag": tag,
            "batches_hash": batches_hash,
            "identity": identity,
            "kept": kept,
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
    import torch

    root = Path(run_dir) / RESUME_DIR
    load_path, client = engine.load_checkpoint(
        str(root), tag=latest["tag"], load_optimizer_states=True, load_lr_scheduler_states=False
    )
    if load_path is None or client.get("step") != latest["step"]:
        raise SuiteError(
            f"{root / latest['tag']}: could not load the resume checkpoint of step "
            f"{latest['step']}; delete {root} to restart the run from scratch"
        )
    rng_file = root / latest["tag"] / f"rng-rank{rank}.pt"
    _set_rng_state(torch.load(rng_file, weights_only=False))
    return int(latest["step"]), str(latest["batches_hash"])
