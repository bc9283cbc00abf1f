"""The language-model loss without full-vocabulary fp32 logits for the whole micro batch.

The LM head is not split by AutoTP (the family's partition rules split only the attention
and MLP matmuls), so every TP rank holds logits `[micro, seq_len, V]`. Through an fp32
cross-entropy they cost, at the peak of backward, 14 bytes per logit element in 16-bit
training (the 16-bit logits, the fp32 log-softmax, the fp32 gradients of it and of the fp32
logits) and 16 in fp32 (measured: `benchmarks/bench_memory.py`): 46 GB at Pythia's micro
batch 32 × 2048 × 50304. Here the decoder runs once to its final hidden states; the head
and the cross-entropy then run over chunks of `chunk_tokens` positions, each but the last
under non-reentrant `torch.utils.checkpoint`, so no chunk's logits are kept for backward:
they are recomputed there one chunk at a time (Liger's fused linear cross-entropy and
torchtitan's loss parallel do the same with custom kernels/DTensors). The price is one more
head matmul per recomputed token in backward (2·V·d FLOPs: ~3% of pythia-1b's training
FLOPs per token, ~15% of pythia-70m's), none when a micro batch fits in one chunk.

The loss is the mean over every target position in float32, as before: the per-chunk sums
(fp32) are added and divided by the target count, equal to `F.cross_entropy(logits.float(),
targets)` up to float summation order (`tests/test_train_loss.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Reduction = Literal["mean", "sum"]


def lm_loss(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy of a transformers causal LM on `targets` (same shape as `input_ids`).

    `chunk_tokens` ≤ 0: the model's own forward and one full-vocabulary fp32 cross-entropy
    (the unchunked reference). Otherwise the decoder's final hidden states go through the
    output head and the loss `chunk_tokens` positions at a time, each chunk checkpointed
    when grad is enabled (under `no_grad` chunking alone bounds the memory). Returns a
    float32 scalar: the mean over all targets, or their sum.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    flat_targets = targets.reshape(-1)
    if chunk_tokens <= 0:
        logits = model(input_ids=input_ids).logits
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), flat_targets, reduction=reduction
        )
    decoder = model.base_model  # the decoder stack: embeddings, layers, final norm
    if decoder is model:
        raise TypeError(f"{type(model).__name__} has no separate decoder and output head")
    head = model.get_output_embeddings()
    hidden = decoder(input_ids=input_ids).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1])
    # `split` (not slicing): its backward concatenates the chunks' input gradients once,
    # instead of adding a zero-padded full-size gradient per chunk.
    parts = list(zip(hidden.split(chunk_tokens), flat_targets.split(chunk_tokens), strict=True))
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for index, (part, part_targets) in enumerate(parts):
        # The last chunk is not checkpointed: backward starts with it, so keeping its logits
        # costs what recomputing them would (the same peak), minus the recomputation. With
        # one chunk this is the unchunked loss, computed from the decoder's hidden states.
        if torch.is_grad_enabled() and index < len(parts) - 1:
            total = total + checkpoint(
                _head_loss_sum, head, part, part_targets, use_reentrant=False
            )
        else:
            total = total + _head_loss_sum(head, part, part_targets)
    return total / flat_targets.numel() if reduction == "mean" else total


def _head_loss_sum(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Summed fp32 cross-entropy of one chunk: the logits live only inside this call."""
    import torch.nn.functional as F

    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def engine_lm_loss(
    engine,
    input_ids: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """`lm_loss` of the DeepSpeed engine's model, computed inside `engine(...)`.

    Why through the engine and not `engine.module.base_model` / the head directly: for ZeRO
    0–2 and AutoTP, `DeepSpeedEngine.forward` (0.19.8, `runtime/engine.py`) is mostly
    `self.module(...)` — no autocast unless `torch_autocast` is configured, the module's
    forward pre/post hooks only run timers (and cast floating inputs under fp16
    `auto_cast`) — but it also registers backward hooks on its *output*
    (`register_output_backward_hooks`): the first gradient reaching the output runs
    `_backward_prologue`, which for the ZeRO optimizer calls `backward_prologue`,
    `enter_backward` and `set_gradient_accumulation_boundary`, sets up the gradient
    buckets and queues the post-backward reduction. `engine.backward` does not call it
    itself. Pieces called outside `engine(...)` would skip all of that, and a hook on the
    hidden states would fire only after the head's weight gradient was already produced.
    So the module's `forward` is replaced, for this one call, by one returning the loss:
    the engine's hooks land on the loss, the first tensor backward reaches, exactly as on
    the logits before. `nn.Module.__call__` (and so every hook DeepSpeed put on the module)
    runs as usual; the instance attribute is removed afterwards, restoring the class's
    `forward`.
    """
    module = engine.module
    if chunk_tokens <= 0:
        import torch.nn.functional as F

        logits = engine(input_ids=input_ids).logits
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction
        )

    def forward(*, input_ids: torch.Tensor) -> torch.Tensor:
        return lm_loss(module, input_ids, targets, chunk_tokens, reduction)

    if "forward" in vars(module):
        raise RuntimeError("the model's forward is already replaced on the instance")
    module.forward = forward
    try:
        return engine(input_ids=input_ids)
    finally:
        del module.forward
