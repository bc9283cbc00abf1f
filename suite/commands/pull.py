"""`suite pull REPO --step N`: print the local folder of a published checkpoint."""

from __future__ import annotations

import argparse
import math
import sys

from suite.errors import ConfigError, SuiteError
from suite.publish.spec import DEFAULT_STORE, STORE_ENV


def _token_count(text: str) -> int:
    """Token counts are large: accept 6.3e9 as well as 6300000000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of tokens") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole, non-negative number of tokens")
    return int(value)


def _step(text: str) -> int:
    """An optimizer step: `step{N}` revisions have N >= 0 (step0 is the initialization)."""
    try:
        value = int(text.removeprefix("step"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a step number (e.g. 1000)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: steps start at 0 (the initialization)")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite pull", description=__doc__)
    parser.add_argument("repo", help="repo of the run, e.g. org/pythia-70m-deduped")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--step", type=_step, help="optimizer step of the checkpoint (1000 or step1000)"
    )
    which.add_argument(
        "--tokens", type=_token_count, help="tokens seen by the checkpoint (e.g. 6.3e9)"
    )
    parser.add_argument("--nearest", action="store_true", help="take the closest published one")
    parser.add_argument(
        "--store",
        help=f"local:/path, hub or hub:https://endpoint (default: ${STORE_ENV} or {DEFAULT_STORE})",
    )
    args = parser.parse_args(argv)
    from suite.publish.pull import pull

    try:
        path = pull(
            args.repo, args.step, tokens=args.tokens, nearest_ok=args.nearest, store=args.store
        )
    except ConfigError as err:
        print(f"suite pull: {err}", file=sys.stderr)
        return 2
    except SuiteError as err:
        print(f"suite pull: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0
