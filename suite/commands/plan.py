"""`suite plan [overrides]`: every run the sweep would launch, with its cost, before any job."""

from __future__ import annotations

import argparse
import sys

from suite.errors import SuiteError


def _human(n: float, unit: str = "") -> str:
    for factor, suffix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def _axes(cfg) -> str:
    """' (sizes × datasets × seeds)' when the sweep has seed replicates, else ''."""
    seeds = cfg.run_seeds()
    if len(seeds) == 1:
        return ""
    return f" ({len(cfg.sizes)} sizes × {len(cfg.datasets)} datasets × {len(seeds)} seeds)"


def _render(frame, cfg) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"suite {cfg.name!r}: {len(frame) - 1} runs{_axes(cfg)}, family {cfg.family}, "
        f"{cfg.train_steps:,} updates × {cfg.global_batch} × {cfg.seq_len + 1} tokens, "
        f"GPU-hours at {cfg.cluster.mfu:.0%} MFU of {_human(cfg.cluster.peak_flops_per_gpu, 'FLOP/s')}"
    )
    columns = [
        "run",
        "params",
        "non-emb",
        "L×d/heads",
        "TP×DP",
        "GPUs",
        "nodes",
        "micro×acc",
        "LR",
        "tokens",
        "FLOPs",
        "GPU-h",
        "ckpts",
        "ckpt GB",
        "mem/GPU GB",
        "resume GB",
        "warn s",
        "run disk GB",
    ]
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in frame.to_dict("records"):
        total = row["run"] == "TOTAL"
        table.add_row(
            row["run"],
            f"{int(row['params']):,}",
            f"{int(row['non_embedding_params']):,}",
            "" if total else f"{int(row['layers'])}×{int(row['d_model'])}/{int(row['heads'])}",
            "" if total else f"{int(row['tp'])}×{int(row['dp'])}",
            f"{int(row['gpus'])}",
            f"{int(row['nodes'])}",
            "" if total else f"{int(row['micro_batch'])}×{int(row['grad_accum'])}",
            "" if total else f"{row['lr']:.2e}",
            _human(row["tokens"]),
            f"{row['flops']:.2e}",
            f"{row['gpu_hours']:,.1f}",
            f"{int(row['checkpoints'])}",
            f"{row['checkpoint_storage_gb']:,.1f}",
            "" if total else f"{row['memory_per_gpu_gb']:.1f}" + ("" if row["fits"] else " (!)"),
            "" if total else f"{row['resume_checkpoint_gb']:,.1f}",
            "" if total else f"{int(row['signal_delay_s'])}",
            f"{row['run_disk_gb']:,.0f}",
            style="bold" if total else None,
        )
    Console(width=240).print(table)
    if not frame["fits"].iloc[:-1].astype(bool).all():
        print(
            f"(!) estimate exceeds cluster.gpu_memory_gb={cfg.cluster.gpu_memory_gb}",
            file=sys.stderr,
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite plan",
        description="Table of every run the sweep would launch: shape, parallel layout, tokens, "
        "FLOPs, GPU-hours, checkpoints, memory per GPU. Analytic: no weights are allocated.",
        epilog="Overrides use Hydra syntax, e.g. `suite plan suite=pythia cluster.mfu=0.5 "
        "'resources={6.9b:{tp:4}}'`.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the suite config")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    args = parser.parse_intermixed_args(argv)
    try:
        from suite.planning import plan_table
        from suite.settings import load_suite

        cfg = load_suite(args.overrides)
        frame = plan_table(cfg)
        from suite.datasets import check_prepared_data

        check_prepared_data(cfg)  # as `suite train` would refuse; silent until prepared
    except SuiteError as err:
        print(f"suite plan: {err}", file=sys.stderr)
        return 2
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=2))
    else:
        _render(frame, cfg)
    return 0
