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


LOSS_BYTES_PER_LOGIT: dict[Precision, int] = {"fp32": 16, "bf16": 14, "fp16": 14}
"""Peak bytes per logit element through the head and an fp32 cross-entropy, in backward:
16-bit logits (2) + fp32 log-softmax (4) + its gradient (4) + the fp32 logits' gradient (4)
+ the 16-bit gradient (2, once the fp32 one is freed: 14 in all); fp32 training has no
16-bit copies but its logits, log-softmax and their two gradients all take 4 (16).
Measured with `torch.nn.functional.cross_entropy` on CPU (torch 2.13): 14.0 and 16.2."""


def resume_checkpoint_bytes(
    family: Family, spec: SizeSpec, vocab: int, precision: Precision
) -> int:
    """Bytes of one resume checkpoint (all ranks together): the model states in the training
    dtype, plus Adam's two fp32 moments and, in 16-bit training, the fp32 master weights.
    pythia-12b in fp16: 11.85e9 × (2 + 4 + 8) ≈ 166 GB."""
    params = family.total_params(spec, vocab)
    return params * (BYTES[precision] + (4 if precision != "fp32" else 0) + 8)


DEEPSPEED_REDUCE_BUCKET = 500_000_000
"""DeepSpeed's default `reduce_bucket_size` (elements), used when the config sets none."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU for one rank of a run (model states split by TP and, per ZeRO stage, DP)."""

    weights: float
    """Half- or full-precision working weights, split over TP (and DP under ZeRO-3)."""
    gradients: float
    """Gradients in the working precision, split over TP (and DP under ZeRO-2/3)."""
    optimizer: float
    """Adam's two moments, and in mixed precision the fp32 master weights and the fp32
    gradient partition the optimizer steps with (DeepSpeed makes it from the 16-bit
    gradients at every step), split over TP and DP (ZeRO ≥ 1)."""
    activations: float
    """Activations of the decoder kept for backward for one micro batch, per rank."""
    loss: float = 0.0
    """The output head and cross-entropy at their peak in backward: full-vocabulary logits
    of one loss chunk (or of the whole micro batch, unchunked) — not split by TP, since
    AutoTP leaves the head whole — at `LOSS_BYTES_PER_LOGIT`."""
    buffers: float = 0.0
    """ZeRO-1/2's gradient bucket buffers (`reduce_bucket_size` elements each, training
    dtype, allocated at the first backward and kept), less the gradient they hold: with
    contiguous gradients each gradient is copied into the bucket and its own storage freed,
    so up to one bucket of `gradients` lives inside them and is counted once."""

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.loss
            + self.buffers
        )


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
    loss_chunk_tokens: int = 0,
    bucket_buffers: int = 0,
    bucket_elements: int = DEEPSPEED_REDUCE_BUCKET,
) -> MemoryEstimate:
    """Per-GPU bytes of one rank while it trains (a sum of components; each is at its peak
    during backward, so the sum bounds the update's peak from above, by little).

    `loss_chunk_tokens`: positions per chunk of the head + loss (`suite/train/loss.py`;
    0 = the whole micro batch at once). `bucket_buffers` × `bucket_elements`: ZeRO's
    gradient bucket buffers (with contiguous gradients DeepSpeed 0.19.8 allocates one, two
    with overlap_comm: `stage_1_and_2.py::setup_buckets`; `suite.planning` derives both from
    the run's DeepSpeed config). The all-gather bucket allocates nothing (DeepSpeed gathers
    into the flat weight buffer in place).
    """
    params = family.total_params(spec, vocab) / tp
    width = BYTES[precision]
    mixed = precision != "fp32"
    weights = params * width / (dp if zero_stage >= 3 else 1)
    gradients = params * width / (dp if zero_stage >= 2 else 1)
    # Adam moments (8 bytes); in 16 bits also the fp32 master copy (4) and the fp32 gradient
    # partition of the step (4; measured: without it pythia-160m bf16's peak is 16% above).
    optimizer = params * (8 + (8 if mixed else 0)) / (dp if zero_stage >= 1 else 1)
    s, b, d, a, layers = seq_len, micro_batch, spec.d_model, spec.n_heads, spec.n_layers
    # Korthikanti et al. eq. 2, 16-bit activations: sbd(10 + 24/t) per layer; the 5as/(dt)
    # term (attention scores and their dropout mask) vanishes with flash attention.
    per_layer = s * b * d * (10 + 24 / tp) + (0 if flash_attention else 5 * a * s * s * b / tp)
    act_scale = 1 if mixed else 2  # fp32 activations take twice the bytes
    if activation_checkpointing:
        # Only each layer's input (2sbd bytes) is kept; one layer is recomputed at a time.
        activations = (layers * 2 * s * b * d / tp + per_layer) * act_scale
    else:
        activations = layers * per_layer * act_scale
    # Every TP rank computes the whole vocabulary for its tokens (the head is not split).
    tokens = s * b
    loss_rows = min(loss_chunk_tokens, tokens) if loss_chunk_tokens > 0 else tokens
    loss = loss_rows * vocab * LOSS_BYTES_PER_LOGIT[precision]
    bucket = bucket_elements * width
    buffers = max(0.0, bucket_buffers * bucket - min(gradients, bucket)) if bucket_buffers else 0.0
    return MemoryEstimate(weights, gradients, optimizer, activations, loss, buffers)
