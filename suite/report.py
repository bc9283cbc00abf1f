"""The sweep report: a table of runs, loss curves, the suite's own scaling law, dedup effect.

Every number comes from the runs' own files, read through `suite.rundir`: `run.json` (what
the run is and where it stands) and `metrics.jsonl` (what it logged, one JSON object per
update or evaluation). Runs the sweep expects but that never started, and runs whose record
is unreadable, are listed in the summary with the reason instead of stopping the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suite.errors import SuiteError
from suite.rundir import RunDir, SweepDir


@dataclass(frozen=True)
class PowerLaw:
    """L(N) = a · N^(-alpha), fitted by least squares in log-log space."""

    a: float
    alpha: float
    r2: float

    def __call__(self, n):
        return self.a * np.power(n, -self.alpha)

    def __str__(self) -> str:
        return f"L = {self.a:.3g}·N^(-{self.alpha:.3f})  (R² {self.r2:.3f})"


def fit_power_law(params, losses) -> PowerLaw:
    x, y = np.log(np.asarray(params, float)), np.log(np.asarray(losses, float))
    if len(x) < 2:
        raise ValueError("a power law needs at least two runs")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return PowerLaw(a=float(np.exp(intercept)), alpha=float(-slope), r2=float(r2))


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
        rows.append(
            {
                "run": info["run_name"],
                "size": info["size"],
                "dataset": info["dataset"],
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


def _plot_losses(table, curves, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(table["dataset"]))
    sizes = list(dict.fromkeys(table.sort_values("params")["size"]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6 * len(datasets), 4.5), sharey=True, squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for _, row in table[table["dataset"] == dataset].sort_values("params").iterrows():
            train, evals, per_step = curves[row["run"]]
            color = colors[sizes.index(row["size"])]
            if len(train):
                smooth = train["loss"].ewm(alpha=0.2).mean()
                ax.plot(
                    train["step"] * per_step,
                    smooth,
                    color=color,
                    lw=1.2,
                    label=f"{row['size']} ({row['params'] / 1e6:.2f}M)",
                )
            if len(evals):
                ax.plot(evals["step"] * per_step, evals["eval_loss"], "o", color=color, ms=3)
        ax.set_xscale("log")
        ax.set_title(f"{dataset}: train loss (lines, EMA) and held-out loss (dots)")
        ax.set_xlabel("tokens seen")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cross-entropy (nats/token)")
    axes[0][-1].legend(fontsize=8, title="size")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _plot_scaling(table, out: Path) -> dict[str, PowerLaw]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits: dict[str, PowerLaw] = {}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for dataset, marker in zip(dict.fromkeys(table["dataset"]), "os^v", strict=False):
        part = table[(table["dataset"] == dataset) & table["final_eval_loss"].notna()]
        if len(part) == 0:
            continue
        line = ax.plot(part["params"], part["final_eval_loss"], marker, label=dataset)[0]
        if len(part) >= 2:
            fit = fits[dataset] = fit_power_law(part["params"], part["final_eval_loss"])
            grid = np.geomspace(part["params"].min(), part["params"].max(), 50)
            ax.plot(grid, fit(grid), "-", color=line.get_color(), lw=1, label=f"{dataset}: {fit}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Losses span well under a decade: plain numbers read better than 4×10⁰.
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2f"))
    ax.set_xlabel("parameters (total)")
    ax.set_ylabel("final held-out loss")
    ax.set_title("The suite's scaling curve")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return fits


def _dedup_difference(table):
    """Per size: final eval loss of the deduplicated run minus the standard run."""
    deduped = table[table["dataset"].str.endswith("-deduped")]
    rows = []
    for _, row in deduped.iterrows():
        base = table[
            (table["size"] == row["size"])
            & (table["dataset"] == row["dataset"].removesuffix("-deduped"))
        ]
        if len(base):
            rows.append(
                (
                    row["size"],
                    row["params"],
                    row["final_eval_loss"] - base["final_eval_loss"].iloc[0],
                )
            )
    return rows


def _plot_dedup(rows, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sizes = [size for size, _, _ in rows]
    diffs = [diff for _, _, diff in rows]
    ax.bar(sizes, diffs, color=["tab:red" if d > 0 else "tab:green" for d in diffs])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("size")
    ax.set_ylabel("Δ final held-out loss")
    ax.set_title("deduplicated − standard, final held-out loss (same held-out documents)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write runs.csv, three PNG plots and summary.md into `out_dir` (default SWEEP_DIR/report)."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir else SweepDir(sweep_dir).report_dir
    out.mkdir(parents=True, exist_ok=True)
    table, curves, omitted = collect_runs(sweep_dir)
    table = table.sort_values(["dataset", "params"]).reset_index(drop=True)
    table.to_csv(out / "runs.csv", index=False)
    _plot_losses(table, curves, out / "loss_vs_tokens.png")
    fits = _plot_scaling(table, out / "scaling.png")
    dedup = _dedup_difference(table)
    if dedup:
        _plot_dedup(dedup, out / "dedup_difference.png")
    shown = table.drop(columns=["non_embedding_params"]).copy()
    shown["wall_seconds"] = shown["wall_seconds"].map(
        lambda s: "" if s is None or s != s else f"{s:.0f}"
    )
    lines = [
        f"# Sweep report: `{sweep_dir.name}`",
        "",
        f"{len(table) + len(omitted)} runs, {int((table['status'] == 'complete').sum())} "
        "complete. Numbers come from each run's `metrics.jsonl` and `run.json`.",
        "",
        *(
            [
                "Runs without results:",
                "",
                *[f"- `{o.run}`: {o.status} — {o.reason}" for o in omitted],
                "",
            ]
            if omitted
            else []
        ),
        shown.to_markdown(index=False, floatfmt=".4g")
        if _has_tabulate()
        else shown.to_string(index=False),
        "",
        "## Loss against tokens",
        "",
        "![loss vs tokens](loss_vs_tokens.png)",
        "",
        "## Final held-out loss against parameters",
        "",
        "![scaling](scaling.png)",
        "",
    ]
    lines += [f"- {dataset}: {fit}" for dataset, fit in fits.items()]
    if dedup:
        lines += [
            "",
            "## Deduplicated minus standard",
            "",
            "![dedup](dedup_difference.png)",
            "",
            *[f"- {size}: {diff:+.4f}" for size, _, diff in dedup],
        ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return out


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
