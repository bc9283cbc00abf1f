"""`suite train [overrides]`: train one run of the suite (DeepSpeed TP × DP).

Examples: `suite train size=160k dataset=stdlib train_steps=30`;
`torchrun --nproc_per_node 2 -m suite.cli train size=360k dataset=stdlib parallel.gpus=2 parallel.tp=2`.
Restarting the same command resumes from the latest resume checkpoint; a finished run is
skipped at once. `init_from=ORG/NAME@stepN` (or `local:/store/ORG/NAME@stepN`,
`hub:ORG/NAME@stepN`) continues from a training state another run published with
`publish.training_state=[N]` (`suite.train.lineage`).
"""

from __future__ import annotations

import argparse
import os
import sys

from suite.errors import ConfigError, SuiteError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="suite train",
        description="Train one run (size × dataset) of the suite with DeepSpeed; resumes "
        "automatically from the run directory and skips a finished run.",
        epilog="Any field of the suite config can be overridden, e.g. `train_steps=30`, "
        "`parallel.gpus=2 parallel.tp=2` (under torchrun/srun), `precision=bf16`, "
        "`init_from=ORG/NAME@step4000` (continue a published training state).",
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides, including size= and dataset="
    )
    args = parser.parse_args(argv)
    from data_order import DataError  # a damaged or mismatched dataset: one line, like ours

    # CPU runs: DeepSpeed must not probe for CUDA/XPU accelerators it would then fail to use.
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not _has_cuda() else "cuda")
    try:
        from suite.settings import load_suite

        cfg = load_suite(args.overrides)
        size = cfg.size or (cfg.sizes[0] if len(cfg.sizes) == 1 else None)
        dataset = cfg.dataset or (next(iter(cfg.datasets)) if len(cfg.datasets) == 1 else None)
        if size is None:
            raise ConfigError(
                "size", None, f"choose the run's size with size=NAME ({', '.join(cfg.sizes)})"
            )
        if dataset is None:
            raise ConfigError(
                "dataset",
                None,
                f"choose the run's dataset with dataset=NAME ({', '.join(cfg.datasets)})",
            )
        from suite.train.run import check_world

        check_world(cfg, size, dataset)
        if _world_size() == 1 and not cfg.datasets[dataset].path:
            _ensure_dataset(cfg, dataset)
        from suite import console
        from suite.train import train_run
        from suite.train.distributed import shutdown_distributed

        console.configure()  # the terminal: events and warnings; library INFO to train.log
        try:
            result = train_run(cfg, size, dataset)
        finally:
            shutdown_distributed()
    except (SuiteError, DataError) as err:
        print(f"suite train: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":
        return 0  # one summary per run, from rank 0
    if result.skipped:
        print(f"{result.run_name}: already complete at step {result.final_step} ({result.run_dir})")
    else:
        print(
            f"{result.run_name}: step {result.final_step}, loss {result.final_loss:.4f}, "
            f"eval loss {result.final_eval_loss}, {result.wall_seconds:.1f}s "
            f"(setup {result.setup_seconds:.1f}s, exports {result.export_seconds:.1f}s, "
            f"publish wait {result.publish_wait_seconds:.2f}s) → {result.run_dir}"
        )
    return 0


def _ensure_dataset(cfg, dataset: str) -> None:
    """Build the run's dataset if needed (cached by fingerprint: instant when built).

    A root keeps one version of each dataset: changing a data setting (seq_len, seed, the
    tokenizer, inputs) for an existing root finds the folder taken. data_order's message
    suggests its own `overwrite` option, which `suite train` does not have: say what to do
    here instead.
    """
    from data_order import DataConfigError
    from suite.datasets import ensure_datasets
    from suite.rundir import dataset_dir

    try:
        ensure_datasets(cfg, [dataset])
    except DataConfigError as err:
        if err.field != "name" or "already holds a dataset" not in err.fix:
            raise
        path = dataset_dir(cfg, dataset)
        raise ConfigError(
            f"datasets.{dataset}",
            str(path),
            "already prepared under this root with other data settings (seq_len, seed, "
            "tokenizer, inputs or data.*); use another root= for these settings, or delete "
            f"{path.parent} to rebuild the suite's datasets",
        ) from None


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)
    except ValueError:
        return 1


def _has_cuda() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()
