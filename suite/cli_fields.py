"""Command-line flags derived from a dataclass, so that each knob is defined in one place.

`add_dataclass_arguments(parser, Cls)` adds one flag per field of the dataclass `Cls`:
`field_name` → `--field-name` (or a name given in `flags`), typed from the annotation, with
the field's default and its docstring (the string literal right after the field) as help.
`dataclass_from_args(Cls, args)` builds `Cls` back from the parsed namespace; a flag left
out gives the dataclass its own default.

Annotations understood: `int`, `float`, `str`, `X | None`, `Literal[...]` (choices),
`bool` (`--name` when the default is False, `--no-name` when it is True), `list[X]` /
`tuple[X, ...]` (a repeatable flag). Other fields must be excluded and handled by hand.
Pure standard library (no torch, no Hydra): `suite prepare` and `suite batch` import it at
start-up.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring of every field of the dataclass `cls` (and of its dataclass bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # e.g. defined interactively: no docs, flags still work
            continue
        body = ast.parse(source).body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def field_default(field: dataclasses.Field) -> Any:
    """The default of a dataclass field (calling its factory); MISSING when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add a flag for every field of the dataclass `cls` except `exclude`.

    `flags` renames a field's flag (e.g. ``{"out_dir": "--out"}``); the parsed value always
    lands in ``args.<field name>``. `overrides` adds or replaces `add_argument` keywords of a
    field (e.g. a metavar, or help for a renamed flag). A field without a default becomes a
    required flag.
    """
    skip, flags, overrides = set(exclude), flags or {}, overrides or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        default = field_default(field)
        kwargs = _argument(field.name, hints[field.name], default, docs.get(field.name, ""))
        flag = flags.get(field.name) or _flag(field.name, default)
        # A renamed flag's value is named after the flag (argparse shows choices instead).
        if (
            field.name in flags
            and kwargs.get("action") in (None, "append")
            and not kwargs.get("choices")
        ):
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        kwargs.update(overrides.get(field.name, {}))
        parser.add_argument(flag, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """`cls(**...)` from the parsed flags of `add_dataclass_arguments` plus explicit `values`.

    A flag that parsed to None, for a field whose default is not None (a repeatable flag
    never given), is left out so the dataclass default applies.
    """
    kwargs = dict(values)
    for field in dataclasses.fields(cls):
        if field.name in kwargs or not field.init or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if value is None and field.default is not None:
            continue
        kwargs[field.name] = value
    return cls(**kwargs)


def _flag(name: str, default: Any) -> str:
    return flag_name(f"no_{name}" if default is True else name)


def _argument(name: str, annotation: Any, default: Any, doc: str) -> dict[str, Any]:
    kind, optional = _strip_optional(annotation)
    if kind is bool and not optional and default is not dataclasses.MISSING:
        # Stored in the field's name either way: --name sets True, --no-name sets False.
        action = "store_false" if default else "store_true"
        suffix = " (on by default; this flag turns it off)" if default else ""
        return {"dest": name, "action": action, "default": default, "help": _help(doc + suffix)}
    kwargs: dict[str, Any] = {"dest": name}
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    origin = get_origin(kind)
    if origin in (list, tuple):
        kwargs.update(action="append", type=_scalar(name, get_args(kind)[0]))
        doc += " (repeatable)"
        if "default" in kwargs:
            kwargs["default"] = None  # append would extend the default; None → dataclass's own
    elif origin is Literal:
        choices = get_args(kind)
        kwargs.update(choices=choices, type=type(choices[0]))
    else:
        kwargs["type"] = _scalar(name, kind)
    if default not in (dataclasses.MISSING, None, [], ()):
        shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else default
        doc += f" (default: {shown})"
    return kwargs | {"help": _help(doc)}


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _scalar(name: str, kind: Any) -> type:
    if kind in (int, float, str):
        return kind
    raise TypeError(f"{name}: no command-line flag for a field of type {kind!r}; exclude it")
