"""Analytic training cost: FLOPs and per-GPU memory. Pure functions, no torch.

FLOPs follow the PaLM/Megatron accounting: per token, 6 × (parameters that take part in a
matmul: everything but the input embedding lookup and the norms/biases' negligible work)
plus the attention score/value matmuls, 12 · layers · d_model · seq_len (forward + backward).
Memory follows ZeRO's accounting (Rajbhandari et al. 2020) for model states and Korthikanti
et al. 2022 for activations of a transformer layer under tensor parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model_zoo.families import Family
from model_zoo.ladder import SizeSpec

Precision = Literal["fp32", "bf16", "fp16"]
"""Training precisions: fp32, or 16-bit mixed precision (fp16 with dynamic loss scaling)."""
BYTES: dict[Precision, int] = {"fp32": 4, "bf16": 2, "fp16": 2}
"""Bytes per value of each precision (a test checks it covers every `Precision`)."""


def matmul_params(family: Family, spec: SizeSpec, vocab: int) -> int:
    """Parameters used in matmuls per token: non-embedding + the output projection."""
    return family.non_embedding_params(spec) + vocab * spec.d_model


def flops_per_token(family: Family, spec: SizeSpec, vocab: int, seq_len: int) -> int:
    """Training FLOPs (forward + backward) per token, including causal attention matmuls."""
    attention = 12 * spec.n_layers * spec.d_model * seq_len
    return 6 * matmul_params(family, spec, vocab) + attention


def training_flops(family: Family, spec: SizeSpec, vocab: int, seq_len: int, tokens: int) -> int:
    return flops_per_token(family, spec, vocab, seq_len) * tokens


def gpu_hours(total_flops: float, peak_flops_per_gpu: float, mfu: float) -> float:
    """Wall-clock GPU-hours at a model-FLOPs utilisation `mfu` of `peak_flops_per_gpu`."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu={mfu}: must be in (0, 1], e.g. 0.4")
    return total_flops / (peak_flops_per_gpu * mfu) / 3600.0


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU for one rank of a run (model states split by TP and, per ZeRO stage, DP)."""

    weights: float
    """Half- or full-precision working weights, split over TP (and DP under ZeRO-3)."""
    gradients: float
    """Gradients in the working precision, split over TP (and DP under ZeRO-2/3)."""
    optimizer: float
    """fp32 master weights (mixed precision) + Adam's two moments, split over TP and DP (ZeRO ≥ 1)."""
    activations: float
    """Activations kept for backward for one micro batch, per rank."""

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def memory_per_gpu(
    family: Family,
    spec: SizeSpec,
    vocab: int,
    seq_len: int,
    micro_batch: int,
    tp: int,
    dp: int,
    zero_stage: int,
    precision: Precision,
    flash_attention: bool = True,
    activation_checkpointing: bool = False,
) -> MemoryEstimate:
    params = family.total_params(spec, vocab) / tp
    width = BYTES[precision]
    mixed = precision != "fp32"
    weights = params * width / (dp if zero_stage >= 3 else 1)
    gradients = params * width / (dp if zero_stage >= 2 else 1)
    # Adam moments (8 bytes) plus an fp32 master copy when training in 16 bits (4 bytes).
    optimizer = params * (8 + (4 if mixed else 0)) / (dp if zero_stage >= 1 else 1)
    s, b, d, a, layers = seq_len, micro_batch, spec.d_model, spec.n_heads, spec.n_layers
    # Korthikanti et al. eq. 2, 16-bit activations: sbd(10 + 24/t) per layer; the 5as/(dt)
    # term (attention scores and their dropout mask) vanishes with flash attention.
    per_layer = s * b * d * (10 + 24 / tp) + (0 if flash_attention else 5 * a * s * s * b / tp)
    act_scale = 1 if mixed else 2  # fp32 activations take twice the bytes
    logits = s * b * vocab / tp * 4  # fp32 logits for the loss
    if activation_checkpointing:
        # Only each layer's input (2sbd bytes) is kept; one layer is recomputed at a time.
        activations = (layers * 2 * s * b * d / tp + per_layer) * act_scale + logits
    else:
        activations = layers * per_layer * act_scale + logits
    return MemoryEstimate(weights, gradients, optimizer, activations)
