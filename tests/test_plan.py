"""`suite plan` and the suite config: the runs a sweep launches, and errors before any job."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from suite.cli import main as suite_main
from suite.config import resolve_all
from suite.settings import load_suite


def run_plan(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = suite_main(["plan", *args])
    return code, out.getvalue(), err.getvalue()


def plan_records(*overrides: str) -> list[dict]:
    code, out, err = run_plan("--format", "json", *overrides)
    assert code == 0, err
    return json.loads(out)


PYTHIA_RESOURCES = {  # size: (gpus, tp, micro, accum), from the published GPT-NeoX configs
    "70m": (32, 1, 32, 1),
    "160m": (32, 1, 32, 1),
    "410m": (32, 1, 32, 1),
    "1b": (64, 1, 16, 1),
    "1.4b": (64, 1, 16, 1),
    "2.8b": (64, 1, 16, 1),
    "6.9b": (128, 2, 8, 2),
    "12b": (256, 4, 8, 2),
}


def test_pythia_plan_lists_sixteen_runs_with_published_resources():
    rows = plan_records("suite=pythia")
    runs, total = rows[:-1], rows[-1]
    assert len(runs) == 16 and total["run"] == "TOTAL"
    assert [r["run"] for r in runs[:2]] == ["pythia-70m", "pythia-70m-deduped"]
    for row in runs:
        gpus, tp, micro, accum = PYTHIA_RESOURCES[row["size"]]
        assert (row["gpus"], row["tp"], row["micro_batch"], row["grad_accum"]) == (
            gpus,
            tp,
            micro,
            accum,
        )
        assert row["dp"] * row["tp"] == row["gpus"]
        assert row["micro_batch"] * row["dp"] * row["grad_accum"] == 1024
        assert row["tokens"] == 143_000 * 1024 * 2048
        assert row["checkpoints"] == 154
    by_size = {r["size"]: r for r in runs}
    assert by_size["12b"]["params"] == 11_846_072_320
    assert by_size["6.9b"]["params"] == 6_857_302_016
    assert total["gpus"] == 2 * sum(g for g, *_ in PYTHIA_RESOURCES.values())
    assert total["checkpoints"] == 16 * 154


def test_mini_plan_lists_sixteen_runs_and_csv_matches_json():
    rows = plan_records()
    assert len(rows) == 17
    assert {r["dataset"] for r in rows[:-1]} == {"stdlib", "stdlib-deduped"}
    code, csv_text, _ = run_plan("--format", "csv")
    assert code == 0 and len(csv_text.strip().splitlines()) == 18


def test_overrides_change_the_plan():
    rows = plan_records("suite=pythia", "sizes=[70m]", "train_steps=1000")
    assert len(rows) == 3 and rows[0]["tokens"] == 1000 * 1024 * 2048


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # heads not divisible by TP (pythia-160m has 12 heads; 8 divides gpus but not heads)
        (
            ["suite=pythia", "resources={160m:{tp:8}}"],
            "resources.160m.tp=8: size 160m has n_heads=12",
        ),
        # vocabulary not divisible by TP
        (
            ["suite=pythia", "sizes=[6.9b]", "padded_vocab=50305"],
            "padded_vocab=50305: vocabulary not divisible by tp=2 (size 6.9b)",
        ),
        (["suite=pythia", "sizes=[12b]", "padded_vocab=50306"], "not divisible by tp=4 (size 12b)"),
        # global batch not divisible by dp × micro
        (
            ["suite=pythia", "global_batch=1000"],
            "global_batch=1000: size 70m has micro_batch=32 × dp=32",
        ),
        # GPUs not divisible by TP
        (
            ["suite=pythia", "resources={6.9b:{gpus:129}}"],
            "resources.6.9b.gpus=129: not divisible by tp=2",
        ),
        # unknown size: the message lists the known ones
        (
            ["suite=pythia", "sizes=[70m,13b]"],
            "sizes='13b': unknown size in the 'pythia' ladder; known sizes: 14m, 31m",
        ),
        (["size=huge"], "size='huge'"),
        (["suite=pythia", "family=gpt5"], "family='gpt5': use one of: pythia, olmo, llama"),
        (["precision=fp8"], "precision='fp8': use one of: fp32, bf16, fp16"),
        (
            ["suite=pythia", "resources={6.9b:{tp:16}}", "resources={6.9b:{gpus:256}}"],
            "resources.6.9b.tp=16: a tensor-parallel group must live inside one node",
        ),
        (["no_such_field=1"], "no_such_field=1: no such field in the suite config"),
    ],
)
def test_invalid_combinations_fail_before_anything_runs(overrides, expected):
    code, out, err = run_plan(*overrides)
    assert code == 2 and out == ""
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_every_run_is_validated_not_just_the_first():
    cfg = load_suite(["suite=pythia", "resources={12b:{grad_accum:3}}"])
    with pytest.raises(ValueError, match="size 12b"):
        resolve_all(cfg)


def test_plan_is_fast_and_never_imports_torch():
    """The plan is analytic: no torch/transformers import (the speed follows from that)."""
    probe = (
        "import sys; from suite.cli import main; main(['plan', 'suite=pythia', '--format', 'csv']);"
        "sys.stderr.write(','.join(m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == ""
    assert len(result.stdout.strip().splitlines()) == 18


def test_resume_checkpoint_disk_and_stop_warning_are_planned_from_the_model():
    from suite.config import resolve_run
    from suite.launch.suite_resources import slurm_resources
    from suite.planning import plan_rows

    cfg = load_suite(["suite=pythia"])
    rows = {row.run: row for row in plan_rows(cfg)}
    big, small = rows["pythia-12b"], rows["pythia-70m"]
    # fp16: 2 bytes of weights + 4 of fp32 master + 8 of Adam per parameter (issue: ~166 GB).
    assert big.resume_checkpoint_gb == pytest.approx(11_846_072_320 * 14 / 1e9)
    # At 2 GB/s the save takes 83 s: twice that, one update and a minute exceed 120 s.
    assert big.resume_save_s == pytest.approx(big.resume_checkpoint_gb / 2.0)
    assert big.signal_delay_s > cfg.slurm.signal_delay_s == small.signal_delay_s == 120
    # keep_resume + 1 resume checkpoints (one being written) + every kept export.
    export_gb = 11_846_072_320 * 2 / 1e9
    assert big.run_disk_gb == pytest.approx(3 * big.resume_checkpoint_gb + 154 * export_gb)
    # The SLURM job asks for the planned warning.
    job = slurm_resources(cfg, resolve_run(cfg, "12b", "pile"))
    assert job.site.signal_delay_s == big.signal_delay_s
    slower = load_suite(["suite=pythia", "cluster.checkpoint_write_gb_per_s=0.5"])
    assert {r.run: r for r in plan_rows(slower)}["pythia-12b"].signal_delay_s > big.signal_delay_s
