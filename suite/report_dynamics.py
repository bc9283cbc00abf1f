"""Training dynamics from the evaluation ledger: one metric of one task across steps and sizes.

`dynamics_<task>_<metric>.png`: the metric against step (top row) and tokens (bottom row),
one panel per dataset plus a "deduplicated − standard" panel (the two runs of a size at
equal tokens), one line per size coloured by parameter count. The x axes are symlog with a
linear stretch below one step (linthresh 1; for tokens, one step's tokens) so step0 — the
initialization — sits at 0, left of the log-spaced steps, instead of vanishing off a log axis.

`params_<task>_<metric>.png`: the metric against non-embedding parameters at a handful of
published steps, one line per step, one panel per dataset.

Seed replicates are drawn as their mean with a min–max band (`suite.report_seeds`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from suite.report_ledger import chosen_steps
from suite.report_plots import (
    BAND_LABEL,
    Panel,
    Plotted,
    draw_band,
    file_part,
    finish_panel,
    pyplot,
    size_colors,
)
from suite.report_seeds import seed_band

#: Axis labels of the ledger's metrics (others are shown by name).
METRIC_LABELS = {
    "nll": "nll (nats/token)",
    "bits_per_byte": "bits per byte",
    "perplexity": "perplexity",
    "acc": "accuracy",
    "acc_norm": "accuracy (length-normalized)",
}


def dynamics_name(task: str, metric: str) -> str:
    return f"dynamics_{file_part(task)}_{file_part(metric)}.png"


def params_name(task: str, metric: str) -> str:
    return f"params_{file_part(task)}_{file_part(metric)}.png"


def _dedup_pairs(datasets: list[str]) -> list[tuple[str, str]]:
    """(standard, deduplicated) dataset pairs present in the ledger."""
    return [
        (d.removesuffix("-deduped"), d)
        for d in datasets
        if d.endswith("-deduped") and d.removesuffix("-deduped") in datasets
    ]


def _symlog(ax, linthresh: float, largest: float) -> None:
    """Symlog x axis, linear below `linthresh`: ticks at 0 and at the powers of ten from
    `linthresh` up (a tick inside the linear stretch would read as a log position)."""
    import matplotlib.ticker

    ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    ax.set_xlim(-0.3 * linthresh, largest * 1.3)
    first = int(np.ceil(np.log10(linthresh)))
    last = int(np.floor(np.log10(max(largest, linthresh))))
    ticks = [0.0] + [10.0**k for k in range(first, last + 1)]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def plot_dynamics(rows, task: str, metric: str, out_dir: Path) -> Plotted:
    """`rows`: the ledger's current rows of this (task, metric)."""
    plt = pyplot()
    datasets = list(dict.fromkeys(rows.sort_values("dataset")["dataset"]))
    pairs = _dedup_pairs(datasets)
    params = rows.groupby("size")["non_embedding_params"].first().to_dict()
    sizes = sorted(params, key=params.get)
    colors = size_colors(params)
    band = seed_band(rows, ["dataset", "size", "step", "tokens"], "value")
    trained = rows[rows["step"] > 0]
    # The tokens axis turns logarithmic at one step's tokens, as the step axis does at step 1.
    tokens_per_step = float((trained["tokens"] / trained["step"]).min()) if len(trained) else 1.0
    axes_x = [("step", "step", 1.0), ("tokens", "tokens seen", max(tokens_per_step, 1.0))]

    columns = len(datasets) + len(pairs)
    fig, axes = plt.subplots(2, columns, figsize=(5.2 * columns, 8), squeeze=False)
    for row_axes in axes:  # datasets share a y axis; the difference panels have their own
        for ax in row_axes[1 : len(datasets)]:
            ax.sharey(row_axes[0])
    plotted = Plotted(out_dir / dynamics_name(task, metric))
    for row_axes, (x, xlabel, linthresh) in zip(axes, axes_x, strict=True):
        for ax, dataset in zip(row_axes, datasets, strict=False):
            panel = plotted.panels[f"{dataset} vs {x}"] = Panel(f"{dataset} vs {x}")
            for size in sizes:
                part = band[(band["dataset"] == dataset) & (band["size"] == size)]
                if len(part):
                    draw_band(ax, panel, part, x, size, colors[size], marker="o")
            ax.set_title(dataset)
            ax.set_xlabel(xlabel)
            _symlog(ax, linthresh, band[x].max())
            finish_panel(ax, panel)
        for ax, (standard, deduped) in zip(row_axes[len(datasets) :], pairs, strict=True):
            title = f"{deduped} − {standard} vs {x}"
            panel = plotted.panels[title] = Panel(title)
            means = band.pivot_table(index=["size", x], columns="dataset", values="mean")
            for size in sizes:
                if size not in means.index.get_level_values("size"):
                    continue
                diff = (means.loc[size, deduped] - means.loc[size, standard]).dropna()
                if len(diff):
                    frame = diff.rename("mean").reset_index()
                    frame["low"] = frame["high"] = frame["mean"]
                    frame["seeds"] = 1
                    draw_band(ax, panel, frame, x, size, colors[size], marker="o")
            ax.axhline(0, color="black", lw=0.8)
            ax.set_title(f"{deduped} − {standard} (at equal tokens, seed means)", fontsize=9)
            ax.set_xlabel(xlabel)
            _symlog(ax, linthresh, band[x].max())
            finish_panel(ax, panel)
        row_axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    # Outside the panels: accuracy curves rise into any corner a legend could take.
    axes[0][-1].legend(
        *axes[0][0].get_legend_handles_labels(),
        fontsize=8,
        title="size",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
    )
    fig.suptitle(
        f"{task} · {metric} during training (x: symlog, step0 at 0; {BAND_LABEL})", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(plotted.path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return plotted


def plot_params(rows, task: str, metric: str, out_dir: Path, steps=None) -> Plotted:
    """The metric against non-embedding parameters at `steps` (default: `chosen_steps`)."""
    plt = pyplot()
    datasets = list(dict.fromkeys(rows.sort_values("dataset")["dataset"]))
    steps = chosen_steps(rows["step"]) if steps is None else list(steps)
    chosen = rows[rows["step"].isin(steps)]
    keys = ["dataset", "step", "tokens", "non_embedding_params"]
    band = seed_band(chosen, keys, "value")
    # A harness accuracy on a few hundred items carries a standard error larger than most
    # differences between sizes: show it (one run's, averaged over seeds) as error bars.
    band = band.merge(chosen.groupby(keys, as_index=False)["stderr"].mean(), on=keys)
    colors = plt.cm.plasma(np.linspace(0.0, 0.85, max(len(steps), 1)))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(5.5 * len(datasets), 4.3), sharey=True, squeeze=False
    )
    plotted = Plotted(out_dir / params_name(task, metric))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        panel = plotted.panels[dataset] = Panel(dataset)
        for step, color in zip(steps, colors, strict=True):
            part = band[(band["dataset"] == dataset) & (band["step"] == step)]
            if len(part):
                tokens = int(part["tokens"].iloc[0])
                line = draw_band(
                    ax,
                    panel,
                    part,
                    "non_embedding_params",
                    f"step{step} ({tokens:,} tok)",
                    color,
                    marker="o",
                )
                line.stderr = part.sort_values("non_embedding_params")["stderr"].to_numpy(float)
                if np.isfinite(line.stderr).any():
                    ax.errorbar(
                        line.x,
                        line.y,
                        yerr=line.stderr,
                        fmt="none",
                        color=color,
                        capsize=2,
                        lw=0.8,
                        alpha=0.7,
                    )
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("non-embedding parameters")
        finish_panel(ax, panel)
    axes[0][0].set_ylabel(METRIC_LABELS.get(metric, metric))
    axes[0][-1].legend(
        fontsize=8,
        title="checkpoint",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
    )
    fig.suptitle(
        f"{task} · {metric} against size at chosen steps ({BAND_LABEL}; "
        "bars: ± the evaluation's standard error, where it gives one)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(plotted.path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return plotted
