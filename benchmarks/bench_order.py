"""Benchmark of the global order: recomputing it at start vs opening its artifact.

Before `data_order/order_store.py`, every rank of every run recomputed an epoch's order
at start (`order.compute_permutation`: 2 x N 64-bit words, a stable argsort). Now `prepare`
(or the first reader) builds each (seed, epoch) order once as a memory-mapped `.npy` and
every rank opens it. For each scale N (samples per epoch) this measures, each phase in a
fresh subprocess so `resource.getrusage` gives its own peak RSS:

* `baseline`   — the process floor: python + numpy + data_order imported, nothing done;
* `recompute`  — today's start: recompute the epoch, then read the first global batches;
* `build`      — the one-off build: recompute, write, read back and compare, sha256;
* `open_warm`  — a rank's start after the build (pages in the page cache, as for the 2nd..8th
  rank of a node): open, the first 8 global batches, one batch at a random step (a resume),
  1,024 scattered ids;
* `open_cold`  — the same with the artifact's pages dropped from the page cache first
  (`posix_fadvise(DONTNEED)` on that file only), i.e. read from disk;
* `verify`     — `suite verify --data`'s check of one artifact: sha256 + recomputation.

Ratios: recompute / open (time to the first batch; peak RSS above the floor). The order
depends only on (N, seed, epoch), so no token data is needed: the artifact of epoch 1 of
seed 1234 is benchmarked (the layout of a later epoch or a data seed's order; `order.npy`
opens the same way). Default scales: 1.46M, 14.6M and 146M samples (146M = the Pile's
300B tokens at 2,049 tokens per sample).

Run: `PYTHONPATH=. python benchmarks/bench_order.py [--scales 1460000 14600000 146000000]`.
Writes benchmarks/results/order.json. Not a test: no assertion on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 1024  # Pythia's
SEED, EPOCH = 1234, 1
PHASES = ("baseline", "recompute", "build", "open_warm", "open_cold", "verify")


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _rss_split_mb() -> dict:
    """Resident memory now, private (anonymous) vs file-backed: an artifact's pages are
    file-backed, shared by every process mapping it (the page cache), not per rank."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[f"{name.lower().replace('rss', 'rss_')}_mb"] = round(
                int(value.split()[0]) / 1024, 1
            )
    return fields


def _reads(order, n: int) -> dict:
    """The reads a rank's start makes: the first 8 batches, one at a random step, scattered ids."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    start = time.perf_counter()
    first = np.asarray(order[: 8 * GLOBAL_BATCH], dtype=np.int64)
    out["first_8_batches_s"] = time.perf_counter() - start
    step = int(rng.integers(n // GLOBAL_BATCH))
    start = time.perf_counter()
    resume = np.asarray(order[step * GLOBAL_BATCH : (step + 1) * GLOBAL_BATCH], dtype=np.int64)
    out["resume_batch_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scattered = np.asarray(order[rng.integers(n, size=1024)], dtype=np.int64)
    out["scattered_1024_ids_s"] = time.perf_counter() - start
    out["checksum"] = int(first.sum() + resume.sum() + scattered.sum())  # same in every phase
    return out


def child(phase: str, n: int, folder: Path) -> dict:
    """One phase, in this (fresh) process; returns its timings and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from data_order.order import compute_permutation
    from data_order.order_store import OrderStore

    store = OrderStore(folder, {"seed": 0, "order": "bench"}, n)  # epoch 1: orders/, a sidecar
    key = store.key(SEED, EPOCH)
    result: dict = {}
    order = None  # held to the end, so the split of resident memory below sees it
    start = time.perf_counter()
    if phase == "recompute":
        order = compute_permutation(n, SEED, EPOCH)
        result |= _reads(order, n)
    elif phase == "build":
        store.build(key, "bench", rebuild=True)
    elif phase in ("open_warm", "open_cold"):
        if phase == "open_cold":
            fd = os.open(store.path(key), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            start = time.perf_counter()
        order = store.permutation(SEED, EPOCH, "bench")
        result["open_s"] = time.perf_counter() - start
        result |= _reads(order, n)
    elif phase == "verify":
        problem = store.verify(key)
        assert problem is None, problem
    result["total_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = _peak_rss_mb()
    result |= _rss_split_mb()  # at the end of the phase, `order` still referenced
    del order
    return result


def run_phase(phase: str, n: int, folder: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", phase, "--n", str(n), "--dir", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - started  # with python + imports
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in result.items()}


def bench_scale(n: int, folder: Path) -> dict:
    phases = {}
    for phase in PHASES:
        phases[phase] = run_phase(phase, n, folder)
        print(f"  N={n:,} {phase}: {phases[phase]}", file=sys.stderr, flush=True)
    artifact = next((folder / "orders").glob("seed-*/epoch-*.npy"))
    checksums = {p["checksum"] for p in phases.values() if "checksum" in p}
    assert len(checksums) == 1, f"the phases read different ids: {phases}"
    floor = phases["baseline"]["peak_rss_mb"]
    recompute, warm, cold = phases["recompute"], phases["open_warm"], phases["open_cold"]
    to_first = {  # time to the first 8 batches
        "recompute_s": round(recompute["total_s"] - recompute["resume_batch_s"]
                             - recompute["scattered_1024_ids_s"], 4),
        "open_warm_s": round(warm["open_s"] + warm["first_8_batches_s"], 4),
        "open_cold_s": round(cold["open_s"] + cold["first_8_batches_s"], 4),
    }  # fmt: skip
    return {
        "num_samples": n,
        "tokens_at_2049": n * 2048 + 1,
        "artifact_bytes": artifact.stat().st_size,
        "phases": phases,
        "time_to_first_batches": to_first,
        "recompute_vs_open_warm_time": round(to_first["recompute_s"] / to_first["open_warm_s"], 1),
        "recompute_vs_open_cold_time": round(to_first["recompute_s"] / to_first["open_cold_s"], 1),
        "rss_above_floor_mb": {
            "recompute": round(recompute["peak_rss_mb"] - floor, 1),
            "open_warm": round(warm["peak_rss_mb"] - floor, 1),
            "open_cold": round(cold["peak_rss_mb"] - floor, 1),
            "build": round(phases["build"]["peak_rss_mb"] - floor, 1),
        },
        # What each further rank of a node adds: its private memory (the artifact's pages
        # are file-backed and shared; the recomputed order is private to every process).
        "private_rss_above_floor_mb": {
            phase: round(phases[phase]["rss_anon_mb"] - phases["baseline"]["rss_anon_mb"], 1)
            for phase in ("recompute", "open_warm", "open_cold")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scales", type=int, nargs="+", default=[1_460_000, 14_600_000, 146_000_000]
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "order.json"))
    parser.add_argument("--tmp", default=None, help="folder for the artifacts (default: $TMPDIR)")
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, Path(args.dir))))
        return
    import numpy as np

    results: dict = {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "global_batch": GLOBAL_BATCH,
        "note": "each phase a fresh subprocess; peak RSS = getrusage ru_maxrss of that process",
        "scales": {},
    }
    for n in args.scales:
        with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
            results["scales"][str(n)] = bench_scale(n, Path(folder))
    sys.path.insert(0, str(ROOT))
    from data_order.atomic import write_json

    write_json(Path(args.out), results)
    print(json.dumps(results["scales"], indent=2))


if __name__ == "__main__":
    main()
