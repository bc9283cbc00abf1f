"""data_order: corpus → tokens → packed samples → seeded global order → batch(index).

numpy only (tokenizers for tokenizing, datasketch for dedup, zstandard/pyarrow for those
inputs — all imported lazily). Never imports torch, transformers, deepspeed or `suite`.
"""

from data_order.build import FORMAT_VERSION, prepare
from data_order.config import PrepareConfig
from data_order.dataset import (
    Dataset,
    PackedDataset,
    PreShuffledDataset,
    open_dataset,
    write_preshuffled,
)
from data_order.errors import DataConfigError, DataError, DataFormatError, FingerprintMismatch
from data_order.order import BatchLayout, batch_hash, epoch_permutation, rank_rows
from data_order.provenance import (
    DocumentSlice,
    Occurrence,
    ProvenanceIndex,
    document_occurrences,
    first_checkpoint,
    open_index,
)

__all__ = [
    "FORMAT_VERSION",
    "BatchLayout",
    "DataConfigError",
    "DataError",
    "DataFormatError",
    "Dataset",
    "DocumentSlice",
    "FingerprintMismatch",
    "Occurrence",
    "PackedDataset",
    "PreShuffledDataset",
    "PrepareConfig",
    "ProvenanceIndex",
    "batch_hash",
    "document_occurrences",
    "epoch_permutation",
    "first_checkpoint",
    "open_dataset",
    "open_index",
    "prepare",
    "rank_rows",
    "write_preshuffled",
]
