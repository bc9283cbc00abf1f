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

from suite.errors import SuiteError


def build_parser() -> argparse.ArgumentParser:
    from data_order.config import DEDUP_METHODS

    p = argparse.ArgumentParser(
        prog="suite prepare",
        description="Tokenize, deduplicate, pack and order the suite's datasets. Without --input: "
        "build the datasets of the suite config (Hydra overrides, e.g. `suite=mini seq_len=256`) "
        "where `suite sweep` and `suite train` look for them; with --input: one corpus, flags.",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of the suite config (suite mode, when --input is not given)",
    )
    p.add_argument(
        "--input",
        dest="inputs",
        action="append",
        metavar="PATH",
        help="file, folder or glob (repeatable, in order); 'stdlib' = this Python's stdlib (default)",
    )
    p.add_argument(
        "--text-field", default="text", help="JSON key / Parquet column of the text (default: text)"
    )
    p.add_argument(
        "--tokenizer", help="tokenizer.json to use; default: train a byte-level BPE on the corpus"
    )
    p.add_argument(
        "--vocab-size", type=int, default=8192, help="vocabulary of the trained BPE (default 8192)"
    )
    p.add_argument(
        "--eos-token",
        help="end-of-document token (default: <|endoftext|>, </s>, ... whichever exists)",
    )
    p.add_argument(
        "--seq-len",
        type=int,
        default=2048,
        help="tokens per sample; samples hold seq_len+1 (default 2048)",
    )
    p.add_argument(
        "--seed", type=int, default=1234, help="seed of the global order (default 1234, Pythia's)"
    )
    p.add_argument(
        "--dedup",
        choices=DEDUP_METHODS,
        default="none",
        help="also emit <name>-deduped without exact (exact) or exact+near (minhash) duplicates",
    )
    p.add_argument(
        "--deduped-only", action="store_true", help="with --dedup: do not emit the standard dataset"
    )
    p.add_argument(
        "--minhash-threshold",
        type=float,
        default=0.87,
        help="near-duplicate Jaccard threshold (0.87)",
    )
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (128)")
    p.add_argument("--shingle-size", type=int, default=5, help="tokens per MinHash shingle (5)")
    p.add_argument(
        "--eval-fraction", type=float, default=0.01, help="held-out fraction of documents (0.01)"
    )
    p.add_argument(
        "--eval-min-docs", type=int, default=4, help="at least this many held-out documents (4)"
    )
    p.add_argument(
        "--max-epochs", type=int, default=64, help="epochs the order is defined for (64)"
    )
    p.add_argument(
        "--global-batch", type=int, help="default global batch recorded for `suite batch`"
    )
    p.add_argument("--workers", type=int, default=0, help="tokenizing processes (0 = one per CPU)")
    p.add_argument(
        "--shards",
        dest="num_shards",
        type=int,
        default=1,
        help="input shards (contiguous file ranges)",
    )
    p.add_argument(
        "--shard", help="tokenize only shard I of --shards (0-based; 'I' or 'I/N'), then stop"
    )
    p.add_argument(
        "--tokenizer-only", action="store_true", help="only train/cache the tokenizer, then stop"
    )
    p.add_argument(
        "--out",
        dest="out_dir",
        default="data",
        help="folder receiving the dataset folder(s) (default data)",
    )
    p.add_argument("--name", help="dataset folder name (default: stdlib or corpus)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset with another fingerprint",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    return PrepareConfig(
        inputs=args.inputs or ["stdlib"],
        text_field=args.text_field,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        eos_token=args.eos_token,
        seq_len=args.seq_len,
        seed=args.seed,
        dedup=args.dedup,
        emit_standard=not args.deduped_only,
        minhash_threshold=args.minhash_threshold,
        num_perm=args.num_perm,
        shingle_size=args.shingle_size,
        eval_fraction=args.eval_fraction,
        eval_min_docs=args.eval_min_docs,
        max_epochs=args.max_epochs,
        global_batch=args.global_batch,
        workers=args.workers,
        num_shards=num_shards,
        shard_index=shard_index,
        out_dir=args.out_dir,
        name=args.name,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def _describe(path) -> str:
    from data_order import open_dataset

    ds = open_dataset(path)
    counts = ds.meta["counts"]
    return (
        f"{path}  fingerprint={ds.fingerprint}  samples={ds.num_samples} x {ds.seq_len + 1} tokens  "
        f"documents={counts['train_documents']} train / {counts['eval_documents']} eval / "
        f"{counts['removed_documents']} removed"
    )


def _suite_mode(overrides: list[str], workers: int | None) -> int:
    from data_order import DataError
    from data_order import prepare as prepare_dataset
    from suite.datasets import prepare_configs
    from suite.settings import load_suite

    try:
        cfg = load_suite(overrides)
        for prepare_cfg in prepare_configs(cfg, workers=workers):
            for path in prepare_dataset(prepare_cfg):
                print(_describe(path))
    except (SuiteError, DataError) as err:
        print(f"suite prepare: {err}", file=sys.stderr)
        return 2
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
        print(f"suite prepare: {err}", file=sys.stderr)
        return 2
    return 0
