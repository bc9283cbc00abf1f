"""Fuzzing the command line (issue 18): generated overrides against `suite plan` (the config
path every command shares: Hydra's grammar, the schema, every `__post_init__`, the plan's
arithmetic) and generated `suite batch` arguments against a tiny prepared dataset.

The property, for every input: the exit code is 0, 1 or 2; no exception escapes (in a
terminal, a traceback); a non-zero exit prints exactly one line on stderr (argparse's own
errors print their usage first, then one `suite X: error: ...` line); and a refused command
leaves nothing on disk.

The commands run in-process through `suite.cli.main` (what `python -m suite.cli` calls), with
stdout/stderr captured: a subprocess per example would cost ~1 s of imports; in-process, an
example costs a few milliseconds to ~0.2 s. `suite.settings.compose_suite` clears Hydra's
global state before every composition, so examples do not see each other's config;
`test_in_process_matches_the_cli` checks the two paths agree. Hypothesis is derandomized
(the same examples on every run, no example database): CI is reproducible. About 45 s in all
on the 2-core CI machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

import pytest
from dist_helpers import train_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite.cli import DEBUG_ENV, main
from suite.config import SuiteConfig

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _scalar_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted keys of the suite config's fields, nested dataclasses included (the dataset
    dict through its `stdlib` entry, the one the mini suite has)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key, hint = f"{prefix}{field.name}", hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = args[0] if len(args) == 1 else hint
        keys.append(key)
        if dataclasses.is_dataclass(inner):
            keys += _scalar_keys(inner, f"{key}.")
        elif typing.get_origin(inner) is dict and field.name == "datasets":
            keys += _scalar_keys(typing.get_args(inner)[1], f"{key}.stdlib.")
    return keys


KNOWN_KEYS = _scalar_keys(SuiteConfig)

#: Values as a user types them: Hydra's grammar (lists, dicts, null, interpolations, quotes)
#: and values of the wrong type or range for any field.
ODD_VALUES = [
    "", "null", "true", "false", "[]", "{}", "[1,2]", "[a]", "{a: 1}", "'quoted'", '"x y"',
    "???", "${train_steps}", "${nope}", "${oc.env:NO_SUCH_VAR}", "0", "-1", "1e3", "nan",
    "inf", "-inf", "1e308", "0.0", "9223372036854775808", "160k", "stdlib", "bf16", "a,b",
    "[160k,160k]", "{160k: {tp: 2}}", "x=y", "=", "~", "+",
]  # fmt: skip

values = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.sampled_from(KNOWN_KEYS).map(lambda k: k[:-1] + "x"),  # a typo of a real key
    st.from_regex(r"[a-z_][a-z0-9_.]{0,12}", fullmatch=True),
    st.text(min_size=1, max_size=8),
    st.sampled_from(["suite", "hydra/launcher", "hydra/sweeper", "nope/group"]),
)
#: Numbers near and beyond every field's range (nan, ±inf and 64-bit overflow included).
numbers = st.one_of(
    st.integers(min_value=-5, max_value=5),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from(["nan", "inf", "-inf", "1e300", "1e-300", "0.5", "null"]),
).map(str)
overrides = st.one_of(
    st.builds(lambda key, value: f"{key}={value}", st.sampled_from(KNOWN_KEYS), numbers),
    st.builds(
        lambda prefix, key, value: f"{prefix}{key}={value}",
        st.sampled_from(["", "", "", "+", "++", "~"]),
        keys,
        values,
    ),
    st.builds(lambda prefix, key: f"{prefix}{key}", st.sampled_from(["", "~"]), keys),
    st.text(max_size=16),  # anything: a "-x" is argparse's to refuse
)


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    argparse_error: bool  # argparse exited: its usage lines, then one error line


def run_cli(argv: list[str]) -> Outcome:
    """`suite ARGV` in this process, as `python -m suite.cli ARGV` runs it."""
    out, err = io.StringIO(), io.StringIO()
    argparse_error = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
            code, argparse_error = exit_.code, True
    return Outcome(code, out.getvalue(), err.getvalue(), argparse_error)


def check(outcome: Outcome, argv: list[str]) -> None:
    where = f"suite {' '.join(argv)!r}"
    assert outcome.code in (0, 1, 2), f"{where}: exit {outcome.code!r}\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr, f"{where}\n{outcome.stderr}"
    if outcome.code == 0:
        return
    lines = outcome.stderr.strip().splitlines()
    assert lines, f"{where}: exit {outcome.code} without a message"
    if outcome.argparse_error:
        assert lines[0].startswith("usage: suite "), f"{where}\n{outcome.stderr}"
        assert lines[-1].startswith("suite ") and ": error: " in lines[-1], outcome.stderr
    else:
        assert len(lines) == 1, f"{where}: {len(lines)} lines\n{outcome.stderr}"
        assert lines[0].startswith("suite"), f"{where}\n{outcome.stderr}"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)  # a one-line error, not its traceback


@settings(FUZZ, max_examples=300)
@given(
    args=st.lists(overrides, max_size=3),
    fmt=st.sampled_from(["table", "csv", "json"]),
)
def test_overrides_never_crash_plan(args, fmt):
    argv = ["plan", "--format", fmt, *args]
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd):
        outcome = run_cli(argv)
        check(outcome, argv)
        assert not list(Path(cwd).iterdir()), f"suite {argv!r} wrote {list(Path(cwd).iterdir())}"


#: Flags of `suite batch` with values from the plausible to the hostile.
small_ints = st.one_of(
    st.integers(min_value=-3, max_value=40),
    st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30]),
)
int_text = st.one_of(small_ints.map(str), st.sampled_from(["abc", "", "1.5", "0x10", "nan", "٣"]))
flag_values = {
    "--to": int_text,
    "--global-batch": st.one_of(st.sampled_from(["1", "8", "16", "1024", "2048"]), int_text),
    "--dp-rank": int_text,
    "--dp-size": int_text,
    "--micro-batch": int_text,
    "--grad-accum": int_text,
    "--micro-step": int_text,
    "--expect-fingerprint": st.sampled_from(["", "deadbeef", "0" * 64]),
    "--tokenizer": st.sampled_from(["/nonexistent.json", "{data}/metadata.json", "{data}"]),
    "--out": st.sampled_from(
        ["{tmp}/b.npy", "{tmp}/b.jsonl", "{tmp}/b.txt", "{tmp}/file/b.npy", "{tmp}/new/b.npy"]
    ),
    "--seed": int_text,
}
batch_flags = st.lists(
    st.one_of(
        st.sampled_from(sorted(flag_values)).flatmap(
            lambda flag: flag_values[flag].map(lambda value: [flag, value])
        ),
        st.just(["--decode"]),
    ),
    max_size=5,
)


@settings(FUZZ, max_examples=1000)
@given(
    index=int_text,
    flags=batch_flags,
    data=st.sampled_from(["{data}", "{data}/", "{data}/train", "{tmp}", "{tmp}/file", ""]),
)
def test_batch_arguments_never_crash(index, flags, data, tiny_data):
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        (Path(tmp) / "file").write_text("not a dataset\n")
        fill = {"data": str(tiny_data), "tmp": tmp}
        argv = ["batch", index, "--data", data.format(**fill)]
        argv += [part.format(**fill) for flag in flags for part in flag]
        outcome = run_cli(argv)
        check(outcome, argv)
        left = sorted(p.name for p in Path(tmp).iterdir())
        if outcome.code != 0:  # a refused command writes nothing
            assert left == ["file"], f"suite {argv!r} left {left}"


def test_in_process_matches_the_cli(tiny_data, tmp_path):
    """The fuzz tests' in-process path prints and exits as `python -m suite.cli` does, and
    one composition does not leak into the next (Hydra's global state is reset)."""
    cases = [
        ["plan", "train_stpes=5"],
        ["plan", "--format", "csv", "train_steps=3"],
        ["plan", "--format", "csv"],  # after train_steps=3: back to the suite's own value
        ["batch", "99", "--data", str(tiny_data)],
        ["plan", "--format", "xml"],
    ]
    for argv in cases:
        with contextlib.chdir(tmp_path):
            inside = run_cli(argv)
        outside = subprocess.run(
            [sys.executable, "-m", "suite.cli", *argv],
            env=train_env({DEBUG_ENV: "0"}),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (inside.code, inside.stderr) == (outside.returncode, outside.stderr), argv
        assert inside.stdout == outside.stdout, argv
    csv_3, csv_default = (run_cli(c).stdout for c in cases[1:3])
    assert csv_3 != csv_default
