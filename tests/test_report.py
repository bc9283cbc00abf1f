"""`suite report`: the table, fits, seed bands and ledger figures come from the runs' own files.

Plotting functions return the numbers they drew (`suite.report_plots.Plotted`), so these
tests check the data behind each figure rather than its pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_helpers import (
    ALPHA,
    DATASETS,
    SIZES,
    STEPS,
    TOKENS_PER_STEP,
    C,
    E,
    fake_run,
    fake_sweep,
    heldout_nll,
    synthetic_ledger,
    write_ledger,
)

from suite.report import LEDGER_SOURCE, collect_runs, write_report
from suite.report_dynamics import plot_dynamics, plot_params
from suite.report_fit import bootstrap_alpha, fit_power_law, fit_saturating
from suite.report_ledger import chosen_steps, current_rows, heldout_final, read_ledger
from suite.report_plots import plot_losses
from suite.report_scaling import fit_source, plot_scaling
from suite.report_seeds import seed_band

# Chinchilla's fitted constants (Hoffmann et al. 2022, eq. 10): a realistic curvature.
TRUE_E, TRUE_A, TRUE_ALPHA = 1.69, 406.4, 0.34
N_GRID = np.geomspace(1e6, 1e10, 10)


def _truth(n):
    return TRUE_E + TRUE_A * n**-TRUE_ALPHA


def test_power_law_fit_recovers_a_known_exponent():
    params = np.geomspace(1e5, 1e8, 8)
    losses = 12.0 * params**-0.076
    fit = fit_power_law(params, losses)
    assert fit.alpha == pytest.approx(0.076, rel=1e-9)
    assert fit.a == pytest.approx(12.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_saturating_fit_is_exact_on_exact_data_and_its_spreads_collapse():
    fit = fit_saturating(N_GRID, _truth(N_GRID))
    assert (fit.e, fit.a, fit.alpha) == pytest.approx((TRUE_E, TRUE_A, TRUE_ALPHA), rel=1e-5)
    assert fit.r2 == pytest.approx(1.0)
    low, high = fit.band(N_GRID)
    np.testing.assert_allclose(low, _truth(N_GRID), rtol=1e-5)
    np.testing.assert_allclose(high, _truth(N_GRID), rtol=1e-5)
    alpha_low, alpha_high, draws = bootstrap_alpha(N_GRID, _truth(N_GRID))
    assert draws > 150
    assert (alpha_low, alpha_high) == pytest.approx((TRUE_ALPHA, TRUE_ALPHA), rel=1e-5)


@pytest.mark.parametrize("noise_seed", [0, 1, 2])
def test_saturating_fit_recovers_e_a_alpha_from_noisy_losses(noise_seed):
    """0.3 % noise on each loss (seed-to-seed spread of small models): E within 0.1 nats, α
    within 0.02, A within 20 %, and each truth within 3 of the fit's standard errors."""
    rng = np.random.default_rng(noise_seed)
    losses = _truth(N_GRID) * (1 + rng.normal(0, 0.003, len(N_GRID)))
    fit = fit_saturating(N_GRID, losses)
    assert fit.e == pytest.approx(TRUE_E, abs=0.1)
    assert fit.alpha == pytest.approx(TRUE_ALPHA, abs=0.02)
    assert fit.a == pytest.approx(TRUE_A, rel=0.2)
    for value, se, truth in (
        (fit.e, fit.e_se, TRUE_E),
        (fit.a, fit.a_se, TRUE_A),
        (fit.alpha, fit.alpha_se, TRUE_ALPHA),
    ):
        assert 0 < se < abs(truth)
        assert abs(value - truth) < 3 * se
    low, high = fit.band(N_GRID)
    assert (low < fit(N_GRID)).all() and (fit(N_GRID) < high).all()
    # The truth lies within three of the curve's standard errors, everywhere.
    assert (np.abs(fit(N_GRID) - _truth(N_GRID)) < 3 * (high - low) / 2).all()
    alpha_low, alpha_high, _ = bootstrap_alpha(N_GRID, losses)
    assert alpha_low < fit.alpha < alpha_high


def test_saturating_fit_keeps_e_non_negative_and_refuses_too_few_sizes():
    # The best unconstrained fit is E = -0.3: the bound holds E at 0.
    below = 12.0 * N_GRID**-0.076 - 0.3
    assert 0.0 <= fit_saturating(N_GRID, below).e < 1e-3
    with pytest.raises(ValueError, match="at least 4 sizes"):
        fit_saturating(N_GRID[:3], _truth(N_GRID[:3]))


