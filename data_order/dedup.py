"""Exact and near-duplicate detection over tokenized documents.

* exact: documents with the same UTF-8 text (sha256) — the first in corpus order is kept.
* minhash: datasketch MinHash LSH (Jaccard threshold 0.87 by default, the Pythia
  deduplicated Pile's setting) over the set of `shingle_size`-token shingles of each
  document (token ids, not words: the documents are already tokenized, and token shingles
  follow the same text the model sees). Documents are visited in corpus order; one whose
  estimated Jaccard similarity with an already kept document reaches the threshold is
  removed, and the report names the kept document it duplicates (the most similar
  candidate) and the estimate. Exact duplicates are removed first (similarity 1.0).

This is the single-process engine (`dedup_engine="single"`): every kept sketch in memory.
`data_order/dedup_engine.py` gives the same removals from datatrove's on-disk MinHash stages.

Shingles are hashed to 32 bits with numpy (a polynomial rolling hash finished by the
MurmurHash3 mixer) and fed to datasketch's `MinHash.update_batch` with an identity hash
function, which keeps datasketch's permutations while avoiding one Python sha1 per shingle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datasketch import MinHash

#: Odd 64-bit multiplier of the rolling shingle hash (wraps modulo 2**64).
_SHINGLE_BASE = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Removal:
    removed: str  #: id of the removed document
    kept: str  #: id of the kept document it duplicates
    similarity: float  #: 1.0 for exact duplicates, else the MinHash Jaccard estimate
    method: str  #: "exact" or "minhash"
    index: int = -1  #: position of the removed document in the list given to find_duplicates


def shingle_hashes(tokens: np.ndarray, shingle_size: int) -> np.ndarray:
    """Distinct 32-bit hashes of the `shingle_size`-token windows of `tokens`."""
    t = np.asarray(tokens, dtype=np.uint64)
    k = min(shingle_size, len(t))
    with np.errstate(over="ignore"):
        h = np.zeros(len(t) - k + 1, dtype=np.uint64)
        for j in range(k):
            h = h * _SHINGLE_BASE + t[j : len(t) - k + 1 + j] + np.uint64(1)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return np.unique((h & np.uint64(0xFFFFFFFF)).astype(np.uint32))


def minhash_sketch(tokens: np.ndarray, num_perm: int, shingle_size: int, seed: int = 1):
    """datasketch MinHash of a document's token shingles: the one definition both engines use
    (`dedup_engine.py` stores its `hashvalues`, so both estimate the same Jaccard)."""
    from datasketch import MinHash

    sketch = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
    # Drop the trailing EOS: it is in every document and says nothing about its text.
    sketch.update_batch(shingle_hashes(tokens[:-1], shingle_size).tolist())
    return sketch


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) datasketch's `MinHashLSH` picks for `threshold`: a pair is a
    candidate when all rows of one band agree (0.87 and 128 permutations: 7 bands x 18)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def find_duplicates(
    ids: Sequence[str],
    text_hashes: Sequence[str],
    token_arrays: Sequence[np.ndarray],
    method: str,
    threshold: float,
    num_perm: int,
    shingle_size: int,
    seed: int = 1,
) -> list[Removal]:
    """Documents to remove (in corpus order) for `method` in {"exact", "minhash"}."""
    removals: list[Removal] = []
    first_with_hash: dict[str, int] = {}
    survivors: list[int] = []
    for i, text_hash in enumerate(text_hashes):
        if text_hash in first_with_hash:
            removals.append(Removal(ids[i], ids[first_with_hash[text_hash]], 1.0, "exact", i))
        else:
            first_with_hash[text_hash] = i
            survivors.append(i)
    if method == "exact":
        return removals

    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, MinHash] = {}
    for i in survivors:
        sketch = minhash_sketch(token_arrays[i], num_perm, shingle_size, seed)
        best, best_sim = None, -1.0
        for candidate in sorted(lsh.query(sketch)):
            sim = sketch.jaccard(kept[candidate])
            if sim > best_sim:
                best, best_sim = candidate, sim
        if best is not None and best_sim >= threshold:
            removals.append(Removal(ids[i], ids[best], round(float(best_sim), 6), "minhash", i))
        else:
            lsh.insert(i, sketch)  # keys are list positions: document ids need not be unique
            kept[i] = sketch
    return sorted(removals, key=lambda r: r.index)
