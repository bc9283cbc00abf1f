"""What every report figure shares, and the two figures drawn from the training metrics.

Each plotting function returns a `Plotted`: the file it wrote and, per panel, the lines it
drew with the numbers behind them, so tests (and a reader in a notebook) check the data
rather than pixels. matplotlib is imported inside functions (`suite plan/status` stay light).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suite.report_seeds import seed_band

#: Band drawn around a replicate group's mean (see `suite.report_seeds`).
BAND_LABEL = "band: min–max over seeds"


@dataclass
class Line:
    """One drawn curve: `y` (the mean over seeds) against `x`; `low`/`high` the band edges
    (equal to `y` with one seed); `seeds` how many runs each point averages; `stderr` the
    evaluation's standard error drawn as error bars, where the figure shows it."""

    label: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    seeds: np.ndarray | None = None
    stderr: np.ndarray | None = None


@dataclass
class Panel:
    title: str
    xscale: str = "linear"
    xlim: tuple[float, float] = (0.0, 1.0)
    lines: list[Line] = field(default_factory=list)

    def line(self, label: str) -> Line:
        (found,) = [line for line in self.lines if line.label == label]
        return found


@dataclass
class Plotted:
    path: Path
    panels: dict[str, Panel] = field(default_factory=dict)

    def panel(self, title: str) -> Panel:
        return self.panels[title]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # a report is written on clusters without a display
    import matplotlib.pyplot as plt

    return plt


def size_colors(params_by_size: dict[str, float]) -> dict[str, tuple]:
    """A sequential colour per size, by log parameter count (yellow end dropped: it fades
    into white)."""
    plt = pyplot()
    logs = {size: np.log(p) for size, p in params_by_size.items()}
    low, high = min(logs.values(), default=0.0), max(logs.values(), default=1.0)
    span = high - low or 1.0
    return {size: plt.cm.viridis(0.9 * (v - low) / span) for size, v in logs.items()}


def file_part(name: str) -> str:
    """A task or metric name as part of a file name: `ppl/heldout` → `ppl-heldout`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def draw_band(ax, panel: Panel, band, x: str, label: str, color, marker: str | None = None):
    """Draw one replicate group's mean (line) and its min–max band; record it in `panel`."""
    band = band.sort_values(x)
    xs = band[x].to_numpy(float)
    line = Line(
        label=label,
        x=xs,
        y=band["mean"].to_numpy(float),
        low=band["low"].to_numpy(float),
        high=band["high"].to_numpy(float),
        seeds=band["seeds"].to_numpy(int),
    )
    ax.plot(xs, line.y, color=color, lw=1.4, marker=marker, ms=3, label=label)
    if (line.seeds > 1).any():
        ax.fill_between(xs, line.low, line.high, color=color, alpha=0.2, lw=0)
    panel.lines.append(line)
    return line


def finish_panel(ax, panel: Panel) -> None:
    panel.xscale = ax.get_xscale()
    panel.xlim = tuple(float(v) for v in ax.get_xlim())
    ax.grid(alpha=0.3, which="both" if panel.xscale != "linear" else "major")


def plot_losses(table, curves, out: Path) -> Plotted:
    """Train loss (EMA, lines) and held-out loss (dots) against tokens, one panel per dataset;
    replicate seeds as their mean with a min–max band."""
    import pandas as pd

    plt = pyplot()
    train_parts, eval_parts = [], []
    for _, row in table.iterrows():
        train, evals, per_step = curves[row["run"]]
        keys = {"size": row["size"], "dataset": row["dataset"]}
        if len(train):
            smooth = train["loss"].ewm(alpha=0.2).mean()
            train_parts.append(
                pd.DataFrame({**keys, "tokens": train["step"] * per_step, "loss": smooth})
            )
        if len(evals):
            eval_parts.append(
                pd.DataFrame(
                    {**keys, "tokens": evals["step"] * per_step, "loss": evals["eval_loss"]}
                )
            )
    train_all = pd.concat(train_parts) if train_parts else None
    eval_all = pd.concat(eval_parts) if eval_parts else None

    datasets = list(dict.fromkeys(table["dataset"]))
    params = table.groupby("size")["params"].first().to_dict()
    colors = size_colors(params)
    sizes = sorted(params, key=params.get)
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6 * len(datasets), 4.5), sharey=True, squeeze=False
    )
    plotted = Plotted(out)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        panel = plotted.panels[dataset] = Panel(dataset)
        for size in sizes:
            label = f"{size} ({params[size] / 1e6:.2f}M)"
            if train_all is not None:
                part = train_all[(train_all["dataset"] == dataset) & (train_all["size"] == size)]
                if len(part):
                    draw_band(
                        ax,
                        panel,
                        seed_band(part, ["tokens"], "loss"),
                        "tokens",
                        label,
                        colors[size],
                    )
            if eval_all is not None:
                part = eval_all[(eval_all["dataset"] == dataset) & (eval_all["size"] == size)]
                if len(part):
                    band = seed_band(part, ["tokens"], "loss")
                    ax.errorbar(
                        band["tokens"],
                        band["mean"],
                        yerr=[band["mean"] - band["low"], band["high"] - band["mean"]],
                        fmt="o",
                        color=colors[size],
                        ms=3,
                        capsize=2,
                    )
        ax.set_xscale("log")
        ax.set_title(f"{dataset}: train loss (lines, EMA) and held-out loss (dots)")
        ax.set_xlabel("tokens seen")
        finish_panel(ax, panel)
    axes[0][0].set_ylabel("cross-entropy (nats/token)")
    axes[0][-1].legend(fontsize=8, title=f"size\n({BAND_LABEL})", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return plotted


def dedup_difference(table) -> list[tuple[str, float, float]]:
    """Per size: (size, params, deduplicated − standard final held-out loss), each side the
    mean over its seeds."""
    means = table.groupby(["size", "dataset"], sort=False).agg(
        params=("params", "first"), loss=("final_eval_loss", "mean")
    )
    rows = []
    for (size, dataset), row in means.iterrows():
        base = (size, dataset.removesuffix("-deduped"))
        if dataset.endswith("-deduped") and base in means.index:
            rows.append((size, int(row["params"]), float(row["loss"] - means.loc[base, "loss"])))
    return sorted(rows, key=lambda r: r[1])


def plot_dedup(rows, out: Path) -> None:
    plt = pyplot()
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
