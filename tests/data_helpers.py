"""Shared helpers of the data_order tests: an independent MMapIndexedDataset reader/writer
written from the format spec (struct only, no numpy, no data_order code), tiny corpora
and a tiny tokenizer."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

MAGIC = b"MMIDIDX\x00\x00"
# dtype code -> (struct format char, item size), from docs/architecture.md, contract 2.
CODES = {1: ("B", 1), 2: ("b", 1), 3: ("h", 2), 4: ("i", 4), 5: ("q", 8), 8: ("H", 2)}


def spec_write(prefix: Path, items: list[list[int]], code: int = 8) -> None:
    """Write items as `.bin`/`.idx` following the spec literally."""
    char, size = CODES[code]
    sizes, pointers, offset = [], [], 0
    with open(f"{prefix}.bin", "wb") as f:
        for item in items:
            f.write(struct.pack(f"<{len(item)}{char}", *item))
            sizes.append(len(item))
            pointers.append(offset)
            offset += len(item) * size
    doc_idx = list(range(len(items) + 1))
    with open(f"{prefix}.idx", "wb") as f:
        f.write(MAGIC + struct.pack("<QBQQ", 1, code, len(items), len(doc_idx)))
        f.write(struct.pack(f"<{len(sizes)}i", *sizes))
        f.write(struct.pack(f"<{len(pointers)}q", *pointers))
        f.write(struct.pack(f"<{len(doc_idx)}q", *doc_idx))


def spec_read(prefix: Path) -> tuple[int, list[list[int]], list[int]]:
    """(dtype code, items, doc_idx) read with struct from the spec."""
    raw = Path(f"{prefix}.idx").read_bytes()
    assert raw[:9] == MAGIC
    version, code, count, doc_count = struct.unpack_from("<QBQQ", raw, 9)
    assert version == 1
    at = 9 + 8 + 1 + 8 + 8
    sizes = struct.unpack_from(f"<{count}i", raw, at)
    pointers = struct.unpack_from(f"<{count}q", raw, at + 4 * count)
    doc_idx = list(struct.unpack_from(f"<{doc_count}q", raw, at + 12 * count))
    assert at + 12 * count + 8 * doc_count == len(raw)
    data = Path(f"{prefix}.bin").read_bytes()
    char, size = CODES[code]
    items = [
        list(struct.unpack_from(f"<{n}{char}", data, p))
        for n, p in zip(sizes, pointers, strict=True)
    ]
    return code, items, doc_idx


WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "river",
    "stone",
    "cloud",
    "light",
    "shadow",
    "paper",
    "engine",
    "garden",
    "window",
]


def make_corpus(folder: Path, n_docs: int = 40, seed: int = 0, near_dups: int = 3) -> Path:
    """`n_docs` text files of random words (+ `near_dups` near copies and one exact copy)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for i in range(n_docs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(60, 160))]
        texts.append(" ".join(words))
        (folder / f"doc{i:03d}.txt").write_text(texts[-1])
    for j in range(near_dups):
        words = texts[j].split()
        words[len(words) // 2] = "CHANGED"  # one word differs: Jaccard of 5-shingles ~0.9+
        (folder / f"near{j:03d}.txt").write_text(" ".join(words))
    (folder / "exact000.txt").write_text(texts[5])
    return folder


def write_tokenizer(path: Path, corpus: Path, vocab_size: int = 300) -> Path:
    from data_order.corpus import expand_inputs, read_documents
    from data_order.tokenize import train_bytelevel_bpe

    texts = [d.text for d in read_documents(expand_inputs([str(corpus)]), "text")]
    path.write_text(train_bytelevel_bpe(texts, vocab_size))
    return path


def dir_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def metadata(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())
