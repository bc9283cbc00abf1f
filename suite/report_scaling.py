"""Final loss against non-embedding parameters: the fits (`suite.report_fit`) and their figure.

Each source of final losses is one panel: the training metrics' last held-out evaluation,
and, when `suite eval` has run, the ledger's `ppl/heldout` nll at each run's final step.
Seeds of one size are averaged before fitting (one point per size, so a size with more
seeds does not weigh more), and drawn as min–max error bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suite.report_fit import (
    BOOTSTRAP_DRAWS,
    MIN_SIZES_SATURATING,
    PowerLaw,
    SaturatingPowerLaw,
    bootstrap_alpha,
    fit_power_law,
    fit_saturating,
)
from suite.report_plots import BAND_LABEL, Line, Panel, Plotted, finish_panel, pyplot
from suite.report_seeds import seed_band


@dataclass
class ScalingFit:
    """Both fits of one (source, dataset); a fit is None when there are too few sizes."""

    source: str
    dataset: str
    points: object  # DataFrame: non_embedding_params, mean, low, high, seeds
    power: PowerLaw | None
    saturating: SaturatingPowerLaw | None
    #: α's (16th, 84th) percentile over bootstrap refits on resampled sizes, and the draws.
    alpha_bootstrap: tuple[float, float, int] | None


def fit_source(source: str, finals) -> list[ScalingFit]:
    """Fits per dataset of `finals` (columns dataset, size, non_embedding_params, loss)."""
    fits = []
    for dataset in dict.fromkeys(finals["dataset"]):
        part = finals[(finals["dataset"] == dataset) & finals["loss"].notna()]
        points = seed_band(part, ["non_embedding_params"], "loss")
        if len(points) == 0:
            continue
        x, y = points["non_embedding_params"], points["mean"]
        power = fit_power_law(x, y) if len(points) >= 2 else None
        saturating = spread = None
        if len(points) >= MIN_SIZES_SATURATING:
            saturating = fit_saturating(x, y)
            spread = bootstrap_alpha(x, y)
        fits.append(ScalingFit(source, dataset, points, power, saturating, spread))
    return fits


def plot_scaling(fits: list[ScalingFit], out: Path) -> Plotted:
    plt = pyplot()
    sources = list(dict.fromkeys(f.source for f in fits))
    fig, axes = plt.subplots(
        1, max(len(sources), 1), figsize=(8 * max(len(sources), 1), 5.5), squeeze=False
    )
    plotted = Plotted(out)
    for ax, source in zip(axes[0], sources, strict=True):
        panel = plotted.panels[source] = Panel(source)
        for fit, color in zip(
            [f for f in fits if f.source == source], plt.cm.tab10.colors, strict=False
        ):
            points = fit.points
            x = points["non_embedding_params"].to_numpy(float)
            panel.lines.append(
                Line(
                    fit.dataset,
                    x,
                    points["mean"].to_numpy(float),
                    points["low"].to_numpy(float),
                    points["high"].to_numpy(float),
                    points["seeds"].to_numpy(int),
                )
            )
            ax.errorbar(
                x,
                points["mean"],
                yerr=[points["mean"] - points["low"], points["high"] - points["mean"]],
                fmt="o",
                color=color,
                ms=4,
                capsize=3,
                label=fit.dataset,
            )
            grid = np.geomspace(x.min(), x.max(), 60)
            if fit.saturating is not None:
                s = fit.saturating
                ax.plot(
                    grid,
                    s(grid),
                    "-",
                    color=color,
                    lw=1.3,
                    label=f"E + A·N^-α: E={s.e:.2f}, α={s.alpha:.2f}, R² {s.r2:.3f}",
                )
                low, high = s.band(grid)
                if np.isfinite(low).all():
                    ax.fill_between(grid, low, high, color=color, alpha=0.2, lw=0)
            if fit.power is not None:
                ax.plot(
                    grid,
                    fit.power(grid),
                    ":",
                    color=color,
                    lw=1,
                    label=f"a·N^-α: α={fit.power.alpha:.3f}, R² {fit.power.r2:.3f}",
                )
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters N")
        ax.set_ylabel("final held-out loss (nats/token)")
        ax.set_title(source, fontsize=10)
        finish_panel(ax, panel)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Final loss vs size. Dots: mean over seeds (bars: min–max). Solid: E + A·N^-α\n"
        "(shade: ±1 standard error from the fit's covariance). Dotted: pure power law a·N^-α.",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return plotted


def fits_markdown(fits: list[ScalingFit]) -> list[str]:
    """The fits as a Markdown table, with how their uncertainties were obtained."""
    lines = [
        "| source | dataset | sizes | E + A·N^(-α) | R² | α, bootstrap | a·N^(-α) | R² |",
        "|:--|:--|--:|:--|--:|:--|:--|--:|",
    ]
    for fit in fits:
        s, p, boot = fit.saturating, fit.power, fit.alpha_bootstrap
        saturating = (
            f"E={s.e:.3f}±{s.e_se:.2g}, A={s.a:.3g}±{s.a_se:.2g}, α={s.alpha:.3f}±{s.alpha_se:.2g}"
            if s
            else f"needs ≥{MIN_SIZES_SATURATING} sizes"
        )
        spread = f"{boot[0]:.3f}–{boot[1]:.3f}" if boot and boot[2] else ""
        power = f"a={p.a:.3g}, α={p.alpha:.3f}" if p else "needs ≥2 sizes"
        lines.append(
            f"| {fit.source} | {fit.dataset} | {len(fit.points)} | {saturating} | "
            f"{f'{s.r2:.3f}' if s else ''} | {spread} | {power} | {f'{p.r2:.3f}' if p else ''} |"
        )
    lines += [
        "",
        "N is non-embedding parameters; one point per size (the mean over its seeds). "
        "± is one standard error from `curve_fit`'s covariance (scaled by the residual "
        'variance); the plot\'s shade propagates it to the curve. "α, bootstrap" is the '
        f"16th–84th percentile of α over up to {BOOTSTRAP_DRAWS} refits on sizes drawn with "
        "replacement: how much the exponent depends on which sizes were trained. R² is on the "
        f"loss for both forms. Error bars: {BAND_LABEL}.",
    ]
    return lines