def test_report_table_plots_and_summary_without_a_ledger(tmp_path):
    sizes = {"a": 1_000, "b": 10_000, "c": 100_000}
    for size, params in sizes.items():
        fake_run(tmp_path, size, "corpus", params, 10 * params**-0.1)
        fake_run(tmp_path, size, "corpus-deduped", params, 10 * params**-0.1 + 0.05)
    out = write_report(tmp_path)
    table = pd.read_csv(out / "runs.csv")
    assert len(table) == 6
    row = table[(table["size"] == "b") & (table["dataset"] == "corpus")].iloc[0]
    assert row["final_eval_loss"] == pytest.approx(10 * 10_000**-0.1)
    assert row["final_train_loss"] == pytest.approx(4.0)
    assert row["tokens"] == 10 * 4 * 8 and row["steps"] == 10
    assert not math.isnan(row["final_eval_loss"])
    for name in ("loss_vs_tokens.png", "scaling.png", "dedup_difference.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("dynamics_*.png")) and not (out / "ledger_final.csv").exists()
    summary = (out / "summary.md").read_text()
    # Non-embedding = params / 2 here: the exponent is the same as over total parameters.
    assert "α=0.100" in summary and "+0.0500" in summary
    assert "needs ≥4 sizes" in summary  # three sizes: the saturating form is not fitted
    assert "`suite eval` has not run" in summary


def test_seed_band_is_the_mean_min_and_max_of_the_replicates():
    frame = pd.DataFrame(
        {"size": ["a"] * 3 + ["b"], "step": [5, 5, 5, 5], "loss": [3.0, 3.6, 3.3, 2.0]}
    )
    band = seed_band(frame, ["size", "step"], "loss").set_index("size")
    assert band.loc["a", ["mean", "low", "high", "seeds"]].tolist() == pytest.approx(
        [3.3, 3.0, 3.6, 3]
    )
    assert band.loc["b", ["mean", "low", "high", "seeds"]].tolist() == pytest.approx(
        [2.0, 2.0, 2.0, 1]
    )


def test_replicate_runs_keep_one_row_each_and_plot_as_one_band(tmp_path):
    seeds = (1, 2, 3)
    fake_sweep(tmp_path, seeds=seeds)
    table, curves, _ = collect_runs(tmp_path)
    assert len(table) == len(SIZES) * len(DATASETS) * len(seeds)  # runs.csv: one per run
    assert sorted(set(table["init_seed"])) == [1, 2, 3]
    assert sorted(set(table["data_seed"])) == [2, 3, 4]

    losses = plot_losses(table, curves, tmp_path / "loss.png")
    lines = losses.panel("stdlib").lines
    assert len(lines) == len(SIZES)  # one mean line per size, not one per seed
    # fake_run offsets each seed's train loss by 0.01·seed: the band spans seeds 1 and 3.
    assert lines[0].seeds.tolist() == [3] * len(lines[0].x)
    np.testing.assert_allclose(lines[0].high - lines[0].low, 0.02, atol=1e-9)

    finals = table.rename(columns={"final_eval_loss": "loss"})
    plotted = plot_scaling(fit_source("training", finals), tmp_path / "scaling.png")
    standard = plotted.panel("training").line("stdlib")
    for size, (_, non_embedding) in SIZES.items():
        spread = finals[(finals["size"] == size) & (finals["dataset"] == "stdlib")]["loss"]
        at = standard.x.tolist().index(non_embedding)
        assert standard.low[at] == pytest.approx(spread.min())
        assert standard.high[at] == pytest.approx(spread.max())
        assert standard.y[at] == pytest.approx(spread.mean())


def test_dynamics_plot_one_line_per_size_with_step0_on_the_log_axis(tmp_path):
    ledger = synthetic_ledger()
    rows = ledger[(ledger["task"] == "ppl/heldout") & (ledger["metric"] == "nll")]
    plotted = plot_dynamics(rows, "ppl/heldout", "nll", tmp_path)
    assert plotted.path == tmp_path / "dynamics_ppl-heldout_nll.png" and plotted.path.exists()
    ordered = sorted(SIZES, key=lambda s: SIZES[s][1])
    for dataset in DATASETS:
        by_step = plotted.panel(f"{dataset} vs step")
        assert [line.label for line in by_step.lines] == ordered
        assert by_step.xscale == "symlog" and by_step.xlim[0] < 0  # step0 is inside the axes
        for line in by_step.lines:
            assert line.x.tolist() == list(STEPS)
            non_embedding = SIZES[line.label][1]
            expected = [heldout_nll(non_embedding, s, dataset) for s in STEPS]
            np.testing.assert_allclose(line.y, expected)
        by_tokens = plotted.panel(f"{dataset} vs tokens")
        assert by_tokens.lines[0].x.tolist() == [s * TOKENS_PER_STEP for s in STEPS]
        assert by_tokens.xscale == "symlog" and by_tokens.xlim[0] < 0
    difference = plotted.panel("stdlib-deduped − stdlib vs tokens")
    assert len(difference.lines) == len(SIZES)
    for line in difference.lines:
        np.testing.assert_allclose(line.y, 0.03)  # report_helpers.DEDUP_SHIFT


def test_params_plot_compares_sizes_at_chosen_steps(tmp_path):
    assert chosen_steps(STEPS) == [1, 4, 16, 40, 160]
    ledger = synthetic_ledger()
    rows = ledger[(ledger["task"] == "suite_continuation") & (ledger["metric"] == "acc")]
    plotted = plot_params(rows, "suite_continuation", "acc", tmp_path)
    assert plotted.path.name == "params_suite_continuation_acc.png" and plotted.path.exists()
    lines = plotted.panel("stdlib").lines
    assert [line.label.split()[0] for line in lines] == [
        "step1",
        "step4",
        "step16",
        "step40",
        "step160",
    ]
    assert lines[-1].x.tolist() == sorted(n for _, n in SIZES.values())
    final = rows[(rows["step"] == 160) & (rows["dataset"] == "stdlib")].sort_values(
        "non_embedding_params"
    )
    np.testing.assert_allclose(lines[-1].y, final["value"])
    np.testing.assert_allclose(lines[-1].stderr, 0.01)  # the harness's stderr, as error bars


def test_stale_and_superseded_ledger_rows_are_ignored(tmp_path):
    ledger = synthetic_ledger()
    latest = ledger.iloc[[0]].assign(value=1.0, evaluated_at="2026-12-02T00:00:00Z")
    stale = ledger.iloc[[1]].assign(value=99.0, stale=True, evaluated_at="2026-12-03T00:00:00Z")
    older = ledger.iloc[[0]].assign(value=77.0, evaluated_at="2026-11-01T00:00:00Z")
    current = current_rows(pd.concat([ledger, latest, stale, older]))
    assert len(current) == len(ledger)
    assert 99.0 not in current["value"].tolist() and 77.0 not in current["value"].tolist()
    key = ledger.iloc[0][["run", "step", "task", "metric"]]
    mask = (current[["run", "step", "task", "metric"]] == key).all(axis=1)
    assert current.loc[mask, "value"].tolist() == [1.0]  # the newest evaluation wins


def test_report_with_a_ledger_writes_dynamics_fits_and_final_table(tmp_path):
    seeds = (1, 2)
    fake_sweep(tmp_path, seeds=seeds)
    ledger = synthetic_ledger(seeds=seeds, noise=0.01)
    final_nll = ledger[
        (ledger["step"] == STEPS[-1])
        & (ledger["task"] == "ppl/heldout")
        & (ledger["metric"] == "nll")
    ]
    poisoned = final_nll.assign(value=99.0, stale=True)  # replaced weights: must not show
    write_ledger(tmp_path, pd.concat([ledger, poisoned]))
    out = write_report(tmp_path)

    names = {p.name for p in out.glob("*.png")}
    for family in ("ppl-heldout_nll", "ppl-heldout_bits_per_byte", "suite_continuation_acc"):
        assert {f"dynamics_{family}.png", f"params_{family}.png"} <= names
    assert "dynamics_ppl-heldout_perplexity.png" not in names  # exp(nll): the same curve

    final = pd.read_csv(out / "ledger_final.csv")
    runs = len(SIZES) * len(DATASETS) * len(seeds)
    assert len(final) == runs * 4  # nll, bits_per_byte, perplexity, acc
    assert set(final["step"]) == {STEPS[-1]} and 99.0 not in final["value"].tolist()
    summary = (out / "summary.md").read_text()
    assert "`suite eval` has not run" not in summary
    assert "Seed replicates: 10 (size, dataset) groups with 2 seeds" in summary
    assert "ppl/heldout nll" in summary and "suite_continuation acc" in summary  # pivot
    assert "0.6884 ± 0.01" in summary  # acc of the largest size at the final step, ± stderr
    assert "![ppl/heldout nll during training](dynamics_ppl-heldout_nll.png)" in summary
    assert LEDGER_SOURCE in summary

    # The ledger's final nll feeds its own scaling fit, which finds the truth's exponent.
    current, _note = read_ledger(tmp_path)
    heldout = heldout_final(current).rename(columns={"value": "loss"})
    (standard, _deduped) = fit_source(LEDGER_SOURCE, heldout)
    assert standard.saturating.alpha == pytest.approx(ALPHA, abs=0.05)
    assert standard.saturating.e == pytest.approx(E + C / np.sqrt(1 + STEPS[-1]), abs=0.1)
