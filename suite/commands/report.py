"""`suite report SWEEP_DIR`: runs table (CSV), loss and scaling plots (PNG), summary (Markdown)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import SuiteError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite report",
        description="Summarise a sweep from its runs' own metrics and, once `suite eval` has "
        "run, its evaluation ledger: runs.csv, loss_vs_tokens.png, scaling.png (final held-out "
        "loss vs non-embedding parameters: E + A·N^-α with its ±1 SE band, and the pure power "
        "law), dedup_difference.png, summary.md, and from the ledger "
        "dynamics_<task>_<metric>.png, params_<task>_<metric>.png and ledger_final.csv.",
    )
    parser.add_argument("sweep_dir", help="the sweep directory, e.g. suite_runs/mini")
    parser.add_argument("--out", default=None, help="output folder (default SWEEP_DIR/report)")
    args = parser.parse_args(argv)
    if Path(args.sweep_dir).exists() and not Path(args.sweep_dir).is_dir():
        print(
            f"suite report: sweep_dir={args.sweep_dir!r}: a file, not a sweep directory; give "
            "a sweep directory such as suite_runs/mini",
            file=sys.stderr,
        )
        return 2
    try:
        from suite.report import write_report

        out = write_report(args.sweep_dir, args.out)
    except SuiteError as err:
        print(f"suite report: {err}", file=sys.stderr)
        return 2
    print((out / "summary.md").read_text())
    print(f"report written to {out}/ (runs.csv, summary.md, *.png)")
    return 0
