"""A run's data order from its `data_seed` (contract 2), over the suite's one prepared dataset.

A prepared (packed) dataset is a token stream plus an order computed from a seed at read
time (`data_order.order`): the stream does not depend on the seed, so replicates with other
data seeds read the same files and need no second `suite prepare`. `with_data_seed` returns
the dataset ordered by another seed, with the fingerprint `suite prepare` would have given
the same corpus prepared with that seed, so a run's identity, resume checks and exports name
its order whichever way it was reached. The reference runs read a dataset as it is on disk;
a pre-shuffled file has its order there and serves them only. No torch (`suite batch`).

Each (data seed, epoch) order is a memory-mapped artifact in the dataset folder
(`data_order.order_store`), built once — on first use, or ahead by `build_orders` for the
epochs the suite's `train_steps × global_batch` reach — and opened by every rank.
"""

from __future__ import annotations

from data_order import PackedDataset
from suite.errors import ConfigError


def with_data_seed(data, seed: int, reference_seed: int | None, field: str = "data_seed"):
    """`data` (an open `data_order.Dataset`) in the order of `seed`.

    `reference_seed` is the data seed of the suite's reference runs, which read a dataset
    as it is on disk (the suite prepares its own with that seed; a dataset given by `path`
    keeps the order it was made with, as before the seed axis, so existing runs keep their
    fingerprint). Another seed redraws a packed dataset's order and is refused for a
    pre-shuffled one. None (`suite batch --seed`, no suite to ask): always redraw.
    `field` names the knob in the error.
    """
    if seed == reference_seed:
        return data
    if isinstance(data, PackedDataset):
        return data.reordered(seed)
    keep = (
        f"use {field}={reference_seed} (the reference runs') to vary only the initialisation"
        if reference_seed is not None
        else f"leave out {field}"
    )
    raise ConfigError(
        field,
        seed,
        f"{data.path} is pre-shuffled: its order is fixed on disk; {keep}, or prepare "
        "the corpus with `suite prepare`, whose order any seed can redraw",
    )


def check_data_seeds(cfg, runs) -> None:
    """Refuse, before a sweep starts anything, a run whose data seed differs from the
    reference runs' on a pre-shuffled dataset (its job would refuse only when it starts).
    A `path` that is not a folder is a pre-shuffled prefix (`data_order.open_dataset`)."""
    from pathlib import Path

    reference = cfg.data_seed_of(cfg.reference_seed)
    for run in runs:
        path = run.dataset.path
        if run.data_seed != reference and path and not Path(path).is_dir():
            raise ConfigError(
                "data_seed",
                run.data_seed,
                f"run {run.run_name} would reorder datasets.{run.dataset_name}.path={path}, "
                f"pre-shuffled: its order is fixed on disk; set data_seed={reference} to vary "
                "only the initialisation, or prepare the corpus with `suite prepare`",
            )


def order_seeds(cfg, data) -> list[int]:
    """The order seeds the sweep's runs read `data` (a packed dataset) in: its own seed for
    the reference data seed (`with_data_seed` keeps it as on disk), each other data seed."""
    reference = cfg.data_seed_of(cfg.reference_seed)
    seeds = {cfg.data_seed_of(seed) for seed in cfg.run_seeds()}
    return sorted({data.seed if seed == reference else seed for seed in seeds})


def build_orders(cfg, paths) -> list:
    """Build, once, the order artifacts every run of the sweep reads: for each packed dataset
    in `paths`, each of its order seeds, the epochs `train_steps × global_batch` samples
    reach (capped at the epochs the dataset defines). Returns the artifacts' paths.

    Without this the first batch of each (seed, epoch) builds its artifact (the others
    wait on its lock); with it `suite prepare` pays that once and no run stalls."""
    from pathlib import Path

    from data_order import open_dataset

    built = []
    for path in paths:
        if not Path(path).is_dir():
            continue  # a pre-shuffled file holds its order
        data = open_dataset(path)
        needed = cfg.train_steps * cfg.global_batch
        epochs = min(-(-needed // data.num_samples), data.num_positions // data.num_samples)
        for seed in order_seeds(cfg, data):
            built += data.reordered(seed).build_order(max(1, epochs))
    return built
