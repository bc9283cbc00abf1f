"""Build the suite's datasets with `data_order`, from the suite config (cached by fingerprint).

Datasets that share their `inputs` are built by one `data_order.prepare` call, so they share
one tokenizer and the deduplicated one is exactly the standard one minus the duplicates. The
deduplicated dataset of a group must be named `<standard name>-deduped` (as Pythia's are).
"""

from __future__ import annotations

from pathlib import Path

from suite.config import SuiteConfig
from suite.errors import ConfigError
from suite.rundir import dataset_dir


def prepare_configs(cfg: SuiteConfig, names: list[str] | None = None, workers: int | None = None):
    """One `PrepareConfig` per group of datasets that share inputs (datasets with a `path` skip)."""
    from data_order import PrepareConfig

    wanted = list(names or cfg.datasets)
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in wanted:
        ds = cfg.datasets[name]
        if ds.path:
            continue
        if not ds.inputs:
            raise ConfigError(
                f"datasets.{name}.inputs",
                list(ds.inputs),
                "give corpus files/folders/globs to prepare, or set "
                f"datasets.{name}.path to an already built dataset (e.g. Pythia's pre-shuffled .bin/.idx)",
            )
        groups.setdefault(tuple(ds.inputs), []).append(name)
    configs = []
    for inputs, members in groups.items():
        standard = [m for m in members if not cfg.datasets[m].deduplicate]
        deduped = [m for m in members if cfg.datasets[m].deduplicate]
        if len(standard) > 1 or len(deduped) > 1:
            raise ConfigError(
                "datasets", members, "at most one standard and one deduplicated dataset per inputs"
            )
        base = standard[0] if standard else deduped[0].removesuffix("-deduped")
        if deduped and deduped[0] != f"{base}-deduped":
            raise ConfigError(
                f"datasets.{deduped[0]}",
                deduped[0],
                f"name the deduplicated version of {base!r} '{base}-deduped'",
            )
        configs.append(
            PrepareConfig(
                inputs=list(inputs),
                text_field=cfg.data.text_field,
                id_field=cfg.data.id_field,
                tokenizer=cfg.data.tokenizer,
                vocab_size=cfg.data.vocab_size,
                seq_len=cfg.seq_len,
                # The reference seed, not this job's: one prepared dataset serves every
                # replicate, each reading it in its own data_seed order (suite/data_seed.py).
                seed=cfg.reference_seed,
                dedup="minhash" if deduped else "none",
                emit_standard=bool(standard),
                minhash_threshold=cfg.data.minhash_threshold,
                dedup_engine=cfg.data.dedup_engine,
                eval_fraction=cfg.data.eval_fraction,
                global_batch=cfg.global_batch,
                workers=cfg.data.workers if workers is None else workers,
                out_dir=str(Path(cfg.root) / "data" / cfg.name),
                name=base,
            )
        )
    return configs


def build_datasets(
    cfg: SuiteConfig, names: list[str] | None = None, workers: int | None = None
) -> list[Path]:
    """`data_order.prepare` for every group (cached by fingerprint); the folders it returns."""
    from data_order import prepare
    from data_order.errors import NoSpaceError

    paths: list[Path] = []
    for prepare_cfg in prepare_configs(cfg, names, workers):
        try:
            paths += prepare(prepare_cfg)
        except NoSpaceError as err:  # name the suite's knob, not data_order's out_dir
            raise NoSpaceError(
                err.directory, err.need_bytes, err.free_bytes, "root=<a disk with room>"
            ) from None
    return paths


def prepared(cfg: SuiteConfig, name: str) -> Path | None:
    """Where dataset `name` is, if it exists yet (prepared, or given by `path`)."""
    path = dataset_dir(cfg, name)
    return path if path.exists() or Path(f"{path}.idx").exists() else None


def check_prepared_pairs(cfg: SuiteConfig) -> None:
    """A standard/deduplicated pair whose prepared folders record other inputs or another
    tokenizer (one side given by `path`, which the config check cannot compare): refuse,
    the report would compare two corpora. Pre-shuffled files record neither: not checked."""
    from suite.config import DEDUPED_SUFFIX

    for name, ds in cfg.datasets.items():
        base = name.removesuffix(DEDUPED_SUFFIX)
        if not ds.deduplicate or base not in cfg.datasets:
            continue
        paths = [prepared(cfg, base), prepared(cfg, name)]
        fields = [_fingerprint_fields(p) for p in paths if p is not None]
        if len(fields) != 2 or None in fields:
            continue
        standard, deduped = fields
        for key, what in (("inputs", "inputs"), ("tokenizer_sha256", "tokenizer")):
            if standard.get(key) != deduped.get(key):
                raise ConfigError(
                    f"datasets.{name}",
                    str(paths[1]),
                    f"was prepared from other {what} than its standard partner {base!r} "
                    f"({paths[0]}); the pair must be one corpus with and without duplicates — "
                    "prepare both together (`suite prepare`) or point both paths at such a pair",
                )


def _fingerprint_fields(path: Path) -> dict | None:
    """A prepared folder's recorded fingerprint fields; None for a pre-shuffled file or an
    unreadable folder (opening it reports that)."""
    import json

    try:
        return json.loads((path / "metadata.json").read_text())["fingerprint_fields"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_prepared_data(cfg: SuiteConfig, names: list[str] | None = None) -> None:
    """What `suite train` refuses at start, for every dataset that exists already, so `suite
    plan` and `suite sweep --dry-run` refuse too: a run past the end of the data's order, a
    broken pair. A dataset not prepared yet has no sample count: nothing is said about it."""
    from data_order import DataError, open_dataset
    from suite.train.run import check_data_covers  # no torch at import

    for name in names or cfg.datasets:
        path = prepared(cfg, name)
        if path is None:
            continue
        try:
            data = open_dataset(path)
        except DataError as err:
            raise ConfigError(f"datasets.{name}.path", str(path), str(err)) from None
        check_data_covers(data, cfg.train_steps, cfg.global_batch)
    check_prepared_pairs(cfg)


def ensure_datasets(cfg: SuiteConfig, names: list[str] | None = None) -> dict[str, Path]:
    """Build (or reuse, when the fingerprint matches) every dataset; return name → directory."""
    build_datasets(cfg, names)
    check_prepared_pairs(cfg)
    paths = {name: dataset_dir(cfg, name) for name in (names or cfg.datasets)}
    for name, path in paths.items():
        if not path.exists() and not Path(str(path) + ".idx").exists():
            raise ConfigError(
                f"datasets.{name}.path",
                str(path),
                "no dataset there; build it with `suite prepare`",
            )
    return paths
