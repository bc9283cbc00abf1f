"""The console (`suite.console`): events on the terminal, library chatter in the log files.

These drive the module in this process (no torch, no DeepSpeed). What a real sweep prints
in a pipe (as CI and SLURM see it) is checked on test_e2e_sweep's sweep: one line per event,
no library INFO, gcc line or carriage return, the log files holding them, and DeepSpeed's CPU
communication op not built for single-process runs.
"""

from __future__ import annotations

import io
import logging
import threading

import pytest

from suite import console
from suite.train import comm_op


@pytest.fixture
def fresh_logging(monkeypatch):
    """`configure` changes the root logger of this process: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_library_info_goes_to_the_log_only_warnings_and_prints_to_the_terminal(
    fresh_logging, tmp_path, capsys
):
    log_file = tmp_path / "run" / "train.log"
    console.configure()
    with console.log_to(log_file):
        logging.getLogger("compilers.C.base").info("gcc -O3 -c test.c")
        logging.getLogger("suite.publish.publisher").info("published checkpoint step0")
        logging.getLogger("some.library").warning("disk nearly full")
        print("[run] step 1/2  loss 1.0000")
    print("after the run")
    out, err = capsys.readouterr()
    assert out == "[run] step 1/2  loss 1.0000\nafter the run\n"
    assert err == "WARNING some.library: disk nearly full\n"
    log = log_file.read_text()
    for line in (
        "INFO [compilers.C.base] gcc -O3 -c test.c",
        "INFO [suite.publish.publisher] published checkpoint step0",
        "WARNING [some.library] disk nearly full",
        "INFO [stdout] [run] step 1/2  loss 1.0000",
    ):
        assert line in log
    assert "after the run" not in log and len(log.splitlines()) == 4

    with pytest.raises(ValueError), console.log_to(log_file):
        raise ValueError("disk full")
    assert capsys.readouterr().err == ""  # the command says it in one line, not us
    log = log_file.read_text()
    assert "ERROR [suite] stopped by" in log and 'raise ValueError("disk full")' in log


def test_a_library_that_prints_on_its_own_is_routed_through_the_console(fresh_logging, capsys):
    own = io.StringIO()  # DeepSpeed's handler: the stdout of import time, no propagation
    logger = logging.getLogger("test_console.deepspeed_like")
    logger.addHandler(logging.StreamHandler(own))
    logger.propagate = False
    console.configure()
    console.adopt(logger.name)
    logger.warning("Setting accelerator to CPU")
    assert own.getvalue() == "" and logger.handlers == [] and logger.propagate
    assert (
        capsys.readouterr().err
        == "WARNING test_console.deepspeed_like: Setting accelerator to CPU\n"
    )


def test_plain_output_prints_every_event_and_counts_the_sweeps_runs(fresh_logging, capsys):
    with console.sweep_display("sweep mini", total_runs=3, done_runs=1):  # not a terminal
        console.run_started("mini-160k", 0, 2)
        console.training_step("mini-160k", 1, 2, 5.0, line=None)  # between printed lines
        console.training_step("mini-160k", 2, 2, 4.5, line="[mini-160k] step 2/2  loss 4.5")
        console.run_finished("[mini-160k] done — step 2")
    assert capsys.readouterr().out == (
        "[mini-160k] step 2/2  loss 4.5\n[mini-160k] done — step 2 (2/3 runs)\n"
    )


def test_runs_training_elsewhere_are_counted_from_their_records(fresh_logging, capsys):
    counts, read_two = iter([0, 2]), threading.Event()  # SLURM jobs: two runs complete

    def complete_runs() -> int:
        value = next(counts, 2)
        if value == 2:
            read_two.set()
        return value

    with (
        console.sweep_display("sweep mini", total_runs=3, done_runs=0),
        console.watching(complete_runs, every_s=0.01),
    ):
        assert read_two.wait(timeout=30)
    assert capsys.readouterr().out == "[sweep] 2/3 runs complete\n"  # once, not every tick


def test_the_live_display_keeps_step_lines_in_the_log_files(fresh_logging, tmp_path, capsys):
    log_file = tmp_path / "sweep.log"
    with (
        pytest.MonkeyPatch.context() as patch,
        console.log_to(log_file),
    ):
        patch.setattr(console, "interactive", lambda: True)
        with console.sweep_display("sweep mini", total_runs=2, done_runs=0):
            console.run_started("mini-160k", 0, 4)
            console.training_step("mini-160k", 4, 4, 4.5, line="[mini-160k] step 4/4 LINE")
            print("[eval] step 4: loss 4.6")  # printed above the display, and logged
            console.run_finished("[mini-160k] done — step 4")
    out = capsys.readouterr().out
    assert "LINE" not in out and "[eval] step 4: loss 4.6" in out
    assert "[mini-160k] done — step 4 (1/2 runs)" in out
    log = log_file.read_text()
    assert "INFO [suite.events] [mini-160k] step 4/4 LINE" in log
    assert "INFO [stdout] [eval] step 4: loss 4.6" in log
    assert "INFO [stdout] [mini-160k] done — step 4 (1/2 runs)" in log


@pytest.fixture
def fake_deepspeed(monkeypatch):
    """DeepSpeed's CPU builder and its table of compatible ops, without importing it."""
    table = {comm_op.SHM_OP: True}
    monkeypatch.setattr(comm_op, "shm_builder", lambda: object())
    monkeypatch.setattr(comm_op, "compatible_ops", lambda: table)
    return table


@pytest.mark.parametrize(
    ("world", "rank", "cached", "built", "announced"),
    [
        (1, 0, False, False, False),  # one process: nothing to all-reduce, nothing built
        (2, 0, False, True, True),
        (2, 0, True, True, False),  # cached: loads in a moment
        (2, 1, False, True, False),  # announced once, by rank 0
    ],
)
def test_shm_op_is_skipped_alone_and_announced_when_built(
    fake_deepspeed, monkeypatch, capsys, caplog, world, rank, cached, built, announced
):
    monkeypatch.setattr(comm_op, "shm_op_cached", lambda: cached)
    with caplog.at_level(logging.INFO), comm_op.shm_op_for(world, rank):
        assert fake_deepspeed[comm_op.SHM_OP] is built  # what build_shm_op reads
        print("DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully")
    assert fake_deepspeed[comm_op.SHM_OP] is True  # DeepSpeed's table is left as it was
    out = capsys.readouterr().out
    assert ("building DeepSpeed's CPU communication op once" in out) is announced
    assert "built successfully" not in out and "built successfully" in caplog.text


def test_shm_op_leaves_other_accelerators_alone(monkeypatch, capsys):
    monkeypatch.setattr(comm_op, "shm_builder", lambda: None)  # CUDA: no such op
    monkeypatch.setattr(comm_op, "compatible_ops", lambda: pytest.fail("probed"))
    with comm_op.shm_op_for(1, 0):
        pass
    assert capsys.readouterr().out == ""
