"""The sweep report: a table of runs, loss curves, the suite's scaling law, dedup effect, and —
once `suite eval` has run — training dynamics and final results from the evaluation ledger.

Every number comes from the runs' own files, read through `suite.rundir`: `run.json` (what
the run is and where it stands) and `metrics.jsonl` (what it logged, one JSON object per
update or evaluation), plus `{sweep}/eval/ledger.parquet` when it exists. Runs the sweep
expects but that never started, and runs whose record is unreadable, are listed in the
summary with the reason instead of stopping the report.

This module collects and writes; the parts live beside it, one job each:
`report_seeds` (replicate groups and their min–max band), `report_fit` (the two scaling
forms and their uncertainty), `report_scaling` (fits per source and their figure),
`report_ledger` (reading the ledger, its final-step tables), `report_plots` (shared figure
helpers, loss curves, dedup bars) and `report_dynamics` (ledger metrics against step,
tokens and size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suite.errors import SuiteError
from suite.report_dynamics import params_name, plot_dynamics, plot_params
from suite.report_html import write_html
from suite.report_ledger import (
    final_pivot,
    final_table,
    heldout_final,
    plotted_metrics,
    read_ledger,
)
from suite.report_memorization import memorization_section
from suite.report_plots import BAND_LABEL, dedup_difference, plot_dedup, plot_losses
from suite.report_scaling import fit_source, fits_markdown, plot_scaling
from suite.report_seeds import run_seeds
from suite.rundir import RunDir, SweepDir


def read_metrics(run_dir: RunDir):
    """The run's metrics as a DataFrame (one row per logged line; a line cut by a crash is
    skipped)."""
    import pandas as pd

    path = run_dir.metrics_file
    if not path.exists():
        return pd.DataFrame()
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return pd.DataFrame(rows)


def _published(store_spec: str | None, repo: str) -> int | None:
    """`step{N}` revisions of the run in its store (None: the run publishes nothing)."""
    from suite.publish.store import open_store

    try:
        store = open_store(store_spec) if store_spec else None
        if store is None:
            return None
        return sum(1 for rev in store.list_revisions(repo) if rev.startswith("step"))
    except SuiteError:
        return 0


@dataclass(frozen=True)
class Omitted:
    """A run of the sweep that has no numbers in the report, and why."""

    run: str
    status: str
    reason: str


def collect_runs(sweep_dir: Path):
    """(table, curves, omitted): one table row per run with a readable record (identity from
    run.json, results from metrics.jsonl); runs not started or unreadable go to `omitted`."""
    import pandas as pd

    rows, curves, omitted = [], {}, []
    for record in SweepDir(Path(sweep_dir)).records():
        info = record.info
        if record.status in ("not started", "unreadable") or "global_batch" not in info:
            reason = record.reason or "expected by the sweep, never started"
            omitted.append(Omitted(record.name, record.status, reason))
            continue
        metrics = read_metrics(record.run_dir)
        train = metrics[metrics["loss"].notna()] if "loss" in metrics else metrics.iloc[0:0]
        evals = (
            metrics[metrics["eval_loss"].notna()] if "eval_loss" in metrics else metrics.iloc[0:0]
        )
        tokens_per_step = info["global_batch"] * info["seq_len"]
        curves[info["run_name"]] = (train, evals, tokens_per_step)
        last_step = int(train["step"].max()) if len(train) else 0
        init_seed, data_seed = run_seeds(info)
        rows.append(
            {
                "run": info["run_name"],
                "size": info["size"],
                "dataset": info["dataset"],
                "init_seed": init_seed,
                "data_seed": data_seed,
                "params": info["params"],
                "non_embedding_params": info["non_embedding_params"],
                "steps": last_step,
                "tokens": last_step * tokens_per_step,
                "final_train_loss": float(train["loss"].iloc[-1]) if len(train) else np.nan,
                "final_eval_loss": float(evals["eval_loss"].iloc[-1]) if len(evals) else np.nan,
                "checkpoints_published": _published(info.get("store"), info["repo_id"]),
                "wall_seconds": info.get("wall_seconds"),
                "status": record.status,
            }
        )
    if not rows:
        found = "; ".join(f"{o.run}: {o.status} ({o.reason})" for o in omitted)
        raise SuiteError(
            f"{sweep_dir}: no run with results to report ({found or 'no runs found'}); train "
            "the sweep first (`suite sweep`) or give a sweep directory such as suite_runs/mini"
        )
    return pd.DataFrame(rows), curves, omitted


#: The two sources of final held-out loss the scaling fit is run on (panels of scaling.png).
TRAINING_SOURCE = "training metrics: last eval_loss"
LEDGER_SOURCE = "evaluation ledger: ppl/heldout nll at the final step"
#: Figures named after the ledger's tasks; removed before a report is rewritten so a task
#: that left the ledger leaves no stale figure behind.
LEDGER_FIGURES = ("dynamics_*.png", "params_*.png")


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report into `out_dir` (default SWEEP_DIR/report) and return that folder.

    Always: runs.csv, loss_vs_tokens.png, scaling.png, dedup_difference.png (with deduplicated
    pairs), summary.md and report.html (summary.md as one self-contained page). When `suite
    eval` has written a ledger: dynamics_<task>_<metric>.png, params_<task>_<metric>.png and
    ledger_final.csv, and the ledger's held-out loss as a second panel of scaling.png.
    """
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir else SweepDir(sweep_dir).report_dir
    out.mkdir(parents=True, exist_ok=True)
    table, curves, omitted = collect_runs(sweep_dir)
    table = table.sort_values(["dataset", "params", "run"]).reset_index(drop=True)
    table.to_csv(out / "runs.csv", index=False)
    ledger, ledger_note = read_ledger(sweep_dir)

    plot_losses(table, curves, out / "loss_vs_tokens.png")
    fits = fit_source(TRAINING_SOURCE, table.rename(columns={"final_eval_loss": "loss"}))
    if ledger is not None:
        heldout = heldout_final(ledger)
        if len(heldout):
            fits += fit_source(LEDGER_SOURCE, heldout.rename(columns={"value": "loss"}))
    if fits:
        plot_scaling(fits, out / "scaling.png")
    dedup = dedup_difference(table)
    if dedup:
        plot_dedup(dedup, out / "dedup_difference.png")

    for pattern in LEDGER_FIGURES:
        for stale in out.glob(pattern):
            stale.unlink()
    figures, final = [], None
    if ledger is not None and len(ledger):
        for task, metric in plotted_metrics(ledger):
            rows = ledger[(ledger["task"] == task) & (ledger["metric"] == metric)]
            figures.append((task, metric, plot_dynamics(rows, task, metric, out).path.name))
            plot_params(rows, task, metric, out)
        final = final_table(ledger)
        final.drop(columns=["result"]).to_csv(out / "ledger_final.csv", index=False)

    summary = _summary(sweep_dir, table, omitted, fits, dedup, ledger_note, final, figures)
    summary += memorization_section(SweepDir(sweep_dir).eval_dir, ledger, out)
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    write_html(out, "\n".join(summary) + "\n")  # report.html: the same text, figures inlined
    return out


