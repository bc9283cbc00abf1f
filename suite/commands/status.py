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


def _last_step(run_dir: Path) -> int | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    last = None
    with path.open() as lines:
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if "loss" in row and row.get("loss") is not None:
                last = int(row["step"])
    return last


def _last_published(store_spec: str | None, repo: str) -> str:
    if not store_spec or store_spec == "none":
        return ""
    try:
        from suite.publish.store import open_store

        steps = [
            int(rev[4:])
            for rev in open_store(store_spec).list_revisions(repo)
            if rev.startswith("step") and rev[4:].isdigit()
        ]
    except SuiteError:
        return "-"
    return f"step{max(steps)}" if steps else "-"


def _logs(sweep_dir: Path, run_dir: Path, info: dict) -> str:
    """Where to read the run's output: submitit's log of rank 0 (SLURM), else Hydra's job dir."""
    if info.get("logs"):
        return str(info["logs"])
    hydra_dir = sweep_dir / "hydra" / f"{info['size']}-{info['dataset']}"
    return str(hydra_dir if hydra_dir.exists() else run_dir)


def collect_status(sweep_dir: Path) -> list[dict]:
    """One record per run of the sweep (the `--format json` output)."""
    from suite.runinfo import read_run_info

    rows = []
    for run_dir in sorted(p for p in (Path(sweep_dir) / "runs").glob("*") if p.is_dir()):
        info = read_run_info(run_dir)
        if not info:
            continue
        job = info.get("slurm_job_id")
        rows.append(
            {
                "run": info["run_name"],
                "status": info.get("status", "?"),
                "slurm_job_id": job,
                "slurm_state": _slurm_state(job) if job else None,
                "slurm_restarts": info.get("slurm_restarts"),
                "last_step": _last_step(run_dir) or 0,
                "train_steps": info.get("train_steps"),
                "last_published": _last_published(info.get("store"), info["repo_id"]),
                "logs": _logs(Path(sweep_dir), run_dir, info),
            }
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite status",
        description="Each run of a sweep: state, SLURM job id and state, last step, last "
        "published checkpoint, and where its logs are.",
    )
    parser.add_argument("sweep_dir", help="the sweep directory, e.g. suite_runs/mini")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    rows = collect_status(sweep_dir)
    if not rows:
        print(
            f"suite status: no runs under {sweep_dir}/runs/ (is this a sweep directory?)",
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
    for column in rows[0]:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row.values()])
    Console(width=220).print(table)
    return 0
