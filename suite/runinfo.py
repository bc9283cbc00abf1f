"""`run.json`: what a run is and where it stands, written by the sweep job around training.

The report and `suite status` read it; it never holds secrets (no tokens, no environment).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from suite.config import RunSpec, SuiteConfig, run_dir

RUN_FILE = "run.json"


def read_run_info(directory: Path) -> dict:
    path = Path(directory) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_run_info(directory: Path, info: dict) -> None:
    """Atomic replace, so a reader never sees half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{RUN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / RUN_FILE)


def describe(cfg: SuiteConfig, run: RunSpec) -> dict:
    return {
        "suite": cfg.name,
        "run_name": run.run_name,
        "repo_id": run.repo_id,
        "store": cfg.publish.store,
        "size": run.size_name,
        "dataset": run.dataset_name,
        "family": run.family.name,
        "params": run.total_params,
        "non_embedding_params": run.non_embedding_params,
        "layers": run.size.n_layers,
        "d_model": run.size.d_model,
        "heads": run.size.n_heads,
        "tp": run.tp,
        "dp": run.dp,
        "micro_batch": run.micro_batch,
        "grad_accum": run.grad_accum,
        "global_batch": run.global_batch,
        "seq_len": run.seq_len,
        "train_steps": run.train_steps,
        "lr": run.lr,
    }


class RunRecorder:
    """Marks a run running → complete/failed in run.json, accumulating wall time over resumes."""

    def __init__(self, cfg: SuiteConfig, run: RunSpec, enabled: bool = True):
        self.directory = run_dir(cfg, run)
        self.enabled = enabled
        self.info = read_run_info(self.directory) | describe(cfg, run)
        self.started = time.time()

    def __enter__(self) -> RunRecorder:
        if self.enabled:
            self.info["status"] = "running"
            self.info.setdefault("wall_seconds", 0.0)
            self.info["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
            write_run_info(self.directory, self.info)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled:
            return
        self.info["wall_seconds"] = self.info.get("wall_seconds", 0.0) + time.time() - self.started
        self.info["status"] = "failed" if exc_type else "complete"
        if exc is not None:
            self.info["error"] = f"{exc_type.__name__}: {exc}"[:2000]
        else:
            self.info.pop("error", None)
        write_run_info(self.directory, self.info)