def _summary(sweep_dir, table, omitted, fits, dedup, ledger_note, final, figures) -> list[str]:
    shown = table.drop(columns=["non_embedding_params"]).copy()
    if shown[["init_seed", "data_seed"]].drop_duplicates().shape[0] <= 1:
        shown = shown.drop(columns=["init_seed", "data_seed"])  # one seed: nothing to tell
    shown["wall_seconds"] = shown["wall_seconds"].map(
        lambda s: "" if s is None or s != s else f"{s:.0f}"
    )
    lines = [
        f"# Sweep report: `{sweep_dir.name}`",
        "",
        f"{len(table) + len(omitted)} runs, {int((table['status'] == 'complete').sum())} "
        "complete. Numbers come from each run's `metrics.jsonl` and `run.json`"
        + (", and from the evaluation ledger." if final is not None else "."),
        "",
    ]
    replicates = table.groupby(["size", "dataset"])["run"].count()
    if (replicates > 1).any():
        lines += [
            f"Seed replicates: {int((replicates > 1).sum())} (size, dataset) groups with "
            f"{_span(replicates.min(), replicates.max())} seeds (`init_seed`, `data_seed` below). "
            f"Figures draw each group's mean with a {BAND_LABEL.removeprefix('band: ')} band; "
            "the scaling fits use the mean per size.",
            "",
        ]
    if omitted:
        lines += [
            "Runs without results:",
            "",
            *[f"- `{o.run}`: {o.status} — {o.reason}" for o in omitted],
            "",
        ]
    lines += [
        _markdown(shown),
        "",
        "## Loss against tokens",
        "",
        "![loss vs tokens](loss_vs_tokens.png)",
        "",
    ]
    if fits:
        lines += [
            "## Final held-out loss against parameters",
            "",
            "![scaling](scaling.png)",
            "",
            *fits_markdown(fits),
            "",
        ]
    if dedup:
        lines += [
            "## Deduplicated minus standard",
            "",
            "![dedup](dedup_difference.png)",
            "",
            *[f"- {size}: {diff:+.4f}" for size, _, diff in dedup],
            "",
        ]
    lines += ["## Evaluation", "", ledger_note, ""]
    if final is not None:
        lines += [
            "Final-step results (value ± standard error where the evaluation gives one); "
            "every row is in `ledger_final.csv`.",
            "",
            _markdown(final_pivot(final)),
            "",
            "<details><summary>one row per run × task × metric</summary>",
            "",
            _markdown(final.drop(columns=["value", "stderr"])),
            "",
            "</details>",
            "",
        ]
    for task, metric, name in figures:
        lines += [
            f"### {task} · {metric}",
            "",
            f"![{task} {metric} during training]({name})",
            "",
            f"![{task} {metric} against size]({params_name(task, metric)})",
            "",
        ]
    return lines


def _span(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low}–{high}"


def _markdown(frame) -> str:
    if _has_tabulate():
        return frame.to_markdown(index=False, floatfmt=".4g")
    return frame.to_string(index=False)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
