"""`suite prepare`: build the suite's dataset(s) — a thin argparse layer over `data_order.prepare`.

Two modes:

    suite prepare [hydra overrides]          # the suite's datasets (default: the mini suite),
                                             # exactly as `suite sweep` would build them
    suite prepare --input PATH [flags]       # one corpus, every knob as a flag

Sharded at cluster scale (e.g. a SLURM array of N tasks), then merged:

    suite prepare --input corpus/ --shards N --shard $SLURM_ARRAY_TASK_ID   # each task
    suite prepare --input corpus/ --shards N                                # merge (after all)

Train the tokenizer once before the array (`suite prepare ... --tokenizer-only`), or give
`--tokenizer`, so the tasks do not each train it.
"""

from __future__ import annotations

import argparse
import sys

from suite.cli_fields import add_dataclass_arguments, dataclass_from_args
from suite.errors import SuiteError

#: Flags whose name is not the field's `--field-name` (kept as users type them).
PREPARE_FLAGS = {
    "inputs": "--input",
    "num_shards": "--shards",
    "out_dir": "--out",
    "emit_standard": "--deduped-only",
}


def build_parser() -> argparse.ArgumentParser:
    from data_order import PrepareConfig

    p = argparse.ArgumentParser(
        prog="suite prepare",
        description="Tokenize, deduplicate, pack and order the suite's datasets. Without --input: "
        "build the datasets of the suite config (Hydra overrides, e.g. `suite=mini seq_len=256`) "
        "where `suite sweep` and `suite train` look for them; with --input: one corpus, flags.",
        epilog="Flags marked (fp) enter the dataset's fingerprint. Every flag but the overrides, "
        "--shard and --tokenizer-only is a field of data_order.PrepareConfig.",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of the suite config (suite mode, when --input is not given)",
    )
    add_dataclass_arguments(
        p,
        PrepareConfig,
        exclude=("shard_index",),
        flags=PREPARE_FLAGS,
        overrides={
            "inputs": {"metavar": "PATH"},
            "emit_standard": {"help": "with --dedup: do not emit the standard dataset"},
        },
    )
    p.add_argument(
        "--shard", help="tokenize only shard I of --shards (0-based; 'I' or 'I/N'), then stop"
    )
    p.add_argument(
        "--tokenizer-only", action="store_true", help="only train/cache the tokenizer, then stop"
    )
    return p


def config_from_args(args: argparse.Namespace):
    from data_order import DataConfigError, PrepareConfig

    num_shards, shard_index = args.num_shards, None
    if args.shard is not None:
        index, _, total = args.shard.partition("/")
        try:
            shard_index = int(index)
            num_shards = int(total) if total else num_shards
        except ValueError:
            raise DataConfigError(
                "--shard", args.shard, "give I or I/N with integers, e.g. --shard 3/8"
            ) from None
    return dataclass_from_args(PrepareConfig, args, num_shards=num_shards, shard_index=shard_index)


def _describe(path) -> str:
    from data_order import open_dataset

    ds = open_dataset(path)
    counts = ds.meta["counts"]
    return (
        f"{path}  fingerprint={ds.fingerprint}  samples={ds.num_samples} x {ds.seq_len + 1} tokens  "
        f"documents={counts['train_documents']} train / {counts['eval_documents']} eval / "
        f"{counts['removed_documents']} removed"
    )


def _failed(err: Exception) -> int:
    """One line; exit 1 for a full disk (a fault, not a wrong input), 2 for the rest —
    a damaged input file included, like an invalid setting: the user fixes the input."""
    from data_order.errors import NoSpaceError

    print(f"suite prepare: {err}", file=sys.stderr)
    return 1 if isinstance(err, NoSpaceError) else 2


def _suite_mode(overrides: list[str], workers: int | None) -> int:
    from data_order import DataError
    from suite.datasets import build_datasets, check_prepared_pairs
    from suite.settings import load_suite

    try:
        cfg = load_suite(overrides)
        for path in build_datasets(cfg, workers=workers):
            print(_describe(path))
        check_prepared_pairs(cfg)
    except (SuiteError, DataError) as err:
        return _failed(err)
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_intermixed_args(argv)
    if args.inputs is None and not args.tokenizer_only and args.shard is None:
        return _suite_mode(args.overrides, args.workers or None)
    if args.overrides:
        print(
            f"suite prepare: {' '.join(args.overrides)}: Hydra overrides select the suite's "
            "datasets and cannot be combined with --input; use one mode",
            file=sys.stderr,
        )
        return 2
    from data_order import DataError, prepare
    from data_order.build import prepare_tokenizer

    try:
        cfg = config_from_args(args)
        if args.tokenizer_only:
            print(prepare_tokenizer(cfg))
            return 0
        paths = prepare(cfg)
        if cfg.shard_index is not None:
            print(f"shard {cfg.shard_index}/{cfg.num_shards}: {paths[0]}")
            return 0
        for path in paths:
            print(_describe(path))
    except (SuiteError, DataError) as err:
        return _failed(err)
    return 0
