"""Sweep directories and evaluation ledgers with known numbers, for the report's tests.

The ledger follows the columns `suite eval` writes (one row per run × revision × task ×
metric); its values follow a known law so that what the report plots and fits can be
checked against the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

#: Published steps of the mini suite (log-spaced until 16, then every 40, 160 in all).
STEPS = (0, 1, 2, 4, 8, 16, 40, 80, 120, 160)
#: Tokens per step of the mini suite (16 samples × 128 tokens).
TOKENS_PER_STEP = 2048
#: size -> (parameters, non-embedding parameters), from the mini ladder.
SIZES = {
    "160k": (156_544, 25_472),
    "360k": (362_240, 100_096),
    "730k": (728_928, 335_712),
    "1.3m": (1_317_632, 793_344),
    "2.2m": (2_202_080, 1_546_720),
}
DATASETS = ("stdlib", "stdlib-deduped")
#: Truth of the held-out nll: E + A·N^(-ALPHA) + C/√(1 + step), plus DEDUP_SHIFT when deduped.
E, A, ALPHA, C = 4.9, 60.0, 0.35, 4.0
DEDUP_SHIFT = 0.03


def run_name(size: str, dataset: str, seed: int | None = None) -> str:
    deduped = "-deduped" if dataset.endswith("-deduped") else ""
    return f"mini-{size}{deduped}" + (f"-seed{seed}" if seed is not None else "")


def heldout_nll(non_embedding: float, step: int, dataset: str) -> float:
    shift = DEDUP_SHIFT if dataset.endswith("-deduped") else 0.0
    return E + A * non_embedding**-ALPHA + C / np.sqrt(1 + step) + shift


def fake_run(
    root: Path,
    size: str,
    dataset: str,
    params: int,
    final_eval: float,
    non_embedding: int | None = None,
    seed: int | None = None,
    status: str = "complete",
) -> str:
    """A run directory as the sweep job and trainer leave it (run.json + metrics.jsonl); with
    `seed`, the run is one replicate (`-seed{N}` name, `init_seed`/`data_seed` in identity)."""
    name = run_name(size, dataset, seed)
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    record = {
        "run_name": name,
        "repo_id": f"local/{name}",
        "size": size,
        "dataset": dataset,
        "params": params,
        "non_embedding_params": params // 2 if non_embedding is None else non_embedding,
        "global_batch": 4,
        "seq_len": 8,
        "status": status,
        "wall_seconds": 12.5,
    }
    if seed is not None:
        record["identity"] = {"seed": 1234, "init_seed": seed, "data_seed": seed + 1}
    (run_dir / "run.json").write_text(json.dumps(record))
    offset = 0.0 if seed is None else 0.01 * seed
    lines = [{"step": s, "loss": 5.0 - 0.1 * s + offset} for s in range(1, 11)]
    lines += [{"step": 5, "eval_loss": final_eval + 0.5}, {"step": 10, "eval_loss": final_eval}]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return name


def synthetic_ledger(seeds=(None,), noise: float = 0.0, rng_seed: int = 0) -> pd.DataFrame:
    """Every size × dataset × seed × published step, with ppl/heldout (nll, bits_per_byte,
    perplexity) and suite_continuation (acc with its stderr) rows. `noise`: standard
    deviation added to each nll (the replicates' seed-to-seed spread)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for size, (params, non_embedding) in SIZES.items():
        for dataset in DATASETS:
            for seed in seeds:
                run = run_name(size, dataset, seed)
                for step in STEPS:
                    nll = heldout_nll(non_embedding, step, dataset) + rng.normal(0, noise)
                    acc = 0.25 + 0.5 * (1 - np.exp(-step / 60)) * (1 - non_embedding**-0.2)
                    common = {
                        "run": run,
                        "size": size,
                        "dataset": dataset,
                        "init_seed": 1234 if seed is None else seed,
                        "data_seed": 1234 if seed is None else seed + 1,
                        "revision": f"step{step}",
                        "step": step,
                        "tokens": step * TOKENS_PER_STEP,
                        "n": 4096,
                        "commit": "0123abc",
                        "weights_sha256": f"{run}-{step}".ljust(64, "0"),
                        "harness_version": "0.4.5",
                        "dtype": "float32",
                        "batch_size": 8,
                        "eval_seed": 0,
                        "wall_s": 0.5,
                        "evaluated_at": "2026-12-01T00:00:00Z",
                        "stale": False,
                        "params": params,
                        "non_embedding_params": non_embedding,
                    }
                    for task, metric, value, stderr in (
                        ("ppl/heldout", "nll", nll, np.nan),
                        ("ppl/heldout", "bits_per_byte", nll / np.log(2) / 3.5, np.nan),
                        ("ppl/heldout", "perplexity", np.exp(nll), np.nan),
                        ("suite_continuation", "acc", acc, 0.01),
                    ):
                        rows.append(
                            {
                                **common,
                                "task": task,
                                "metric": metric,
                                "value": value,
                                "stderr": stderr,
                            }
                        )
    # Text columns in pandas' string dtype, as `suite eval` writes them.
    text = [
        "run",
        "size",
        "dataset",
        "revision",
        "task",
        "metric",
        "commit",
        "weights_sha256",
        "harness_version",
        "dtype",
        "evaluated_at",
    ]
    return pd.DataFrame(rows).astype({column: "string" for column in text})


def write_ledger(sweep_dir: Path, ledger: pd.DataFrame) -> Path:
    path = Path(sweep_dir) / "eval" / "ledger.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger.to_parquet(path, index=False)
    return path


def fake_sweep(root: Path, seeds=(None,)) -> None:
    """Runs matching `synthetic_ledger`'s sizes, datasets and seeds."""
    for size, (params, non_embedding) in SIZES.items():
        for dataset in DATASETS:
            for seed in seeds:
                final = heldout_nll(non_embedding, 10, dataset) + (0.01 * (seed or 0))
                fake_run(root, size, dataset, params, final, non_embedding, seed)
