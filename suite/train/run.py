"""`train_run`: one run of the suite, top to bottom.

Read it as the script of a run: open the data, resolve the run, skip it if its record says
complete, refuse a run directory that belongs to another run, then — recording the run's
state in `run.json` — build the trainer (`factory.build_training`), train with hooks, and
mark the run complete once every checkpoint is published.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from suite.config import RunSpec, SuiteConfig, resolve_layout, resolve_run
from suite.errors import ConfigError
from suite.rundir import RunDir, dataset_dir, owner_fields, run_dir


@dataclass(frozen=True)
class RunResult:
    """What one call of `train_run` did."""

    run_name: str
    run_dir: Path
    final_step: int
    """Updates done when the call returned (= train_steps for a finished run)."""
    skipped: bool
    """The run was already complete: nothing was trained."""
    resumed_from: int
    """Step of the resume checkpoint training continued from (0: started fresh)."""
    final_loss: float | None
    final_eval_loss: float | None
    wall_seconds: float
    setup_seconds: float = 0.0
    """Fixed overhead before the first update: process group, model, DeepSpeed engine, resume."""
    export_seconds: float = 0.0
    """Time spent gathering and exporting checkpoints (publishing runs in the background)."""
    exported_steps: tuple[int, ...] = ()
    publish_wait_seconds: float = 0.0
    """Time the run waited after its last update for the publisher to drain its queue."""


def run_identity(cfg: SuiteConfig, run: RunSpec, fingerprint: str, eos_id: int) -> dict:
    """What must not change between a run's start and its resumes (pure Python, no torch)."""
    model = run.family.hf_config_kwargs(
        run.size, run.padded_vocab, run.seq_len, eos_id=eos_id, bos_id=eos_id
    )
    return {
        "data_fingerprint": fingerprint,
        "model_config": json.loads(json.dumps(model, sort_keys=True)),
        "family": run.family.name,
        "layout": {
            "tp": run.tp,
            "dp": run.dp,
            "micro_batch": run.micro_batch,
            "grad_accum": run.grad_accum,
            "global_batch": run.global_batch,
        },
        "train_steps": run.train_steps,
        "seed": run.seed,
        # Read by `suite report` (the spread across seeds) and checked on resume.
        "init_seed": run.init_seed,
        "data_seed": run.data_seed,
        "init_scheme": run.size.init_scheme,
        "precision": cfg.precision,
        "zero_stage": cfg.zero_stage,
        "attention": cfg.attention,
        "activation_checkpointing": cfg.activation_checkpointing,
        "optim": json.loads(json.dumps(asdict(cfg.optim) | {"lr": run.lr})),
    }


def with_split_seeds(identity: dict) -> dict:
    """A saved identity as this code writes it: one recorded before the seeds were split
    has only `seed`, which then seeded both the initialisation and the data order."""
    if "seed" not in identity or {"init_seed", "data_seed"} <= identity.keys():
        return identity
    return {"init_seed": identity["seed"], "data_seed": identity["seed"]} | identity


def run_description(cfg: SuiteConfig, run: RunSpec) -> dict:
    """What the run is, for `run.json` (status, report): never secrets, no environment."""
    from suite.publish.store import absolute_store_spec

    return {
        "suite": cfg.name,
        "run_name": run.run_name,
        "repo_id": run.repo_id,
        # Absolute: `suite status` and `suite report` may run from another directory.
        "store": absolute_store_spec(cfg.publish.store),
        "size": run.size_name,
        "dataset": run.dataset_name,
        "family": run.family.name,
        "params": run.total_params,
        "non_embedding_params": run.non_embedding_params,
        "layers": run.size.n_layers,
        "d_model": run.size.d_model,
        "heads": run.size.n_heads,
        "tp": run.tp,
        "dp": run.dp,
        "micro_batch": run.micro_batch,
        "grad_accum": run.grad_accum,
        "global_batch": run.global_batch,
        "seq_len": run.seq_len,
        "train_steps": run.train_steps,
        "lr": run.lr,
        "seed": run.seed,
    }


def _open_data(cfg: SuiteConfig, dataset: str):
    from data_order import DataError, open_dataset

    path = dataset_dir(cfg, dataset)
    if not path.exists() and not Path(f"{path}.idx").exists():
        raise ConfigError(
            f"datasets.{dataset}.path",
            str(path),
            "no dataset there; build it with `suite prepare` (with the same overrides) or point "
            "the path at a prepared folder / pre-shuffled .bin/.idx prefix",
        )
    try:
        return open_dataset(path)
    except DataError as err:
        raise ConfigError(f"datasets.{dataset}.path", str(path), str(err)) from None


