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
                tokenizer=cfg.data.tokenizer,
                vocab_size=cfg.data.vocab_size,
                seq_len=cfg.seq_len,
                seed=cfg.seed,
                dedup="minhash" if deduped else "none",
                emit_standard=bool(standard),
                minhash_threshold=cfg.data.minhash_threshold,
                eval_fraction=cfg.data.eval_fraction,
                global_batch=cfg.global_batch,
                workers=cfg.data.workers if workers is None else workers,
                out_dir=str(Path(cfg.root) / "data" / cfg.name),
                name=base,
            )
        )
    return configs


def ensure_datasets(cfg: SuiteConfig, names: list[str] | None = None) -> dict[str, Path]:
    """Build (or reuse, when the fingerprint matches) every dataset; return name → directory."""
    from data_order import prepare

    for prepare_cfg in prepare_configs(cfg, names):
        prepare(prepare_cfg)
    paths = {name: dataset_dir(cfg, name) for name in (names or cfg.datasets)}
    for name, path in paths.items():
        if not path.exists() and not Path(str(path) + ".idx").exists():
            raise ConfigError(
                f"datasets.{name}.path",
                str(path),
                "no dataset there; build it with `suite prepare`",
            )
    return paths
