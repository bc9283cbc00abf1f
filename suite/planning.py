"""What a sweep would cost: one row per run, analytic only (no weights are allocated)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from model_zoo import gpu_hours, memory_per_gpu, training_flops
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


def plan_row(cfg: SuiteConfig, run: RunSpec, n_checkpoints: int) -> PlanRow:
    layout = run.layout  # the parallel arithmetic: the same object SLURM and the trainer use
    flops = training_flops(run.family, run.size, run.padded_vocab, run.seq_len, run.tokens)
    memory = memory_per_gpu(
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
    )
    save_bytes = SAVE_BYTES[cfg.publish.save_dtype or cfg.precision]
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