def check_world(cfg: SuiteConfig, size: str, dataset: str) -> None:
    """dp × tp must equal the processes started; checked before data, torch or DeepSpeed."""
    from suite.launch.env import dist_env_from_environ

    # The layout alone (resolve_run also checks the vocabulary, known only from the data).
    resolve_layout(cfg, size).check_world(dist_env_from_environ().world_size)


def check_precision_device(precision: str) -> None:
    """fp16 needs CUDA: DeepSpeed's CPU accelerator has no fp16 optimizer path, and without
    this check the run fails inside engine construction with a DeepSpeed traceback."""
    if precision != "fp16":
        return
    import os

    import torch

    if os.environ.get("DS_ACCELERATOR") == "cpu" or not torch.cuda.is_available():
        raise ConfigError(
            "precision",
            precision,
            "needs a CUDA GPU (DeepSpeed has no fp16 on CPU); use bf16 or fp32 here",
        )


def check_data_covers(data, train_steps: int, global_batch: int) -> None:
    """The order is defined for the epochs the dataset was prepared with (`max_epochs`); a
    run that needs more batches would otherwise train until the first missing one and crash
    there (DataConfigError inside the loop, hours in), so refuse before anything starts."""
    needed = train_steps * global_batch
    if needed <= data.num_positions:
        return
    epochs = data.num_positions // max(1, data.num_samples)
    raise ConfigError(
        "train_steps",
        train_steps,
        f"needs {needed:,} samples ({train_steps} × global_batch {global_batch}) but "
        f"{data.path} defines {data.num_positions:,} ({data.num_samples:,} samples × "
        f"{epochs} epochs); use train_steps <= {data.num_positions // global_batch}, or "
        "prepare the data with more epochs (`suite prepare --max-epochs N`) or a larger corpus",
    )


def train_run(cfg: SuiteConfig, size: str, dataset: str) -> RunResult:
    """Train (or resume, or skip if complete) one run; callable repeatedly in one process."""
    started = time.perf_counter()
    check_world(cfg, size, dataset)
    from suite.train.model import check_attention

    check_attention(cfg.attention, cfg.precision)  # flash-attn: fp16/bf16, CUDA, a matching wheel
    check_precision_device(cfg.precision)
    data = _open_data(cfg, dataset)
    run = resolve_run(cfg, size, dataset, vocab=data.vocab_size)
    if data.seq_len != run.seq_len:
        raise ConfigError(
            "seq_len",
            run.seq_len,
            f"the dataset {data.path} holds samples of seq_len={data.seq_len}; use "
            f"seq_len={data.seq_len} or prepare the data for {run.seq_len}",
        )
    check_data_covers(data, run.train_steps, run.global_batch)
    from suite.data_seed import with_data_seed

    # The run's order; a pre-shuffled file holds the reference run's and serves only that.
    data = with_data_seed(data, run.data_seed, cfg.data_seed_of(cfg.reference_seed))
    directory = run_dir(cfg, run)
    identity = run_identity(cfg, run, data.fingerprint, data.eos_id)

    from suite.train.resume import check_identity, intact_latest, read_latest

    record = directory.read()
    source = None
    if cfg.init_from:  # the state's small metadata file, or the run's own record on restart
        from suite.train.lineage import resolve_init_from

        source = resolve_init_from(cfg, run, identity, record.info.get("identity"))
        identity["init_from"] = source.record
    if record.status == "complete" and "identity" in record.info:  # no torch, no DeepSpeed
        check_identity(with_split_seeds(record.info["identity"]), identity, directory.state_file)
        return RunResult(
            run.run_name,
            directory.path,
            final_step=record.info["final_step"],
            skipped=True,
            resumed_from=0,
            final_loss=record.info.get("final_loss"),
            final_eval_loss=record.info.get("final_eval_loss"),
            wall_seconds=time.perf_counter() - started,
        )
    from suite.launch.env import dist_env_from_environ

    is_main = dist_env_from_environ().rank == 0
    latest = read_latest(directory.path)
    if latest is not None:  # refuse before spending anything on start-up
        check_identity(with_split_seeds(latest["identity"]), identity, directory.resume_dir)
        # A truncated file or a deleted folder: fall back to the newest intact checkpoint
        # (every rank decides alike from the same files; rank 0 warns).
        latest = intact_latest(directory.path, latest, warn=is_main)
    # Continued from a published state only until the run has resume checkpoints of its own;
    # downloaded and every file verified before start-up (a damaged state: one line).
    init_state = source.fetch() if source is not None and latest is None else None
    from suite.console import log_to

    # Rank 0 keeps the run's train.log: every library's INFO (DeepSpeed, the publisher), its lines.
    with (
        _recording(directory, run_description(cfg, run) | {"identity": identity}, is_main),
        log_to(directory.log_file if is_main else None),
    ):
        return _train(cfg, run, data, directory, identity, latest, started, init_state)


