"""The run directory and its one status record (`suite.rundir`), as status and report read it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pandas as pd

from suite.commands.status import collect_status
from suite.commands.status import main as status_main
from suite.report import write_report
from suite.rundir import RunDir, SweepDir, owner_fields


def _record(run_dir: RunDir, size: str, status: str = "complete", **extra) -> None:
    run_dir.update(
        run_name=run_dir.name,
        repo_id=f"local/{run_dir.name}",
        store="none",
        size=size,
        dataset="corpus",
        params=1000 * len(size),
        non_embedding_params=100,
        global_batch=4,
        seq_len=8,
        train_steps=10,
        status=status,
        **extra,
    )
    lines = [{"step": s, "loss": 5.0 - 0.1 * s} for s in range(1, 11)]
    lines.append({"step": 10, "eval_loss": 4.0 - 0.1 * len(size)})
    run_dir.metrics_file.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _sweep(tmp_path, names=("s-a", "s-bb", "s-ccc")) -> SweepDir:
    sweep = SweepDir(tmp_path / "s")
    sweep.write_expected("s", [{"run_name": n, "size": n[2:], "dataset": "corpus"} for n in names])
    return sweep


def test_record_merges_fields_and_reads_back(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update(status="running", run_name="run", size="a")
    run.update(slurm_job_id="12_1")  # the SLURM layer adds, never replaces
    record = run.read()
    assert record.status == "running"
    assert record.info["size"] == "a" and record.info["slurm_job_id"] == "12_1"
    assert not list(tmp_path.glob("run/.*.tmp"))  # atomic: no temp file left


def test_a_run_the_sweep_expects_but_never_started_shows_as_not_started(tmp_path):
    sweep = _sweep(tmp_path)
    _record(sweep.run("s-a"), "a")
    _record(sweep.run("s-ccc"), "ccc")  # s-bb deleted (or never run)
    rows = {row["run"]: row for row in collect_status(sweep.path)}
    assert [r for r in rows] == ["s-a", "s-bb", "s-ccc"]  # sweep order
    assert rows["s-bb"]["status"] == "not started"
    assert rows["s-a"]["status"] == rows["s-ccc"]["status"] == "complete"
    assert rows["s-a"]["last_step"] == 10


def test_a_truncated_record_affects_only_its_own_run(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    for name in ("s-a", "s-bb", "s-ccc"):
        _record(sweep.run(name), name[2:])
    state = sweep.run("s-bb").state_file
    state.write_text(state.read_text()[:40])  # cut mid-write by a full disk, say
    rows = {row["run"]: row for row in collect_status(sweep.path)}
    assert rows["s-bb"]["status"] == "unreadable"
    assert "run.json: not valid JSON" in rows["s-bb"]["reason"]
    assert rows["s-a"]["status"] == rows["s-ccc"]["status"] == "complete"
    assert status_main([str(sweep.path)]) == 0
    assert "Traceback" not in capsys.readouterr().err

    out = write_report(sweep.path)
    table = pd.read_csv(out / "runs.csv")
    assert sorted(table["run"]) == ["s-a", "s-ccc"]
    summary = (out / "summary.md").read_text()
    assert "`s-bb`: unreadable" in summary and "not valid JSON" in summary


def test_report_lists_a_missing_run_instead_of_failing(tmp_path):
    sweep = _sweep(tmp_path)
    _record(sweep.run("s-a"), "a")
    _record(sweep.run("s-ccc"), "ccc")
    summary = (write_report(sweep.path) / "summary.md").read_text()
    assert "3 runs, 2 complete" in summary
    assert "`s-bb`: not started — expected by the sweep, never started" in summary


def test_a_killed_local_run_reads_as_interrupted_with_its_resume_point(tmp_path):
    run = RunDir(tmp_path / "run")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.update(status="running", run_name="run", host=socket.gethostname(), pid=child.pid)
        assert run.read().status == "running"  # alive
    finally:
        child.kill()
        child.wait()
    (run.resume_dir).mkdir(parents=True)
    (run.resume_dir / "latest.json").write_text(json.dumps({"step": 8, "tag": "step8"}))
    record = run.read()
    assert record.status == "interrupted"
    assert f"process {child.pid}" in record.reason and "resumes at step 8" in record.reason
    assert record.resume_step == 8


def test_a_record_from_another_host_keeps_its_status(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update(status="running", host="some-other-node", pid=1)
    assert run.read().status == "running"  # only the scheduler can tell: status asks it


def test_status_of_an_empty_directory_is_one_line(tmp_path, capsys):
    assert status_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs in" in err


def test_owner_fields_name_this_process():
    fields = owner_fields()
    assert fields["host"] == socket.gethostname() and fields["pid"] > 0
