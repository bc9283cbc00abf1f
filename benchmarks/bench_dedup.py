"""Benchmark of corpus-scale preparation: tokenizing and near-dedup, single vs datatrove.

Figures (one core each: workers=1; the engines compared in the same run, as a ratio):

* tokenizing (prepare's shard step: read, tokenize, write .bin/.idx): documents/s and
  MB/s per core;
* near-dedup (exact + MinHash, 0.87, 128 permutations, 5-token shingles): documents/s per
  core of the single-process engine (`find_duplicates`) and of each datatrove stage
  (signatures, buckets, removals), checked to remove the same documents;
* peak memory (max RSS) of one worker against the shard size, for tokenizing, the signature
  stage and the single engine, each in a fresh process (minus a bare process's RSS);
* the extrapolation to the Pile (210M documents, ~825 GB of text) on paper from those rates.

The corpus is synthetic: documents of ~4 KB (the Pile's mean, 825 GB / 210M) of words drawn
from a 5,000-word vocabulary, with 10% near copies (a few words changed) and 2% exact copies.

Run: `PYTHONPATH=. python benchmarks/bench_dedup.py [--docs 4000] [--sizes 4,16]`.
Writes benchmarks/results/dedup.json. Not a test: no assertion on time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_order import PrepareConfig  # noqa: E402
from data_order.atomic import write_json  # noqa: E402

PILE_DOCS = 210_000_000
PILE_BYTES = 825e9
DOC_BYTES = 4000


def make_corpus(folder: Path, megabytes: float, seed: int = 0) -> Path:
    """JSONL files (4) of ~DOC_BYTES documents with planted near and exact copies."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]  # fmt: skip
    docs: list[str] = []
    total = 0
    while total < megabytes * 1e6:
        roll = rng.random()
        if docs and roll < 0.10:
            words = rng.choice(docs).split()
            for _ in range(rng.randint(1, 4)):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            text = " ".join(words)
        elif docs and roll < 0.12:
            text = rng.choice(docs)
        else:
            words, size = [], 0
            while size < DOC_BYTES:
                words.append(rng.choice(vocab))
                size += len(words[-1]) + 1
            text = " ".join(words)
        docs.append(text)
        total += len(text)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(docs) // 4)
    for i in range(4):
        with open(folder / f"part-{i}.jsonl", "w") as handle:
            for text in docs[i * per_file : (i + 1) * per_file]:
                handle.write(json.dumps({"text": text}) + "\n")
    return folder


def train_tokenizer(corpus: Path, path: Path) -> Path:
    """A byte-level BPE (vocab 8192, like prepare's default) on the first corpus's text."""
    from data_order.tokenize import train_bytelevel_bpe

    lines = [line for f in sorted(corpus.iterdir()) for line in f.read_text().splitlines()]
    texts = [json.loads(line)["text"] for line in lines]
    path.write_text(train_bytelevel_bpe(texts, 8192))
    return path


def config(corpus: Path, tokenizer: Path, out: Path, **kw) -> PrepareConfig:
    return PrepareConfig(
        inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=2048, dedup="minhash",
        workers=1, progress=False, out_dir=str(out), eval_fraction=0.0, eval_min_docs=0, **kw,
    )  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


# --- one measured step per fresh process (for its peak memory) ------------------------------


