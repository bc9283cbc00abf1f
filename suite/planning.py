"""What a sweep would cost: one row per run, analytic only (no weights are allocated)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from model_zoo import (
    MemoryEstimate,
    gpu_hours,
    memory_per_gpu,
    resume_checkpoint_bytes,
    training_flops,
)
from suite.config import RunSpec, SuiteConfig, resolve_all

SAVE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class PlanRow:
    """One run of the sweep as `suite plan` reports it."""

    run: str
    size: str
    dataset: str
    params: int
    non_embedding_params: int
    layers: int
    d_model: int
    heads: int
    tp: int
    dp: int
    gpus: int
    nodes: int
    micro_batch: int
    grad_accum: int
    lr: float
    tokens: int
    flops: float
    gpu_hours: float
    checkpoints: int
    checkpoint_storage_gb: float
    memory_per_gpu_gb: float
    fits: bool
    resume_checkpoint_gb: float
    """One resume checkpoint, all ranks together (model states + fp32 optimizer state)."""
    resume_save_s: float
    """Time to write it at `cluster.checkpoint_write_gb_per_s`."""
    signal_delay_s: int
    """Warning before the time limit the job asks for: `slurm.signal_delay_s`, raised when
    finishing the update and saving need longer (`stop_warning_s`)."""
    run_disk_gb: float
    """Peak disk of the run directory: keep_resume + 1 resume checkpoints (one being
    written) and the exports it keeps (`publish.keep_exports`; else two in flight)."""


def zero_buckets(cfg: SuiteConfig, run: RunSpec) -> tuple[int, int]:
    """(buffers, elements each) of the gradient buckets the run's DeepSpeed config makes
    ZeRO-1/2 allocate (DeepSpeed 0.19.8 `stage_1_and_2.py::setup_buckets`): one bucket of
    `reduce_bucket_size` elements with contiguous gradients (its default), a second with
    overlap_comm (set with DP > 1, `suite.train.engine.deepspeed_config`)."""
    from model_zoo.estimates import DEEPSPEED_REDUCE_BUCKET
    from suite.train.engine import deepspeed_config  # torch-free: the JSON config only

    if cfg.zero_stage not in (1, 2):  # the engine refuses 3; 0 has no buckets
        return 0, 0
    zero = deepspeed_config(cfg, run)["zero_optimization"]
    if zero["stage"] not in (1, 2) or not zero.get("contiguous_gradients", True):
        return 0, 0
    buffers = 2 if zero.get("overlap_comm", False) else 1
    return buffers, int(zero.get("reduce_bucket_size", DEEPSPEED_REDUCE_BUCKET))


def plan_memory(cfg: SuiteConfig, run: RunSpec) -> MemoryEstimate:
    """Per-GPU memory of one rank of the run, as configured (`model_zoo.memory_per_gpu`)."""
    layout = run.layout
    buffers, elements = zero_buckets(cfg, run)
    return memory_per_gpu(
        run.family,
        run.size,
        run.padded_vocab,
        run.seq_len,
        layout.micro_batch,
        layout.tp,
        layout.dp,
        cfg.zero_stage,
        cfg.precision,
        activation_checkpointing=cfg.activation_checkpointing,
        loss_chunk_tokens=cfg.loss_chunk_tokens,
        bucket_buffers=buffers,
        bucket_elements=elements,
    )


def resume_save_seconds(cfg: SuiteConfig, run: RunSpec) -> float:
    """Seconds to write one resume checkpoint (every rank writes its part in parallel; the
    filesystem's aggregate bandwidth is the limit)."""
    size = resume_checkpoint_bytes(run.family, run.size, run.padded_vocab, cfg.precision)
    return size / (cfg.cluster.checkpoint_write_gb_per_s * 1e9)


def update_seconds(cfg: SuiteConfig, run: RunSpec) -> float:
    """Seconds of one optimizer update at the planned MFU."""
    tokens = run.global_batch * run.seq_len
    flops = training_flops(run.family, run.size, run.padded_vocab, run.seq_len, tokens)
    return flops / (run.layout.gpus * cfg.cluster.peak_flops_per_gpu * cfg.cluster.mfu)


def stop_warning_s(cfg: SuiteConfig, run: RunSpec) -> int:
    """The warning a job needs before its time limit: finish the update in flight, save a
    resume checkpoint (twice the estimate: shared filesystems vary) and a minute for the
    stop itself — never less than `slurm.signal_delay_s`."""
    needed = update_seconds(cfg, run) + 2 * resume_save_seconds(cfg, run) + 60
    return max(cfg.slurm.signal_delay_s, math.ceil(needed))


def plan_row(cfg: SuiteConfig, run: RunSpec, n_checkpoints: int) -> PlanRow:
    layout = run.layout  # the parallel arithmetic: the same object SLURM and the trainer use
    flops = training_flops(run.family, run.size, run.padded_vocab, run.seq_len, run.tokens)
    memory = plan_memory(cfg, run)
    save_bytes = SAVE_BYTES[cfg.publish.save_dtype or cfg.precision]
    export_gb = run.total_params * save_bytes / 1e9
    resume_gb = resume_checkpoint_bytes(run.family, run.size, run.padded_vocab, cfg.precision) / 1e9
    return PlanRow(
        run=run.run_name,
        size=run.size_name,
        dataset=run.dataset_name,
        params=run.total_params,
        non_embedding_params=run.non_embedding_params,
        layers=run.size.n_layers,
        d_model=run.size.d_model,
        heads=run.size.n_heads,
        tp=layout.tp,
        dp=layout.dp,
        gpus=layout.gpus,
        nodes=layout.nodes,
        micro_batch=layout.micro_batch,
        grad_accum=layout.grad_accum,
        lr=run.lr,
        tokens=run.tokens,
        flops=float(flops),
        gpu_hours=gpu_hours(flops, cfg.cluster.peak_flops_per_gpu, cfg.cluster.mfu),
        checkpoints=n_checkpoints,
        checkpoint_storage_gb=n_checkpoints * run.total_params * save_bytes / 1e9,
        memory_per_gpu_gb=memory.total / 1e9,
        fits=memory.total / 1e9 <= cfg.cluster.gpu_memory_gb,
        resume_checkpoint_gb=resume_gb,
        resume_save_s=resume_save_seconds(cfg, run),
        signal_delay_s=stop_warning_s(cfg, run),
        run_disk_gb=(cfg.checkpoints.keep_resume + 1) * resume_gb
        + (n_checkpoints if cfg.publish.keep_exports else 2) * export_gb,
    )


def plan_rows(cfg: SuiteConfig) -> list[PlanRow]:
    """Validate every run (raising on the first bad one) and cost it."""
    runs = resolve_all(cfg)
    n_checkpoints = len(cfg.checkpoint_schedule().steps())
    return [plan_row(cfg, run, n_checkpoints) for run in runs]


def plan_table(cfg: SuiteConfig):
    """The plan as a pandas DataFrame with a final `TOTAL` row (sums of the additive columns)."""
    import pandas as pd

    frame = pd.DataFrame([asdict(row) for row in plan_rows(cfg)])
    additive = [
        "gpus",
        "nodes",
        "tokens",
        "flops",
        "gpu_hours",
        "checkpoints",
        "checkpoint_storage_gb",
        "run_disk_gb",
    ]
    total = {column: frame[column].sum() for column in additive}
    total |= {
        "run": "TOTAL",
        "params": frame["params"].sum(),
        "non_embedding_params": frame["non_embedding_params"].sum(),
    }
    frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    # The TOTAL row leaves per-run columns empty: nullable integers keep the rest integral.
    integral = [name for name, kind in PlanRow.__annotations__.items() if kind == "int"]
    return frame.astype({name: "Int64" for name in integral})
