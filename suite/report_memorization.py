"""Memorization in the report, from `suite memorization`'s per-sequence results.

`memorization.png`, one column per dataset:

- top: the memorized fraction (exact match of all continuation tokens) of the sampled
  sequences each checkpoint has already trained on, against step, one line per size. (The
  ledger's `memorization · exact_match` figure is over the whole fixed sample, seen or not.)
- bottom: at each run's last evaluated checkpoint, the memorized fraction against the steps
  since the sequence was trained on (N − (b + 1) for a row of batch b), in powers-of-two
  bins drawn at their lower edge; sequences not yet trained on (a range past the checkpoint,
  a never-seen control) at −1.

Every sample of the ledger (`memorization`, `memorization/<name>`) is pooled: a named
control past the last step adds to the bottom row's −1 bin and to no point of the top row.
Seed replicates: each run's fraction first, then the group's mean with its min–max band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from suite.memorization import read_sequences
from suite.report_plots import (
    BAND_LABEL,
    Panel,
    Plotted,
    draw_band,
    finish_panel,
    pyplot,
    size_colors,
)
from suite.report_seeds import seed_band

FIGURE = "memorization.png"
#: x of the "not yet trained on" bin in the bottom row.
UNSEEN_X = -1.0


def since_seen_bin(steps_since_seen):
    """Lower edge of each value's bin: −1 (not yet seen), 0, then 1, 2, 4, 8, …"""
    s = np.asarray(steps_since_seen, dtype=np.int64)
    edges = np.where(s >= 1, 2.0 ** np.floor(np.log2(np.maximum(s, 1))), 0.0)
    return np.where(s < 0, UNSEEN_X, edges)


def seen_fraction(sequences):
    """Per run and step: memorized fraction of the sequences already trained on."""
    seen = sequences[sequences["steps_since_seen"] >= 0]
    keys = ["run", "size", "dataset", "non_embedding_params", "step"]
    return seen.groupby(keys, as_index=False).agg(value=("exact", "mean"), n=("exact", "size"))


def since_seen_fraction(sequences):
    """Per run at its last evaluated step: memorized fraction per steps-since-seen bin."""
    last = sequences.groupby("run")["step"].transform("max")
    final = sequences[sequences["step"] == last].assign(
        since=lambda f: since_seen_bin(f["steps_since_seen"])
    )
    keys = ["run", "size", "dataset", "non_embedding_params", "step", "since"]
    return final.groupby(keys, as_index=False).agg(value=("exact", "mean"), n=("exact", "size"))


def plot_memorization(sequences, out_dir: Path) -> Plotted:
    """The figure (see the module docstring); `sequences` from `suite.memorization.read_sequences`."""
    import matplotlib.ticker as ticker

    plt = pyplot()
    datasets = sorted(sequences["dataset"].unique())
    params = sequences.groupby("size")["non_embedding_params"].first().to_dict()
    sizes = sorted(params, key=params.get)
    colors = size_colors(params)
    rows = [
        ("step", seed_band(seen_fraction(sequences), ["dataset", "size", "step"], "value")),
        ("since", seed_band(since_seen_fraction(sequences), ["dataset", "size", "since"], "value")),
    ]
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 8), squeeze=False)
    plotted = Plotted(Path(out_dir) / FIGURE)
    for row_axes, (x, band) in zip(axes, rows, strict=True):
        for ax, dataset in zip(row_axes, datasets, strict=True):
            title = f"{dataset} vs {x}"
            panel = plotted.panels[title] = Panel(title)
            for size in sizes:
                part = band[(band["dataset"] == dataset) & (band["size"] == size)]
                if len(part):
                    draw_band(ax, panel, part, x, size, colors[size], marker="o")
            ax.set_xscale("symlog", linthresh=1, linscale=0.5)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(dataset)
            ax.set_xlabel(
                "step (sequences already trained on)"
                if x == "step"
                else "steps since the sequence was trained on (last checkpoint; −1: not yet)"
            )
            finish_panel(ax, panel)
        row_axes[0].set_ylabel("memorized fraction (exact match)")
    axes[0][-1].legend(fontsize=8, title="size", title_fontsize=8, loc="upper left",
                       bbox_to_anchor=(1.02, 1))  # fmt: skip
    fig.suptitle(f"extractable memorization (x: symlog; {BAND_LABEL})", fontsize=11)
    fig.tight_layout()
    fig.savefig(plotted.path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return plotted


def memorization_section(eval_dir: Path, ledger, out_dir: Path) -> list[str]:
    """summary.md lines and `memorization.png` when the ledger holds memorization results
    with their per-sequence files; else no lines, and a figure left by an earlier report is
    removed."""
    figure = Path(out_dir) / FIGURE
    sequences = read_sequences(eval_dir, ledger) if ledger is not None and len(ledger) else None
    if sequences is None or sequences.empty:
        figure.unlink(missing_ok=True)
        return []
    plot_memorization(sequences, out_dir)
    final = seen_fraction(sequences)
    final = final[final["step"] == final.groupby("run")["step"].transform("max")]
    lines = [
        "## Memorization",
        "",
        "Extractable memorization (`suite memorization`): prompted with a training sequence's "
        "first tokens, does greedy decoding reproduce the next ones exactly? Top: the memorized "
        "fraction of the sampled sequences each checkpoint has trained on; bottom: at the last "
        "checkpoint, against the steps since the sequence was trained on.",
        "",
        f"![memorization]({FIGURE})",
        "",
    ]
    lines += [
        f"- `{run}` at step {step}: {value:.1%} of the {n} sampled sequences it was trained "
        "on are memorized"
        for run, step, value, n in zip(
            final["run"], final["step"], final["value"], final["n"], strict=True
        )
    ]
    return [*lines, ""]
