"""The global sample order, the batch → rows map (contract 1) and the rank layout (contract 3).

Packing (contract 2): documents, each followed by one EOS, are concatenated into one token
stream. Sample k is the window of tokens `[k*seq_len, k*seq_len + seq_len + 1)`:
consecutive samples share their boundary token (like Megatron and Pythia), so every token
but the first is a prediction target exactly once per epoch. A stream of T tokens gives
`(T - 1) // seq_len` samples; the tail that does not fill a sample is not used.

Order: global position p lies in epoch `e = p // N` (N samples per epoch) and is sample
`perm_e[p % N]`. `perm_e` sorts N raw 64-bit outputs of PCG64 seeded by
`SeedSequence([seed, e])` (stable argsort). It depends only on (N, seed, e) — N itself
follows from the dataset fingerprint and seq_len — and only on the PCG64 and SeedSequence
algorithms, which numpy specifies exactly, not on `Generator.permutation`'s algorithm,
which numpy may change between versions. This module defines the order; readers open it as
memory-mapped artifacts built once from this definition and checked against it
(`order_store.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from data_order.errors import DataConfigError


def num_packed_samples(num_tokens: int, seq_len: int) -> int:
    return max(0, (num_tokens - 1) // seq_len)


def compute_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """Sample ids of epoch `epoch` in training order, recomputed (read-only int64 array).

    The definition of the order. At the Pile's scale (146M samples) it takes ~40 s and
    ~3.5 GB at peak, so readers open the artifact `order_store` builds from it once, and
    this stays the verification path (`suite verify --data`) and the fallback.
    """
    bits = np.random.PCG64(np.random.SeedSequence([seed, epoch]))
    keys = bits.random_raw(num_samples)
    perm = np.argsort(keys, kind="stable")  # int64 on every platform numpy supports
    del keys
    perm = perm.astype(np.int64, copy=False)
    perm.flags.writeable = False
    return perm


@lru_cache(maxsize=4)
def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """`compute_permutation`, cached in this process (small datasets, tests, the fallback)."""
    return compute_permutation(num_samples, seed, epoch)


def positions_to_samples(positions: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """Sample ids at global positions (any shape), crossing epochs."""
    positions = np.asarray(positions, dtype=np.int64)
    epochs, within = np.divmod(positions, num_samples)
    out = np.empty_like(positions)
    for epoch in np.unique(epochs):
        mask = epochs == epoch
        out[mask] = epoch_permutation(num_samples, seed, int(epoch))[within[mask]]
    return out


@dataclass(frozen=True)
class BatchLayout:
    """How one global batch is split over data-parallel ranks and micro steps (contract 3).

    Within batch i, micro step k, DP rank r trains on global positions
    `i*B + k*micro*dp + r*micro ... + micro` (GPT-NeoX's order). TP ranks of one DP group
    get identical rows, so TP does not appear here.
    """

    global_batch: int  #: B, samples per optimizer update
    micro_batch: int  #: samples per rank per micro step
    dp_size: int  #: data-parallel ranks
    grad_accum: int = 1  #: micro steps per optimizer update

    def __post_init__(self) -> None:
        for field in ("global_batch", "micro_batch", "dp_size", "grad_accum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise DataConfigError(field, value, "must be a positive integer")
        product = self.micro_batch * self.dp_size * self.grad_accum
        if product != self.global_batch:
            raise DataConfigError(
                "global_batch",
                self.global_batch,
                f"must equal micro_batch x dp_size x grad_accum = {self.micro_batch} x {self.dp_size} x "
                f"{self.grad_accum} = {product}; change one of them",
            )

    def check_rank(self, dp_rank: int, micro_step: int | None = None) -> None:
        if not 0 <= dp_rank < self.dp_size:
            raise DataConfigError("dp_rank", dp_rank, f"must be in [0, dp_size={self.dp_size})")
        if micro_step is not None and not 0 <= micro_step < self.grad_accum:
            raise DataConfigError(
                "micro_step", micro_step, f"must be in [0, grad_accum={self.grad_accum})"
            )


def rank_rows(
    layout: BatchLayout, batch_index: int, dp_rank: int, micro_step: int | None = None
) -> np.ndarray:
    """Global positions DP rank `dp_rank` trains on in batch `batch_index`.

    Shape `[grad_accum, micro_batch]` (row k = micro step k), or `[micro_batch]` for one
    `micro_step`. The single source of truth for the trainer and `suite batch`.
    """
    layout.check_rank(dp_rank, micro_step)
    if batch_index < 0:
        raise DataConfigError(
            "batch_index", batch_index, "batch indices are 0-based and non-negative"
        )
    steps = (
        np.arange(layout.grad_accum, dtype=np.int64)
        if micro_step is None
        else np.array([micro_step])
    )
    starts = (
        batch_index * layout.global_batch
        + steps * layout.micro_batch * layout.dp_size
        + dp_rank * layout.micro_batch
    )
    rows = starts[:, None] + np.arange(layout.micro_batch, dtype=np.int64)
    return rows if micro_step is None else rows[0]


def batch_hash(tokens: np.ndarray) -> str:
    """sha256 hex of a token array: its shape, then the ids as little-endian int64.

    Converting to int64 first makes the digest independent of the stored dtype (uint16 or
    int32 on disk, int64 in memory or in torch).
    """
    array = np.ascontiguousarray(np.asarray(tokens).astype("<i8", copy=False))
    digest = hashlib.sha256(f"batch-v1:{list(array.shape)}:".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
