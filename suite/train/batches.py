"""What update `s` trains on, as a pure function of `s` (contract 1: batch `s-1`).

No loader state exists: a rank's rows come from `Dataset.rank_batch` (the one shared slicing
function, contract 3), and the batch hash is over the *global* batch, so it is identical for
every layout. The running hash over batches 0 … N-1 is what checkpoint `stepN` records as
`batches_hash`; `batches_hash_upto` recomputes it from `data_order` alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

#: Running hash of "no batch consumed yet" (checkpoint step0).
EMPTY_BATCHES_HASH = hashlib.sha256(b"suite-batches-v1").hexdigest()


def chain_hash(previous: str, batch_hash: str) -> str:
    """Running hash after one more batch: sha256(previous ‖ batch hash)."""
    return hashlib.sha256(f"{previous}:{batch_hash}".encode()).hexdigest()


def batches_hash_upto(dataset, global_batch: int, steps: int) -> str:
    """The running hash over batches 0 … steps-1, straight from `data_order`."""
    from data_order import batch_hash

    running = EMPTY_BATCHES_HASH
    for index in range(steps):
        running = chain_hash(running, batch_hash(dataset.batch(index, global_batch)))
    return running


@dataclass
class BatchSource:
    """This rank's rows of each update, plus the global batch hash (on the logging rank)."""

    dataset: object
    """A `data_order.Dataset`."""
    layout: object
    """The run's `data_order.BatchLayout`."""
    dp_rank: int
    """This rank's data-parallel rank (TP ranks of one DP group share it)."""

    def rows(self, step: int) -> np.ndarray:
        """Tokens of update `step` for this rank: `[grad_accum, micro_batch, seq_len + 1]`."""
        return self.dataset.rank_batch(self.layout, step - 1, self.dp_rank)

    def global_hash(self, step: int) -> str:
        from data_order import batch_hash

        return batch_hash(self.dataset.batch(step - 1, self.layout.global_batch))
