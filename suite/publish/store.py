"""Open a store from its spec: `local:/path`, `hub`, `hub:https://endpoint` or `none`.

The interface itself (`Store`, `RemoteFile`, the exceptions) lives in `suite.publish.base`
and is re-exported here, so `from suite.publish.store import Store, open_store` keeps
working. This module is the only one that knows both implementations; neither of them,
nor `base`, imports it. huggingface_hub is imported only when a hub spec is opened, so
`suite` commands on a local store start fast.
"""

from __future__ import annotations

import os
from pathlib import Path

from suite.errors import ConfigError
from suite.publish.base import (
    MANIFEST_CSV,
    MANIFEST_FILES,
    MANIFEST_JSON,
    STORE_OWNED_FILES,
    RemoteFile,
    RepoNotFound,
    RevisionNotFound,
    Store,
    check_repo_id,
    compare_files,
)
from suite.publish.local_store import LocalStore
from suite.publish.spec import (
    DEFAULT_STORE,
    NO_STORE,
    STORE_ENV,
    absolute_store_spec,
    parse_store_spec,
)

__all__ = [
    "DEFAULT_STORE",
    "MANIFEST_CSV",
    "MANIFEST_FILES",
    "MANIFEST_JSON",
    "NO_STORE",
    "STORE_ENV",
    "STORE_OWNED_FILES",
    "RemoteFile",
    "RepoNotFound",
    "RevisionNotFound",
    "Store",
    "absolute_store_spec",
    "check_repo_id",
    "compare_files",
    "open_store",
    "require_store",
]


def _resolve(spec: str | None) -> tuple[str, str]:
    """(spec, where it came from): the argument, else $SUITE_STORE, else DEFAULT_STORE."""
    if spec:
        return spec, "store"
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV], STORE_ENV
    return DEFAULT_STORE, "store"


def open_store(spec: str | None = None, *, token: str | None = None) -> Store | None:
    """The store a spec names; None for `none` (NO_STORE): there is nothing to publish to.

    `none` gives None rather than a null store on purpose: a store that silently accepts
    and drops checkpoints would make "published" mean nothing, and every caller would have
    to ask it whether it is real anyway. With None, the type checker makes each caller
    decide (the trainer skips publishing; `suite status` shows no revisions), and
    `require_store` turns it into an error for commands that cannot work without a store.

    `spec` None (or empty) means $SUITE_STORE, else DEFAULT_STORE. The token (Hub only)
    defaults to huggingface_hub's own lookup (HF_TOKEN, `hf auth login`) and is never part
    of `spec`. Raises ConfigError for a malformed spec.
    """
    spec, field = _resolve(spec)
    kind, location = parse_store_spec(spec, field)
    if kind == "none":
        return None
    if kind == "local":
        return LocalStore(Path(location))
    from suite.publish.hub_store import HubStore  # huggingface_hub: only for hub specs

    return HubStore(endpoint=location or None, token=token)


def require_store(
    spec: str | None = None, *, token: str | None = None, option: str = "--store"
) -> Store:
    """`open_store` for commands that need a store (pull, verify, publish).

    `none` raises ConfigError naming `option` (or $SUITE_STORE when the spec came from
    there) with the fix, instead of returning None.
    """
    store = open_store(spec, token=token)
    if store is None:
        _, field = _resolve(spec)
        raise ConfigError(
            option if field == "store" else field,
            NO_STORE,
            "this command needs a store holding published checkpoints; "
            "give local:/path, hub or hub:https://endpoint",
        )
    return store
