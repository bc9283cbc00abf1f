"""Reading datasets: batch / rank / eval lookups over two on-disk layouts.

* `PackedDataset` — a folder made by `prepare`: the training documents as one token stream
  plus the seeded order (defined in `order.py`, read from the memory-mapped artifacts of
  `order_store.py`, built once per (seed, epoch)). Cheap to build (OLMo-style).
* `PreShuffledDataset` — a Megatron `.bin/.idx` whose items are already the samples in
  training order (Pythia's published pre-shuffled Pile: items of 2049 uint16 tokens, `.bin`
  possibly split in byte-concatenable shards): global position j is item j.

Both answer `batch(i, B)` with rows `[i*B, (i+1)*B)` of the global order (contract 1) and
`rank_batch` with the rows of `order.rank_rows` (contract 3); `write_preshuffled`
materializes a packed dataset's order into the second layout (identical batches, tested).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np

from data_order.atomic import write_bytes, write_json
from data_order.build import FORMAT_VERSION, METADATA, fingerprint_of
from data_order.errors import DataConfigError, DataError, DataFormatError, FingerprintMismatch
from data_order.indexed import IndexedReader, IndexedWriter
from data_order.order import BatchLayout, num_packed_samples, rank_rows
from data_order.order_store import ORDER_FILE, OrderStore

#: Pythia's GPT-NeoX-20B tokenizer, assumed for a pre-shuffled file without our sidecar.
PYTHIA_VOCAB_SIZE, PYTHIA_EOS_ID, PYTHIA_GLOBAL_BATCH = 50277, 0, 1024


class Dataset:
    """Common batch logic; subclasses provide `sample_ids(positions)` and `samples(ids)`."""

    path: Path  #: dataset folder or pre-shuffled prefix
    fingerprint: str  #: identity of the data and its order
    seq_len: int  #: samples hold seq_len + 1 tokens
    vocab_size: int  #: tokenizer vocabulary (before the model pads it)
    eos_id: int  #: end-of-document token id
    num_samples: int  #: samples per epoch
    num_positions: int  #: global positions the order is defined for (all epochs)
    tokenizer_path: Path | None  #: tokenizer.json to decode with (None: unknown)
    default_global_batch: int  #: B used by `suite batch` unless told otherwise

    def check_fingerprint(self, expected: str | None) -> None:
        if expected is not None and expected != self.fingerprint:
            raise FingerprintMismatch(
                f"{self.path}: dataset fingerprint {self.fingerprint} differs from the expected {expected}; "
                "the data or its order changed since the run recorded it — point to the dataset the run "
                "used, or start a new run"
            )

    def _check_range(self, start: int, stop: int, what: str) -> None:
        if start < 0 or stop < start or stop > self.num_positions:
            raise DataConfigError(
                what,
                (start, stop),
                f"global positions must lie in [0, {self.num_positions}) ({self.num_samples} samples x "
                f"{self.num_positions // max(1, self.num_samples)} epochs) for {self.path}",
            )

    def sample_ids(self, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _gather(self, sample_ids: np.ndarray) -> np.ndarray:
        """Tokens of samples (ids already range-checked), int64 `[n, seq_len + 1]`."""
        raise NotImplementedError

    def samples(self, sample_ids: np.ndarray, where: str = "") -> np.ndarray:
        """Tokens of samples, int64 `[n, seq_len + 1]`, every id checked against the vocabulary.

        A damaged `.bin` (a flipped byte, a file of another tokenizer) would otherwise show
        as garbage in `suite batch` and crash training in the embedding; one max() per read
        costs ~1 ms per Pythia batch (1024 x 2049). `where` ("batch 5") prefixes the message.
        """
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_samples):
            bad = int(ids.max() if ids.max() >= self.num_samples else ids.min())
            raise DataConfigError("sample_ids", bad, f"sample ids lie in [0, {self.num_samples})")
        rows = self._gather(ids)
        check_token_range(rows, self.vocab_size, self.path, where, ids)
        return rows

    def global_rows(self, start: int, stop: int) -> np.ndarray:
        """Sample ids at global positions `[start, stop)`, crossing epochs transparently."""
        self._check_range(start, stop, "positions")
        return self.sample_ids(np.arange(start, stop, dtype=np.int64))

    def batch(self, index: int, global_batch: int) -> np.ndarray:
        """Tokens of batch `index` (0-based; update s consumes batch s-1): `[B, seq_len+1]`."""
        if global_batch < 1:
            raise DataConfigError("global_batch", global_batch, "must be a positive integer")
        last = (self.num_positions // global_batch) - 1
        if index < 0 or index > last:
            raise DataConfigError(
                "batch_index",
                index,
                f"{self.path} has batches 0..{last} at global_batch={global_batch}",
            )
        rows = self.global_rows(index * global_batch, (index + 1) * global_batch)
        return self.samples(rows, f"batch {index}")

    def rank_positions(
        self, layout: BatchLayout, batch_index: int, dp_rank: int, micro_step: int | None = None
    ) -> np.ndarray:
        positions = rank_rows(layout, batch_index, dp_rank, micro_step)
        if positions.size and positions.max() >= self.num_positions:
            last = self.num_positions // layout.global_batch - 1
            raise DataConfigError(
                "batch_index",
                batch_index,
                f"{self.path} has batches 0..{last} at global_batch={layout.global_batch}",
            )
        return positions

    def rank_batch(self, layout: BatchLayout, batch_index: int, dp_rank: int) -> np.ndarray:
        """Tokens DP rank `dp_rank` trains on in batch `batch_index`: `[grad_accum, micro, seq_len+1]`."""
        positions = self.rank_positions(layout, batch_index, dp_rank)
        rows = self.samples(self.sample_ids(positions.reshape(-1)), f"batch {batch_index}")
        return rows.reshape(layout.grad_accum, layout.micro_batch, self.seq_len + 1)

    def eval_samples(self, max_samples: int) -> np.ndarray:
        """The first `max_samples` samples of the held-out split, `[n, seq_len+1]`, fixed order."""
        raise DataError(f"{self.path}: this dataset has no held-out split")


def check_token_range(
    rows: np.ndarray, vocab_size: int, path: Path, where: str, sample_ids: np.ndarray
) -> None:
    """Raise `DataFormatError` naming the first sample of `rows` holding an id outside
    `[0, vocab_size)`."""
    # One pass: seen as unsigned, a negative int64 id is >= 2**63, so max() catches both ends.
    if not rows.size or rows.view(np.uint64).max() < vocab_size:
        return
    bad = (rows < 0) | (rows >= vocab_size)
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    token = int(rows[row][bad[row]][0])
    prefix = f"{where}, " if where else ""
    raise DataFormatError(
        f"{path}: {prefix}sample {int(sample_ids[row])}: token id {token} is outside the "
        f"vocabulary [0, {vocab_size}); the data is damaged — `suite verify --data {path}` "
        "lists every problem; rebuild it with `suite prepare` (or re-download it)"
    )


def gather_windows(
    reader: IndexedReader, starts: np.ndarray, stride: int, width: int
) -> np.ndarray:
    """Rows `[s*stride, s*stride + width)` of the token stream for each s in `starts`, int64.

    One `.bin` file: a strided window view of the memory map, indexed in one numpy call
    (a row copy in C per sample). Shards: one read per row, crossing shard boundaries.
    """
    out = np.empty((len(starts), width), dtype=np.int64)
    flat = reader.bin.flat
    if flat is not None:
        count = (len(flat) - width) // stride + 1 if len(flat) >= width else 0
        item = flat.dtype.itemsize
        windows = np.lib.stride_tricks.as_strided(
            flat, shape=(count, width), strides=(stride * item, item), writeable=False
        )
        out[:] = windows[starts]
        return out
    item = reader.dtype.itemsize
    for row, s in enumerate(starts.tolist()):
        out[row] = reader.tokens(s * stride * item, width)
    return out


class PackedDataset(Dataset):
    """A dataset folder written by `prepare` (see prepare.py for its files)."""

    def __init__(self, path: Path):
        self.path = path
        meta_path = path / METADATA
        if not meta_path.is_file():
            raise DataFormatError(
                f"{path}: no {METADATA}; not a finished dataset folder (an interrupted prepare?) — re-run prepare"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as err:
            raise DataFormatError(f"{meta_path}: not valid JSON ({err}); re-run prepare") from None
        if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != "packed":
            raise DataFormatError(
                f"{meta_path}: format_version {meta.get('format_version')!r} kind {meta.get('kind')!r}; this code reads version {FORMAT_VERSION} 'packed' — re-run prepare"
            )
        for name, size in meta["files"].items():
            if name == ORDER_FILE:
                continue  # checked when opened (`order_store`), which can also rebuild it
            actual = (path / name).stat().st_size if (path / name).is_file() else None
            if actual != size:
                raise DataFormatError(
                    f"{path / name}: {actual if actual is not None else 'missing'} bytes, metadata says {size}; the dataset is damaged, re-run prepare"
                )
        self.meta = meta
        self.fingerprint = meta["fingerprint"]
        self.seq_len, self.seed = int(meta["seq_len"]), int(meta["seed"])
        self.vocab_size, self.eos_id = int(meta["vocab_size"]), int(meta["eos_id"])
        self.tokenizer_path = path / "tokenizer.json"
        self.default_global_batch = meta.get("default_global_batch") or PYTHIA_GLOBAL_BATCH
        self.train = IndexedReader(path / "train")
        self.eval = IndexedReader(path / "eval")
        self.num_samples = num_packed_samples(self.train.num_tokens, self.seq_len)
        if self.num_samples != meta["counts"]["num_samples"]:
            raise DataFormatError(
                f"{path}: {self.num_samples} samples in train.bin, metadata says {meta['counts']['num_samples']}; re-run prepare"
            )
        self.num_positions = self.num_samples * int(meta["max_epochs"])
        self.orders = OrderStore(path, meta, self.num_samples)  # shared by `reordered` views
        self._doc_ids: list[str] | None = None  # loaded on first sample_documents()
        self._doc_ends: np.ndarray | None = None

    def reordered(self, seed: int) -> PackedDataset:
        """This dataset in the order of another `seed` (a replicate's data seed).

        The token stream does not depend on the seed, only the order drawn over it does, so
        the view shares the memory maps. Its fingerprint is the one `prepare` gives the same
        corpus prepared with `seed`, so runs, resume checks and exports name the order
        whichever way it was reached.
        """
        if seed == self.seed:
            return self
        fields = self.meta["fingerprint_fields"] | {"seed": seed}
        view = copy.copy(self)
        view.seed, view.fingerprint = seed, fingerprint_of(fields)
        view.meta = self.meta | {"seed": seed, "fingerprint": view.fingerprint}
        view.meta["fingerprint_fields"] = fields
        return view

    def sample_ids(self, positions: np.ndarray) -> np.ndarray:
        """`order.positions_to_samples`, reading each epoch's order from its artifact."""
        positions = np.asarray(positions, dtype=np.int64)
        epochs, within = np.divmod(positions, self.num_samples)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs).tolist():
            mask = epochs == epoch
            order = self.orders.permutation(self.seed, epoch, self.fingerprint)
            ids = np.asarray(order[within[mask]], dtype=np.int64)
            self.orders.check_ids(self.orders.key(self.seed, epoch), ids)
            out[mask] = ids
        return out

    def build_order(self, epochs: int) -> list:
        """Build (once) this order's artifacts for epochs `[0, epochs)`; their paths."""
        return self.orders.ensure([self.seed], epochs, {self.seed: self.fingerprint})

    def _windows(self, reader: IndexedReader, sample_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        return gather_windows(reader, ids, self.seq_len, self.seq_len + 1)

    def _gather(self, sample_ids: np.ndarray) -> np.ndarray:
        return self._windows(self.train, sample_ids)

    def sample_documents(self, sample_id: int) -> list[str]:
        """Ids of the documents sample `sample_id` draws tokens from, in stream order."""
        if not 0 <= sample_id < self.num_samples:
            raise DataConfigError(
                "sample_id", sample_id, f"sample ids lie in [0, {self.num_samples})"
            )
        if self._doc_ids is None:
            listing = (self.path / "documents.jsonl").read_text(encoding="utf-8").splitlines()
            self._doc_ids = [d["id"] for d in map(json.loads, listing) if d["split"] == "train"]
            self._doc_ends = np.cumsum(np.asarray(self.train.sizes, dtype=np.int64))
        first_token = sample_id * self.seq_len
        first = int(np.searchsorted(self._doc_ends, first_token, side="right"))
        last = int(np.searchsorted(self._doc_ends, first_token + self.seq_len, side="right"))
        return self._doc_ids[first : last + 1]

    def eval_samples(self, max_samples: int) -> np.ndarray:
        available = num_packed_samples(self.eval.num_tokens, self.seq_len)
        if available == 0:
            raise DataError(
                f"{self.path}: the held-out split is empty (prepared with eval_fraction=0 and eval_min_docs=0)"
            )
        ids = np.arange(min(max_samples, available))
        rows = self._windows(self.eval, ids)
        check_token_range(rows, self.vocab_size, self.path, "held-out split", ids)
        return rows


class PreShuffledDataset(Dataset):
    """Items of seq_len + 1 tokens already in training order; position j is item j.

    Identity: our `<prefix>.json` sidecar when present (written by `write_preshuffled`),
    else Pythia's defaults and a fingerprint hashed from the index header, the `.bin`
    length and the first and last items (reading a 300 GB file at every open is not an
    option).
    """

    def __init__(
        self, prefix: Path, bin_paths: list[Path] | None = None, tokenizer_path: Path | None = None
    ):
        self.path = prefix
        self.reader = IndexedReader(prefix, bin_paths)
        if self.reader.count == 0:
            raise DataFormatError(f"{self.reader.idx_path}: holds no item")
        width = int(self.reader.sizes[0])
        if (
            int(self.reader.sizes[-1]) != width
            or self.reader.num_tokens != width * self.reader.count
        ):
            raise DataFormatError(
                f"{self.reader.idx_path}: items are not all {width} tokens long; not a pre-shuffled (one sample per item) file"
            )
        self.seq_len = width - 1
        self.num_samples = self.num_positions = self.reader.count
        sidecar = Path(f"{prefix}.json")
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            self.fingerprint = meta["fingerprint"]
            self.vocab_size, self.eos_id = int(meta["vocab_size"]), int(meta["eos_id"])
            self.default_global_batch = meta.get("default_global_batch") or PYTHIA_GLOBAL_BATCH
            self.tokenizer_path = tokenizer_path or (
                sidecar.parent / meta["tokenizer"] if meta.get("tokenizer") else None
            )
        else:
            import hashlib

            digest = hashlib.sha256(self.reader.idx_path.open("rb").read(34))
            digest.update(f"{self.reader.count}:{self.reader.bin.nbytes}".encode())
            digest.update(self.reader[0].tobytes() + self.reader[self.reader.count - 1].tobytes())
            self.fingerprint = "preshuffled-" + digest.hexdigest()
            self.vocab_size, self.eos_id = PYTHIA_VOCAB_SIZE, PYTHIA_EOS_ID
            self.default_global_batch = PYTHIA_GLOBAL_BATCH
            self.tokenizer_path = tokenizer_path

    def sample_ids(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(positions, dtype=np.int64)

    def _gather(self, sample_ids: np.ndarray) -> np.ndarray:
        return gather_windows(self.reader, sample_ids, self.seq_len + 1, self.seq_len + 1)


_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d+)-of-(?P<n>\d+)\.bin$")


def _shards_of(prefix: Path) -> list[Path] | None:
    """`<prefix>-<i>-of-<n>.bin` shards, all present, in order; None if there are none.

    Pythia names shard i of N `document-{i:05}-of-{N-1:05}.bin` ("of" = last index, see
    its utils/unshard_memmap.py); "of" = count is accepted too.
    """
    found = sorted(prefix.parent.glob(f"{prefix.name}-*-of-*.bin"))
    matches = [m for p in found if (m := _SHARD.match(p.name)) and m["stem"] == prefix.name]
    if not matches:
        return None
    stated = {int(m["n"]) for m in matches}
    indices = sorted(int(m["i"]) for m in matches)
    if len(stated) != 1:
        raise DataFormatError(
            f"{prefix}: shards disagree on their total ({sorted(stated)}); keep one set"
        )
    (n,) = stated
    if indices not in (list(range(n)), list(range(n + 1))):
        expected = set(range(n + 1)) if max(indices) == n else set(range(n))
        missing = sorted(expected - set(indices))
        raise DataFormatError(
            f"{prefix}: shards {missing} of {prefix.name}-*-of-{n:05d}.bin are missing; download them all"
        )
    return [prefix.parent / m.string for m in sorted(matches, key=lambda m: int(m["i"]))]


def open_dataset(
    path: str | Path,
    expected_fingerprint: str | None = None,
    tokenizer_path: str | Path | None = None,
) -> Dataset:
    """Open a `prepare` folder or a pre-shuffled `.bin/.idx` prefix (or its `.idx`/`.bin`)."""
    path = Path(path)
    if path.is_dir():
        dataset: Dataset = PackedDataset(path)
    else:
        prefix = path.with_suffix("") if path.suffix in (".idx", ".bin") else path
        if not Path(f"{prefix}.idx").is_file():
            raise DataConfigError(
                "data",
                str(path),
                "neither a dataset folder nor a .bin/.idx prefix; run `suite prepare` or check the path",
            )
        bins = None if Path(f"{prefix}.bin").is_file() else _shards_of(prefix)
        dataset = PreShuffledDataset(prefix, bins, Path(tokenizer_path) if tokenizer_path else None)
    if tokenizer_path is not None:
        dataset.tokenizer_path = Path(tokenizer_path)
    dataset.check_fingerprint(expected_fingerprint)
    return dataset


def write_preshuffled(
    dataset: Dataset, prefix: str | Path, num_positions: int, shard_bytes: int | None = None
) -> list[Path]:
    """Materialize global positions `[0, num_positions)` as a Pythia-style pre-shuffled file.

    Writes `<prefix>.idx`, the `.bin` (or, with `shard_bytes`, byte-concatenable shards
    `<prefix>-00000-of-<last>.bin`, Pythia's names, split every `shard_bytes` bytes, even
    inside an item),
    a copy of the tokenizer and the `<prefix>.json` sidecar carrying the source fingerprint.
    """
    prefix = Path(prefix)
    dtype = np.dtype(np.uint16 if dataset.vocab_size <= 1 << 16 else np.int32)
    writer = IndexedWriter(prefix, dtype)
    try:
        step = 1024
        for start in range(0, num_positions, step):
            for row in dataset.samples(
                dataset.global_rows(start, min(num_positions, start + step))
            ):
                writer.add_item(row)
    except BaseException:
        writer.abort()
        raise
    bin_path, idx_path = writer.close()
    outputs = [idx_path]
    if shard_bytes:
        data = bin_path.read_bytes()
        total = max(1, -(-len(data) // shard_bytes))
        for i in range(total):
            # Pythia's naming: "of" is the last shard index, not the count.
            shard = prefix.with_name(f"{prefix.name}-{i:05d}-of-{total - 1:05d}.bin")
            write_bytes(shard, data[i * shard_bytes : (i + 1) * shard_bytes])
            outputs.append(shard)
        bin_path.unlink()
    else:
        outputs.append(bin_path)
    tokenizer = None
    if dataset.tokenizer_path is not None and dataset.tokenizer_path.is_file():
        tokenizer = f"{prefix.name}.tokenizer.json"
        write_bytes(prefix.parent / tokenizer, dataset.tokenizer_path.read_bytes())
    sidecar = Path(f"{prefix}.json")
    write_json(
        sidecar,
        {
            "kind": "preshuffled",
            "fingerprint": dataset.fingerprint,
            "num_positions": num_positions,
            "seq_len": dataset.seq_len,
            "vocab_size": dataset.vocab_size,
            "eos_id": dataset.eos_id,
            "default_global_batch": dataset.default_global_batch,
            "tokenizer": tokenizer,
        },
    )
    return [*outputs, sidecar]
