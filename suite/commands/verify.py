"""`suite verify REPO|RUN_DIR`: check published revisions against the run's manifest
(`--deep`: re-hash every file and recompute step0 from its recorded init recipe)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import ConfigError, SuiteError
from suite.publish.spec import DEFAULT_STORE, STORE_ENV


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite verify", description=__doc__)
    parser.add_argument("target", help="a repo (org/name) or a run directory")
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
    from suite.publish.publisher import TARGET_FILE
    from suite.publish.store import require_store
    from suite.publish.verify import render, verify_repo, verify_run_dir

    try:
        store = require_store(args.store) if args.store else None
        if (Path(args.target) / TARGET_FILE).is_file():
            report = verify_run_dir(Path(args.target), store, deep=args.deep)
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
