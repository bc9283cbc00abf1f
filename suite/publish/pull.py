"""Find a published checkpoint by step or by tokens seen and return its local folder."""

from __future__ import annotations

import bisect
from pathlib import Path

from suite.errors import ConfigError, SuiteError
from suite.publish.base import RevisionNotFound, Store
from suite.publish.manifest import read_manifest
from suite.publish.metadata import revision_for_step, step_of_revision
from suite.publish.store import require_store


def published_steps(store: Store, repo: str) -> list[int]:
    steps = (step_of_revision(r) for r in store.list_revisions(repo))
    return sorted(s for s in steps if s is not None)


def nearest(values: list[int], target: int, count: int = 2) -> list[int]:
    """Up to `count` values on each side of `target` in a sorted list, closest first."""
    at = bisect.bisect_left(values, target)
    around = values[max(0, at - count) : at + count]
    return sorted(around, key=lambda v: (abs(v - target), v))


def pull(
    repo: str,
    step: int | None = None,
    *,
    tokens: int | None = None,
    nearest_ok: bool = False,
    store: Store | str | None = None,
) -> Path:
    """Local folder of `repo`'s checkpoint at `step` (or at `tokens` seen), for from_pretrained.

    With `nearest_ok`, a step/token count that was not published resolves to the closest
    published one (ties go to the earlier checkpoint); otherwise it is an error that lists
    the nearest published steps. `store`: a Store or a spec (None: $SUITE_STORE, else
    DEFAULT_STORE); the spec `none` is a ConfigError naming --store.
    """
    if (step is None) == (tokens is None):
        raise ConfigError("step/tokens", (step, tokens), "give exactly one of --step or --tokens")
    store = store if isinstance(store, Store) else require_store(store)
    steps = published_steps(store, repo)
    if not steps:
        raise RevisionNotFound(f"{repo} ({store.spec}) has no step revisions yet")
    if tokens is not None:
        step = _step_for_tokens(store, repo, tokens, nearest_ok)
    assert step is not None
    if step not in steps:
        if not nearest_ok:
            shown = ", ".join(revision_for_step(s) for s in sorted(nearest(steps, step)))
            raise RevisionNotFound(
                f"{repo} ({store.spec}) has no {revision_for_step(step)}; nearest published: "
                f"{shown} (pass --nearest to take the closest)"
            )
        step = nearest(steps, step, count=1)[0]
    return store.download(repo, revision_for_step(step))


def _step_for_tokens(store: Store, repo: str, tokens: int, nearest_ok: bool) -> int:
    manifest = read_manifest(store, repo)
    if manifest is None or not manifest.entries:
        raise SuiteError(f"{repo} has no manifest, so tokens cannot be mapped to steps; use --step")
    by_tokens = {e.tokens_seen: e.step for e in manifest.entries.values()}
    if tokens in by_tokens:
        return by_tokens[tokens]
    counts = sorted(by_tokens)
    closest = nearest(counts, tokens)
    if not nearest_ok:
        shown = ", ".join(f"{by_tokens[t]} ({t:,} tokens)" for t in sorted(closest))
        raise RevisionNotFound(
            f"{repo} has no checkpoint at exactly {tokens:,} tokens; nearest steps: {shown} "
            "(pass --nearest to take the closest)"
        )
    return by_tokens[closest[0]]
