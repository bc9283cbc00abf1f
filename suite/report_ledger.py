"""Reading the evaluation ledger (`suite eval`'s `SweepDir.ledger_path`) for the report.

One ledger row is one (run, revision, task, metric) result with its provenance. The report
uses only current rows: `stale` rows (their weights were replaced after evaluation) are
dropped, and where a result was evaluated more than once the newest `evaluated_at` wins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from suite.rundir import SweepDir

#: The columns the report reads; a ledger without them is reported as unreadable.
NEEDED = (
    "run",
    "size",
    "dataset",
    "init_seed",
    "data_seed",
    "step",
    "tokens",
    "task",
    "metric",
    "value",
    "stderr",
    "non_embedding_params",
    "stale",
    "evaluated_at",
)
#: The task whose `nll` at the final step feeds the scaling fit.
HELDOUT = ("ppl/heldout", "nll")


def read_ledger(sweep_dir: str | Path):
    """(current rows, note): the ledger without stale or superseded rows, or (None, why not)."""
    import pandas as pd

    path = SweepDir(Path(sweep_dir)).ledger_path
    if not path.exists():
        return None, f"`suite eval` has not run: no evaluation ledger at `{path}`."
    try:
        ledger = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        return None, f"the evaluation ledger `{path}` is unreadable: {err}"
    missing = [column for column in NEEDED if column not in ledger.columns]
    if missing:
        return None, f"the evaluation ledger `{path}` lacks columns {', '.join(missing)}"
    return current_rows(ledger), f"Evaluation results from `{path}`."


def current_rows(ledger):
    """Rows not marked stale; of repeated evaluations of one result, the newest."""
    fresh = ledger[~ledger["stale"].astype(bool)]
    fresh = fresh.sort_values("evaluated_at", kind="stable")
    return fresh.drop_duplicates(["run", "step", "task", "metric"], keep="last").reset_index(
        drop=True
    )


def plotted_metrics(ledger) -> list[tuple[str, str]]:
    """(task, metric) pairs worth a figure: every metric, except perplexity where the same
    task has nll (perplexity is exp(nll): the same curve on another scale)."""
    pairs = sorted(set(zip(ledger["task"], ledger["metric"], strict=True)))
    with_nll = {task for task, metric in pairs if metric == "nll"}
    return [(t, m) for t, m in pairs if not (m == "perplexity" and t in with_nll)]


def final_rows(ledger):
    """Each run's rows at the last step the ledger holds for it."""
    last = ledger.groupby("run")["step"].transform("max")
    return ledger[ledger["step"] == last].reset_index(drop=True)


def format_estimate(value: float, stderr: float) -> str:
    if stderr is None or not np.isfinite(stderr):
        return f"{value:.4g}"
    return f"{value:.4g} ± {stderr:.2g}"


def final_table(ledger):
    """Long table: one row per run × task × metric at the run's final step."""
    final = final_rows(ledger)
    columns = ["run", "size", "dataset", "init_seed", "data_seed", "step", "task", "metric"]
    table = final[columns + ["value", "stderr"]].copy()
    table["result"] = [
        format_estimate(v, s) for v, s in zip(table["value"], table["stderr"], strict=True)
    ]
    order = final.sort_values(["dataset", "non_embedding_params", "run"])["run"].unique()
    table["run"] = table["run"].astype("category").cat.set_categories(order)
    return table.sort_values(["run", "task", "metric"]).reset_index(drop=True)


def final_pivot(table):
    """Runs down, `task metric` across, `value ± stderr` in the cells (from `final_table`)."""
    wide = table.assign(column=table["task"] + " " + table["metric"]).pivot(
        index="run", columns="column", values="result"
    )
    wide.columns.name = None
    return wide.fillna("").reset_index()


def chosen_steps(steps, count: int = 5) -> list[int]:
    """About `count` steps spread evenly in log(step) over those given, always the last:
    the moments at which the params plots compare sizes."""
    available = np.array(sorted({int(s) for s in steps if s > 0}))
    if len(available) == 0:
        return []
    targets = np.geomspace(available[0], available[-1], count)
    picked = {int(available[np.argmin(np.abs(np.log(available) - np.log(t)))]) for t in targets}
    return sorted(picked | {int(available[-1])})


def heldout_final(ledger):
    """Per run, `ppl/heldout` nll at its final step: the ledger's input to the scaling fit."""
    task, metric = HELDOUT
    rows = final_rows(ledger[(ledger["task"] == task) & (ledger["metric"] == metric)])
    return rows[["run", "size", "dataset", "non_embedding_params", "step", "value"]]
