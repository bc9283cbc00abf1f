"""`suite report SWEEP_DIR`: runs table (CSV), loss and scaling plots (PNG), summary (Markdown)."""

from __future__ import annotations

import argparse
import sys

from suite.errors import SuiteError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite report",
        description="Summarise a sweep from its runs' own metrics: runs.csv, loss_vs_tokens.png, "
        "scaling.png (final held-out loss vs parameters with a fitted power law), "
        "dedup_difference.png and summary.md.",
    )
    parser.add_argument("sweep_dir", help="the sweep directory, e.g. suite_runs/mini")
    parser.add_argument("--out", default=None, help="output folder (default SWEEP_DIR/report)")
    args = parser.parse_args(argv)
    try:
        from suite.report import write_report

        out = write_report(args.sweep_dir, args.out)
    except SuiteError as err:
        print(f"suite report: {err}", file=sys.stderr)
        return 2
    print((out / "summary.md").read_text())
    print(f"report written to {out}/ (runs.csv, summary.md, *.png)")
    return 0
