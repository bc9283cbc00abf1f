"""`suite verify REPO|RUN_DIR`: check published revisions against the run's manifest
(`--deep`: re-hash every file and recompute step0 from its recorded init recipe).
`suite verify --data PATH`: check a dataset's files against the sha256 recorded at prepare
time and every token id against its vocabulary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import ConfigError, SuiteError
from suite.publish.spec import DEFAULT_STORE, STORE_ENV


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite verify", description=__doc__)
    parser.add_argument("target", nargs="?", help="a repo (org/name) or a run directory")
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="instead: check a dataset (prepare folder or pre-shuffled .bin/.idx prefix) — "
        "sizes and sha256 recorded at prepare time, index structure, every token id < vocab",
    )
    parser.add_argument(
        "--store",
        help="local:/path, hub or hub:https://endpoint "
        f"(default: the run dir's target, else ${STORE_ENV} or {DEFAULT_STORE})",
    )
    parser.add_argument(
        "--deep",
        action="store_true",
        help="download every revision and re-hash its bytes, and recompute step0 from the "
        "init recipe its metadata records (bitwise)",
    )
    parser.add_argument("--all", action="store_true", help="also list the checks that passed")
    args = parser.parse_args(argv)
    if (args.data is None) == (args.target is None):
        parser.error("give a repo or run directory, or --data PATH (one of them)")
    if args.data is not None:
        return _verify_data(args.data, args.all)
    from suite.publish.publisher import TARGET_FILE
    from suite.publish.store import require_store
    from suite.publish.verify import render, verify_repo, verify_run_dir

    try:
        store = require_store(args.store) if args.store else None
        if (Path(args.target) / TARGET_FILE).is_file():
            report = verify_run_dir(Path(args.target), store, deep=args.deep)
        elif Path(args.target).is_absolute() or Path(args.target).exists():
            raise ConfigError(
                "target",
                args.target,
                f"not a run directory (no {TARGET_FILE}) nor a repo (org/name); give a run "
                "directory that published, e.g. suite_runs/mini/runs/mini-160k",
            )
        else:
            report = verify_repo(store or require_store(None), args.target, deep=args.deep)
    except ConfigError as err:
        print(f"suite verify: {err}", file=sys.stderr)
        return 2
    except SuiteError as err:
        print(f"suite verify: {err}", file=sys.stderr)
        return 1
    print(render(report, show_ok=args.all))
    return 0 if report.ok else 1


def _verify_data(path: str, show_ok: bool) -> int:
    """One line per problem on stdout; exit 1 on damage, 2 when PATH is no dataset."""
    from data_order import DataError
    from data_order.verify import verify_dataset

    try:
        report = verify_dataset(path)
    except DataError as err:
        print(f"suite verify: {err}", file=sys.stderr)
        return 2
    for line in report.checked if show_ok else []:
        print(f"ok      {line}")
    for line in report.problems:
        print(f"DAMAGED {line}")
    verdict = "intact" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"data {report.path}: {verdict} ({'; '.join(report.checked)})")
    return 0 if report.ok else 1
