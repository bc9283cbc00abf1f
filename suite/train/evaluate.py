"""Held-out loss and perplexity on a fixed sample set the training order never touches."""

from __future__ import annotations

import math

import numpy as np


def evaluate(
    engine, samples: np.ndarray, micro_batch: int, dp_rank: int, dp: int, world_size: int
) -> dict:
    """Token-mean cross-entropy over `samples` ([n, seq_len+1]); collective across ranks.

    DP ranks take every dp-th sample; TP ranks of a group compute the same thing, which
    scales numerator and denominator alike, so the all-reduced ratio is exact.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    device = engine.device
    mine = torch.from_numpy(np.ascontiguousarray(samples[dp_rank::dp]))
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, tokens
    was_training = engine.module.training
    engine.module.eval()
    with torch.no_grad():
        for start in range(0, len(mine), micro_batch):
            chunk = mine[start : start + micro_batch].to(device)
            logits = engine(input_ids=chunk[:, :-1]).logits
            targets = chunk[:, 1:].reshape(-1)
            totals[0] += F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets, reduction="sum"
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