def step(mode: str, corpus: str, tokenizer: str, out: str) -> dict:
    from data_order.build import _load_corpus, _shard_dir, _work_dir, tokenize_shard

    cfg = config(Path(corpus), Path(tokenizer), Path(out))
    if mode == "bare":
        return {"peak_rss_mb": peak_rss_mb()}
    corpus_ = _load_corpus(cfg)
    shard = _shard_dir(cfg, corpus_, 0)
    start = time.perf_counter()
    result: dict = {}
    if mode == "tokenize":
        tokenize_shard(cfg, corpus_, 0)
    elif mode == "single":
        from data_order.build import _merge_shards
        from data_order.dedup import find_duplicates

        docs = _merge_shards(cfg, corpus_)
        start = time.perf_counter()  # dedup alone (the merge is the same for both engines)
        removals = find_duplicates(docs.ids, docs.hashes, docs.tokens, "minhash", 0.87, 128, 5)
        result["removed"] = sorted(r.index for r in removals)
    else:  # an engine stage
        from data_order.build import held_out_documents
        from data_order.dedup_engine import plan_for, read_removals, run_stage

        plan = plan_for(cfg, _work_dir(cfg, corpus_), [shard], held_out_documents)
        run_stage(plan, mode, workers=1)
        if mode == "removals":
            n = len((shard / "docs.jsonl").read_text().splitlines())
            result["removed"] = sorted(r.index for r in read_removals(plan, n))
    result["seconds"] = time.perf_counter() - start
    result["documents"] = len((shard / "docs.jsonl").read_text().splitlines())
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def measure(mode: str, corpus: Path, tokenizer: Path, out: Path) -> dict:
    argv = [sys.executable, __file__, "--step", mode, str(corpus), str(tokenizer), str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"step {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=16, help="corpus of the rates")
    parser.add_argument("--sizes", default="4,16", help="shard sizes (MB) of the memory figures")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dedup.json"))
    parser.add_argument("--step", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(*args.step)))
        return

    results: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    sizes = sorted({float(s) for s in args.sizes.split(",")} | {args.megabytes})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare = measure("bare", root, root, root)["peak_rss_mb"]
        results["bare_process_rss_mb"] = round(bare, 1)
        by_size = {}
        tokenizer = None
        for size in sizes:
            corpus = make_corpus(root / f"corpus-{size:g}", size)
            tokenizer = tokenizer or train_tokenizer(corpus, root / "tokenizer.json")
            out = root / f"out-{size:g}"
            row = {mode: measure(mode, corpus, tokenizer, out)
                   for mode in ("tokenize", "single", "signatures", "buckets", "removals")}  # fmt: skip
            assert row["single"]["removed"] == row["removals"]["removed"], "engines disagree"
            by_size[size] = row
        rate = by_size[args.megabytes]
        docs = rate["tokenize"]["documents"]
        mb = args.megabytes
        per_s = {m: docs / rate[m]["seconds"] for m in rate}
        engine_s = sum(rate[m]["seconds"] for m in ("signatures", "buckets", "removals"))
        results["rates"] = {
            "corpus_mb": mb,
            "documents": docs,
            "removed_documents": len(rate["single"]["removed"]),
            "tokenize_docs_per_s_per_core": round(per_s["tokenize"], 1),
            "tokenize_mb_per_s_per_core": round(mb / rate["tokenize"]["seconds"], 2),
            "dedup_single_docs_per_s_per_core": round(per_s["single"], 1),
            "dedup_datatrove_docs_per_s_per_core": round(docs / engine_s, 1),
            "datatrove_stage_docs_per_s": {m: round(per_s[m], 1) for m in ("signatures", "buckets", "removals")},
            "datatrove_over_single_time": round(engine_s / rate["single"]["seconds"], 3),
            "same_removed_documents": True,
        }  # fmt: skip
        results["peak_rss_mb_above_bare_by_shard_mb"] = {
            f"{size:g}": {m: round(by_size[size][m]["peak_rss_mb"] - bare, 1) for m in by_size[size]}
            for size in sizes
        }  # fmt: skip
        results["pile_extrapolation"] = pile(results, per_s, by_size, sizes, bare)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), results)
    print(json.dumps(results, indent=2))


def pile(results: dict, per_s: dict, by_size: dict, sizes: list[float], bare: float) -> dict:
    """On paper, conservatively: core-hours = Pile documents / the rate measured on the
    largest shard (fixed per-task costs included); memory from the peak RSS of the largest
    shard plus its growth per document between the two largest shards (an upper bound: the
    allocator's and the tokenizer cache's warm-up are counted as growth)."""
    mid, big = by_size[sizes[-2]], by_size[sizes[-1]]
    docs_mid, docs_big = mid["tokenize"]["documents"], big["tokenize"]["documents"]

    def slope_kb_per_doc(mode: str) -> float:
        grow = big[mode]["peak_rss_mb"] - mid[mode]["peak_rss_mb"]
        return max(0.0, grow * 1024 / (docs_big - docs_mid))

    rates = {m: docs_big / big[m]["seconds"] for m in big}
    hours = {m: PILE_DOCS / rates[m] / 3600 for m in big}
    slopes = {m: round(slope_kb_per_doc(m), 4) for m in big}
    # A 1 GB shard of the Pile holds ~250k documents (4 KB each).
    shard_docs = 1e9 / DOC_BYTES
    return {
        "largest_shard_docs_per_s_per_core": {m: round(r, 1) for m, r in rates.items()},
        "core_hours": {k: round(v, 1) for k, v in hours.items()},
        "wall_hours_on_64_cores": {
            "tokenize": round(hours["tokenize"] / 64, 1),
            "dedup_datatrove (signatures on 64, buckets on 7 bands, removals one task)": round(
                hours["signatures"] / 64 + hours["buckets"] / 7 + hours["removals"], 1
            ),
            "dedup_single (one process)": round(hours["single"], 1),
        },
        "rss_growth_kb_per_document_upper_bound": slopes,
        "memory_per_worker_gb_for_1gb_shards": {
            m: round((big[m]["peak_rss_mb"] - bare + slopes[m] * (shard_docs - docs_big) / 1024) / 1024, 2)
            for m in ("tokenize", "signatures")
        },
        "memory_gb_for_the_whole_pile": {
            "dedup_single (all sketches in one process)": round(slopes["single"] * PILE_DOCS / 1024**2, 1),
            "dedup removals task (ids + hashes of every document)": round(slopes["removals"] * PILE_DOCS / 1024**2, 1),
        },
    }  # fmt: skip


if __name__ == "__main__":
    main()
