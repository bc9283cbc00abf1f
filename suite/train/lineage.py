"""Continue a run from a published training state (`suite train init_from=ORG/NAME@stepN`).

`resolve_init_from` runs before start-up, on every rank, reading only the small
`training_state.json`: it refuses a state saved with another parallel layout (dp, tp, ZeRO
stage: DeepSpeed's optimizer shards are per rank; resharding them through DeepSpeed's
universal checkpoints is not supported), another model, data or seed, or a step the run
would not train past, in one line each. Differences in how the run trains from there (the
optimizer schedule: `optim.*`, `train_steps`; micro batch and accumulation; attention
kernel; activation checkpointing) make a *warm start*: allowed, and listed in the run
identity as `init_from.warm_start.changed`. With none, the run continues the source exactly.

The identity records where the run came from (`init_from`: store, repo, step, commit, the
sha256 of `training_state.json`, the source run). A restarted run takes that record from its
own `run.json` instead of the store, so it resumes offline and is refused, like any resume,
if `init_from` changed. `fetch` downloads and verifies the state only when the run loads it
(no resume checkpoint of its own yet); `load` goes through the resume path's loader.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.config import RunSpec, SuiteConfig
from suite.errors import ConfigError
from suite.publish.spec import absolute_store_spec
from suite.publish.training_state import (
    FetchedState,
    InitFrom,
    fetch_training_state,
    parse_init_from,
    read_state_document,
)

#: Identity fields a training state must share with the run continuing it (weights and data
#: position would mean something else otherwise); `model_config.*` too.
SAME_RUN = ("data_fingerprint", "family", "seed", "data_seed", "precision", "layout.global_batch")
#: The parallel layout the optimizer shards were saved for.
SAME_LAYOUT = ("layout.dp", "layout.tp", "zero_stage")
#: Not compared: the initialisation is replaced by the state's weights, and the source's own
#: `init_from` is its lineage, not this run's.
NOT_COMPARED = ("init_scheme", "init_seed", "init_from")
_ABSENT = "absent"


@dataclass(frozen=True)
class InitSource:
    """The training state a run continues from, and the record its identity holds."""

    source: InitFrom
    record: dict
    """`identity["init_from"]`: store, repo, step, commit, training_state_sha256, source run,
    config hash and `warm_start` ({"changed": [fields]} or None for an exact continuation)."""

    def fetch(self) -> FetchedState:
        """Download the state and verify every file (sha256) before anything loads it."""
        return fetch_training_state(self.source, self.record["training_state_sha256"])


def resolve_init_from(
    cfg: SuiteConfig, run: RunSpec, identity: dict, saved_identity: dict | None
) -> InitSource:
    """Check the state `cfg.init_from` names against this run; `identity` without
    `init_from`; `saved_identity`: the run's own record (a restart), or None."""
    source = parse_init_from(cfg.init_from, cfg.publish.store)
    saved = (saved_identity or {}).get("init_from")
    if saved and (saved.get("store"), saved.get("repo"), saved.get("step")) == (
        source.store,
        source.repo,
        source.step,
    ):
        return InitSource(source, saved)  # a restart: what it started from, no store access
    document, sha256, commit = read_state_document(source)
    if document.get("seq_len") != run.seq_len:
        raise ConfigError(
            "seq_len",
            run.seq_len,
            f"the training state {source} was saved at seq_len={document.get('seq_len')}; "
            "continue it with that seq_len (and its dataset)",
        )
    if source.step >= run.train_steps:
        raise ConfigError(
            "train_steps",
            run.train_steps,
            f"the training state {source} is at step {source.step}; use train_steps > "
            f"{source.step} to train on from it",
        )
    changed = warm_start_changes(document.get("identity") or {}, identity, cfg.init_from)
    same_repo = (source.store, source.repo) == (absolute_store_spec(cfg.publish.store), run.repo_id)
    if changed and same_repo:
        raise ConfigError(
            "publish.repo_prefix",
            cfg.publish.repo_prefix,
            f"this warm start ({', '.join(changed)} changed) would publish into "
            f"{source.repo}, replacing the source run's steps after {source.step}; give "
            "the new run its own repo with publish.repo_prefix=NAME (or publish.store)",
        )
    return InitSource(
        source,
        {
            "store": source.store,
            "repo": source.repo,
            "step": source.step,
            "training_state_repo": source.state_repo,
            "commit": commit,
            "training_state_sha256": sha256,
            "source_run": document.get("run_name"),
            "source_config_hash": document.get("config_hash"),
            "warm_start": {"changed": changed} if changed else None,
        },
    )


def warm_start_changes(saved: dict, current: dict, spec: str) -> list[str]:
    """Identity fields that differ and may (a warm start), sorted; ConfigError for those
    that may not (layout, model, data)."""
    old, new = _leaves(saved), _leaves(current)
    differ = sorted(
        k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT)
    )
    if any(k in SAME_LAYOUT for k in differ):
        was, now = _layout(old), _layout(new)
        dp, tp = old.get("layout.dp"), old.get("layout.tp")
        gpus = dp * tp if isinstance(dp, int) and isinstance(tp, int) else "dp × tp"
        raise ConfigError(
            "init_from",
            spec,
            f"the training state was saved with {was}, this run has {now}: DeepSpeed's "
            f"optimizer shards are per rank, so set parallel.gpus={gpus} parallel.tp={tp} "
            f"zero_stage={old.get('zero_stage')} (resharding them through DeepSpeed's "
            "universal checkpoints is not supported)",
        )
    fixed = [k for k in differ if k in SAME_RUN or k.startswith("model_config.")]
    if fixed:
        shown = "; ".join(
            f"{k}: saved {old.get(k, _ABSENT)!r}, now {new.get(k, _ABSENT)!r}" for k in fixed
        )
        raise ConfigError(
            "init_from",
            spec,
            f"the training state belongs to another model, data or seed ({shown}); continue "
            "it with the source run's size, dataset, seq_len, seed and precision",
        )
    return differ


def _layout(leaves: dict) -> str:
    dp, tp = leaves.get("layout.dp", _ABSENT), leaves.get("layout.tp", _ABSENT)
    return f"dp={dp} × tp={tp}, ZeRO stage {leaves.get('zero_stage', _ABSENT)}"


def _leaves(identity: dict, prefix: str = "") -> dict[str, object]:
    """Nested identity → {"optim.lr": 0.001, "layout.dp": 2, …} (NOT_COMPARED left out)."""
    out: dict[str, object] = {}
    for key, value in identity.items():
        name = f"{prefix}{key}"
        if not prefix and key in NOT_COMPARED:
            continue
        if isinstance(value, dict):
            out |= _leaves(value, f"{name}.")
        else:
            out[name] = value
    return out


def load_training_state(engine, fetched: FetchedState, rank: int) -> tuple[int, str]:
    """Load a fetched state into the engine (and this rank's RNG) through the resume path's
    loader; returns (step, batches_hash): the data position the run continues at."""
    from suite.train.resume import load_checkpoint_folder

    document = fetched.document
    load_checkpoint_folder(
        engine,
        fetched.folder,
        document["step"],
        rank,
        fix="re-publish the training state from the source run or choose another step",
    )
    return int(document["step"]), str(document["batches_hash"])
