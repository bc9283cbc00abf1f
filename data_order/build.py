"""`prepare`: corpus → tokenizer → tokenized shards → merged, split, deduplicated datasets.

Flow (each step cached on disk under `out_dir`):

1. Expand the inputs and hash every input file (the fingerprint covers contents, in order).
2. Tokenizer: the given tokenizer.json, or a byte-level BPE trained on the whole corpus and
   cached in `out_dir/.tokenizers/<key>.json` (key: input hashes, vocab size, tokenizers
   version), so shard tasks and re-runs do not retrain.
3. If every requested dataset already exists with the same fingerprint: return it.
4. Tokenize shards: contiguous ranges of input files balanced by bytes. `shard_index=i`
   tokenizes shard i only (one SLURM array task each) into
   `out_dir/.work-<key>/shard-<i>-of-<N>/` and returns; a run without `shard_index` reuses
   the finished shards, tokenizes the missing ones and merges. Shard boundaries never
   change the result: the merged stream is the same bytes for any `num_shards`. The work
   folder is named by tokenizer + file names and sizes (a shard task with `tokenizer`
   given reads only its own files); each shard records its files' content hashes and the
   merge re-tokenizes a shard whose files changed.
5. Held-out split over all documents (k smallest text hashes, k = max(eval_min_docs,
   round(eval_fraction * documents)); duplicates share a hash, so a held-out text never
   also appears in training), then dedup of the training documents.
6. Each dataset is written into a temporary `out_dir/.<name>.<uuid>.tmp/` and renamed to
   `out_dir/<name>/` at the end (`data_order.atomic.atomic_directory`); `metadata.json` is
   its last file.

Dataset folder: `metadata.json`, `tokenizer.json`, `train.bin/.idx` (training documents,
one item each, in corpus order), `eval.bin/.idx` (held-out documents), `order.npy` (epoch
0's order, memory-mapped by every reader: `order_store.py`), `documents.jsonl` (id, split, tokens
of every kept document), `provenance/` (token → document → global position index, derived
data outside the fingerprint: `provenance.py`) and, for deduplicated datasets,
`dedup_report.csv`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import functools
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from data_order.atomic import (
    atomic_directory,
    file_lock,
    remove_leftovers,
    write_bytes,
    write_json,
    write_npy,
)
from data_order.config import PrepareConfig
from data_order.corpus import InputFile, expand_inputs, read_documents
from data_order.dedup import Removal, find_duplicates
from data_order.errors import DataConfigError, DataError, NoSpaceError
from data_order.indexed import IndexedReader, IndexedWriter, token_dtype
from data_order.order import compute_permutation, num_packed_samples
from data_order.order_store import ORDER_FILE, check_written_order
from data_order.provenance import FOLDER as PROVENANCE_FOLDER
from data_order.provenance import PROVENANCE_FORMAT, write_index

#: Bump when the bytes a given config produces change; part of every fingerprint.
FORMAT_VERSION = 1
METADATA = "metadata.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks (datasets are far larger than memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint_of(obj: object) -> str:
    """The fingerprint rule: sha256 of the canonical JSON of `obj` (a dataset's fingerprint
    fields, a corpus listing, …)."""
    return _sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


@dataclasses.dataclass
class _Corpus:
    files: list[InputFile]
    tokenizer_json: str
    vocab_size: int
    eos_id: int
    fields: tuple[str, str | None] = ("text", None)
    """(text_field, id_field): what a shard's documents and their ids are read from."""

    @functools.cached_property
    def hashes(self) -> list[str]:
        """Content hash of every input file (reads the whole corpus once)."""
        return [f.sha256() for f in self.files]

    @property
    def key(self) -> str:
        """Names the shard cache: tokenizer + file names and sizes, cheap to compute so a shard
        task never reads the whole corpus; each shard records its files' content hashes and
        the merge re-tokenizes any shard whose files changed."""
        listing = [[f.name, f.path.stat().st_size] for f in self.files]
        return fingerprint_of(
            [FORMAT_VERSION, _sha256(self.tokenizer_json.encode()), self.eos_id, listing]
            + ([list(self.fields)] if self.fields != ("text", None) else [])
        )