@contextmanager
def _recording(directory: RunDir, description: dict, enabled: bool):
    """The trainer's part of `run.json`: running → complete / failed / interrupted.

    Wall time accumulates over the run's starts; `complete` itself is written by `_train`
    once every checkpoint is published (a crash before that is `failed`, not complete).
    """
    from suite.train.preemption import TrainingInterrupted

    if not enabled:
        yield
        return
    previous = directory.read().info
    wall_before = float(previous.get("wall_seconds") or 0.0)
    started = time.time()
    directory.update(
        **description,
        status="running",
        started_at=started,
        wall_seconds=wall_before,
        error=None,
        **owner_fields(),
    )
    try:
        yield
    except TrainingInterrupted as stop:
        directory.update(
            status="interrupted",
            interrupted_at=stop.step,
            interrupted_by=stop.signal_name,
            wall_seconds=wall_before + time.time() - started,
        )
        raise
    except BaseException as err:
        directory.update(
            status="failed",
            error=f"{type(err).__name__}: {err}"[:2000],
            wall_seconds=wall_before + time.time() - started,
        )
        raise
    else:
        directory.update(wall_seconds=wall_before + time.time() - started)


def _train(
    cfg, run, data, directory: RunDir, identity: dict, latest, started: float, init_state=None
) -> RunResult:
    from suite.train.factory import build_training
    from suite.train.loop import train_loop
    from suite.train.model import export_dtype
    from suite.train.preemption import PreemptionHook, PreemptionWatcher

    export_dtype(cfg.precision, cfg.publish.save_dtype)  # a bad value fails before start-up
    # From here a time-limit warning or preemption (USR2/SIGTERM) only sets a flag: the
    # loop saves a resume checkpoint at the end of the update, then stops (preemption.py).
    watcher = PreemptionWatcher().install()
    try:
        training = build_training(
            cfg, run, data, directory, identity, latest, init_state=init_state
        )
        training.hooks.append(PreemptionHook(watcher, training.resume))
        state = training.trainer.state
        setup_seconds = time.perf_counter() - started
        if training.rank == 0:
            directory.update(resumed_from=training.resumed_from)
            print(
                f"[{run.run_name}] "
                f"{'resuming at step ' + str(state.step) if state.step else 'starting'}"
                f" — tp {run.tp} × dp {run.dp}, {run.train_steps} updates, "
                f"setup {setup_seconds:.1f}s",
                flush=True,
            )
            if init_state is not None:
                origin = identity["init_from"]
                warm = origin["warm_start"]
                print(
                    f"[{run.run_name}] continuing {origin['repo']}@step{origin['step']} "
                    f"({origin['store']}): "
                    + (f"warm start, changed {', '.join(warm['changed'])}" if warm else "exact"),
                    flush=True,
                )
        train_loop(training.trainer, training.hooks)  # ends with every checkpoint published
    finally:
        watcher.restore()
    last_eval = state.last_eval.get("eval_loss")
    if training.rank == 0:
        from suite.publish.pending import Pending

        # Revisions and training states the store still refused at the end (Hub down, rate
        # limits), from the queues: the run is complete, `suite publish RUN_DIR` finishes
        # them and updates these fields.
        pending = Pending.of(directory.path)
        if pending:
            print(pending.message(directory.path), flush=True)
        directory.update(
            status="complete",
            final_step=state.step,
            final_loss=state.last_loss,
            final_eval_loss=last_eval,
            batches_hash=state.batches_hash,
            **pending.fields(),
        )
    # No barrier here: the ranks met before rank 0 drained the publisher (ExportHook.on_end);
    # the others are done and leave instead of waiting in a collective while it uploads.
    training.destroy()
    return RunResult(
        run.run_name,
        directory.path,
        final_step=state.step,
        skipped=False,
        resumed_from=training.resumed_from,
        final_loss=state.last_loss,
        final_eval_loss=last_eval,
        wall_seconds=time.perf_counter() - started,
        setup_seconds=setup_seconds,
        export_seconds=training.export.seconds,
        exported_steps=tuple(training.export.exported),
        publish_wait_seconds=training.export.publish_wait_seconds,
    )
