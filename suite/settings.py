"""Compose the suite config from `sweeps/conf` + command-line overrides, outside `@hydra.main`.

Every `suite` command that reads the suite (plan, prepare, train, sweep) goes through
`load_suite`, so every command validates the same way and fails with the same messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
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

    for override in overrides:
        if override.lstrip("+~").startswith("=") or override.lstrip("+~") == "":
            raise SuiteError(
                f"invalid override {override!r}: no key before '='; write key=value, "
                "e.g. train_steps=100"
            )
    sweeps.register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(sweeps.CONFIG_MODULE, version_base=None):
            return compose(sweeps.PRIMARY_CONFIG, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        unknown = _NOT_IN_CONFIG.search(str(err))
        if unknown:
            raise _not_in_config(unknown.group(1), err.__cause__, overrides) from None
        # Hydra's own message is generic ("Error merging override x=y") and its cause is
        # the useful part; both span several lines, the CLI prints one.
        reason = str(err.__cause__ or err).split("\n")[0]
        if "Ambiguous value" in reason:  # `size=160k,250k`: Hydra's sweep syntax
            reason += " (a,b sweeps over values: `suite sweep` runs every size and dataset)"
        if "LexerNoViableAltException" in reason or "Error parsing override" in reason:
            reason += (
                " (Hydra's override grammar is key=value; quote a value holding spaces, "
                "non-ASCII or special characters: key='value')"
            )
        raise SuiteError(
            f"invalid override in {' '.join(overrides) or '(none)'}: {reason}"
        ) from None
    # ValueError, TypeError: Hydra's defaults list fails on a group given a list or number
    # (`suite=[1,2]`, `=5`) with bare built-in errors rather than one of its own (after the
    # clause above: some of OmegaConf's errors are ValueErrors too).
    except (ValueError, TypeError) as err:
        raise SuiteError(
            f"invalid override in {' '.join(overrides)}: {err}; a config group (suite=, "
            "hydra/launcher=) takes one name, e.g. suite=pythia"
        ) from None


def _not_in_config(key: str, cause: BaseException | None, overrides: list[str]) -> ConfigError:
    """Hydra's "Could not override 'optim'" for `optim={lrr: 1}` names the override's key,
    while the key the schema lacks (`optim.lrr`) is in OmegaConf's cause: name that one."""
    value = _override_value(overrides, key)
    inner = getattr(cause, "key", None)
    full_key = getattr(cause, "full_key", None)
    if inner is None or not full_key or full_key == key:
        return _unknown_field(key, value)
    # The path to the missing key: the override's key, then the keys of its dict value.
    path = [key, *[str(k) for k in _dict_path(value, str(inner))]]
    if path[-1] != str(inner):  # not found in the value: OmegaConf's dotted key is all we have
        path = [*full_key.split(".")]
    return _unknown_field(path, _lookup(value, path[1:]))


def _dict_path(value: object, key: str) -> list[object]:
    """The keys leading to `key` inside the nested dict `value` ([] when absent)."""
    if not isinstance(value, dict):
        return []
    for name, child in value.items():
        if str(name) == key:
            return [name]
        below = _dict_path(child, key)
        if below:
            return [name, *below]
    return []


def _lookup(value: object, path: list[str]) -> object:
    for part in path:
        if not isinstance(value, dict):
            return value
        value = {str(k): v for k, v in value.items()}.get(part)
    return value


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


def _unknown_field(key: str | list[str], value: object) -> ConfigError:
    """`train_stpes=5` → "not a field of the suite config; did you mean train_steps?".

    `key` is dotted or, where a key itself holds dots (the size `6.9b`), its parts."""
    parts = key.split(".") if isinstance(key, str) else list(key)
    parent = parts[:-1]
    names = _schema_fields_of_parent(parent)
    close = difflib.get_close_matches(parts[-1], names or [], n=1, cutoff=0.6)
    where = f"{'.'.join(parent)} has no field {parts[-1]!r}" if parent else "no such field"
    if names is None and parent:  # a dict keyed by the user (sizes, datasets): no entry
        where = f"{'.'.join(parent)} has no entry {parts[-1]!r}"
    hint = (
        f"did you mean {'.'.join([*parent, close[0]])}?"
        if close
        else (
            f"the fields are {', '.join(names)}"
            if names
            else f"check the spelling, or add a new entry with +{'.'.join(parts)}=..."
            if parent
            else "check the spelling"
        )
    )
    return ConfigError(".".join(parts), value, f"{where} in the suite config; {hint}")


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


def _check_finite(node: object, path: str = "") -> None:
    """Refuse nan and ±inf (`optim.lr=nan` passes every `lr <= 0` check, then poisons the
    arithmetic): no field of the suite config means anything by them."""
    from omegaconf import ListConfig

    if getattr(node, "_is_missing", lambda: False)():  # `optim=???`: cannot even be iterated
        raise ConfigError(path, "???", "give it a value ('???' marks a value left out)")
    if getattr(node, "_is_interpolation", lambda: False)():
        return  # checked when resolved (to_object names a key that does not exist)
    if isinstance(node, DictConfig | ListConfig):
        items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node)
        for key, _ in items:
            child = node._get_node(key)  # unresolved: interpolations are checked when resolved
            name = f"{path}.{key}" if path and isinstance(node, DictConfig) else str(key)
            name = f"{path}[{key}]" if isinstance(node, ListConfig) else name
            _check_finite(child, name)
        return
    value = getattr(node, "_val", None)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, value, "use a finite number")


def to_suite(cfg: DictConfig) -> SuiteConfig:
    """Validate a composed config into the typed `SuiteConfig` (runs every __post_init__ check)."""
    from omegaconf.errors import OmegaConfBaseException

    check_known_fields(cfg)
    _check_finite(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        # OmegaConf appends "full_key: …" and "object_type=…" lines; name the key in one.
        reason = (getattr(err, "msg", None) or str(err)).split("\n")[0]
        where = f"{err.full_key}: " if getattr(err, "full_key", None) else ""
        hint = "check the value given for it"
        if "nterpolation" in reason:
            hint = "an ${...} interpolation must name a config key or a set environment variable"
        raise SuiteError(f"invalid suite config: {where}{reason}; {hint}") from None


def load_suite(overrides: list[str] | None = None) -> SuiteConfig:
    return to_suite(compose_suite(overrides or []))
