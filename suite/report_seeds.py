"""Seed replicates: which runs repeat one (size, dataset), and the band they span.

A replicate group is every run of one (size, dataset); its runs differ only in
`init_seed` / `data_seed` (recorded in run.json's `identity`; older records carry the one
suite `seed`, used for both). Curves show the group's mean with a min–max band: with the
two to five seeds a suite affords, the extremes are what was observed, where a standard
deviation would be a guess about a distribution.
"""

from __future__ import annotations

#: The columns that name a replicate group.
GROUP = ("size", "dataset")


def run_seeds(info: dict) -> tuple[int | None, int | None]:
    """(init_seed, data_seed) of a run record; the suite `seed` stands in for either one a
    record predates; None when the record names no seed at all."""
    identity = info.get("identity") or {}
    suite_seed = identity.get("seed", info.get("seed"))
    return identity.get("init_seed", suite_seed), identity.get("data_seed", suite_seed)


def seed_band(frame, by, value: str):
    """Mean, min, max and count of `value` over the rows sharing `by` (replicate seeds):
    a DataFrame with columns `by` + mean, low, high, seeds. One seed gives low = high = mean."""
    grouped = frame.groupby(list(by), sort=True, dropna=False)[value]
    band = grouped.agg(mean="mean", low="min", high="max", seeds="count").reset_index()
    return band
