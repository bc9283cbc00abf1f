"""Benchmark of the provenance index (`data_order.provenance`): build, `seen`, `--docs`, text.

The dataset is synthetic and written directly (not through `prepare`, whose tokenizing
would dominate on a small machine and is measured by bench_data_order.py): `--docs`
documents with Pile-like ids (`pile/train/07.jsonl.zst:1234567`), lognormal lengths, packed
at seq_len 2048. Figures, each against a baseline measured in the same run (a ratio):

* index build (`write_index`): documents/s, bytes per document (files of `provenance/`);
* the inverse of one epoch's order (once per seed and epoch, cached): seconds per sample,
  measured at `--inverse-samples` samples (Pile-like size without Pile-size disk);
* `seen` by id (`document_occurrences`, warm and cold) vs scanning every batch of the same
  span: row by row with the pre-existing `PackedDataset.sample_documents`, and as one
  vectorized numpy pass over all positions (a strong baseline that already needs the
  document boundaries);
* `--docs` of a 1024-row batch (`samples_documents` of its rows) vs the pre-existing
  `PackedDataset.sample_documents` (ids only), warm, and cold (first call of a process);
* text search (`find_tokens`, a 32-token passage) vs one `numpy ==` pass over the stream
  (the memory-bandwidth floor of any scan);
* an extrapolation of those rates to a 300B-token Pile-scale corpus (210M documents, 146M
  samples of 2049 tokens).

Run: `PYTHONPATH=. python benchmarks/bench_provenance.py [--docs 500000]`. Writes
benchmarks/results/provenance.json. Not a test: no assertion on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_order import document_occurrences, open_dataset, open_index  # noqa: E402
from data_order.atomic import write_json  # noqa: E402
from data_order.build import FORMAT_VERSION, file_sha256, fingerprint_of  # noqa: E402
from data_order.indexed import IndexedWriter  # noqa: E402
from data_order.order import epoch_permutation, num_packed_samples  # noqa: E402
from data_order.provenance import write_index  # noqa: E402

PILE = {"documents": 210_000_000, "samples": 146_000_000, "tokens": 300e9, "epochs": 1.5}
SEQ_LEN, GLOBAL_BATCH, VOCAB = 2048, 1024, 50277


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """(best wall seconds of `repeat` calls, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def write_dataset(folder: Path, docs: int, mean_tokens: int, seed: int) -> None:
    """A packed dataset folder as `prepare` lays it out (the files PackedDataset reads)."""
    rng = np.random.default_rng(seed)
    sigma = 1.0
    lengths = rng.lognormal(np.log(mean_tokens) - sigma**2 / 2, sigma, docs).astype(np.int64) + 2
    folder.mkdir(parents=True)
    writer = IndexedWriter(folder / "train", np.uint16)
    stream = rng.integers(1, VOCAB, int(lengths.sum()), dtype=np.uint16)
    ends = np.cumsum(lengths)
    stream[ends - 1] = 0  # EOS
    for start, stop in zip((ends - lengths).tolist(), ends.tolist(), strict=True):
        writer.add_item(stream[start:stop])
    writer.close()
    IndexedWriter(folder / "eval", np.uint16).close()
    shard = rng.integers(0, 30, docs)
    lines = [
        json.dumps({"id": f"pile/train/{s:02d}.jsonl.zst:{i}", "split": "train", "tokens": n})
        for i, (s, n) in enumerate(zip(shard.tolist(), lengths.tolist(), strict=True))
    ]
    (folder / "documents.jsonl").write_text("\n".join(lines) + "\n")
    samples = num_packed_samples(int(lengths.sum()), SEQ_LEN)
    fields = {"format_version": FORMAT_VERSION, "synthetic": docs, "seq_len": SEQ_LEN, "seed": 1}
    files = sorted(p for p in folder.iterdir() if p.is_file())
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "packed",
        "fingerprint": fingerprint_of(fields),
        "fingerprint_fields": fields,
        "seq_len": SEQ_LEN,
        "seed": 1,
        "vocab_size": VOCAB,
        "eos_id": 0,
        "max_epochs": 2,
        "default_global_batch": GLOBAL_BATCH,
        "counts": {"num_samples": samples, "documents": docs, "eval_documents": 0},
        "files": {p.name: p.stat().st_size for p in files},
        "sha256": {p.name: file_sha256(p) for p in files},
    }
    write_json(folder / "metadata.json", meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=500_000)
    parser.add_argument("--mean-tokens", type=int, default=200)
    parser.add_argument("--inverse-samples", type=int, default=8_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "provenance.json"))
    args = parser.parse_args()
    results: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "synthetic"
        write_dataset(folder, args.docs, args.mean_tokens, seed=0)
        dataset = open_dataset(folder)
        n = dataset.num_samples
        results["dataset"] = {
            "documents": args.docs,
            "tokens": dataset.train.num_tokens,
            "samples_per_epoch": n,
            "seq_len": SEQ_LEN,
        }

        # --- build ---------------------------------------------------------------------
        build_s, index_dir = timed(lambda: write_index(folder))
        index_bytes = sum(p.stat().st_size for p in index_dir.iterdir() if p.is_file())
        results["build"] = {
            "seconds": round(build_s, 3),
            "documents_per_s": round(args.docs / build_s),
            "bytes": index_bytes,
            "bytes_per_document": round(index_bytes / args.docs, 1),
        }

        # --- inverse order ------------------------------------------------------------
        def inverse(size: int) -> np.ndarray:
            out = np.empty(size, dtype=np.uint32)
            out[epoch_permutation(size, 99, 0)] = np.arange(size, dtype=np.uint32)
            return out

        inverse_s, _ = timed(lambda: inverse(args.inverse_samples))
        permutation_s, _ = timed(lambda: epoch_permutation(args.inverse_samples, 98, 0))
        epoch_permutation.cache_clear()
        results["inverse_order"] = {
            "samples": args.inverse_samples,
            "seconds": round(inverse_s, 3),
            "ns_per_sample": round(inverse_s / args.inverse_samples * 1e9, 1),
            "vs_permutation_alone": round(inverse_s / permutation_s, 3),
            "bytes_per_sample": 4,
        }

        # --- seen by id -----------------------------------------------------------------
        stop = 2 * n  # two epochs
        index = open_index(dataset, build=False)
        rng = np.random.default_rng(1)
        picks = rng.integers(0, index.num_documents, args.queries).tolist()
        ids = [index.document_id(d) for d in picks]
        cold_s, _ = timed(lambda: document_occurrences(index, ids[0], GLOBAL_BATCH, stop))
        warm = []
        for doc_id in ids:
            t, found = timed(lambda doc_id=doc_id: document_occurrences(
                index, doc_id, GLOBAL_BATCH, stop))  # fmt: skip
            warm.append(t)
        warm_ms = statistics.median(warm) * 1e3

        doc = picks[0]
        start, end = index.document_span(doc)

        def scan_rows() -> list[int]:  # the pre-existing API, row by row over every batch
            target = ids[0]
            return [p for p, s in enumerate(dataset.sample_ids(np.arange(stop)).tolist())
                    if target in dataset.sample_documents(s)]  # fmt: skip

        def scan_vectorized() -> np.ndarray:  # every position at once, boundaries known
            first = dataset.sample_ids(np.arange(stop)) * SEQ_LEN
            return np.flatnonzero((first <= end - 1) & (first + SEQ_LEN >= start))

        dataset.sample_documents(0)  # load its listing outside the timing (warm baseline)
        rows_s, by_rows = timed(scan_rows)
        vector_s, by_vector = timed(scan_vectorized, repeat=3)
        found = document_occurrences(index, ids[0], GLOBAL_BATCH, stop)
        assert sorted({o.position for o in found}) == by_vector.tolist() == by_rows
        results["seen_by_id"] = {
            "searched_positions": stop,
            "queries": args.queries,
            "cold_first_query_ms": round(cold_s * 1e3, 2),
            "warm_median_ms": round(warm_ms, 3),
            "scan_rows_s": round(rows_s, 3),
            "scan_vectorized_ms": round(vector_s * 1e3, 2),
            "scan_rows_vs_index": round(rows_s / (warm_ms / 1e3)),
            "scan_vectorized_vs_index": round(vector_s / (warm_ms / 1e3), 1),
        }

        # --- --docs for one batch ---------------------------------------------------------
        batch = n // GLOBAL_BATCH  # straddles the epoch boundary
        samples = dataset.global_rows(batch * GLOBAL_BATCH, (batch + 1) * GLOBAL_BATCH).tolist()
        docs_s, _ = timed(lambda: index.samples_documents(samples), repeat=5)
        old_s, _ = timed(lambda: [dataset.sample_documents(s) for s in samples], repeat=5)
        fresh = open_dataset(folder)
        cold_old_s, _ = timed(lambda: [fresh.sample_documents(s) for s in samples])
        fresh = open_dataset(folder)
        cold_new_s, _ = timed(lambda: open_index(fresh, build=False).samples_documents(samples))
        results["batch_docs"] = {
            "rows": GLOBAL_BATCH,
            "warm_ms": round(docs_s * 1e3, 2),
            "sample_documents_ids_only_warm_ms": round(old_s * 1e3, 2),
            "warm_vs_sample_documents": round(docs_s / old_s, 2),
            "cold_ms": round(cold_new_s * 1e3, 2),
            "sample_documents_cold_ms": round(cold_old_s * 1e3, 1),
            "cold_speedup": round(cold_old_s / cold_new_s, 1),
        }

        # --- text search ------------------------------------------------------------------
        long = int(np.argmax(np.diff(index.doc_ends.astype(np.int64))))
        a, _ = index.document_span(long + 1)
        query = np.asarray(dataset.train.tokens(2 * (a + 5), 32), dtype=np.int64)
        text_s, hits = timed(lambda: index.find_tokens(query), repeat=2)
        flat = dataset.train.bin.flat
        first = flat.dtype.type(query[0])  # same dtype: no upcast of the stream
        floor_s, _ = timed(lambda: np.count_nonzero(flat == first), repeat=2)
        assert a + 5 in hits.tolist()
        tokens = dataset.train.num_tokens
        results["text_search"] = {
            "stream_tokens": tokens,
            "query_tokens": len(query),
            "seconds": round(text_s, 3),
            "tokens_per_s": round(tokens / text_s),
            "one_compare_pass_s": round(floor_s, 3),
            "vs_one_compare_pass": round(text_s / floor_s, 2),
        }

    # --- Pile-scale extrapolation ---------------------------------------------------------
    per_doc = results["build"]["bytes_per_document"]
    results["pile_extrapolation"] = {
        "assumptions": PILE
        | {"note": "rates of this run, one core; ids as long as the synthetic ones"},
        "index_gb": round(PILE["documents"] * per_doc / 1e9, 1),
        "build_core_hours": round(
            PILE["documents"] / results["build"]["documents_per_s"] / 3600, 2
        ),
        "inverse_per_epoch_gb": round(PILE["samples"] * 4 / 1e9, 2),
        "inverse_per_epoch_core_minutes": round(
            PILE["samples"] * results["inverse_order"]["ns_per_sample"] / 1e9 / 60, 1
        ),
        "seen_warm_ms": results["seen_by_id"]["warm_median_ms"],
        "seen_scan_vectorized_s": round(
            results["seen_by_id"]["scan_vectorized_ms"]
            / 1e3
            * PILE["samples"]
            * PILE["epochs"]
            / results["seen_by_id"]["searched_positions"],
            1,
        ),
        "text_search_core_hours": round(
            PILE["tokens"] / results["text_search"]["tokens_per_s"] / 3600, 2
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
