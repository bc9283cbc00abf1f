"""Compose the suite config from `sweeps/conf` + command-line overrides, outside `@hydra.main`.

Every `suite` command that reads the suite (plan, prepare, train, sweep) goes through
`load_suite`, so every command validates the same way and fails with the same messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing

from omegaconf import DictConfig, OmegaConf

from suite.config import SuiteConfig
from suite.errors import ConfigError, SuiteError

#: Hydra's message for `key=value` when `key` is not in the config (it suggests `+key`,
#: which a structured schema would then drop silently: we name the field meant instead).
_NOT_IN_CONFIG = re.compile(r"Could not override '([^']+)'")


def compose_suite(overrides: list[str]) -> DictConfig:
    """The composed (unvalidated) DictConfig, Hydra's own overrides grammar included."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import sweeps

    sweeps.register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(sweeps.CONFIG_MODULE, version_base=None):
            return compose(sweeps.PRIMARY_CONFIG, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        unknown = _NOT_IN_CONFIG.search(str(err))
        if unknown:
            key = unknown.group(1)
            raise _unknown_field(key, _override_value(overrides, key)) from None
        # Hydra's own message is generic ("Error merging override x=y") and its cause is
        # the useful part; both span several lines, the CLI prints one.
        reason = str(err.__cause__ or err).splitlines()[0]
        raise SuiteError(
            f"invalid override in {' '.join(overrides) or '(none)'}: {reason}"
        ) from None


def _override_value(overrides: list[str], key: str) -> object:
    """The value given for `key` on the command line (`+key=v`, `++key=v` or `key=v`),
    typed as YAML reads it so `train_stpes=5` and `+train_stpes=5` print the same."""
    import yaml

    for override in overrides:
        name, _, value = override.lstrip("+~").partition("=")
        if name == key:
            try:
                return yaml.safe_load(value)
            except yaml.YAMLError:
                return value
    return ""


def _unknown_field(key: str, value: object) -> ConfigError:
    """`train_stpes=5` → "not a field of the suite config; did you mean train_steps?"."""
    parts = key.split(".")
    parent = parts[:-1]
    names = _schema_fields_of_parent(parent)
    close = difflib.get_close_matches(parts[-1], names or [], n=1, cutoff=0.6)
    where = f"{'.'.join(parent)} has no field {parts[-1]!r}" if parent else "no such field"
    hint = (
        f"did you mean {'.'.join([*parent, close[0]])}?"
        if close
        else (f"the fields are {', '.join(names)}" if names else "check the spelling")
    )
    return ConfigError(key, value, f"{where} in the suite config; {hint}")


def _schema_fields_of_parent(parent: list[str]) -> list[str] | None:
    """Fields allowed under `parent`: a dataclass's fields; for `datasets.NAME` (a dict of
    dataclasses) the dataclass's fields; None where any key is allowed (a plain dict)."""
    if not parent:
        return [f.name for f in dataclasses.fields(SuiteConfig)]
    node: object = SuiteConfig
    for part in parent:
        if dataclasses.is_dataclass(node):
            hints = typing.get_type_hints(node)
            if part not in hints:
                return None
            node = _strip_optional(hints[part])
        elif typing.get_origin(node) is dict:
            node = _strip_optional(typing.get_args(node)[1])  # `part` is a user-chosen key
        else:
            return None
    return [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else None


def _strip_optional(hint: object) -> object:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        return args[0]
    return hint


def check_known_fields(cfg: DictConfig) -> None:
    """Refuse keys the schema does not have (`+train_stpes=5` would otherwise be dropped
    silently by the structured schema), naming the closest field."""
    for path, value in _unknown_keys(cfg, []):
        if path == ["hydra"]:  # Hydra's own node, present in a job's config before it is popped
            continue
        raise _unknown_field(".".join(path), value)


def _unknown_keys(node: DictConfig, path: list[str]) -> typing.Iterator[tuple[list[str], object]]:
    allowed = _schema_fields_of_parent(path)
    for name in node:
        key = str(name)
        if allowed is not None and key not in allowed:
            yield (
                [*path, key],
                OmegaConf.select(
                    node, key, throw_on_missing=False, throw_on_resolution_failure=False
                ),
            )
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from _unknown_keys(child, [*path, key])


def to_suite(cfg: DictConfig) -> SuiteConfig:
    """Validate a composed config into the typed `SuiteConfig` (runs every __post_init__ check)."""
    from omegaconf.errors import OmegaConfBaseException

    check_known_fields(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise SuiteError(f"invalid suite config: {err}") from None


def load_suite(overrides: list[str] | None = None) -> SuiteConfig:
    return to_suite(compose_suite(overrides or []))
