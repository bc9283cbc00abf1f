"""Bad input and faults, table-driven: every row runs the real `suite` command.

Each row gives the argv, the exit code (2: a user error; 1: a fault that is not the user's,
such as an unreachable Hub), a substring of the message, and whether stderr is exactly one
line (argparse's own errors print its usage first, then one line). Every row also asserts
that no traceback is printed and that nothing on disk changed: a refused command leaves
no half-made run directory, dataset or record behind.

Placeholders in argv: {data} (a prepared tiny dataset), {root} (an empty folder the command
may not write to), {trained} (the root of a finished 4-update run), {prepared} (a root with
the mini suite's datasets prepared), {port} (a closed port).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dist_helpers import free_port, run_train, train_env


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    expect: str
    one_line: bool = True
    env: dict[str, str] = field(default_factory=dict)


#: A run of the tiny dataset, before the per-row overrides.
TRAIN = (
    "train", "size=160k", "dataset=stdlib", "datasets.stdlib.path={data}", "root={root}",
    "publish.store=none", "seq_len=32", "padded_vocab=512", "global_batch=8",
    "default_resources.micro_batch=8",
)  # fmt: skip
#: The same run, in the root of the finished run.
TRAINED = tuple(a.replace("{root}", "{trained}") for a in TRAIN)

CASES = [
    # Unknown keys, `+` or not, top level and nested, for every command that loads the suite.
    Case("typo", ("plan", "train_stpes=5"), 2, "train_stpes=5: no such field in the suite config; did you mean train_steps?"),
    Case("typo-plus", ("plan", "+train_stpes=5"), 2, "did you mean train_steps?"),
    Case("typo-plusplus", ("plan", "++train_stpes=5"), 2, "did you mean train_steps?"),
    Case("typo-nested", ("plan", "optim.lrr=1"), 2, "optim has no field 'lrr' in the suite config; did you mean optim.lr?"),
    Case("typo-nested-plus", ("plan", "+optim.lrr=1"), 2, "did you mean optim.lr?"),
    Case("typo-dataset-field", ("plan", "+datasets.stdlib.pathh=x"), 2, "did you mean datasets.stdlib.path?"),
    Case("typo-far", ("plan", "+zzzzzz=1"), 2, "no such field in the suite config; the fields are name,"),
    Case("typo-sweep", ("sweep", "--dry-run", "+checkpoints.evry=3"), 2, "did you mean checkpoints.every?"),
    Case("typo-prepare", ("prepare", "seq_lne=64"), 2, "did you mean seq_len?"),
    Case("typo-train", (*TRAIN, "+train_stpes=5"), 2, "did you mean train_steps?"),
    # Values of the wrong type or out of range.
    Case("not-an-int", ("plan", "train_steps=abc"), 2, "could not be converted to Integer"),
    Case("bad-grammar", ("plan", "train_steps=[1"), 2, "invalid override in train_steps=[1"),
    Case("unknown-suite", ("plan", "suite=nope"), 2, "Could not find 'suite/nope'"),
    Case("unknown-size", ("plan", "size=nope"), 2, "size='nope': known sizes"),
    Case("unknown-sizes", ("plan", "sizes=[nope]"), 2, "sizes='nope': unknown size"),
    Case("zero-steps", ("plan", "train_steps=0"), 2, "train_steps=0: use a positive number"),
    Case("zero-batch", ("plan", "global_batch=0"), 2, "global_batch=0"),
    Case("bad-precision", ("plan", "precision=fp8"), 2, "precision='fp8': use one of"),
    Case("bad-zero-stage", ("plan", "zero_stage=7"), 2, "zero_stage=7"),
    Case("bad-attention", ("plan", "attention=bogus"), 2, "attention='bogus'"),
    Case("bad-store", ("plan", "publish.store=ftp://x"), 2, "publish.store='ftp://x'"),
    Case("negative-lr", ("plan", "optim.lr=-1"), 2, "optim.lr=-1.0"),
    Case("keep-resume-0", ("plan", "checkpoints.keep_resume=0"), 2, "checkpoints.keep_resume=0"),
    Case("plan-format", ("plan", "--format", "xml"), 2, "invalid choice: 'xml'", one_line=False),
    # Training: caught before anything starts (nothing on disk).
    Case("past-the-data", (*TRAIN, "train_steps=100000"), 2, "train_steps=100000: needs 800,000 samples (100000 × global_batch 8) but"),
    Case("past-the-data-fix", (*TRAIN, "train_steps=100000"), 2, "use train_steps <= 4800"),
    Case("fp16-on-cpu", (*TRAIN, "train_steps=4", "precision=fp16"), 2, "precision='fp16': needs a CUDA GPU (DeepSpeed has no fp16 on CPU); use bf16 or fp32 here"),
    Case("flash-on-cpu", (*TRAIN, "train_steps=4", "precision=bf16", "attention=flash_attention_2"), 2, "attention='flash_attention_2'"),
    Case("seq-len-of-data", (*TRAIN, "train_steps=4", "seq_len=64"), 2, "holds samples of seq_len=32"),
    Case("vocab-too-small", (*TRAIN, "train_steps=4", "padded_vocab=100"), 2, "padded_vocab=100"),
    Case("missing-data", (*TRAIN[:3], "datasets.stdlib.path={root}/missing", *TRAIN[4:], "train_steps=4"), 2, "datasets.stdlib.path="),
    Case("world-size", (*TRAIN, "train_steps=4", "parallel.gpus=2", "parallel.micro_batch=4"), 2, "world_size=1: dp × tp = 2 × 1 = 2"),
    Case("bad-tp", (*TRAIN, "train_steps=4", "parallel.tp=3"), 2, "not divisible by tp=3"),
    Case("indivisible-batch", (*TRAIN, "train_steps=4", "global_batch=7"), 2, "global_batch=7"),
    Case("no-size", ("train", "dataset=stdlib", "root={root}"), 2, "size=None: choose the run's size"),
    # A finished run: another identity is refused, naming the leaf field that differs.
    Case("other-seed", (*TRAINED, "train_steps=4", "seed=99"), 2, "seed: saved 1234, now 99"),
    Case("other-micro-batch", (*TRAINED, "train_steps=4", "global_batch=4", "default_resources.micro_batch=4"), 2, "layout.micro_batch: saved 8, now 4"),
    # A root keeps one version of each dataset: other data settings are refused, not rebuilt.
    Case("other-data-settings", ("train", "size=160k", "dataset=stdlib", "root={prepared}", "seed=5", "train_steps=2", "publish.store=none"), 2, "datasets.stdlib='{prepared}/data/mini/stdlib': already prepared under this root with other data settings"),
    # Stores: a user error exits 2, an unreachable server 1, in one line.
    Case("pull-bad-repo", ("pull", "bad repo", "--step", "1", "--store", "local:{root}/store"), 2, "repo='bad repo'"),
    Case("pull-bad-store", ("pull", "org/x", "--step", "1", "--store", "bogus:xx"), 2, "store='bogus:xx'"),
    Case("pull-bad-step", ("pull", "org/x", "--step", "abc"), 2, "invalid int value: 'abc'", one_line=False),
    Case("pull-hub-down", ("pull", "org/x", "--step", "1", "--store", "hub:http://127.0.0.1:{port}"), 1, "suite pull: cannot reach http://127.0.0.1:{port}: "),
    Case("verify-hub-down", ("verify", "org/x", "--store", "hub:http://127.0.0.1:{port}"), 1, "suite verify: cannot reach http://127.0.0.1:{port}: "),
    Case("pull-hub-offline", ("pull", "org/x", "--step", "1", "--store", "hub:http://127.0.0.1:{port}"), 1, "HF_HUB_OFFLINE is set", env={"HF_HUB_OFFLINE": "1"}),
    Case("pull-hub-missing-repo", ("pull", "org/x", "--step", "1", "--store", "local:{root}/store"), 1, "org/x"),
    # Other commands given what is not theirs.
    Case("status-nothing", ("status", "{root}/nothing"), 2, "no runs in"),
    Case("report-nothing", ("report", "{root}/nothing"), 2, "no run with results to report"),
    Case("publish-nothing", ("publish", "{root}/nothing"), 1, "no publish/target.json"),
    Case("batch-no-data", ("batch", "0", "--data", "{root}/missing"), 2, "{root}/missing"),
    Case("unknown-command", ("nosuchcmd",), 2, "suite: unknown command 'nosuchcmd'", one_line=False),
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    """The root of a finished 4-update run (read-only: rows only read it)."""
    root = tmp_path_factory.mktemp("trained")
    argv = [a.format(data=tiny_data, trained=root) for a in TRAINED[1:]]
    result = run_train([*argv, "train_steps=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A root with the mini suite's datasets prepared (read-only: rows only read it)."""
    root = tmp_path_factory.mktemp("prepared")
    result = _suite(["prepare", f"root={root}"], {}, root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and mtime (what 'nothing changed' compares)."""
    if not path.exists():
        return {}
    return {
        p.relative_to(path).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _suite(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *argv],
        env=train_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tiny_data, trained, prepared, tmp_path):
    root, port = tmp_path / "root", free_port()  # nothing listens on a port just freed
    values = {
        "data": tiny_data, "root": root, "trained": trained, "prepared": prepared, "port": port
    }  # fmt: skip
    argv = [a.format(**values) for a in case.argv]
    env = {"HF_HUB_OFFLINE": "0"} | case.env
    before = _tree(trained), _tree(prepared)
    result = _suite(argv, env, tmp_path)
    stderr = result.stderr
    assert result.returncode == case.code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert lines, "no message"
    if case.one_line:
        assert len(lines) == 1, stderr
    assert case.expect.format(**values) in (lines[0] if case.one_line else stderr), stderr
    # Nothing left behind: the scratch root was never created, the finished run unchanged.
    assert _tree(root) == {}, _tree(root)
    assert (_tree(trained), _tree(prepared)) == before
    assert not [p for p in tmp_path.iterdir() if p.name != "root"], list(tmp_path.iterdir())


def test_debug_flag_and_env_show_the_traceback(tmp_path):
    for argv, env in (
        (["--debug", "plan", "train_stpes=5"], {}),
        (["plan", "train_stpes=5", "--debug"], {}),
        (["plan", "train_stpes=5"], {"SUITE_DEBUG": "1"}),
    ):
        result = _suite(argv, env, tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("suite plan: train_stpes=5:")
    quiet = _suite(["plan", "train_stpes=5"], {"SUITE_DEBUG": "0"}, tmp_path)
    assert len(quiet.stderr.strip().splitlines()) == 1 and "Traceback" not in quiet.stderr


def test_usage_mentions_debug():
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli"], env=train_env(), capture_output=True, text=True
    )
    assert "--debug" in result.stdout and "SUITE_DEBUG=1" in result.stdout
    assert os.environ.get("SUITE_DEBUG") is None  # the flag is the child's, not ours
