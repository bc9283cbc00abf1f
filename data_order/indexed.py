"""Megatron / GPT-NeoX `MMapIndexedDataset` files (`.bin` + `.idx`), written and read.

`.idx` layout, little endian (docs/architecture.md, contract 2): magic ``MMIDIDX\\x00\\x00``
(9 bytes), version u64 = 1, dtype code u8, item count u64, document count u64, then
``sizes`` int32[count] (tokens per item), ``pointers`` int64[count] (byte offsets into the
`.bin`), ``doc_idx`` int64[doc_count]. The `.bin` is raw tokens without a header. Like
Megatron's builder we store ``doc_idx = [0, 1, ..., count]`` when every item is a document.

A `.bin` may be given as a list of byte-concatenable shards (Pythia's pre-shuffled release):
their concatenation is the `.bin`, split points anywhere, even inside an item.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_order.atomic import AtomicFile, atomic_file
from data_order.errors import DataFormatError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES: dict[int, type] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float32,
    7: np.float64,
    8: np.uint16,
}
CODE_OF_DTYPE = {np.dtype(t): c for c, t in DTYPE_CODES.items()}
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, item count, doc count
#: Validate every pointer against the sizes only below this many items; above it (Pythia's
#: 146M items, a 1.7 GB index) only the first and last items are checked at open.
FULL_CHECK_MAX_ITEMS = 1 << 22


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (Megatron/Pythia), else int32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


class IndexedWriter:
    """Streams items (1-D token arrays) into `<prefix>.bin`/`.idx`, atomically.

    Both files are written under temporary names, fsynced and renamed on `close()`
    (`.bin` first: an `.idx` never exists without its complete `.bin`), by `data_order.atomic`.
    """

    def __init__(self, prefix: str | Path, dtype: np.dtype | type):
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in CODE_OF_DTYPE:
            raise DataFormatError(f"dtype {self.dtype} has no MMapIndexedDataset code")
        self._bin = AtomicFile(f"{self.prefix}.bin")
        self._sizes: list[int] = []

    def add_item(self, tokens: np.ndarray) -> None:
        array = np.asarray(tokens)
        if array.size and (array.min() < 0 or array.max() > np.iinfo(self.dtype).max):
            raise DataFormatError(
                f"{self.prefix}: token id out of range for {self.dtype} "
                f"(min {array.min()}, max {array.max()})"
            )
        self._bin.file.write(array.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        self._sizes.append(int(array.size))

    def close(self) -> tuple[Path, Path]:
        bin_path = self._bin.commit()
        sizes = np.asarray(self._sizes, dtype=np.int64)
        pointers = np.zeros(len(sizes), dtype=np.int64)
        if len(sizes):
            pointers[1:] = np.cumsum(sizes[:-1]) * self.dtype.itemsize
        doc_idx = np.arange(len(sizes) + 1, dtype=np.int64)
        idx_path = Path(f"{self.prefix}.idx")
        with atomic_file(idx_path) as f:
            f.write(
                HEADER.pack(MAGIC, VERSION, CODE_OF_DTYPE[self.dtype], len(sizes), len(doc_idx))
            )
            f.write(sizes.astype("<i4").tobytes())
            f.write(pointers.astype("<i8").tobytes())
            f.write(doc_idx.astype("<i8").tobytes())
        return bin_path, idx_path

    def abort(self) -> None:
        self._bin.abort()


def write_indexed(prefix: str | Path, items: Sequence[np.ndarray], dtype) -> tuple[Path, Path]:
    """Write `items` as one MMapIndexedDataset (one item per document)."""
    writer = IndexedWriter(prefix, dtype)
    try:
        for item in items:
            writer.add_item(item)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


class _ConcatenatedBin:
    """Read-only token view over one `.bin` or several byte-concatenable shards."""

    def __init__(self, paths: Sequence[Path], dtype: np.dtype):
        self.paths, self.dtype = list(paths), dtype
        self.lengths = [p.stat().st_size for p in self.paths]
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.nbytes = int(self.starts[-1])
        # Zero-length files cannot be memory-mapped; they hold nothing to read anyway.
        self._maps = [
            np.memmap(p, dtype=np.uint8, mode="r") if n else np.zeros(0, np.uint8)
            for p, n in zip(self.paths, self.lengths, strict=True)
        ]
        self.flat = (
            self._maps[0].view(dtype)
            if len(self._maps) == 1 and self.nbytes % dtype.itemsize == 0
            else None
        )

    def read(self, byte_offset: int, count: int) -> np.ndarray:
        """`count` tokens starting at `byte_offset` of the concatenated `.bin`."""
        if self.flat is not None:
            start = byte_offset // self.dtype.itemsize
            return self.flat[start : start + count]
        stop = byte_offset + count * self.dtype.itemsize
        first = int(np.searchsorted(self.starts, byte_offset, side="right")) - 1
        pieces = []
        shard = first
        while byte_offset < stop:
            local = byte_offset - int(self.starts[shard])
            take = min(stop - byte_offset, self.lengths[shard] - local)
            pieces.append(self._maps[shard][local : local + take])
            byte_offset += take
            shard += 1
        raw = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return np.frombuffer(raw.tobytes(), dtype=self.dtype)


class IndexedReader:
    """Memory-mapped MMapIndexedDataset, validated against the file lengths at open.

    `bin_paths` defaults to `<prefix>.bin`; pass Pythia-style shards to read them without
    concatenating them on disk.
    """

    def __init__(self, prefix: str | Path, bin_paths: Sequence[str | Path] | None = None):
        prefix = Path(prefix)
        if prefix.suffix in (".idx", ".bin"):
            prefix = prefix.with_suffix("")
        self.prefix = prefix
        self.idx_path = Path(f"{prefix}.idx")
        bins = [Path(p) for p in bin_paths] if bin_paths else [Path(f"{prefix}.bin")]
        for path in [self.idx_path, *bins]:
            if not path.is_file():
                raise DataFormatError(
                    f"{path}: missing (an indexed dataset needs {prefix}.idx and its .bin)"
                )
        idx_len = self.idx_path.stat().st_size
        with open(self.idx_path, "rb") as f:
            head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise DataFormatError(
                f"{self.idx_path}: {idx_len} bytes, shorter than the {HEADER.size}-byte header (truncated)"
            )
        magic, version, code, count, doc_count = HEADER.unpack(head)
        if magic != MAGIC:
            raise DataFormatError(
                f"{self.idx_path}: magic {magic!r} is not {MAGIC!r}; not a Megatron MMapIndexedDataset index"
            )
        if version != VERSION:
            raise DataFormatError(
                f"{self.idx_path}: version {version} is not supported (only {VERSION})"
            )
        if code not in DTYPE_CODES:
            raise DataFormatError(
                f"{self.idx_path}: dtype code {code} is unknown (valid: {sorted(DTYPE_CODES)})"
            )
        self.dtype = np.dtype(DTYPE_CODES[code])
        if self.dtype.kind == "f":
            raise DataFormatError(
                f"{self.idx_path}: dtype {self.dtype} (code {code}) cannot hold token ids"
            )
        expected = HEADER.size + 4 * count + 8 * count + 8 * doc_count
        if idx_len != expected:
            raise DataFormatError(
                f"{self.idx_path}: {idx_len} bytes but its header (count={count}, doc_count={doc_count}) "
                f"needs {expected}; the index is truncated or corrupt, rebuild it"
            )
        self.count, self.doc_count = int(count), int(doc_count)
        offset = HEADER.size
        if count:
            self.sizes = np.memmap(
                self.idx_path, dtype="<i4", mode="r", offset=offset, shape=(count,)
            )
            self.pointers = np.memmap(
                self.idx_path, dtype="<i8", mode="r", offset=offset + 4 * count, shape=(count,)
            )
        else:
            self.sizes, self.pointers = np.zeros(0, "<i4"), np.zeros(0, "<i8")
        self.doc_idx = (
            np.memmap(
                self.idx_path, dtype="<i8", mode="r", offset=offset + 12 * count, shape=(doc_count,)
            )
            if doc_count
            else np.zeros(0, "<i8")
        )
        self.bin = _ConcatenatedBin(bins, self.dtype)
        self._check_pointers()

    def _check_pointers(self) -> None:
        item = self.dtype.itemsize
        needed = int(self.pointers[-1]) + int(self.sizes[-1]) * item if self.count else 0
        where = " + ".join(str(p) for p in self.bin.paths)
        if self.bin.nbytes < needed:
            raise DataFormatError(
                f"{where}: {self.bin.nbytes} bytes but the index needs {needed}; the .bin is truncated "
                "(re-download or rebuild it)"
            )
        if self.bin.nbytes != needed:
            raise DataFormatError(
                f"{where}: {self.bin.nbytes} bytes but the index describes {needed}; .bin and .idx do not belong together"
            )
        if not self.count:
            return
        if self.count <= FULL_CHECK_MAX_ITEMS:
            sizes = np.asarray(self.sizes, dtype=np.int64)
            ends = np.cumsum(sizes) * item
            bad = np.flatnonzero(np.asarray(self.pointers) != ends - sizes * item)
            if (sizes < 0).any() or bad.size:
                first = int(bad[0]) if bad.size else int(np.flatnonzero(sizes < 0)[0])
                raise DataFormatError(
                    f"{self.idx_path}: item {first} has size {int(sizes[first])} / pointer {int(self.pointers[first])} "
                    "inconsistent with the items before it; the index is corrupt"
                )
        elif int(self.pointers[0]) != 0:
            raise DataFormatError(
                f"{self.idx_path}: first pointer is {int(self.pointers[0])}, not 0; the index is corrupt"
            )

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.count:
            raise IndexError(f"item {i} outside [0, {self.count}) of {self.idx_path}")
        return self.bin.read(int(self.pointers[i]), int(self.sizes[i]))

    def tokens(self, byte_offset: int, count: int) -> np.ndarray:
        """`count` consecutive tokens of the `.bin` stream (items back to back)."""
        return self.bin.read(byte_offset, count)

    @property
    def num_tokens(self) -> int:
        return self.bin.nbytes // self.dtype.itemsize
