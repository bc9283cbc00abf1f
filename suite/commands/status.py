"""`suite status SWEEP_DIR`: where every run of a sweep stands."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from suite.errors import SuiteError
from suite.rundir import RunRecord, SweepDir


def _slurm_state(job_id: str | None) -> str:
    """The job's SLURM state: scontrol (knows finished jobs for MinJobAge, no accounting
    daemon needed), then sacct (older jobs, where accounting runs); '' when unknown."""
    if not job_id:
        return ""
    queries = (
        (["scontrol", "show", "job", "--oneliner", str(job_id)], r"\bJobState=(\S+)"),
        (["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o", "State"], r"^(\S+)"),
    )
    for command, pattern in queries:
        if not shutil.which(command[0]):
            continue
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        found = re.search(pattern, out.stdout.strip()) if out.returncode == 0 else None
        if found:
            return found.group(1)
    return ""


def _last_published(store_spec: str | None, repo: str) -> str:
    """The newest `step{N}` in the run's store ('' when it publishes nothing, '-' when none or
    the store cannot be read)."""
    from suite.publish.store import open_store

    try:
        store = open_store(store_spec) if store_spec else None
        if store is None:
            return ""
        steps = [
            int(rev[4:])
            for rev in store.list_revisions(repo)
            if rev.startswith("step") and rev[4:].isdigit()
        ]
    except SuiteError:
        return "-"
    return f"step{max(steps)}" if steps else "-"


def _pending(record: RunRecord) -> tuple[int | str, int | str]:
    """(revisions, training states) the run still owes its store, counted from its
    persistent publish queues ('?' when an entry is unreadable). `suite publish RUN_DIR`
    finishes both."""
    from suite.publish.pending import Pending

    try:
        pending = Pending.of(record.run_dir.path)
    except SuiteError:
        return "?", "?"
    return len(pending.revisions), len(pending.training_states)


def _pending_cell(row: dict) -> str:
    """The table's pending column: revisions, `+N` when N training states are pending too."""
    states = row["pending_training_states"]
    return f"{row['pending']}+{states}" if states not in (0, "?") else str(row["pending"])


def _logs(sweep: SweepDir, record: RunRecord) -> str:
    """Where to read the run's output: submitit's log of rank 0 (SLURM), else Hydra's job dir."""
    info = record.info
    if info.get("logs"):
        return str(info["logs"])
    if "size" in info and "dataset" in info:
        # A sweep with several seeds gives each job its own `…-seed{N}` directory.
        for seed in (info.get("seed"), None):
            hydra_dir = sweep.hydra_job_dir(info["size"], info["dataset"], seed)
            if hydra_dir.exists():
                return str(hydra_dir)
    return str(record.run_dir.path)


def collect_status(sweep_dir: Path) -> list[dict]:
    """One record per run of the sweep (the `--format json` output): every run the sweep
    expects (`not started` when it has no record) and every run directory found."""
    sweep = SweepDir(Path(sweep_dir))
    rows = []
    for record in sweep.records():
        info = record.info
        job = info.get("slurm_job_id")
        status = record.status
        slurm_state = _slurm_state(job) if job else None
        pending, pending_states = _pending(record)
        rows.append(
            {
                "run": record.name,
                "status": status,
                "slurm_job_id": job,
                "slurm_state": slurm_state,
                "slurm_restarts": info.get("slurm_restarts"),
                "last_step": record.run_dir.last_logged_step() or 0,
                "train_steps": info.get("train_steps"),
                "resume_step": record.resume_step,
                "last_published": _last_published(info.get("store"), info["repo_id"])
                if "repo_id" in info
                else "",
                "pending": pending,
                "pending_training_states": pending_states,
                "logs": _logs(sweep, record) if status != "not started" else "",
                "reason": record.reason,
            }
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite status",
        description="Each run of a sweep: state, SLURM job id and state, last step, last "
        "published checkpoint, what is still pending publication (revisions, then +N "
        "training states: 5+1), and where its logs are.",
    )
    parser.add_argument("sweep_dir", help="the sweep directory, e.g. suite_runs/mini")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    rows = collect_status(sweep_dir)
    if not rows:
        print(
            f"suite status: no runs in {sweep_dir} (no sweep.json, nothing under runs/); give "
            "a sweep directory such as suite_runs/mini",
            file=sys.stderr,
        )
        return 2
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{sweep_dir}: {sum(r['status'] == 'complete' for r in rows)}/{len(rows)} complete"
    )
    shown = [row | {"pending": _pending_cell(row)} for row in rows]
    for row in shown:
        del row["pending_training_states"]  # shown as pending's `+N`
    for column in shown[0]:
        table.add_column(column.replace("_", " "))
    for row in shown:
        table.add_row(*["" if v is None else str(v) for v in row.values()])
    Console(width=220).print(table)
    owing = [row for row in shown if row["pending"] not in ("0", "?")]
    if owing:
        runs = ", ".join(f"{row['run']} ({row['pending']})" for row in owing)
        runs_dir = SweepDir(sweep_dir).runs_dir
        command = (
            f"finish with: suite publish {runs_dir / owing[0]['run']}"
            if len(owing) == 1
            else f"finish each with: suite publish {runs_dir}/RUN"
        )
        print(f"pending publication (revisions+training states): {runs}; {command}")
    return 0
