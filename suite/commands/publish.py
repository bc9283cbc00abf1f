"""`suite publish RUN_DIR`: finish publishing a run's queued checkpoints and training states
(pending ones after a Hub outage or rate limits, or everything a crash left queued)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from suite.errors import ConfigError, SuiteError
from suite.publish.retry import RetryPolicy


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite publish", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="run directory holding publish/ (its queues)")
    parser.add_argument(
        "--store",
        help="local:/path, hub or hub:https://endpoint, overriding the run's own store "
        "(must match publish/target.json; default: that store)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=RetryPolicy.drain_timeout_s,
        metavar="SECONDS",
        help="how long to keep retrying checkpoints and training states the store refuses for "
        "now (down, rate limited) before giving up with the queues kept (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from suite.publish.pending import KINDS, finish_pending
    from suite.publish.store import require_store

    try:
        retry = RetryPolicy(drain_timeout_s=args.wait)
        store = require_store(args.store) if args.store else None
        queued = [(kind.noun, len(kind.queued(args.run_dir))) for kind in KINDS]
        print(f"queued in {args.run_dir}: {_counts(queued)}")
        publishers = finish_pending(args.run_dir, store, retry)
    except ConfigError as err:
        if err.field == "drain_timeout_s":
            err = ConfigError("--wait", err.value, err.fix)
        print(f"suite publish: {err}", file=sys.stderr)
        return 2
    except SuiteError as err:
        print(f"suite publish: {err}", file=sys.stderr)
        return 1
    done = [(p.noun, p.published) for p in publishers if p.published]
    shown = ", ".join(f"{len(revs)} {noun}(s) ({', '.join(revs)})" for noun, revs in done)
    print(f"published and verified: {shown or 'nothing left to do'}")
    return 0


def _counts(counts: list[tuple[str, int]]) -> str:
    """`4 checkpoint(s), 1 training state(s)`."""
    return ", ".join(f"{n} {noun}(s)" for noun, n in counts)
