"""The DeepSpeed engine of a run: its JSON config, the AdamW param groups, initialization.

The optimizer is PyTorch's AdamW handed to DeepSpeed as a client optimizer (no JIT-compiled
fused kernel, the same update as a bare PyTorch loop); the learning rate is set on its
param groups before every update from the pure schedule (`lr_schedule`), so there is no
scheduler state to drift on resume.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from suite.config import RunSpec, SuiteConfig
from suite.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Effectively "never": DeepSpeed's own periodic console lines would flood the progress output.
_QUIET_STEPS = 10**12

#: ZeRO reduce/all-gather bucket, in elements: EleutherAI/pythia `models/12B/pythia-12b.yml`
#: uses 1.26e9 (its 160M, 1B, 1.4B and 2.8B configs 5e8). `deepspeed_bucket_elements` caps it
#: at the gradient a rank holds: with overlap_comm and contiguous_gradients ZeRO-1/2 allocate
#: two buffers of this many elements in the model dtype up front (1.26e9 × 2 × 2 bytes = 5 GB
#: for a 160m model whose whole fp16 gradient is 0.32 GB).
PYTHIA_BUCKET_ELEMENTS = 1_260_000_000

#: Pythia's dynamic loss scaler (every `models/*/pythia-*.yml`, `fp16` block), stated in full
#: rather than left to DeepSpeed 0.19.8's defaults (`runtime/precision_config.py`), which
#: agree except initial_scale_power 16: starting at 2**16 the first updates can overflow and
#: be skipped until the scale has halved down to where Pythia started.
PYTHIA_FP16 = {
    "loss_scale": 0,  # 0 = dynamic
    "initial_scale_power": 12,  # initial scale 2**12
    "loss_scale_window": 1000,  # updates without overflow before the scale doubles
    "hysteresis": 2,  # overflows tolerated before the scale halves
    "min_loss_scale": 1,
}


def autotp_partition_config(run: RunSpec) -> dict:
    """AutoTP rules from the family: column layers split outputs, row layers inputs."""

    def patterns(names: tuple[str, ...]) -> list[str]:
        # AutoTP matches weight names; the bias of a matched layer is split along with it.
        return [rf".*\.{re.escape(name)}\.weight$" for name in names]

    return {
        "use_default_specs": False,
        "layer_specs": [
            {"patterns": patterns(run.family.tp_column_layers), "partition_type": "column"},
            {"patterns": patterns(run.family.tp_row_layers), "partition_type": "row"},
        ],
    }


def single_process_fp32(cfg: SuiteConfig, run: RunSpec) -> bool:
    """One rank in fp32: run DeepSpeed without ZeRO and clip in the trainer.

    ZeRO partitions optimizer state over DP ranks; with a single rank there is nothing to
    partition and stage 1 only adds flat-buffer copies every update (measured ~12% fewer
    tokens/s on the mini suite, benchmarks/bench_trainer.py). Without ZeRO, DeepSpeed's fp32
    path clips but does not report the norm, so the trainer clips (`torch`'s
    clip_grad_norm_, same math) and logs the norm itself.
    """
    return run.gpus == 1 and cfg.precision == "fp32"


def deepspeed_config(cfg: SuiteConfig, run: RunSpec) -> dict:
    """DeepSpeed's JSON config for the run (ZeRO stage, precision, clipping, AutoTP)."""
    if cfg.zero_stage == 3:
        raise ConfigError(
            "zero_stage",
            cfg.zero_stage,
            "the trainer gathers weights for export with AutoTP, not ZeRO-3 partitioning; "
            "use 0, 1 or 2",
        )
    single = single_process_fp32(cfg, run)
    stage = 0 if single else cfg.zero_stage
    config: dict = {
        # With TP DeepSpeed derives the batch from these two; giving train_batch_size too
        # makes it count TP ranks as data-parallel (contract 3).
        "train_micro_batch_size_per_gpu": run.micro_batch,
        "gradient_accumulation_steps": run.grad_accum,
        "gradient_clipping": 0.0 if single else cfg.optim.grad_clip,
        "zero_optimization": {"stage": stage},
        "steps_per_print": _QUIET_STEPS,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if stage in (1, 2):
        bucket = deepspeed_bucket_elements(run)
        # Never larger than a rank's gradient: DeepSpeed's default 5e8-element bucket would
        # otherwise cost a small model on one GPU 1 GB of bf16 for nothing.
        config["zero_optimization"] |= {
            "reduce_bucket_size": bucket,
            "allgather_bucket_size": bucket,
        }
        if run.dp > 1:
            # GPT-NeoX/Pythia's ZeRO settings: gradients are reduced bucket by bucket while
            # the backward pass goes on (overlap_comm) into one contiguous buffer. With one DP
            # rank there is nothing to reduce or overlap.
            config["zero_optimization"] |= {
                "overlap_comm": True,
                "contiguous_gradients": True,
                "reduce_scatter": True,
            }
    if cfg.precision == "fp16":
        config["fp16"] = {"enabled": True, **PYTHIA_FP16}
    elif cfg.precision == "bf16":
        config["bf16"] = {"enabled": True}
        # bf16 keeps 8 mantissa bits: a DP reduction in bf16 (DeepSpeed's default for bf16)
        # sums up to 256 ranks' gradients with a rounding error ~2**-8 per addition, which
        # fp32 master weights then faithfully apply. Reduce in fp32 instead: twice the
        # gradient traffic, overlapped with backward. Not `data_types.grad_accum_dtype:
        # fp32`: with ZeRO-1 DeepSpeed 0.19.8 then switches to its BF16_Optimizer, which
        # trains wrongly under AutoTP (TP=2 loss 6.18 vs TP=1 6.09 at update 2, measured on
        # the mini suite). Micro-batch gradients are still summed in bf16 with grad_accum
        # > 1 (Pythia's bf16 1b used none).
        config["communication_data_type"] = "fp32"
    if run.tp > 1:
        config["tensor_parallel"] = {
            "autotp_size": run.tp,
            "partition_config": autotp_partition_config(run),
        }
    return config


def deepspeed_bucket_elements(run: RunSpec) -> int:
    """ZeRO bucket size: Pythia's 1.26e9 elements, but no larger than a rank's gradient."""
    params = run.family.total_params(run.size, run.padded_vocab)
    return min(PYTHIA_BUCKET_ELEMENTS, -(-params // run.tp))


def param_groups(model: torch.nn.Module, run: RunSpec, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights, and biases + norms without weight decay."""
    exempt = tuple(p.lower() for p in run.family.norm_exempt_patterns)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(p in name.lower() for p in exempt) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: SuiteConfig, run: RunSpec):
    import torch

    return torch.optim.AdamW(
        param_groups(model, run, cfg.optim.weight_decay),
        lr=run.lr,  # replaced before every update by the schedule
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
    )


def build_engine(model: torch.nn.Module, cfg: SuiteConfig, run: RunSpec):
    """`deepspeed.initialize` with the run's config; returns the engine."""
    import deepspeed

    for name in ("DeepSpeed", "deepspeed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    deepspeed.utils.logger.setLevel(logging.WARNING)
    optimizer = build_optimizer(model, cfg, run)
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=deepspeed_config(cfg, run)
    )
    return engine


def set_learning_rate(engine, lr: float) -> None:
    for group in engine.optimizer.param_groups:
        group["lr"] = lr
