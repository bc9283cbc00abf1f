"""Benchmark of data_order on the embedded corpus (the running Python's stdlib).

Figures (each against a baseline measured in the same run, reported as a ratio):

* tokenizing throughput of prepare's shard step (read, tokenize in worker processes,
  write .bin/.idx) vs the tokenizer's own `encode_batch` on the same texts (the ceiling);
* end-to-end `prepare` of both suite datasets (standard + MinHash-deduplicated) from
  scratch, and the tokenizer training it includes (checked deterministic: trained twice);
* batch lookup (`Dataset.batch`, packed and pre-shuffled layouts) vs a raw numpy memmap
  slice of the same number of bytes;
* `suite batch` whole-process wall time vs a bare `python -c "import numpy"`.

Run: `PYTHONPATH=. python benchmarks/bench_data_order.py [--seq-len 256] [--global-batch 1024]`.
Writes benchmarks/results/data_order.json. Not a test: no assertion on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_order import PrepareConfig, open_dataset, prepare, write_preshuffled  # noqa: E402
from data_order.atomic import write_json  # noqa: E402
from data_order.build import tokenize_shard  # noqa: E402
from data_order.corpus import read_documents, stdlib_files  # noqa: E402
from data_order.tokenize import load_tokenizer, train_bytelevel_bpe  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--global-batch", type=int, default=1024)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_order.json"))
    args = parser.parse_args()
    results: dict = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "seq_len": args.seq_len,
        "global_batch": args.global_batch,
        "vocab_size": args.vocab_size,
    }
    work = Path(tempfile.mkdtemp(prefix="bench_data_order-"))

    # --- end to end: both datasets from scratch (includes tokenizer training) -------------------
    cfg = PrepareConfig(
        seq_len=args.seq_len,
        vocab_size=args.vocab_size,
        dedup="minhash",
        out_dir=str(work / "data"),
        progress=False,
    )
    start = time.perf_counter()
    standard, deduped = prepare(cfg)
    results["prepare_both_datasets_s"] = round(time.perf_counter() - start, 2)
    meta = [json.loads((p / "metadata.json").read_text()) for p in (standard, deduped)]
    results["corpus"] = {
        "files": len(stdlib_files()),
        "documents": meta[0]["counts"]["documents"],
        "train_tokens": meta[0]["counts"]["train_tokens"],
        "deduped_train_tokens": meta[1]["counts"]["train_tokens"],
        "dedup_removed_documents": meta[1]["counts"]["removed_documents"],
        "samples_per_epoch": meta[0]["counts"]["num_samples"],
        "deduped_samples_per_epoch": meta[1]["counts"]["num_samples"],
    }

    # --- tokenizer training: time and determinism --------------------------------------------
    texts = [d.text for d in read_documents(stdlib_files(), "text")]
    start = time.perf_counter()
    first = train_bytelevel_bpe(texts, args.vocab_size)
    results["tokenizer_train_s"] = round(time.perf_counter() - start, 2)
    results["tokenizer_deterministic"] = (
        first
        == train_bytelevel_bpe(texts, args.vocab_size)
        == (standard / "tokenizer.json").read_text()
    )

    # --- tokenizing throughput vs the encode_batch ceiling ------------------------------------
    # The machine may be shared: candidates are measured interleaved, best of 3 each.
    from data_order.build import _load_corpus

    tokenizer = load_tokenizer(first)
    n_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))  # warm-up + count
    candidates = {
        "encode_batch": lambda: tokenizer.encode_batch(texts),
        "encode_batch_fast": lambda: tokenizer.encode_batch_fast(texts),
    }
    for workers in (1, os.cpu_count() or 1):
        shard_cfg = PrepareConfig(
            seq_len=args.seq_len,
            vocab_size=args.vocab_size,
            workers=workers,
            out_dir=str(work / "data"),
            progress=False,
        )
        corpus = _load_corpus(shard_cfg)  # cached tokenizer: no training here

        def tokenize_once(shard_cfg=shard_cfg, corpus=corpus):
            import shutil

            # read + tokenize (worker processes) + write .bin/.idx: prepare's shard step
            folder = tokenize_shard(shard_cfg, corpus, 0)
            shutil.rmtree(folder.parent)

        candidates[f"prepare_tokenize_workers{workers}"] = tokenize_once
    best = {name: float("inf") for name in candidates}
    for _ in range(3):
        for name, fn in candidates.items():
            best[name] = min(best[name], best_of(fn, 1))
    ceiling = best["encode_batch"]
    for name, elapsed in best.items():
        results[f"{name}_tokens_per_s"] = round(n_tokens / elapsed)
        if name != "encode_batch":
            results[f"{name}_vs_encode_batch"] = round(ceiling / elapsed, 3)

    # --- batch lookup vs raw memmap slice -----------------------------------------------------
    ds = open_dataset(standard)
    B, width = args.global_batch, ds.seq_len + 1
    raw = np.memmap(standard / "train.bin", dtype=np.uint16, mode="r")
    n_batches = max(1, ds.num_samples // B)
    indices = list(range(min(n_batches, 8)))

    def raw_slices():
        for i in indices:
            start = (i * B * width) % max(1, raw.size - B * width)
            np.asarray(raw[start : start + B * width], dtype=np.int64).reshape(B, width)

    def packed():
        for i in indices:
            ds.batch(i, B)

    write_preshuffled(ds, work / "pre", min(ds.num_positions, B * len(indices)))
    pre = open_dataset(work / "pre")

    def preshuffled():
        for i in indices:
            pre.batch(i, B)

    base = best_of(raw_slices, 5) / len(indices)
    results["batch_lookup"] = {
        "raw_memmap_slice_ms": round(base * 1e3, 3),
        "packed_ms": round(best_of(packed, 5) / len(indices) * 1e3, 3),
        "preshuffled_ms": round(best_of(preshuffled, 5) / len(indices) * 1e3, 3),
    }
    lookup = results["batch_lookup"]
    lookup["packed_vs_raw"] = round(lookup["packed_ms"] / lookup["raw_memmap_slice_ms"], 2)
    lookup["preshuffled_vs_raw"] = round(
        lookup["preshuffled_ms"] / lookup["raw_memmap_slice_ms"], 2
    )

    # --- suite batch whole process ------------------------------------------------------------
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(cmd):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
        return time.perf_counter() - start

    cli = [
        sys.executable,
        "-m",
        "suite.cli",
        "batch",
        "3",
        "--data",
        str(standard),
        "--global-batch",
        str(B),
    ]
    bare = [sys.executable, "-c", "import numpy"]
    cli_s = statistics.median(run(cli) for _ in range(5))
    bare_s = statistics.median(run(bare) for _ in range(5))
    results["suite_batch_process_s"] = round(cli_s, 3)
    results["python_import_numpy_process_s"] = round(bare_s, 3)
    results["suite_batch_vs_import_numpy"] = round(cli_s / bare_s, 2)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(json.dumps(results, indent=2))
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
