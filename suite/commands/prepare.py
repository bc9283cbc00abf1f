"""`suite prepare`: build the suite's dataset(s) — a thin argparse layer over `data_order.prepare`.

Two modes:

    suite prepare [hydra overrides]          # the suite's datasets (default: the mini suite),
                                             # exactly as `suite sweep` would build them
    suite prepare --input PATH [flags]       # one corpus, every knob as a flag

Sharded at cluster scale (e.g. a SLURM array of N tasks), then merged:

    suite prepare --input corpus/ --shards N --shard $SLURM_ARRAY_TASK_ID   # each task
    suite prepare --input corpus/ --shards N                                # merge (after all)

Train the tokenizer once before the array (`suite prepare ... --tokenizer-only`), or give
`--tokenizer`, so the tasks do not each train it. Or let prepare submit every stage itself,
chained by dependencies (`data_order/prepare_slurm.py`; re-submitting skips finished tasks):

    suite prepare --input corpus/ --shards N --dedup minhash --dedup-engine datatrove --launcher slurm
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


#: The `--slurm-*` flags (their argparse dests), refused without `--launcher slurm`.
SLURM_FLAGS = (
    "slurm_partition",
    "slurm_time",
    "slurm_cpus",
    "slurm_mem_per_cpu_gb",
    "slurm_tasks_per_job",
)


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
    slurm = p.add_argument_group("SLURM (with --input)")
    slurm.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: run here; slurm: submit every stage as SLURM jobs (tokenize array, the "
        "datatrove dedup stages, merge) chained by dependencies, print their job ids and exit",
    )
    slurm.add_argument("--slurm-partition", help="partition of the jobs (default: the cluster's)")
    slurm.add_argument("--slurm-time", default="24:00:00", help="time limit of each task")
    slurm.add_argument("--slurm-cpus", type=int, default=1, help="CPUs per task")
    slurm.add_argument("--slurm-mem-per-cpu-gb", type=int, default=2, help="memory per CPU (GB)")
    slurm.add_argument(
        "--slurm-tasks-per-job", type=int, default=1, help="tasks run in turn by each array job"
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
    from suite.data_seed import build_orders
    from suite.datasets import build_datasets, check_prepared_pairs
    from suite.settings import load_suite

    try:
        cfg = load_suite(overrides)
        paths = build_datasets(cfg, workers=workers)
        for path in paths:
            print(_describe(path))
        check_prepared_pairs(cfg)
        # Every (data seed, epoch) order the sweep reads, built once now rather than by the
        # first rank to reach it (data_order/order_store.py).
        build_orders(cfg, paths)
    except (SuiteError, DataError) as err:
        return _failed(err)
    return 0


def _launch_slurm(cfg, args: argparse.Namespace) -> int:
    try:
        from data_order.prepare_slurm import SlurmOptions, launch
    except ImportError as err:
        print(
            f"suite prepare: --launcher slurm needs datatrove ({err}); pip install datatrove",
            file=sys.stderr,
        )
        return 2

    options = SlurmOptions(
        partition=args.slurm_partition,
        time=args.slurm_time,
        cpus_per_task=args.slurm_cpus,
        mem_per_cpu_gb=args.slurm_mem_per_cpu_gb,
        tasks_per_job=args.slurm_tasks_per_job,
    )
    for stage, job_id in launch(cfg, options).items():
        # -1: every task of the stage had finished already (nothing submitted).
        print(f"{stage}: {'done' if job_id == '-1' else job_id}")
    return 0


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.launcher != "slurm":
        for dest in SLURM_FLAGS:
            if getattr(args, dest) != parser.get_default(dest):
                flag = "--" + dest.replace("_", "-")
                print(
                    f"suite prepare: {flag}={getattr(args, dest)}: a SLURM setting, used only "
                    "with --launcher slurm; add --launcher slurm or drop the flag",
                    file=sys.stderr,
                )
                return 2
    if args.launcher == "slurm" and args.inputs is None:
        print(
            "suite prepare: --launcher slurm needs --input (one corpus, every knob as a flag); "
            "suite mode (Hydra overrides) prepares locally: drop --launcher or give --input",
            file=sys.stderr,
        )
        return 2
    if args.inputs is None and not args.tokenizer_only and args.shard is None:
        return _suite_mode(args.overrides, args.workers or None)
    if args.overrides:
        print(
            f"suite prepare: {' '.join(args.overrides)}: Hydra overrides select the suite's "
            "datasets and cannot be combined with --input; use one mode",
            file=sys.stderr,
        )
        return 2
    if args.dedup_engine == "datatrove" and args.dedup != "minhash":
        print(
            f"suite prepare: --dedup-engine=datatrove: runs --dedup minhash only (--dedup is "
            f"{args.dedup}); add --dedup minhash or drop --dedup-engine",
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
        if args.launcher == "slurm":
            return _launch_slurm(cfg, args)
        paths = prepare(cfg)
        if cfg.shard_index is not None:
            print(f"shard {cfg.shard_index}/{cfg.num_shards}: {paths[0]}")
            return 0
        for path in paths:
            print(_describe(path))
    except (SuiteError, DataError) as err:
        return _failed(err)
    return 0
