"""`python -m data_order.order_cli DATASET`: build (or rebuild) a prepared dataset's order
artifacts ahead of the runs (`order_store.py`), e.g. every data seed of a sweep for the
epochs its `train_steps x global_batch` reach; the command a damaged artifact's error names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_order.dataset import PackedDataset
from data_order.errors import DataConfigError, DataError


def main(argv: list[str] | None = None) -> int:
    """Build (or `--rebuild`) a prepared dataset's order artifacts ahead of the runs."""
    parser = argparse.ArgumentParser(
        prog="python -m data_order.order_cli", description=main.__doc__
    )
    parser.add_argument("dataset", help="a dataset folder made by `suite prepare`")
    parser.add_argument(
        "--seed", type=int, action="append", help="order seed (repeat; default: the dataset's)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs 0..E-1 (default 1)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if recorded")
    args = parser.parse_args(argv)
    try:
        if not args.dataset.strip():
            raise DataConfigError("dataset", args.dataset, "give a dataset folder (suite prepare)")
        for seed in args.seed or []:
            if not 0 <= seed < 2**63:  # numpy's SeedSequence: non-negative; run.json: 63 bits
                raise DataConfigError("--seed", seed, "use an integer in [0, 2**63 - 1]")
        data = PackedDataset(Path(args.dataset))
        defined = data.num_positions // data.num_samples
        if not 1 <= args.epochs <= defined:
            raise DataConfigError("--epochs", args.epochs, f"the dataset defines 1..{defined}")
        for seed in dict.fromkeys(args.seed or [data.seed]):
            view = data.reordered(seed)
            for epoch in range(args.epochs):
                key = view.orders.key(seed, epoch)
                if args.rebuild or view.orders.record(key) is None:
                    view.orders.build(key, view.fingerprint, rebuild=args.rebuild)
                else:  # recorded: refuse one cut short or unreadable (it names --rebuild)
                    view.orders.permutation(seed, epoch, view.fingerprint)
                print(view.orders.path(key))
    except DataError as err:
        print(f"order_cli: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
