"""The layout of a suite on disk and the one status record of each run (contract 6).

Every path and file name of a sweep directory and of a run directory is defined here and
nowhere else; `suite status`, `suite report`, `suite sweep` and the trainer reach run state
only through this module.

```
{root}/data/{suite}/{dataset}/      a prepared dataset (`suite prepare`)
{root}/{suite}/                     the sweep directory (`SweepDir`)
    sweep.json                      the runs the sweep expects (written by `suite sweep`)
    sweep.log                       what `suite sweep` logged and printed (`suite.console`)
    runs/{run}/                     one run directory (`RunDir`)
        run.json                    the run's status record (below)
        metrics.jsonl               one JSON line per update / evaluation
        train.log                   everything the run logged and printed (`suite.console`)
        resume/                     private resume checkpoints (`suite.train.resume`)
        exports/step{N}/            exported checkpoints before/after publishing
        publish/                    the publisher's queue and log (`suite.publish.publisher`)
        training_state/step{N}/     training states being published (`suite.publish.training_state`)
    hydra/{size}-{dataset}/         Hydra's job directory of a local sweep job
                                    (`…-seed{N}/` when the sweep has several seeds)
    .submitit/{job}/                submitit's pickles and per-task logs (SLURM sweeps)
    report/                         `suite report`
    eval/ledger.parquet             `suite eval`'s results (contract 7; parts/ and tasks/ beside it)
```

`run.json` is written by the trainer (rank 0): `running` when training starts, then
`complete`, `failed` or `interrupted` (with the step it can resume from). The sweep/SLURM
layer only adds its own fields (job id, restarts, log file) with `RunDir.update`. Readers
never crash on a damaged record: `read_run` returns status `unreadable` with the reason, and
a record left `running` by a process that no longer exists on this host reads as
`interrupted` with its resume point (a killed local run).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from data_order.atomic import write_json

RUN_STATE_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
RUN_LOG_FILE = "train.log"
SWEEP_LOG_FILE = "sweep.log"
RESUME_DIR = "resume"
RESUME_POINTER = "latest.json"
EXPORTS_DIR = "exports"
PUBLISH_DIR = "publish"
TRAINING_STATE_DIR = "training_state"
SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
REPORT_DIR = "report"
HYDRA_DIR = "hydra"
SUBMITIT_DIR = ".submitit"
DATA_DIR = "data"
EVAL_DIR = "eval"
LEDGER_FILE = "ledger.parquet"

RunStatus = Literal["not started", "running", "complete", "failed", "interrupted", "unreadable"]
"""`not started`: expected by the sweep, no record; `unreadable`: the record is damaged."""


@dataclass(frozen=True)
class RunDir:
    """One run's directory: its files, and its status record `run.json`."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def state_file(self) -> Path:
        return self.path / RUN_STATE_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def log_file(self) -> Path:
        """Everything the run logged and printed, timestamped (`suite.console.log_to`)."""
        return self.path / RUN_LOG_FILE

    @property
    def resume_dir(self) -> Path:
        return self.path / RESUME_DIR

    @property
    def exports_dir(self) -> Path:
        return self.path / EXPORTS_DIR

    def export_dir(self, step: int) -> Path:
        return self.exports_dir / f"step{step}"

    @property
    def publish_dir(self) -> Path:
        return self.path / PUBLISH_DIR

    def read(self) -> RunRecord:
        """The run's record as readers see it (never raises; see `RunRecord.status`)."""
        return read_run(self)

    def update(self, **fields) -> dict:
        """Merge `fields` into `run.json` (atomic replace) and return the whole record.

        A damaged record is replaced rather than merged: the trainer writes every field it
        owns again at its next transition, so nothing but the damaged bytes is lost.
        """
        try:
            record = _load(self.state_file) or {}
        except ValueError:
            record = {}
        record.update(fields)
        record["updated_at"] = time.time()
        write_json(self.state_file, record)
        return record

    def resume_step(self) -> int | None:
        """Step of the newest complete resume checkpoint (None: none saved)."""
        try:
            pointer = _load(self.resume_dir / RESUME_POINTER)
        except ValueError:
            return None
        step = pointer.get("step") if pointer else None
        return int(step) if isinstance(step, int) else None

    def last_logged_step(self) -> int | None:
        """The last update with a training loss in `metrics.jsonl` (None: none yet)."""
        if not self.metrics_file.is_file():
            return None
        last = None
        with self.metrics_file.open() as lines:
            for line in lines:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line being written right now, or cut by a crash
                if isinstance(row, dict) and row.get("loss") is not None:
                    last = int(row["step"])
        return last


@dataclass(frozen=True)
class RunRecord:
    """A run as a reader sees it: the record's fields plus the effective status."""

    run_dir: RunDir
    status: RunStatus
    info: dict = field(default_factory=dict)
    """The fields of `run.json` (empty when not started or unreadable)."""
    reason: str = ""
    """Why the status is what it is, in one line (unreadable record, killed process)."""

    @property
    def name(self) -> str:
        return self.info.get("run_name") or self.run_dir.name

    @property
    def resume_step(self) -> int | None:
        return self.run_dir.resume_step()