def _fingerprint_fields(cfg: PrepareConfig, corpus: _Corpus, dedup: str) -> dict:
    dedup_fields: dict = {"method": dedup}
    if dedup == "minhash":
        dedup_fields.update(
            threshold=cfg.minhash_threshold, num_perm=cfg.num_perm, shingle_size=cfg.shingle_size
        )
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer_sha256": _sha256(corpus.tokenizer_json.encode()),
        "eos_id": corpus.eos_id,
        "inputs": corpus.hashes,
        "text_field": cfg.text_field,
        # Only when set: fingerprints of datasets prepared without it stay as they were.
        **({"id_field": cfg.id_field} if cfg.id_field is not None else {}),
        "seq_len": cfg.seq_len,
        "seed": cfg.seed,
        "dedup": dedup_fields,
        "eval": {"fraction": cfg.eval_fraction, "min_docs": cfg.eval_min_docs},
    }


def _tokenizer_cache(cfg: PrepareConfig, hashes: list[str]) -> Path:
    import tokenizers

    key = fingerprint_of(
        ["bytelevel-bpe-v1", tokenizers.__version__, cfg.vocab_size, cfg.text_field, hashes]
    )
    return Path(cfg.out_dir) / ".tokenizers" / f"{key[:32]}.json"


def _tokenizer_json(cfg: PrepareConfig, files: list[InputFile], corpus: _Corpus) -> str:
    if cfg.tokenizer is not None:
        path = Path(cfg.tokenizer)
        if not path.is_file():
            raise DataConfigError(
                "tokenizer",
                cfg.tokenizer,
                "no such file; give a tokenizer.json or omit it to train a BPE",
            )
        return path.read_text(encoding="utf-8")
    from data_order.tokenize import train_bytelevel_bpe

    cache = _tokenizer_cache(cfg, corpus.hashes)
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    texts = [doc.text for doc in read_documents(files, cfg.text_field)]
    _require_documents(len(texts), cfg)
    tokenizer_json = train_bytelevel_bpe(texts, cfg.vocab_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(cache, tokenizer_json.encode())
    return tokenizer_json


def _require_documents(count: int, cfg: PrepareConfig) -> None:
    if count == 0:
        raise DataConfigError(
            "inputs",
            cfg.inputs,
            "the corpus holds no non-empty document; check the inputs and text_field",
        )


def _load_corpus(cfg: PrepareConfig) -> _Corpus:
    """Input files and tokenizer. Hashes every input only to find a trained tokenizer's
    cache; with `tokenizer` given, a shard task reads nothing but its own files."""
    from data_order.tokenize import tokenizer_info

    files = expand_inputs(cfg.inputs)
    if not files:
        raise DataConfigError("inputs", cfg.inputs, "matched no file; the corpus is empty")
    corpus = _Corpus(files, "", 0, 0, (cfg.text_field, cfg.id_field))
    corpus.tokenizer_json = _tokenizer_json(cfg, files, corpus)
    try:
        corpus.vocab_size, corpus.eos_id = tokenizer_info(corpus.tokenizer_json, cfg.eos_token)
    except DataError:
        raise
    except Exception as err:  # tokenizers raises a bare Exception for a file it cannot parse
        raise DataConfigError(
            "tokenizer",
            cfg.tokenizer,
            f"not a tokenizers JSON file ({str(err).splitlines()[0]}); give a tokenizer.json "
            "(e.g. from a transformers model folder) or leave it out to train one",
        ) from None
    return corpus


# --- shards -------------------------------------------------------------------------------


def shard_of_files(sizes: list[int], num_shards: int) -> list[int]:
    """Shard of each file: contiguous ranges balanced by bytes (a file's middle decides)."""
    total = sum(sizes)
    if total == 0:
        return [0] * len(sizes)
    shards, before = [], 0
    for size in sizes:
        shards.append(min(num_shards - 1, int(num_shards * (before + size / 2) / total)))
        before += size
    return shards


def _work_dir(cfg: PrepareConfig, corpus: _Corpus) -> Path:
    return Path(cfg.out_dir) / f".work-{corpus.key[:16]}"


def _shard_dir(cfg: PrepareConfig, corpus: _Corpus, index: int) -> Path:
    return _work_dir(cfg, corpus) / f"shard-{index:05d}-of-{cfg.num_shards:05d}"


def tokenize_shard(cfg: PrepareConfig, corpus: _Corpus, index: int) -> Path:
    """Tokenize shard `index` (cached: a finished shard folder is reused as is)."""
    from data_order.tokenize import tokenize_documents

    final = _shard_dir(cfg, corpus, index)
    assignment = shard_of_files([f.path.stat().st_size for f in corpus.files], cfg.num_shards)
    files = [f for f, s in zip(corpus.files, assignment, strict=True) if s == index]
    if (final / "done.json").is_file():
        return final
    writer = None
    try:
        # replace=False: a concurrent task's identical shard may win. docs.jsonl is streamed
        # (not held in memory): a shard's memory stays bounded whatever its size.
        with (
            atomic_directory(final, replace=False) as tmp,
            open(tmp / "docs.jsonl", "w", encoding="utf-8") as docs,
        ):
            writer = IndexedWriter(tmp / "tokens", token_dtype(corpus.vocab_size))
            workers = cfg.workers or os.cpu_count() or 1
            documents = read_documents(files, cfg.text_field, cfg.id_field)
            desc = f"tokenize shard {index + 1}/{cfg.num_shards}"
            for doc in tokenize_documents(
                documents, corpus.tokenizer_json, corpus.eos_id, workers, cfg.progress, desc
            ):
                writer.add_item(doc.tokens)
                docs.write(json.dumps({"id": doc.id, "sha256": doc.text_sha256}) + "\n")
            writer.close()
            docs.flush()
            done = {"corpus_key": corpus.key, "shard": index, "num_shards": cfg.num_shards}
            done["files"] = [[f.name, f.sha256()] for f in files]
            write_json(tmp / "done.json", done)
    except BaseException:
        if writer is not None:
            writer.abort()
        with contextlib.suppress(OSError):
            final.parent.rmdir()  # only if no finished shard is cached there
        raise
    return final


@dataclasses.dataclass
class _Documents:
    ids: list[str]
    hashes: list[str]
    tokens: list[np.ndarray]  # memory-mapped views into the shard files


def _merge_shards(cfg: PrepareConfig, corpus: _Corpus) -> _Documents:
    merged = _Documents([], [], [])
    assignment = shard_of_files([f.path.stat().st_size for f in corpus.files], cfg.num_shards)
    for index in range(cfg.num_shards):
        expected = [
            [f.name, h]
            for f, h, s in zip(corpus.files, corpus.hashes, assignment, strict=True)
            if s == index
        ]
        done = _shard_dir(cfg, corpus, index) / "done.json"
        if done.is_file() and json.loads(done.read_text()).get("files") != expected:
            shutil.rmtree(done.parent)  # its files changed since it was tokenized (same size)
        folder = tokenize_shard(cfg, corpus, index)
        reader = IndexedReader(folder / "tokens")
        lines = (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines()
        if len(lines) != len(reader):
            raise DataError(
                f"{folder}: {len(lines)} document ids for {len(reader)} items; delete the folder and re-run"
            )
        for i, line in enumerate(lines):
            record = json.loads(line)
            merged.ids.append(record["id"])
            merged.hashes.append(record["sha256"])
            merged.tokens.append(reader[i])
    _require_documents(len(merged.ids), cfg)
    return merged


# --- split, dedup, write --------------------------------------------------------------------


def held_out_documents(hashes: list[str], fraction: float, min_docs: int) -> set[int]:
    """Indices of held-out documents: the k smallest text hashes (ties held out together)."""
    n = len(hashes)
    k = max(min_docs, round(fraction * n)) if (fraction > 0 or min_docs > 0) else 0
    if k == 0:
        return set()
    if k >= n:
        raise DataConfigError(
            "eval_min_docs",
            min_docs,
            f"the corpus has only {n} documents and none would be left to train on; lower eval_min_docs / eval_fraction",
        )
    order = sorted(range(n), key=lambda i: (hashes[i], i))
    cutoff = hashes[order[k - 1]]
    held = {i for i in range(n) if hashes[i] <= cutoff}
    if len(held) >= n:
        raise DataConfigError(
            "eval_fraction", fraction, "every document would be held out; lower it"
        )
    return held


def _write_dataset(
    cfg: PrepareConfig,
    corpus: _Corpus,
    docs: _Documents,
    held: set[int],
    name: str,
    dedup: str,
    removals: list[Removal],
    fingerprint_fields: dict,
    fingerprint: str,
) -> Path:
    out_dir = Path(cfg.out_dir)
    final = out_dir / name
    with atomic_directory(final, replace=cfg.overwrite) as tmp:
        removed = {r.index for r in removals}  # indices into docs
        dtype = token_dtype(corpus.vocab_size)
        train_writer, eval_writer = (
            IndexedWriter(tmp / "train", dtype),
            IndexedWriter(tmp / "eval", dtype),
        )
        counts = {"train_documents": 0, "eval_documents": 0, "train_tokens": 0, "eval_tokens": 0}
        listing = io.StringIO()
        try:
            for i, (doc_id, tokens) in enumerate(zip(docs.ids, docs.tokens, strict=True)):
                if i in removed:
                    continue
                split = "eval" if i in held else "train"
                (eval_writer if split == "eval" else train_writer).add_item(tokens)
                counts[f"{split}_documents"] += 1
                counts[f"{split}_tokens"] += len(tokens)
                record = {"id": doc_id, "split": split, "tokens": len(tokens)}
                listing.write(json.dumps(record) + "\n")
            train_writer.close()
            eval_writer.close()
        except BaseException:
            # Close the files now: a buffered write flushed at garbage collection on a full
            # disk would print an "Exception ignored" traceback after our one-line error.
            train_writer.abort()
            eval_writer.abort()
            raise
        num_samples = num_packed_samples(counts["train_tokens"], cfg.seq_len)
        eval_samples = num_packed_samples(counts["eval_tokens"], cfg.seq_len)
        if num_samples < 1:
            raise DataConfigError(
                "seq_len",
                cfg.seq_len,
                f"the training split has {counts['train_tokens']} tokens, fewer than one sample of seq_len+1; use a larger corpus or a smaller seq_len",
            )
        if held and eval_samples < 1:
            raise DataConfigError(
                "eval_min_docs",
                cfg.eval_min_docs,
                f"the held-out documents hold {counts['eval_tokens']} tokens, fewer than one sample of seq_len+1={cfg.seq_len + 1}; raise eval_fraction/eval_min_docs, or set both to 0 for no eval split",
            )
        write_bytes(tmp / "tokenizer.json", corpus.tokenizer_json.encode())
        # Epoch 0's order artifact, read back and checked against its recomputation.
        order = compute_permutation(num_samples, cfg.seed, 0)
        write_npy(tmp / ORDER_FILE, order)
        check_written_order(tmp / ORDER_FILE, order)
        write_bytes(tmp / "documents.jsonl", listing.getvalue().encode())
        # Derived from train.idx + documents.jsonl, outside the fingerprint (provenance.py).
        write_index(tmp)
        report = None
        if dedup != "none":
            report = "dedup_report.csv"
            text = io.StringIO()
            table = csv.writer(text, lineterminator="\n")
            table.writerow(["removed", "kept", "similarity", "method"])
            table.writerows([r.removed, r.kept, f"{r.similarity:.6f}", r.method] for r in removals)
            write_bytes(tmp / report, text.getvalue().encode())
        metadata = {
            "format_version": FORMAT_VERSION,
            "kind": "packed",
            "name": name,
            "fingerprint": fingerprint,
            "fingerprint_fields": fingerprint_fields,
            "seq_len": cfg.seq_len,
            "seed": cfg.seed,
            "packing": "documents + EOS concatenated; sample k = tokens [k*seq_len, k*seq_len + seq_len + 1)",
            "order": "epoch e = argsort(PCG64(SeedSequence([seed, e])).random_raw(num_samples), stable)",
            "vocab_size": corpus.vocab_size,
            "eos_id": corpus.eos_id,
            "token_dtype": str(dtype),
            "tokenizer": {
                "file": "tokenizer.json",
                "sha256": fingerprint_fields["tokenizer_sha256"],
                "source": cfg.tokenizer
                or f"byte-level BPE trained on the corpus, vocab_size={cfg.vocab_size}",
            },
            "inputs": [
                {"name": f.name, "sha256": h}
                for f, h in zip(corpus.files, corpus.hashes, strict=True)
            ],
            "counts": {
                **counts,
                "documents": len(docs.ids),
                "removed_documents": len(removed),
                "num_samples": num_samples,
                "eval_samples": eval_samples,
            },
            "dedup": {**fingerprint_fields["dedup"], "report": report},
            "eval": fingerprint_fields["eval"],
            "max_epochs": cfg.max_epochs,
            "default_global_batch": cfg.global_batch,
            "provenance": {"folder": PROVENANCE_FOLDER, "format": PROVENANCE_FORMAT},
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()},
            # What `suite verify --data` compares the files with (sizes alone miss a flipped byte).
            "sha256": {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        write_json(tmp / METADATA, metadata)
    # If another process published this dataset meanwhile, keep it only if it is ours.
    if _existing_fingerprint(final) != fingerprint:
        raise DataConfigError(
            "name",
            name,
            f"{final} was written concurrently with another fingerprint; choose another name",
        )
    return final


def _existing_fingerprint(path: Path) -> str | None:
    try:
        return json.loads((path / METADATA).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def prepare_tokenizer(cfg: PrepareConfig) -> Path:
    """Train and cache the tokenizer only (run once before a sharded array); returns its path."""
    corpus = _load_corpus(cfg)
    return Path(cfg.tokenizer) if cfg.tokenizer else _tokenizer_cache(cfg, corpus.hashes)


def prepare(cfg: PrepareConfig) -> list[Path]:
    """Build the dataset(s) `cfg` describes; returns their folders (standard first).

    Cached: a dataset folder with the same fingerprint is returned untouched. With
    `shard_index` set, only that shard is tokenized and its folder returned.
    """
    out_dir = Path(cfg.out_dir)
    try:
        corpus = _load_corpus(cfg)  # first: a refused input leaves no empty out_dir behind
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.shard_index is not None:
            return [tokenize_shard(cfg, corpus, cfg.shard_index)]

        # One builder at a time per corpus (e.g. 16 runs starting together): the others
        # wait, then find the finished datasets in the cache.
        with file_lock(out_dir / f".lock-{corpus.key[:16]}"):
            return _build(cfg, corpus, out_dir)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        # Every writer is atomic: what was being written is gone, finished datasets and
        # shards stay (a re-run with more room continues from them).
        raise NoSpaceError(
            out_dir, _space_needed(cfg), _free_bytes(out_dir), "out_dir (--out)"
        ) from None


#: errno values of a full disk: no space, quota exceeded, RLIMIT_FSIZE (SIGXFSZ ignored).
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: UTF-8 bytes per token of a byte-level BPE on code and prose, rounded down (stdlib: 3.8):
#: the space estimate errs on the large side.
BYTES_PER_TOKEN = 3
#: Text bytes per compressed byte of .gz/.zst JSONL, as rough.
COMPRESSION_RATIO = 4


def _space_needed(cfg: PrepareConfig) -> int:
    """Rough bytes `prepare` writes: the tokenized shards, then each dataset's copy of the
    tokens (+10% for indexes, listings and the order)."""
    try:
        files = expand_inputs(cfg.inputs)
    except DataError:
        return 0
    text = sum(
        f.path.stat().st_size * (COMPRESSION_RATIO if f.path.suffix in (".gz", ".zst") else 1)
        for f in files
    )
    item = 2 if cfg.vocab_size <= 1 << 16 or cfg.tokenizer else 4
    copies = 1 + int(cfg.emit_standard) + int(cfg.dedup != "none")
    return int(text / BYTES_PER_TOKEN * item * copies * 1.1)


def _free_bytes(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _build(cfg: PrepareConfig, corpus: _Corpus, out_dir: Path) -> list[Path]:
    targets: list[tuple[str, str]] = []
    if cfg.emit_standard:
        targets.append((cfg.dataset_name, "none"))
    if cfg.dedup != "none":
        targets.append((f"{cfg.dataset_name}-deduped", cfg.dedup))
    # One writer per dataset name (another corpus may target the same name), so that the
    # temporary folders of a killed prepare can be told from a live one's and removed.
    with contextlib.ExitStack() as locks:
        for name in sorted(name for name, _ in targets):
            locks.enter_context(file_lock(out_dir / f".lock-{name}"))
            remove_leftovers(out_dir / name)
        return _build_locked(cfg, corpus, out_dir, targets)


def _build_locked(
    cfg: PrepareConfig, corpus: _Corpus, out_dir: Path, targets: list[tuple[str, str]]
) -> list[Path]:
    plans = []
    for name, dedup in targets:
        fields = _fingerprint_fields(cfg, corpus, dedup)
        fingerprint = fingerprint_of(fields)
        existing = _existing_fingerprint(out_dir / name)
        if existing is not None and existing != fingerprint and not cfg.overwrite:
            raise DataConfigError(
                "name",
                name,
                f"{out_dir / name} already holds a dataset with fingerprint {existing[:16]}..., "
                f"this config gives {fingerprint[:16]}...; choose another name/out_dir or set overwrite",
            )
        if (out_dir / name).exists() and existing is None and not cfg.overwrite:
            raise DataConfigError(
                "name",
                name,
                f"{out_dir / name} exists but is not a dataset; remove it or choose another name",
            )
        plans.append((name, dedup, fields, fingerprint, existing == fingerprint))
    if all(cached for *_, cached in plans):
        return [out_dir / name for name, *_ in plans]

    docs = _merge_shards(cfg, corpus)
    held = held_out_documents(docs.hashes, cfg.eval_fraction, cfg.eval_min_docs)
    results = []
    for name, dedup, fields, fingerprint, cached in plans:
        if cached:
            results.append(out_dir / name)
            continue
        removals: list[Removal] = []
        if dedup == "minhash" and cfg.dedup_engine == "datatrove":
            from data_order.dedup_engine import engine_removals  # imports datatrove

            shards = [_shard_dir(cfg, corpus, i) for i in range(cfg.num_shards)]
            removals = engine_removals(
                cfg, _work_dir(cfg, corpus), shards, len(docs.ids), held_out_documents
            )
        elif dedup != "none":
            train = [i for i in range(len(docs.ids)) if i not in held]
            removals = find_duplicates(
                [docs.ids[i] for i in train],
                [docs.hashes[i] for i in train],
                [docs.tokens[i] for i in train],
                dedup,
                cfg.minhash_threshold,
                cfg.num_perm,
                cfg.shingle_size,
            )
            # find_duplicates numbers documents within `train`; map back to corpus indices.
            removals = [dataclasses.replace(r, index=train[r.index]) for r in removals]
        results.append(
            _write_dataset(cfg, corpus, docs, held, name, dedup, removals, fields, fingerprint)
        )
    del docs  # release the shard memory maps before deleting their folder
    shutil.rmtree(_work_dir(cfg, corpus), ignore_errors=True)
    return results
