"""`suite report`: the table and the fit come from the runs' own files."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from suite.report import fit_power_law, write_report


def test_power_law_fit_recovers_a_known_exponent():
    params = np.geomspace(1e5, 1e8, 8)
    losses = 12.0 * params**-0.076
    fit = fit_power_law(params, losses)
    assert fit.alpha == pytest.approx(0.076, rel=1e-9)
    assert fit.a == pytest.approx(12.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def _fake_run(root, size, dataset, params, final_eval, status="complete"):
    """A run directory as the sweep job and trainer leave it (run.json + metrics.jsonl)."""
    run_name = f"mini-{size}{'-deduped' if dataset.endswith('deduped') else ''}"
    run_dir = root / "runs" / run_name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "run_name": run_name,
                "repo_id": f"local/{run_name}",
                "size": size,
                "dataset": dataset,
                "params": params,
                "non_embedding_params": params // 2,
                "global_batch": 4,
                "seq_len": 8,
                "status": status,
                "wall_seconds": 12.5,
            }
        )
    )
    lines = [{"step": s, "loss": 5.0 - 0.1 * s} for s in range(1, 11)]
    lines += [{"step": 5, "eval_loss": final_eval + 0.5}, {"step": 10, "eval_loss": final_eval}]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_report_table_plots_and_summary(tmp_path):
    sizes = {"a": 1_000, "b": 10_000, "c": 100_000}
    for size, params in sizes.items():
        _fake_run(tmp_path, size, "corpus", params, 10 * params**-0.1)
        _fake_run(tmp_path, size, "corpus-deduped", params, 10 * params**-0.1 + 0.05)
    out = write_report(tmp_path)
    table = pd.read_csv(out / "runs.csv")
    assert len(table) == 6
    row = table[(table["size"] == "b") & (table["dataset"] == "corpus")].iloc[0]
    assert row["final_eval_loss"] == pytest.approx(10 * 10_000**-0.1)
    assert row["final_train_loss"] == pytest.approx(4.0)
    assert row["tokens"] == 10 * 4 * 8 and row["steps"] == 10
    for name in ("loss_vs_tokens.png", "scaling.png", "dedup_difference.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "N^(-0.100)" in summary and "+0.0500" in summary
    assert not math.isnan(row["final_eval_loss"])
