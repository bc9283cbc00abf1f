"""Store specs and repo ids: the plain-text vocabulary of publishing.

A store spec names where checkpoints are published: `local:/path` (a directory store),
`hub` (the Hugging Face Hub at HF_ENDPOINT or huggingface.co), `hub:https://endpoint` (a
self-hosted mirror) or `none` (publish nothing). This module only parses and normalises
specs; `suite.publish.store.open_store` opens them. It imports nothing but the standard
library and `suite.errors`, so the suite config (`suite.config.PublishConfig`) can use it
for its default and its validation without importing any store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from suite.errors import ConfigError

#: The spec of "no store": checkpoints are exported into the run directory, nothing is
#: published. `open_store(NO_STORE)` is None; commands that need a store reject it.
NO_STORE = "none"
#: The one default store: `publish.store`'s default, and what `suite pull/verify/publish`
#: open when neither --store nor $SUITE_STORE is given. Relative to the working directory,
#: the same place the suite's default `root` (`suite_runs`) puts everything else.
DEFAULT_STORE = "local:suite_runs/store"
#: Environment variable overriding DEFAULT_STORE for the commands (not for training).
STORE_ENV = "SUITE_STORE"

StoreKind = Literal["local", "hub", "none"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENDPOINT = re.compile(r"^https?://")
_SPEC_FIX = f"use local:/path, hub, hub:https://endpoint or {NO_STORE}"


def check_directory_path(path: str, field: str, value: object = None) -> None:
    """Refuse a folder-to-be whose nearest existing ancestor is a file (it can never be
    created); a path that does not exist yet is fine."""
    existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(
            field,
            path if value is None else value,
            f"{existing} is a file, not a directory; give a folder",
        )


def parse_store_spec(spec: str, field: str = "store") -> tuple[StoreKind, str]:
    """(kind, location) of a spec: ("local", path), ("hub", endpoint or ""), ("none", "").

    Raises ConfigError naming `field` for anything else.
    """
    if spec == NO_STORE:
        return "none", ""
    kind, _, rest = str(spec).partition(":")
    if kind == "local":
        if not rest:
            raise ConfigError(field, spec, "give a directory: local:/path/to/store")
        # A file on the path can never become the store: say so now, not after the run
        # trained and the publisher retried for minutes.
        check_directory_path(rest, field, spec)
        return "local", rest
    if kind == "hub":
        if rest and not _ENDPOINT.match(rest):
            raise ConfigError(field, spec, "give an endpoint URL: hub:https://host")
        return "hub", rest
    raise ConfigError(field, spec, _SPEC_FIX)


def absolute_store_spec(spec: str) -> str:
    """`spec` with a local store's directory made absolute (from the working directory).

    Hub specs and `none` are returned unchanged. For a local spec the result equals
    `open_store(spec).spec`, so a record holding it finds the same store from any directory.
    """
    kind, location = parse_store_spec(spec)
    if kind != "local":
        return spec
    return f"local:{Path(location).absolute()}"


def check_name(name: str, field: str) -> str:
    """One repo name component (an org, a prefix): letters, digits, '-', '_', '.'."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(field, name, "use letters, digits, '-', '_' and '.' (no '/' or '..')")
    return name


def check_repo_id(repo: str, field: str = "repo") -> str:
    """`NAME` or `ORG/NAME`, safe as a directory name and as a Hub repo id."""
    parts = repo.split("/") if isinstance(repo, str) else [repo]
    if not 1 <= len(parts) <= 2 or not all(
        isinstance(p, str) and _NAME.match(p) and ".." not in p for p in parts
    ):
        raise ConfigError(field, repo, "use NAME or ORG/NAME (letters, digits, '-', '_', '.')")
    return repo