def read_run(run_dir: RunDir) -> RunRecord:
    """Read `run.json` tolerantly: damage affects only this run and says why in one line."""
    try:
        info = _load(run_dir.state_file)
    except ValueError as err:
        return RunRecord(run_dir, "unreadable", {}, f"{run_dir.state_file}: {err}")
    if info is None:
        return RunRecord(run_dir, "not started")
    status = info.get("status")
    if status not in ("running", "complete", "failed", "interrupted"):
        return RunRecord(
            run_dir, "unreadable", info, f"{run_dir.state_file}: unknown status {status!r}"
        )
    if status == "running" and _owner_gone(info):
        resume = run_dir.resume_step()
        where = f"resumes at step {resume}" if resume else "no resume checkpoint: restarts at 0"
        return RunRecord(
            run_dir,
            "interrupted",
            info,
            f"its process {info.get('pid')} on {info.get('host')} is gone ({where})",
        )
    return RunRecord(run_dir, status, info, info.get("error", "") if status == "failed" else "")


def owner_fields() -> dict:
    """Who writes a `running` record: lets readers tell a live run from a killed one."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _start_ticks(os.getpid()),
    }


def _owner_gone(info: dict) -> bool:
    """True only when we can tell: the record's process ran on this host and is not alive."""
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False  # another node (SLURM): `suite status` asks the scheduler instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    # Alive — but pids are recycled: the same pid with another start time is another process.
    started = info.get("pid_start")
    return started is not None and _start_ticks(pid) not in (None, started)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _load(path: Path) -> dict | None:
    """A JSON object from `path`; None when absent; ValueError when it is not one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ValueError(f"cannot read ({err.strerror})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True)
class SweepDir:
    """A suite's sweep directory: its runs, the runs it expects, its logs and report."""

    path: Path

    @property
    def runs_dir(self) -> Path:
        return self.path / RUNS_DIR

    @property
    def expected_file(self) -> Path:
        return self.path / SWEEP_FILE

    @property
    def report_dir(self) -> Path:
        return self.path / REPORT_DIR

    @property
    def log_file(self) -> Path:
        """What `suite sweep` logged and printed, its runs' lines included (`suite.console`)."""
        return self.path / SWEEP_LOG_FILE

    @property
    def submitit_dir(self) -> Path:
        return self.path / SUBMITIT_DIR

    @property
    def eval_dir(self) -> Path:
        """`suite eval`'s folder: the ledger, its per-revision parts, generated tasks."""
        return self.path / EVAL_DIR

    @property
    def ledger_path(self) -> Path:
        """The evaluation ledger (contract 7): one row per run × revision × task × metric."""
        return self.eval_dir / LEDGER_FILE

    def hydra_job_dir(self, size: str, dataset: str, seed: int | None = None) -> Path:
        """Hydra's directory of a local job (`hydra.sweep.subdir` in sweeps/conf/config.yaml);
        `seed` for a job of a sweep with several seeds (`suite.sweep_app.axis_overrides`)."""
        return (
            self.path
            / HYDRA_DIR
            / (f"{size}-{dataset}" + (f"-seed{seed}" if seed is not None else ""))
        )

    def run(self, run_name: str) -> RunDir:
        return RunDir(self.runs_dir / run_name)

    def write_expected(self, suite: str, runs: list[dict]) -> None:
        """Record the runs this sweep is made of (`run_name`, `size`, `dataset`, `seed`,
        `init_seed`, `data_seed` each)."""
        write_json(self.expected_file, {"suite": suite, "runs": runs})

    def expected(self) -> list[dict]:
        """The runs recorded by `write_expected` ([] when none or unreadable)."""
        try:
            record = _load(self.expected_file) or {}
        except ValueError:
            return []
        runs = record.get("runs")
        return (
            [r for r in runs if isinstance(r, dict) and "run_name" in r]
            if isinstance(runs, list)
            else []
        )

    def records(self) -> list[RunRecord]:
        """Every run of the sweep: the expected ones in sweep order (a missing one is
        `not started`), then any other run directory found, by name."""
        expected = [r["run_name"] for r in self.expected()]
        present = sorted(p.name for p in self.runs_dir.glob("*") if p.is_dir())
        names = expected + [name for name in present if name not in expected]
        records = []
        for name in names:
            record = self.run(name).read()
            if record.status == "not started" and name not in expected:
                continue  # a folder without a record that nobody expects (not a run)
            records.append(record)
        return records

    def is_sweep(self) -> bool:
        return self.expected_file.is_file() or self.runs_dir.is_dir()


def sweep_dir(cfg) -> SweepDir:
    """The sweep directory of a suite config (`{root}/{name}`)."""
    return SweepDir(Path(cfg.root) / cfg.name)


def run_dir(cfg, run) -> RunDir:
    """The run directory of `run` (a `RunSpec`) in its suite's sweep directory."""
    return sweep_dir(cfg).run(run.run_name)


def dataset_dir(cfg, dataset: str) -> Path:
    """The built dataset of `dataset`: its `path` when given, else where `suite prepare` puts it."""
    ds = cfg.datasets[dataset]
    if ds.path:
        return Path(ds.path)
    return Path(cfg.root) / DATA_DIR / cfg.name / dataset
