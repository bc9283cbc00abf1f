"""Build a run's trainer and hooks from the suite config: one place that wires the pieces.

`train_run` and the trainer benchmark both build through `build_training`, so what is
measured is what runs. Collective: every rank calls it (it joins the process group, builds
the DeepSpeed engine and loads the resume checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from suite.config import RunSpec, SuiteConfig
from suite.rundir import RunDir
from suite.train.downstream_eval import downstream_eval_hooks
from suite.train.hooks import EvalHook, ExportHook, LogHook, MetricsFile, ResumeHook
from suite.train.loop import Hook, Trainer, TrainState
from suite.train.tracking import tracking_hooks


@dataclass
class Training:
    """A run ready to train: the trainer (engine, data, schedule, state) and its hooks."""

    trainer: Trainer
    hooks: list[Hook]
    """Every hook of the run; `train_loop` orders them by priority."""
    export: ExportHook
    """The export/publish hook (its timings go into the run's result)."""
    resume: ResumeHook
    resumed_from: int
    """Step of the resume checkpoint this process continues from (0: a fresh start)."""
    rank: int
    world_size: int

    def destroy(self) -> None:
        """Free the DeepSpeed engine (the process group stays for the next run)."""
        self.trainer.close()
        self.trainer.engine.destroy()


def build_training(
    cfg: SuiteConfig,
    run: RunSpec,
    data,
    run_dir: RunDir,
    identity: dict,
    latest: dict | None,
    extra_hooks: tuple[Hook, ...] = (),
    init_state=None,
) -> Training:
    """Join the process group and build engine, trainer and hooks (resumed from `latest`).

    `data` is the run's open `data_order.Dataset`; `identity` is recorded in resume
    checkpoints; `extra_hooks` are added as given (the preemption hook, a test's probe);
    `init_state`: a fetched, verified published training state to continue from
    (`suite.train.lineage`; only when there is no resume checkpoint of the run's own).
    """
    import torch.distributed as dist

    from data_order import BatchLayout
    from model_zoo import flops_per_token
    from suite.train.batches import BatchSource
    from suite.train.distributed import init_distributed
    from suite.train.engine import build_engine, single_process_fp32
    from suite.train.init import materialize_in_engine
    from suite.train.lr_schedule import LRSchedule
    from suite.train.model import ExportModel, build_model, export_dtype, hf_config
    from suite.train.resume import load_resume, remove_partial

    save_dtype = export_dtype(cfg.precision, cfg.publish.save_dtype)
    env = init_distributed(cfg.cluster.collective_timeout_minutes)
    run.layout.check_world(env.world_size)
    is_main = env.rank == 0
    if is_main:
        run_dir.path.mkdir(parents=True, exist_ok=True)
        remove_partial(run_dir.path, latest)
    dist.barrier()

    config = hf_config(run, data.eos_id, cfg.precision, cfg.attention)
    # Placeholders through AutoTP, then each rank fills only its shard, from generators
    # seeded by (init seed, parameter name): no rank builds the whole model (suite/train/init.py).
    model = build_model(config, run.init_seed, cfg.activation_checkpointing, materialize=False)
    with materialize_in_engine(model, run.family.init_rules_for(run.size), run.init_seed):
        engine = build_engine(model, cfg, run)
    state = TrainState(tokens_per_step=run.global_batch * run.seq_len)
    if latest is not None:
        state.step, state.batches_hash = load_resume(engine, run_dir.path, latest, env.rank)
    elif init_state is not None:
        from suite.train.lineage import load_training_state

        state.step, state.batches_hash = load_training_state(engine, init_state, env.rank)

    dp_rank = run.layout.dp_rank(env.rank)
    rows = BatchLayout(run.global_batch, run.micro_batch, run.dp, run.grad_accum)
    trainer = Trainer(
        engine,
        BatchSource(data, rows, dp_rank),
        LRSchedule(run.lr, run.train_steps, cfg.optim.warmup_fraction, cfg.optim.min_lr_ratio),
        state,
        env.rank,
        env.world_size,
        flops_per_token=flops_per_token(run.family, run.size, run.padded_vocab, run.seq_len),
        peak_flops=cfg.cluster.peak_flops_per_gpu,
        clip_in_trainer=cfg.optim.grad_clip if single_process_fp32(cfg, run) else None,
        loss_chunk_tokens=cfg.loss_chunk_tokens,
    )
    metrics = MetricsFile(run_dir.metrics_file, state.step) if is_main else None
    export = ExportHook(
        schedule=cfg.checkpoint_schedule(),
        export_model=ExportModel(config, save_dtype) if is_main else None,
        publisher=_publisher(cfg, run, run_dir) if is_main else None,
        gathers=dp_rank == 0,
        exports_dir=run_dir.exports_dir,
        tokenizer_file=Path(data.tokenizer_path),
        eos_token=_eos_token_text(data),
        meta_fields={
            "run_name": run.run_name,
            "data_fingerprint": data.fingerprint,
            "config_hash": config_hash(cfg, run),
            "total_steps": run.train_steps,
            "init_recipe": init_recipe(cfg, run),
        },
        card=_card_context(cfg, run) if is_main else None,
    )
    resume = ResumeHook(
        run_dir.path,
        cfg.checkpoints.resume_every,
        cfg.checkpoints.keep_resume,
        identity,
        before_save=export.flush,
        state_at=cfg.publish.training_state_at,
        state_publisher=_state_publisher(cfg, run, run_dir) if is_main else None,
        state_document=_state_document(cfg, run, data, identity),
    )
    hooks: list[Hook] = [
        LogHook(metrics, run.run_name, every=max(1, run.train_steps // 10)),
        *(tracking_hooks(cfg, run, run_dir, identity, export.meta_fields) if is_main else ()),
        export,
        resume,
        *extra_hooks,
    ]
    if cfg.eval.every:
        samples = data.eval_samples(cfg.eval.samples)
        hooks.append(EvalHook(samples, run.micro_batch, dp_rank, run.dp, cfg.eval.every, metrics))
    hooks.extend(
        downstream_eval_hooks(
            cfg, data, run_dir, config, save_dtype, export.eos_token, dp_rank == 0, metrics
        )
    )
    return Training(trainer, hooks, export, resume, state.step, env.rank, env.world_size)


def _publisher(cfg: SuiteConfig, run: RunSpec, run_dir: RunDir):
    """The run's background publisher (rank 0), or None when `publish.store=none`."""
    from suite.publish.publisher import Publisher

    publisher = Publisher.for_run(cfg.publish, run_dir.path, run.repo_id)
    if publisher is not None:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # uploads run in the background: no bars in the training log
    return publisher


def _card_context(cfg: SuiteConfig, run: RunSpec):
    """What every export's model card says about the run (`suite.publish.model_card`)."""
    from suite.cards import card_context
    from suite.publish.spec import absolute_store_spec

    return card_context(cfg, run, absolute_store_spec(cfg.publish.store))


def _state_publisher(cfg: SuiteConfig, run: RunSpec, run_dir: RunDir):
    """The training-state publisher (rank 0): when states are published, or a previous
    process left some queued; None otherwise."""
    from suite.publish.store import open_store
    from suite.publish.training_state import TrainingStatePublisher, pending_states

    wanted = cfg.publish.training_state or cfg.publish.training_state_every
    pending = pending_states(run_dir.path)
    if not wanted and not pending:
        return None
    store = open_store(cfg.publish.store if wanted else pending[0].store)
    if store is None:
        return None
    return TrainingStatePublisher(run_dir.path, store, run.repo_id, cfg.publish.retry_policy())


def _state_document(cfg: SuiteConfig, run: RunSpec, data, identity: dict) -> dict:
    """The fields of every `training_state.json` of the run that do not change per step."""
    from suite.publish.metadata import code_version

    return {
        "run_name": run.run_name,
        "weights_repo": run.repo_id,
        "layout": {"dp": run.dp, "tp": run.tp, "zero_stage": cfg.zero_stage, "world": run.gpus},
        "data_fingerprint": data.fingerprint,
        "seq_len": run.seq_len,
        "global_batch": run.global_batch,
        "train_steps": run.train_steps,
        "config_hash": config_hash(cfg, run),
        "code_version": code_version(),
        "identity": identity,
    }


def config_hash(cfg: SuiteConfig, run: RunSpec) -> str:
    """Hash of everything that determines the run's weights (recorded in every export)."""
    import hashlib
    import json
    from dataclasses import asdict

    fields = asdict(run)
    seeds = {name: fields.pop(name) for name in ("seed", "init_seed", "data_seed")}
    document = {
        "run": fields,
        "optim": asdict(cfg.optim),
        "precision": cfg.precision,
        # One seed for both, as before the seeds were split: runs published then keep
        # their hash. Replicates with a fixed init or data seed record all three.
        "seed": seeds["seed"] if len(set(seeds.values())) == 1 else seeds,
        "zero_stage": cfg.zero_stage,
        "attention": cfg.attention,
        "activation_checkpointing": cfg.activation_checkpointing,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def init_recipe(cfg: SuiteConfig, run: RunSpec) -> dict:
    """What step0 is a pure function of (recorded in every export, so that `suite verify
    --deep` recomputes step0 without the suite config): the family, the ladder row with its
    init scheme, the padded vocabulary, the sequence length, the seed (the run's `init_seed`)
    and the precision.
    `config_hash` only identifies these; this spells them out."""
    from dataclasses import asdict

    return {
        "family": run.family.name,
        "size": asdict(run.size),
        "padded_vocab": run.padded_vocab,
        "seq_len": run.seq_len,
        "seed": run.init_seed,
        # The module holds step0 in the training precision; the export casts it again.
        "precision": cfg.precision,
    }


def _eos_token_text(data) -> str:
    from tokenizers import Tokenizer

    from suite.errors import ConfigError

    token = Tokenizer.from_file(str(data.tokenizer_path)).id_to_token(data.eos_id)
    if token is None:
        raise ConfigError("eos_id", data.eos_id, f"not a token of {data.tokenizer_path}")
    return token
