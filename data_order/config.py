"""`PrepareConfig`: every knob of `prepare`, typed, documented and validated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from data_order.errors import DataConfigError

DedupMethod = Literal["none", "exact", "minhash"]
"""No deduplication, exact duplicates only, or exact + near duplicates (MinHash LSH)."""
DEDUP_METHODS: tuple[DedupMethod, ...] = get_args(DedupMethod)
DedupEngine = Literal["single", "datatrove"]
"""Where near-duplicate removal runs: one in-memory process, or datatrove's MinHash stages."""
DEDUP_ENGINES: tuple[DedupEngine, ...] = get_args(DedupEngine)
#: MinHash permutations above this are refused (the cost is linear in them).
MAX_NUM_PERM = 4096
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class PrepareConfig:
    """How to turn a corpus into the suite's dataset(s). Fields marked (fp) enter the fingerprint."""

    inputs: list[str] = field(default_factory=lambda: ["stdlib"])
    """(fp, by content) files, folders or globs in order; "stdlib" = the running Python's stdlib .py files."""
    text_field: str = "text"
    """(fp) JSON key / Parquet column holding the text of JSONL / Parquet inputs."""
    id_field: str | None = None
    """(fp when set) JSON key / Parquet column holding each document's corpus id (e.g. `id`),
    reported by `suite batch --docs` and looked up by `suite seen`; None: `FILE:LINE` /
    `FILE:ROW`. Text files are their own documents, named by file."""
    tokenizer: str | None = None
    """(fp, by content) path to a tokenizer.json; None trains a byte-level BPE on the corpus."""
    vocab_size: int = 8192
    """Vocabulary size of the trained BPE (ignored when `tokenizer` is given). A small corpus's
    BPE; the suite config's `data.vocab_size` defaults to Pythia's 50,277 instead."""
    eos_token: str | None = None
    """End-of-document token; None picks <|endoftext|>, </s>, <eos>... whichever the tokenizer has."""
    seq_len: int = 2048
    """(fp) tokens per sample (each sample holds seq_len + 1 tokens); Pythia: 2048."""
    seed: int = 1234
    """(fp) seed of the global order (epoch e is shuffled with SeedSequence([seed, e])); Pythia: 1234."""
    dedup: DedupMethod = "none"
    """(fp of the deduplicated dataset) also emit <name>-deduped without "exact" duplicates or
    without exact + near duplicates ("minhash"); "none": only the standard dataset."""
    emit_standard: bool = True
    """With dedup: also emit the standard dataset (the suite's pair) from the same corpus."""
    minhash_threshold: float = 0.87
    """(fp) Jaccard similarity at or above which a document is a near duplicate (Pythia: 0.87)."""
    num_perm: int = 128
    """(fp) MinHash permutations (more: better estimates, slower)."""
    shingle_size: int = 5
    """(fp) tokens per MinHash shingle."""
    dedup_engine: DedupEngine = "single"
    """Where "minhash" dedup runs (not in the fingerprint: both give the same documents):
    "single" keeps every sketch in one process (fastest below ~1M documents); "datatrove"
    runs datatrove's MinHash stages (signatures per shard, buckets, then our corpus-order
    pass) on disk, resumable, locally or as SLURM jobs (`suite prepare --launcher slurm`)."""
    eval_fraction: float = 0.01
    """(fp) fraction of documents held out for evaluation, chosen by hash of their text."""
    eval_min_docs: int = 4
    """(fp) at least this many held-out documents (small corpora)."""
    max_epochs: int = 64
    """Epochs the order is defined for; a batch beyond them is an error (not in the fingerprint)."""
    global_batch: int | None = None
    """Recorded as the default global batch of `suite batch` (not in the fingerprint)."""
    workers: int = 0
    """Tokenizing processes; 0 = one per CPU, 1 = in this process (the suite config's
    `data.workers` defaults to 1, fastest on small machines)."""
    num_shards: int = 1
    """Contiguous ranges of input files tokenized independently, then merged (same result for any value)."""
    shard_index: int | None = None
    """Only tokenize this shard (0-based, e.g. a SLURM array task) and stop; None = all, then merge."""
    out_dir: str = "data"
    """Folder that receives the dataset folder(s)."""
    name: str | None = None
    """Dataset folder name; None = "stdlib" for the stdlib corpus, else "corpus". Deduped: <name>-deduped."""
    overwrite: bool = False
    """Replace an existing dataset with a different fingerprint instead of refusing."""
    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str):
            self.inputs = [self.inputs]
        self.inputs = list(self.inputs)
        if not self.inputs:
            raise DataConfigError(
                "inputs", self.inputs, "give at least one file, folder, glob or 'stdlib'"
            )
        positive = {
            "vocab_size": 256 + 1,
            "seq_len": 1,
            "num_perm": 2,
            "shingle_size": 1,
            "max_epochs": 1,
            "num_shards": 1,
        }
        for name, minimum in positive.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise DataConfigError(name, value, f"must be an integer >= {minimum}")
        if self.num_perm > MAX_NUM_PERM:  # each costs a hash per shingle: 99999999 never ends
            raise DataConfigError(
                "num_perm", self.num_perm, f"must be <= {MAX_NUM_PERM} (128, the default, is usual)"
            )
        if self.id_field is not None and (not isinstance(self.id_field, str) or not self.id_field):
            raise DataConfigError(
                "id_field", self.id_field, "name the JSON key / Parquet column of the ids, or null"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            # numpy's SeedSequence rejects negative seeds, but only when the order is computed.
            raise DataConfigError("seed", self.seed, "must be an integer >= 0")
        if self.dedup not in DEDUP_METHODS:
            raise DataConfigError("dedup", self.dedup, f"choose one of {', '.join(DEDUP_METHODS)}")
        if self.dedup_engine not in DEDUP_ENGINES:
            raise DataConfigError(
                "dedup_engine", self.dedup_engine, f"choose one of {', '.join(DEDUP_ENGINES)}"
            )
        if not 0.0 < self.minhash_threshold <= 1.0:
            raise DataConfigError("minhash_threshold", self.minhash_threshold, "must be in (0, 1]")
        if not 0.0 <= self.eval_fraction < 0.5:
            raise DataConfigError("eval_fraction", self.eval_fraction, "must be in [0, 0.5)")
        if self.eval_min_docs < 0:
            raise DataConfigError("eval_min_docs", self.eval_min_docs, "must be >= 0")
        if self.workers < 0:
            raise DataConfigError("workers", self.workers, "must be >= 0 (0 = one per CPU)")
        if self.global_batch is not None and self.global_batch < 1:
            raise DataConfigError(
                "global_batch", self.global_batch, "must be a positive integer or None"
            )
        if self.shard_index is not None and not 0 <= self.shard_index < self.num_shards:
            raise DataConfigError(
                "shard_index", self.shard_index, f"must be in [0, num_shards={self.num_shards})"
            )
        if self.name is not None and not _NAME.match(self.name):
            raise DataConfigError(
                "name", self.name, "use letters, digits, '.', '_' or '-' (a folder name)"
            )
        if self.dedup == "none" and not self.emit_standard:
            raise DataConfigError(
                "emit_standard",
                False,
                "with dedup='none' the standard dataset is the only one; keep it",
            )

    @property
    def dataset_name(self) -> str:
        if self.name:
            return self.name
        return "stdlib" if self.inputs == ["stdlib"] else "corpus"
