"""`suite publish RUN_DIR`: finish publishing a run's queued checkpoints (after a crash)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from suite.errors import ConfigError, SuiteError
from suite.publish.retry import RetryPolicy


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite publish", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="run directory holding publish/queue/")
    parser.add_argument(
        "--store",
        help="local:/path, hub or hub:https://endpoint, overriding the run's own store "
        "(must match publish/target.json; default: that store)",
    )
    parser.add_argument(
        "--attempts", type=int, default=RetryPolicy.max_attempts, help="attempts per checkpoint"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from suite.publish.publisher import pending_entries, publish_pending, read_target
    from suite.publish.store import require_store

    try:
        store = require_store(args.store) if args.store else None
        retry = RetryPolicy(max_attempts=args.attempts)
        read_target(args.run_dir)  # a clear error for a dir that never published
        pending = pending_entries(args.run_dir)
        print(f"{len(pending)} checkpoint(s) queued in {args.run_dir}")
        publisher = publish_pending(args.run_dir, store, retry)
    except ConfigError as err:
        print(f"suite publish: {err}", file=sys.stderr)
        return 2
    except SuiteError as err:
        print(f"suite publish: {err}", file=sys.stderr)
        return 1
    print(f"published and verified: {', '.join(publisher.published) or 'nothing left to do'}")
    return 0
