"""Held-out loss and perplexity on a fixed sample set the training order never touches."""

from __future__ import annotations

import math

import numpy as np

#: Token positions per chunk of the evaluation's head + loss. Under `no_grad` nothing is kept
#: for backward, so chunking alone bounds the logits to one chunk (10 bytes per element at
#: the forward's peak in 16 bits: 2 GB at vocabulary 50304), whatever the training knob says.
EVAL_CHUNK_TOKENS = 4096


def evaluate(
    engine,
    samples: np.ndarray,
    micro_batch: int,
    dp_rank: int,
    dp: int,
    world_size: int,
    chunk_tokens: int = EVAL_CHUNK_TOKENS,
) -> dict:
    """Token-mean cross-entropy over `samples` ([n, seq_len+1]); collective across ranks.

    DP ranks take every dp-th sample; TP ranks of a group compute the same thing, which
    scales numerator and denominator alike, so the all-reduced ratio is exact. The loss is
    `suite.train.loss.engine_lm_loss` in `chunk_tokens` chunks (0: unchunked).
    """
    import torch
    import torch.distributed as dist

    from suite.train.loss import engine_lm_loss

    device = engine.device
    mine = torch.from_numpy(np.ascontiguousarray(samples[dp_rank::dp]))
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, tokens
    was_training = engine.module.training
    engine.module.eval()
    with torch.no_grad():
        for start in range(0, len(mine), micro_batch):
            chunk = mine[start : start + micro_batch].to(device)
            targets = chunk[:, 1:]
            totals[0] += engine_lm_loss(
                engine, chunk[:, :-1], targets, chunk_tokens, reduction="sum"
            ).double()
            totals[1] += targets.numel()
    engine.module.train(was_training)
    if world_size > 1:
        dist.all_reduce(totals)
    loss = float(totals[0] / totals[1])
    return {
        "eval_loss": loss,
        "eval_perplexity": math.exp(min(loss, 700.0)),
        "eval_tokens": int(totals[1]) // max(1, world_size // dp),
    }
