"""Benchmark of the experiment-tracking hooks (`suite/train/tracking.py`), per update.

Figures, each against a baseline measured in the same run (reported as a ratio):

* per-update cost of `TensorBoardHook` and of `WandbHook` (offline; the log call plus the
  `suite-run.json` step record) vs `MetricsFile.write`, the `metrics.jsonl` line every run
  already writes for the same record;
* the start of each hook (its first `on_start`: the library import — torch is loaded
  already, as in training —, W&B's service and offline run, the TensorBoard event file)
  vs the start of a `MetricsFile`.

The records are a mini run's (`loss`, `lr`, `grad_norm`, `tokens_per_s`, … and an
evaluation every 40 updates). Run: `PYTHONPATH=. python benchmarks/bench_tracking.py
[--updates 2000]`. Writes benchmarks/results/tracking.json. Not a test: no assertion on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_order.atomic import write_json  # noqa: E402
from suite.train.hooks import MetricsFile  # noqa: E402
from suite.train.tracking import TensorBoardHook, WandbHook  # noqa: E402

CONFIG = {
    "run": {"name": "mini-160k", "size": "160k", "dataset": "stdlib", "seed": 1234,
            "params": 50048, "lr": 0.003, "global_batch": 16, "seq_len": 128,
            "train_steps": 160},
    "data_fingerprint": "0" * 64,
    "config_hash": "1" * 64,
}  # fmt: skip


def record(step: int) -> dict:
    return {
        "step": step, "loss": 7.0 / step**0.1, "lr": 3e-3, "tokens": step * 2048,
        "grad_norm": 1.5, "skipped": False, "skipped_updates": 0, "batch_hash": "ab" * 32,
        "tokens_per_s": 20000.0 + step, "step_seconds": 0.1,
    }  # fmt: skip


def trainer() -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(step=0, last_eval={}))


def per_update(write, updates: int) -> float:
    """Seconds per update of `write(step)` over `updates` updates (an eval every 40)."""
    state = trainer()
    started = time.perf_counter()
    for step in range(1, updates + 1):
        if step % 40 == 0:
            state.state.last_eval = {"step": step, "eval_loss": 5.0, "eval_perplexity": 148.4}
        write(state, step)
    return (time.perf_counter() - started) / updates


def trainer_update_s() -> float:
    """Seconds per update in `benchmarks/results/trainer.json` (bench_trainer.py's figure)."""
    import statistics

    figures = json.loads((ROOT / "benchmarks" / "results" / "trainer.json").read_text())
    tokens_per_s = statistics.median(figures["trainer_tokens_per_s"])
    return round(figures["tokens_per_update"] / tokens_per_s, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000)
    args = parser.parse_args()
    os.environ["WANDB_MODE"] = "offline"
    import torch  # noqa: F401 - loaded in any training process before the hooks start

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["WANDB_CONFIG_DIR"] = str(tmp / "wandb-config")

        started = time.perf_counter()
        metrics = MetricsFile(tmp / "metrics.jsonl", 0)
        metrics_start = time.perf_counter() - started
        metrics_s = per_update(lambda t, s: metrics.write(record(s)), args.updates)
        metrics.close()

        board = TensorBoardHook(CONFIG, log_dir=tmp / "tensorboard")
        started = time.perf_counter()
        board.on_start(trainer())
        board_start = time.perf_counter() - started
        board_s = per_update(lambda t, s: board.after_update(t, record(s)), args.updates)
        board.close()

        wandb = WandbHook(
            CONFIG, run_dir=tmp, mode="offline", project="bench", entity=None,
            name="mini-160k", group="mini",
        )  # fmt: skip
        started = time.perf_counter()
        wandb.on_start(trainer())
        wandb_start = time.perf_counter() - started
        wandb_s = per_update(lambda t, s: wandb.after_update(t, record(s)), args.updates)
        started = time.perf_counter()
        wandb.close()
        wandb_finish = time.perf_counter() - started

    import tensorboard
    import wandb as wandb_package

    result = {
        "benchmark": "tracking hooks per update vs the metrics.jsonl line (MetricsFile.write)",
        "updates": args.updates,
        "metrics_jsonl_us_per_update": round(metrics_s * 1e6, 1),
        "tensorboard_us_per_update": round(board_s * 1e6, 1),
        "wandb_offline_us_per_update": round(wandb_s * 1e6, 1),
        "tensorboard_ratio": round(board_s / metrics_s, 2),
        "wandb_offline_ratio": round(wandb_s / metrics_s, 2),
        "metrics_jsonl_start_s": round(metrics_start, 4),
        "tensorboard_start_s": round(board_start, 2),
        "wandb_offline_start_s": round(wandb_start, 2),
        "wandb_offline_finish_s": round(wandb_finish, 2),
        # For scale: one update of the trainer benchmark (the mini ladder's 1.3m size on CPU).
        "trainer_update_s": trainer_update_s(),
        "wandb_offline_share_of_trainer_update": round(wandb_s / trainer_update_s(), 4),
        "tensorboard_share_of_trainer_update": round(board_s / trainer_update_s(), 4),
        "wandb": wandb_package.__version__,
        "tensorboard": tensorboard.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    write_json(ROOT / "benchmarks" / "results" / "tracking.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
