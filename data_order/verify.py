"""The whole-dataset check behind `suite verify --data PATH`: every problem, one line each.

Reading a batch checks only the tokens it reads (`Dataset.samples`); this reads everything
once: each file's size and sha256 against what `prepare` recorded in `metadata.json`, the
index structure, every token id against the vocabulary, and every order artifact
(`order_store.py`: `order.npy` and the built `orders/`) against its recorded sha256 and its
recomputation — the path the artifacts replaced stays the one that checks them. Pre-shuffled
files (Pythia's) carry no digests we know of: structure and token range only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_order.build import METADATA, file_sha256
from data_order.dataset import PYTHIA_VOCAB_SIZE, PackedDataset, open_dataset
from data_order.errors import DataConfigError, DataError
from data_order.indexed import IndexedReader
from data_order.order_store import ORDER_FILE

#: Tokens read per step of the range scan (32 MB of uint16, plus a 16 MB mask).
CHUNK_TOKENS = 1 << 24


@dataclass
class DataReport:
    """What `verify_dataset` found: `problems` (one line each) and what it checked."""

    path: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_dataset(path: str | Path) -> DataReport:
    """Check a `prepare` folder or a pre-shuffled `.bin/.idx` prefix end to end."""
    path = Path(path)
    if path.is_dir():
        return _verify_packed(path)
    prefix = path.with_suffix("") if path.suffix in (".idx", ".bin") else path
    if Path(f"{prefix}.idx").is_file():
        return _verify_preshuffled(prefix)
    raise DataConfigError(
        "--data", str(path), "neither a dataset folder nor a .bin/.idx prefix; check the path"
    )


def _verify_packed(path: Path) -> DataReport:
    report = DataReport(path)
    meta_path = path / METADATA
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        report.problems.append(
            f"{meta_path}: missing; not a finished dataset (an interrupted prepare?) — re-run prepare"
        )
        return report
    except ValueError as err:
        report.problems.append(f"{meta_path}: not valid JSON ({err}); re-run prepare")
        return report
    digests = meta.get("sha256") or {}
    files_ok = True
    for name, size in meta.get("files", {}).items():
        if name == ORDER_FILE:
            continue  # an order artifact: `_verify_orders`, with the fix that rebuilds it
        file = path / name
        if not file.is_file():
            report.problems.append(f"{file}: missing (metadata lists {size} bytes); re-run prepare")
            files_ok = False
        elif file.stat().st_size != size:
            report.problems.append(
                f"{file}: {file.stat().st_size} bytes, metadata says {size}; re-run prepare"
            )
            files_ok = False
        elif name in digests and file_sha256(file) != digests[name]:
            report.problems.append(
                f"{file}: content differs from the sha256 recorded at prepare time; re-run prepare"
            )
    if digests:
        report.checked.append(f"{len(digests)} files against their recorded sha256")
    else:
        report.checked.append("file sizes only (no sha256 recorded: prepared before digests were)")
    if files_ok:  # a wrong size already explains why opening would fail
        try:
            _verify_orders(report, PackedDataset(path))
        except DataError as err:
            report.problems.append(str(err))
    vocab = int(meta.get("vocab_size", 0))
    for split in ("train", "eval"):
        try:
            reader = IndexedReader(path / split)
        except DataError:
            continue  # reported above (size, missing file or open_dataset)
        _scan_range(report, reader, vocab, f"{split} document")
    return report


def _verify_orders(report: DataReport, data: PackedDataset) -> None:
    """Every recorded order artifact: size, sha256, and each id against the recomputation."""
    store = data.orders
    keys = store.artifacts()
    for key in keys:
        problem = store.verify(key)
        if problem:
            report.problems.append(problem)
    if keys:
        names = ", ".join(f"seed {k.seed} epoch {k.epoch}" for k in keys)
        report.checked.append(f"{len(keys)} order artifact(s) equal their recomputation ({names})")
    else:
        report.checked.append("no order artifact: the order is recomputed (built on first use)")


def _verify_preshuffled(prefix: Path) -> DataReport:
    report = DataReport(prefix)
    try:
        dataset = open_dataset(prefix)
    except DataError as err:
        report.problems.append(str(err))
        return report
    vocab = dataset.vocab_size
    if vocab == PYTHIA_VOCAB_SIZE and not Path(f"{prefix}.json").is_file():
        report.checked.append(f"no sidecar: Pythia's vocabulary ({vocab}) assumed")
    _scan_range(report, dataset.reader, vocab, "sample")
    return report


def _scan_range(report: DataReport, reader: IndexedReader, vocab: int, item_name: str) -> None:
    """Every token of `reader` in [0, vocab): one problem line per file with the count, the
    largest id and where the first bad one is."""
    total = reader.num_tokens
    bad_count, largest, first = 0, None, None
    for start in range(0, total, CHUNK_TOKENS):
        chunk = reader.tokens(start * reader.dtype.itemsize, min(CHUNK_TOKENS, total - start))
        bad = np.flatnonzero((chunk < 0) | (chunk >= vocab))
        if bad.size:
            bad_count += int(bad.size)
            worst = int(chunk[bad].max()) if (chunk[bad] >= vocab).any() else int(chunk[bad].min())
            largest = worst if largest is None else max(largest, worst)
            if first is None:
                first = start + int(bad[0])
    where = " + ".join(str(p) for p in reader.bin.paths)
    if bad_count:
        ends = np.cumsum(np.asarray(reader.sizes, dtype=np.int64))
        item = int(np.searchsorted(ends, first, side="right"))
        report.problems.append(
            f"{where}: {bad_count} token id(s) outside the vocabulary [0, {vocab}) (e.g. {largest}), "
            f"the first at token {first} ({item_name} {item}); rebuild or re-download the data"
        )
    else:
        report.checked.append(f"{where}: {total:,} token ids in [0, {vocab})")
