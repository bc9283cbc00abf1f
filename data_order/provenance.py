"""Provenance: which document every token of the packed stream came from, and when it was seen.

A packed dataset (`prepare`) is one token stream of the training documents, each followed by
one EOS, in corpus order (`train.bin`); sample k is the window of tokens
`[k*seq_len, k*seq_len + seq_len + 1)` and the order (`order.py`) puts sample k of epoch e
at one global position. The provenance index turns those into answers without a scan:

* token → document: `doc_ends` (uint64, the end offset of every training document in the
  stream, sorted) and `numpy.searchsorted`;
* document id → document: `id_hash` (the sorted 64-bit BLAKE2b of every id) with `id_slot`
  (the document each hash belongs to); the id strings live in `ids.bin` + `id_ends`, so a
  hash collision is resolved by comparing the string. Held-out documents are in the table
  too (after the training ones) so that asking for one says "held out", not "unknown";
* sample → global position: the inverse of an epoch's permutation (`inv[perm] = arange`),
  computed once per (seed, epoch) and cached in `inverse/` (a lazily written memory map).

Files (folder `provenance/` of the dataset, written atomically, `provenance.json` last):
`doc_ends.npy`, `ids.bin`, `id_ends.npy`, `id_hash.npy`, `id_slot.npy`, `provenance.json`
(format, counts, the hashes of the `train.idx` / `documents.jsonl` it was built from: a
stale index is rebuilt) and `inverse/seed{S}-epoch{E}.npy`. All are `.npy` opened with
`mmap_mode="r"`: opening costs nothing, a lookup touches a few pages.

The index is derived data: it is not part of the dataset fingerprint, and a dataset
prepared before it existed gets one on demand (`open_index(..., build=True)`).

Text search (`find_tokens`) is the one scan: a vectorized pass over the whole stream,
chunked; see its docstring for the cost.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from data_order.atomic import atomic_directory, write_npy
from data_order.errors import DataConfigError, DataError, DataFormatError
from data_order.order import BatchLayout, epoch_permutation

#: Bump when the files of the index change meaning; an index of another format is rebuilt.
PROVENANCE_FORMAT = 1
FOLDER = "provenance"
MANIFEST = "provenance.json"
#: Documents indexed per second by `build_index` on one core (benchmarks/results/provenance.json,
#: rounded down): only for the "~N s" said before an on-demand build.
BUILD_DOCS_PER_SECOND = 50_000
#: Lines of documents.jsonl parsed at a time while building (bounds the build's memory).
LISTING_CHUNK = 1 << 20
#: Tokens compared per vectorized step of the text search (2^24 uint16 tokens = 32 MB).
SEARCH_CHUNK = 1 << 24


def _id_hashes(ids: list[bytes]) -> np.ndarray:
    """64-bit BLAKE2b of every id (stable across machines and Python runs, unlike hash())."""
    digests = b"".join(hashlib.blake2b(i, digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, dtype="<u8").copy()


def _source_identity(folder: Path) -> dict:
    """What an index was built from: a rebuilt `train.idx` or `documents.jsonl` invalidates it.
    The same sha256 as metadata.json's (`build.file_sha256`, not imported: build imports us)."""
    found = {}
    for name in ("train.idx", "documents.jsonl"):
        with open(folder / name, "rb") as handle:
            found[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return found


def build_index(folder: Path, ids_out: BinaryIO | None = None) -> dict[str, np.ndarray]:
    """The index arrays of the dataset folder `folder` (needs `train.idx`, `documents.jsonl`).

    Streams `documents.jsonl` in chunks of `LISTING_CHUNK` lines: memory is ~24 bytes per
    document plus, unless `ids_out` receives the id strings (then `"ids"` is not returned),
    the ids themselves.
    """
    from data_order.indexed import IndexedReader

    reader = IndexedReader(folder / "train")
    blobs: list[bytes] = []
    lengths: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    eval_ids: list[bytes] = []

    def add(ids: list[bytes]) -> None:
        blob = b"".join(ids)
        if ids_out is None:
            blobs.append(blob)
        else:
            ids_out.write(blob)
        lengths.append(np.fromiter(map(len, ids), dtype=np.uint64, count=len(ids)))
        hashes.append(_id_hashes(ids))

    with open(folder / "documents.jsonl", "rb") as listing:
        while lines := list(itertools.islice(listing, LISTING_CHUNK)):
            records = [json.loads(line) for line in lines]
            add([r["id"].encode("utf-8") for r in records if r["split"] == "train"])
            eval_ids += [r["id"].encode("utf-8") for r in records if r["split"] != "train"]
    train = sum(map(len, lengths))
    if train != len(reader):
        raise DataFormatError(
            f"{folder}: documents.jsonl lists {train} training documents, train.idx holds "
            f"{len(reader)}; the dataset is damaged, re-run prepare"
        )
    add(eval_ids)  # after the training documents: their slots are >= num_documents
    all_hashes = np.concatenate(hashes)
    order = np.argsort(all_hashes, kind="stable")
    arrays = {
        "doc_ends": np.cumsum(np.asarray(reader.sizes, dtype=np.uint64), dtype=np.uint64),
        "id_ends": np.cumsum(np.concatenate(lengths), dtype=np.uint64),
        "id_hash": all_hashes[order],
        "id_slot": order.astype(np.uint32 if len(order) < 2**32 else np.uint64),
    }
    if ids_out is None:
        arrays["ids"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    return arrays


def write_index(folder: Path) -> Path:
    """Build the index of dataset folder `folder` into `folder/provenance/` (atomically)."""
    with atomic_directory(folder / FOLDER, replace=True) as tmp:
        with open(tmp / "ids.bin", "wb") as ids_out:
            arrays = build_index(folder, ids_out)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        manifest = {
            "format": PROVENANCE_FORMAT,
            "train_documents": len(arrays["doc_ends"]),
            "documents": len(arrays["id_ends"]),
            "num_tokens": int(arrays["doc_ends"][-1]) if len(arrays["doc_ends"]) else 0,
            "built_from": _source_identity(folder),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder / FOLDER


@dataclass(frozen=True)
class DocumentSlice:
    """The tokens one document contributes to one sample (a row of a batch)."""

    document: int  #: index of the document among the training documents (stream order)
    id: str  #: its corpus id (`file` or `file:line` / `file:row`, see corpus.Document)
    row_start: int  #: first token of the row it occupies (0-based)
    row_stop: int  #: one past its last token in the row
    doc_start: int  #: first of these tokens, counted within the document
    doc_stop: int  #: one past the last, within the document
    doc_tokens: int  #: the document's length in tokens (its EOS included)


@dataclass(frozen=True)
class Occurrence:
    """One place where tokens of a document (or of a matched text) were trained on."""

    position: int  #: global position (row of the global order, all epochs)
    epoch: int  #: position // samples per epoch
    batch: int  #: global batch index; checkpoint step{s} has seen batches 0 … s-1
    row: int  #: row within the global batch
    sample: int  #: packed sample id
    row_start: int  #: first token of the row holding the document's tokens
    row_stop: int  #: one past the last
    dp_rank: int | None = None  #: data-parallel rank that trained on it (with a layout)
    micro_step: int | None = None  #: micro step of the update (with a layout)
    micro_row: int | None = None  #: row within that rank's micro batch (with a layout)


class ProvenanceIndex:
    """The memory-mapped provenance index of one packed dataset (any data seed).

    Open it with `open_index`. Lookups are binary searches and slices of the memory maps:
    they read only the pages they need; no method scans the stream except `find_tokens`.
    """

    def __init__(self, dataset, arrays: dict[str, np.ndarray], folder: Path | None):
        self.dataset = dataset
        self.folder = folder  #: None: built in memory (the dataset folder is read-only)
        self.doc_ends = arrays["doc_ends"]
        self._ids, self._id_ends = arrays["ids"], arrays["id_ends"]
        self._id_hash, self._id_slot = arrays["id_hash"], arrays["id_slot"]
        self._inverse: dict[tuple[int, int], np.ndarray] = {}

    # --- documents ----------------------------------------------------------------------

    @property
    def num_documents(self) -> int:
        """Training documents (those of the token stream)."""
        return len(self.doc_ends)

    def document_id(self, document: int) -> str:
        start = int(self._id_ends[document - 1]) if document else 0
        return bytes(self._ids[start : int(self._id_ends[document])]).decode("utf-8")

    def document_span(self, document: int) -> tuple[int, int]:
        """Token range `[start, stop)` of training document `document` in the stream."""
        start = int(self.doc_ends[document - 1]) if document else 0
        return start, int(self.doc_ends[document])

    def lookup(self, doc_id: str) -> list[int]:
        """Training documents with id `doc_id` (several when two inputs share a file name).

        Raises a one-line `DataConfigError` for an id that is held out or not in the corpus.
        """
        key = _id_hashes([doc_id.encode("utf-8")])[0]
        lo = int(self._id_hash.searchsorted(key, side="left"))
        hi = int(self._id_hash.searchsorted(key, side="right"))
        found = [int(self._id_slot[i]) for i in range(lo, hi)]
        found = sorted(d for d in found if self.document_id(d) == doc_id)
        train = [d for d in found if d < self.num_documents]
        if train:
            return train
        path = self.dataset.path
        if found:
            raise DataConfigError(
                "document",
                doc_id,
                f"is held out (the eval split of {path}): it was never trained on",
            )
        hint = self.document_id(0) if self.num_documents else ""
        dedup = self.dataset.meta.get("dedup", {}).get("report")
        removed = f", or {dedup} if it was removed as a duplicate" if dedup else ""
        raise DataConfigError(
            "document",
            doc_id,
            f"no document of {path} has this id; ids are input file names, or `file:line` / "
            f"`file:row` for JSONL / Parquet (e.g. {hint!r}; see documents.jsonl{removed})",
        )

    # --- samples ------------------------------------------------------------------------

    def span_samples(self, start: int, stop: int) -> range:
        """Samples holding any token of the stream range `[start, stop)` (stop > start)."""
        seq_len = self.dataset.seq_len
        # Sample k holds tokens k*L … k*L + L (both ends): it overlaps iff k*L <= stop-1 and
        # k*L + L >= start.
        first = max(0, (start - 1) // seq_len) if start else 0
        last = min(self.dataset.num_samples - 1, (stop - 1) // seq_len)
        return range(first, last + 1)

    def sample_documents(self, sample: int) -> list[DocumentSlice]:
        """The documents sample `sample` holds, in row order, with their token ranges."""
        return self.samples_documents([sample])[0]

    def samples_documents(self, samples) -> list[list[DocumentSlice]]:
        """`sample_documents` of many samples at once (a batch's rows): one vectorized pass."""
        samples = np.asarray(samples, dtype=np.int64).reshape(-1)
        n = self.dataset.num_samples
        if samples.size and (samples.min() < 0 or samples.max() >= n):
            bad = int(samples.min() if samples.min() < 0 else samples.max())
            raise DataConfigError("sample_id", bad, f"sample ids lie in [0, {n})")
        begins = samples * self.dataset.seq_len
        return self._slices(begins, begins + self.dataset.seq_len + 1)

    def stream_documents(self, begin: int, end: int) -> list[DocumentSlice]:
        """The documents holding tokens of the stream range `[begin, end)`; `row_*` count
        from `begin`."""
        return self._slices(np.array([begin]), np.array([end]))[0]

    def _slices(self, begins: np.ndarray, ends: np.ndarray) -> list[list[DocumentSlice]]:
        """Documents of each stream range `[begins[i], ends[i])`, vectorized over ranges and
        documents: per-element access to a memory map costs ~1 µs, a gather ~nothing."""
        if not self.num_documents:
            return [[] for _ in begins]
        # Keys in the array's dtype: a Python/int64 key against uint64 compares as float64.
        firsts = self.doc_ends.searchsorted(begins.astype(np.uint64), side="right")
        lasts = self.doc_ends.searchsorted((ends - 1).astype(np.uint64), side="right")
        lasts = np.minimum(lasts.astype(np.int64), self.num_documents - 1)
        counts = np.maximum(lasts - firsts.astype(np.int64) + 1, 0)
        offsets = np.cumsum(counts) - counts
        docs = np.repeat(firsts.astype(np.int64) - offsets, counts) + np.arange(counts.sum())
        stops = self.doc_ends[docs].astype(np.int64)
        starts = np.where(docs > 0, self.doc_ends[docs - 1].astype(np.int64), 0)
        id_stops = self._id_ends[docs].astype(np.int64)
        id_starts = np.where(docs > 0, self._id_ends[docs - 1].astype(np.int64), 0)
        begin, end = np.repeat(begins, counts), np.repeat(ends, counts)
        lo, hi = np.maximum(starts, begin), np.minimum(stops, end)
        # All their id strings in one gather, then cut apart as bytes (cheap) not as arrays.
        lengths = id_stops - id_starts
        cuts = np.cumsum(lengths)
        names = self._ids[
            np.repeat(id_starts - (cuts - lengths), lengths)
            + np.arange(cuts[-1] if cuts.size else 0)
        ].tobytes()
        columns = zip(
            docs.tolist(), (cuts - lengths).tolist(), cuts.tolist(), (lo - begin).tolist(),
            (hi - begin).tolist(), (lo - starts).tolist(), (hi - starts).tolist(),
            (stops - starts).tolist(), strict=True,
        )  # fmt: skip
        flat = [
            DocumentSlice(doc, names[a:b].decode("utf-8"), *ranges)
            for doc, a, b, *ranges in columns
        ]
        return [flat[o : o + c] for o, c in zip(offsets.tolist(), counts.tolist(), strict=True)]

    def inverse_order(self, epoch: int) -> np.ndarray:
        """Position within epoch `epoch` of every sample, in the dataset's seed (cached)."""
        seed, n = self.dataset.seed, self.dataset.num_samples
        key = (seed, epoch)
        if key in self._inverse:
            return self._inverse[key]
        path = (
            None
            if self.folder is None
            else self.folder / "inverse" / f"seed{seed}-epoch{epoch}.npy"
        )
        if path is not None and path.is_file():
            try:  # a file cut short or damaged is recomputed and rewritten below
                inverse = np.load(path, mmap_mode="r")
            except (OSError, ValueError):
                inverse = None
            if inverse is not None and inverse.shape == (n,):
                self._inverse[key] = inverse
                return inverse
        inverse = np.empty(n, dtype=np.uint32 if n < 2**32 else np.int64)
        # The order artifact (built once, memory-mapped) where the dataset has one.
        orders = getattr(self.dataset, "orders", None)
        order = (
            epoch_permutation(n, seed, epoch)
            if orders is None
            else orders.permutation(seed, epoch, self.dataset.fingerprint)
        )
        inverse[order] = np.arange(n, dtype=inverse.dtype)
        if path is not None:
            # A read-only dataset: keep it in memory for this process only.
            with contextlib.suppress(OSError):
                write_npy(path, inverse)
        self._inverse[key] = inverse
        return inverse

    def sample_positions(self, samples: np.ndarray, stop: int) -> np.ndarray:
        """Global positions `< stop` of `samples` in every epoch, sorted (int64)."""
        samples = np.unique(np.asarray(samples, dtype=np.int64))
        n = self.dataset.num_samples
        found = [
            epoch * n + self.inverse_order(epoch)[samples].astype(np.int64)
            for epoch in range(math.ceil(stop / n))
        ]
        positions = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
        return positions[positions < stop]

    def occurrences(
        self,
        spans: list[tuple[int, int]],
        global_batch: int,
        stop: int,
        layout: BatchLayout | None = None,
    ) -> list[Occurrence]:
        """Every place a token of the stream ranges `spans` was trained on, at global
        positions `< stop`, sorted by position; with `layout`, the DP rank and micro step too."""
        if layout is not None and layout.global_batch != global_batch:
            raise DataConfigError(
                "global_batch", global_batch, f"differs from the layout's {layout.global_batch}"
            )
        seq_len = self.dataset.seq_len
        rows_of: dict[int, list[tuple[int, int]]] = {}
        for start, stop_token in spans:
            for sample in self.span_samples(start, stop_token):
                begin = sample * seq_len
                lo, hi = max(start, begin), min(stop_token, begin + seq_len + 1)
                rows_of.setdefault(sample, []).append((lo - begin, hi - begin))
        if not rows_of:
            return []
        positions = self.sample_positions(np.fromiter(rows_of, dtype=np.int64), stop)
        samples = self.dataset.sample_ids(positions)
        out = []
        for position, sample in zip(positions.tolist(), samples.tolist(), strict=True):
            batch, row = divmod(position, global_batch)
            extra: dict = {}
            if layout is not None:
                group = layout.micro_batch * layout.dp_size
                micro_step, within = divmod(row, group)
                dp_rank, micro_row = divmod(within, layout.micro_batch)
                extra = {"dp_rank": dp_rank, "micro_step": micro_step, "micro_row": micro_row}
            for row_start, row_stop in rows_of[sample]:
                out.append(
                    Occurrence(
                        position, position // self.dataset.num_samples, batch, row, sample,
                        row_start, row_stop, **extra,
                    )
                )  # fmt: skip
        return out

    # --- text -----------------------------------------------------------------------------

    def find_tokens(self, query: np.ndarray) -> np.ndarray:
        """Stream offsets where the token sequence `query` starts (sorted int64).

        A scan of the whole stream, in chunks of `SEARCH_CHUNK` tokens: per chunk one
        vectorized comparison with the query's rarest token (rarity estimated on the first
        chunk), then the candidates are checked token by token. Linear in the stream size
        (memory bandwidth bound; see benchmarks/results/provenance.json for the rate).
        """
        query = np.asarray(query, dtype=np.int64)
        if query.size == 0:
            raise DataConfigError("text", "", "the text has no token; give some text")
        reader = self.dataset.train
        total, m = reader.num_tokens, len(query)
        if m > total:
            return np.zeros(0, np.int64)

        def chunk(start: int) -> np.ndarray:
            count = min(SEARCH_CHUNK + m - 1, total - start)
            return reader.tokens(start * reader.dtype.itemsize, count)

        if query.min() < 0 or query.max() > np.iinfo(reader.dtype).max:
            return np.zeros(0, np.int64)  # ids the stream's dtype cannot hold occur nowhere
        # Compare in the stream's dtype: an int64 query would upcast every chunk.
        query = query.astype(reader.dtype)
        head = chunk(0)
        # Anchor on the query's rarest token, by its frequency in the first 1M tokens.
        counts = np.bincount(head[: 1 << 20], minlength=int(query.max()) + 1)[query]
        anchor = int(np.argmin(counts))
        found = []
        for start in range(0, total - m + 1, SEARCH_CHUNK):
            tokens = head if start == 0 else chunk(start)
            span = len(tokens) - m + 1  # start offsets fully inside this chunk
            hits = np.flatnonzero(tokens[anchor : anchor + span] == query[anchor])
            for j in range(m):
                if j != anchor and hits.size:
                    hits = hits[tokens[hits + j] == query[j]]
            found.append(hits.astype(np.int64) + start)
        return np.concatenate(found) if found else np.zeros(0, np.int64)


def open_index(
    dataset, build: bool = True, say: Callable[[str], None] | None = None
) -> ProvenanceIndex:
    """The provenance index of the packed dataset `dataset` (`open_dataset(...)`, any seed).

    Missing or stale: built when `build` (once, saying so through `say`, and saved in the
    dataset folder when it is writable), else a one-line `DataError` naming the fix.
    """
    # Duck-typed: `dataset.py` imports `build`, which imports this module.
    if getattr(dataset, "meta", {}).get("kind") != "packed":
        raise DataConfigError(
            "data",
            str(dataset.path),
            "is a pre-shuffled file: it holds samples, not documents, so it has no provenance; "
            "prepare the corpus with `suite prepare` to trace documents",
        )
    folder = Path(dataset.path) / FOLDER
    problem = _index_problem(folder, dataset)
    if problem is None:
        try:
            return ProvenanceIndex(dataset, _load(folder), folder)
        except DataFormatError as err:  # a damaged index: rebuilt like a stale one
            problem = str(err)
    if not build:
        raise DataError(
            f"{folder}: {problem}; build it with `suite seen ... --data {dataset.path}` "
            "(builds on demand) or `data_order.provenance.write_index`"
        )
    missing = [
        n for n in ("train.idx", "documents.jsonl") if not (Path(dataset.path) / n).is_file()
    ]
    if missing:
        raise DataFormatError(
            f"{dataset.path}: no {' or '.join(missing)} to build the provenance index from (a "
            "dataset prepared by an older version, or damaged); re-run `suite prepare`"
        )
    docs = int(dataset.meta["counts"]["documents"]) - int(dataset.meta["counts"]["eval_documents"])
    if say is not None:
        estimate = max(1, round(docs / BUILD_DOCS_PER_SECOND))
        say(
            f"{problem}: building the provenance index once (~{estimate} s for {docs:,} documents)…"
        )
    started = time.perf_counter()
    try:
        write_index(Path(dataset.path))
    except OSError as err:  # a read-only dataset folder: build in memory for this process
        if say is not None:
            say(f"cannot save it in {folder} ({err.strerror or err}); using it in memory only")
        return ProvenanceIndex(dataset, build_index(Path(dataset.path)), None)
    if say is not None:
        say(f"built {folder} in {time.perf_counter() - started:.1f} s")
    return ProvenanceIndex(dataset, _load(folder), folder)


def _index_problem(folder: Path, dataset) -> str | None:
    """Why the index at `folder` cannot be used (None: it can)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"{dataset.path} has no provenance index"
    except (OSError, ValueError):
        return f"{folder / MANIFEST} is unreadable"
    if manifest.get("format") != PROVENANCE_FORMAT:
        return (
            f"the provenance index has format {manifest.get('format')!r}, not {PROVENANCE_FORMAT}"
        )
    recorded = dataset.meta.get("sha256", {})
    source = {name: recorded.get(name) for name in ("train.idx", "documents.jsonl")}
    if None in source.values():
        source = _source_identity(Path(dataset.path))
    if manifest.get("built_from") != source:
        return "the provenance index was built from other files (the dataset was rebuilt)"
    return None


def _load(folder: Path) -> dict[str, np.ndarray]:
    """The index arrays at `folder`; a `DataFormatError` when a file is missing, cut short or
    disagrees with the manifest (the caller rebuilds the index)."""
    # Plain ndarray views of the maps: numpy.memmap's subclass hooks cost ~15 µs per slice
    # or search, more than the search itself.
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r").view(np.ndarray)
            for name in ("doc_ends", "id_ends", "id_hash", "id_slot")
        }
        size = (folder / "ids.bin").stat().st_size
        ids = (
            np.memmap(folder / "ids.bin", dtype=np.uint8, mode="r")
            if size
            else np.zeros(0, np.uint8)
        )
    except (OSError, ValueError) as err:
        raise DataFormatError(f"the provenance index in {folder} is damaged ({err})") from None
    arrays["ids"] = ids.view(np.ndarray)
    documents = manifest.get("documents")
    id_bytes = int(arrays["id_ends"][-1]) if len(arrays["id_ends"]) else 0
    if (
        len(arrays["doc_ends"]) != manifest.get("train_documents")
        or len(arrays["id_ends"]) != documents
        or len(arrays["id_hash"]) != documents
        or len(arrays["id_slot"]) != documents
        or size != id_bytes
    ):
        raise DataFormatError(
            f"the provenance index in {folder} is damaged (its files disagree with {MANIFEST})"
        )
    return arrays


# --- the questions users ask ---------------------------------------------------------------


def document_occurrences(
    index: ProvenanceIndex,
    doc_id: str,
    global_batch: int,
    stop: int,
    layout: BatchLayout | None = None,
) -> list[Occurrence]:
    """Where document `doc_id` was trained on, at global positions `< stop`."""
    spans = [index.document_span(d) for d in index.lookup(doc_id)]
    return index.occurrences(spans, global_batch, stop, layout)


def first_checkpoint(batches: Iterator[int] | list[int], steps: list[int]) -> int | None:
    """The first checkpoint step among `steps` that has seen any of `batches` (step s has
    seen batches 0 … s-1), or None when no scheduled step has."""
    earliest = min(batches, default=None)
    if earliest is None:
        return None
    later = [s for s in sorted(steps) if s >= earliest + 1]
    return later[0] if later else None
