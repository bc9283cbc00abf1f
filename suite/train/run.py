"""`train_run`: one run of the suite, top to bottom (resume, skip-if-done, hooks, publish).

Read it as the script of a run: open the data, check the run dir, start the process group,
build the seeded model and the DeepSpeed engine, resume if a checkpoint exists, train with
hooks, publish, mark complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from suite.config import RunSpec, SuiteConfig, dataset_dir, resolve_run, run_dir, size_resources
from suite.errors import ConfigError

#: `publish.store=none`: export checkpoints into the run dir but publish nothing.
NO_PUBLISHING = "none"


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
    setup_seconds: float
    """Fixed overhead before the first update: process group, model, DeepSpeed engine, resume."""
    export_seconds: float
    """Time spent gathering and exporting checkpoints (publishing runs in the background)."""
    exported_steps: tuple[int, ...] = ()
    publish_wait_seconds: float = 0.0
    """Time the run waited after its last update for the publisher to drain its queue."""


def config_hash(cfg: SuiteConfig, run: RunSpec) -> str:
    """Hash of everything that determines the run's weights (recorded in every export)."""
    document = {
        "run": asdict(run),
        "optim": asdict(cfg.optim),
        "precision": cfg.precision,
        "seed": cfg.seed,
        "zero_stage": cfg.zero_stage,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


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
        "seed": cfg.seed,
        "precision": cfg.precision,
        "zero_stage": cfg.zero_stage,
        "optim": json.loads(json.dumps(asdict(cfg.optim) | {"lr": run.lr})),
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
    from suite.train.distributed import ParallelDims

    # The resources alone (resolve_run also checks the vocabulary, known only from the data).
    res = size_resources(cfg, size)
    tp = max(1, res.tp)
    ParallelDims(dp=max(1, res.gpus // tp), tp=tp, world_size=dist_env_from_environ().world_size)


def train_run(cfg: SuiteConfig, size: str, dataset: str) -> RunResult:
    """Train (or resume, or skip if complete) one run; callable repeatedly in one process."""
    started = time.perf_counter()
    check_world(cfg, size, dataset)
    data = _open_data(cfg, dataset)
    run = resolve_run(cfg, size, dataset, vocab=data.vocab_size)
    if data.seq_len != run.seq_len:
        raise ConfigError(
            "seq_len",
            run.seq_len,
            f"the dataset {data.path} holds samples of seq_len={data.seq_len}; use "
            f"seq_len={data.seq_len} or prepare the data for {run.seq_len}",
        )
    directory = run_dir(cfg, run)
    identity = run_identity(cfg, run, data.fingerprint, data.eos_id)

    from suite.train.resume import check_identity, read_complete, read_latest

    complete = read_complete(directory)
    if complete is not None:  # fast path: no torch, no DeepSpeed
        check_identity(complete["identity"], identity, directory)
        return RunResult(
            run.run_name,
            directory,
            complete["step"],
            True,
            0,
            complete.get("final_loss"),
            complete.get("final_eval_loss"),
            time.perf_counter() - started,
            0.0,
            0.0,
        )
    latest = read_latest(directory)
    if latest is not None:  # refuse before spending anything on start-up
        check_identity(latest["identity"], identity, directory / "resume")
    return _train(cfg, run, data, directory, identity, latest, started)


def _train(cfg, run, data, directory: Path, identity: dict, latest, started: float) -> RunResult:
    from suite.train.model import export_dtype
    from suite.train.preemption import PreemptionWatcher

    export_dtype(cfg.precision, cfg.publish.save_dtype)  # a bad value fails before start-up
    # From here a time-limit warning or preemption (USR2/SIGTERM) only sets a flag: the
    # loop saves a resume checkpoint at the end of the update, then stops (preemption.py).
    watcher = PreemptionWatcher().install()
    try:
        return _train_watched(cfg, run, data, directory, identity, latest, started, watcher)
    finally:
        watcher.restore()


def _train_watched(cfg, run, data, directory, identity, latest, started, watcher) -> RunResult:
    import torch.distributed as dist

    from data_order import BatchLayout
    from model_zoo import flops_per_token
    from suite.train import hooks as H
    from suite.train.batches import BatchSource
    from suite.train.distributed import ParallelDims, init_distributed
    from suite.train.engine import build_engine, single_process_fp32
    from suite.train.loop import Trainer, TrainState, train_loop
    from suite.train.lr_schedule import LRSchedule
    from suite.train.model import ExportModel, build_model, export_dtype, hf_config
    from suite.train.preemption import PreemptionHook
    from suite.train.resume import load_resume, mark_complete, remove_partial

    save_dtype = export_dtype(cfg.precision, cfg.publish.save_dtype)
    env = init_distributed()
    dims = ParallelDims(dp=run.dp, tp=run.tp, world_size=env.world_size)
    is_main = env.rank == 0
    if is_main:
        directory.mkdir(parents=True, exist_ok=True)
        remove_partial(directory, latest)
    dist.barrier()

    config = hf_config(run, data.eos_id, cfg.precision)
    engine = build_engine(build_model(config, cfg.seed), cfg, run)
    state = TrainState(tokens_per_step=run.global_batch * run.seq_len)
    if latest is not None:
        state.step, state.batches_hash = load_resume(engine, directory, latest, env.rank)
    resumed_from = state.step

    layout = BatchLayout(run.global_batch, run.micro_batch, run.dp, run.grad_accum)
    trainer = Trainer(
        engine,
        BatchSource(data, layout, dims.dp_rank(env.rank)),
        LRSchedule(run.lr, run.train_steps, cfg.optim.warmup_fraction, cfg.optim.min_lr_ratio),
        state,
        env.rank,
        env.world_size,
        flops_per_token=flops_per_token(run.family, run.size, run.padded_vocab, run.seq_len),
        peak_flops=cfg.cluster.peak_flops_per_gpu,
        clip_in_trainer=cfg.optim.grad_clip if single_process_fp32(cfg, run) else None,
    )
    metrics = H.MetricsFile(directory / H.METRICS_FILE, state.step) if is_main else None
    publisher = None
    if is_main and cfg.publish.store != NO_PUBLISHING:
        from huggingface_hub.utils import disable_progress_bars

        from suite.publish.publisher import Publisher
        from suite.publish.store import open_store

        disable_progress_bars()  # uploads run in the background: no bars in the training log

        publisher = Publisher(
            directory,
            open_store(cfg.publish.store),
            run.repo_id,
            keep_exports=cfg.publish.keep_exports,
        )
    export = H.ExportHook(
        schedule=cfg.checkpoint_schedule(),
        export_model=ExportModel(config, save_dtype) if is_main else None,
        publisher=publisher,
        exports_dir=directory / "exports",
        tokenizer_file=Path(data.tokenizer_path),
        eos_token=_token_text(data),
        meta_fields={
            "run_name": run.run_name,
            "data_fingerprint": data.fingerprint,
            "config_hash": config_hash(cfg, run),
            "total_steps": run.train_steps,
        },
    )
    eval_samples = data.eval_samples(cfg.eval.samples) if cfg.eval.every else None
    hooks = [
        H.LogHook(metrics, run.run_name, every=max(1, run.train_steps // 10)),
        *(
            [
                H.EvalHook(
                    eval_samples,
                    run.micro_batch,
                    dims.dp_rank(env.rank),
                    run.dp,
                    cfg.eval.every,
                    metrics,
                )
            ]
            if eval_samples is not None
            else []
        ),
        export,
        resume := H.ResumeHook(
            directory, cfg.checkpoints.resume_every, cfg.checkpoints.keep_resume, identity
        ),
        PreemptionHook(watcher, resume),  # last: the update's export and metrics come first
    ]
    setup_seconds = time.perf_counter() - started
    if is_main:
        print(
            f"[{run.run_name}] {'resuming at step ' + str(state.step) if state.step else 'starting'}"
            f" — tp {run.tp} × dp {run.dp}, {run.train_steps} updates, setup {setup_seconds:.1f}s",
            flush=True,
        )
    try:
        train_loop(trainer, hooks)
    except BaseException:
        if publisher is not None:
            publisher.close(wait=False)  # queued exports stay on disk for the next start
        raise
    drain_started = time.perf_counter()
    if publisher is not None:
        publisher.close(wait=True)
    publish_wait = time.perf_counter() - drain_started
    last_eval = state.last_eval.get("eval_loss")
    if is_main:
        mark_complete(
            directory,
            {
                "step": state.step,
                "identity": identity,
                "final_loss": state.last_loss,
                "final_eval_loss": last_eval,
                "batches_hash": state.batches_hash,
            },
        )
    dist.barrier()
    engine.destroy()
    return RunResult(
        run.run_name,
        directory,
        state.step,
        False,
        resumed_from,
        state.last_loss,
        last_eval,
        time.perf_counter() - started,
        setup_seconds,
        export.seconds,
        tuple(export.exported),
        publish_wait,
    )


def _token_text(data) -> str:
    from tokenizers import Tokenizer

    token = Tokenizer.from_file(str(data.tokenizer_path)).id_to_token(data.eos_id)
    if token is None:
        raise ConfigError("eos_id", data.eos_id, f"not a token of {data.tokenizer_path}")
    return token
