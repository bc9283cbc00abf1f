"""What `suite eval` has to do: the published checkpoints in scope and their missing results.

Planning reads only the stores (revision lists and each revision's small
`scaling_suite.json`) and the ledger's part files, never a model, and imports no torch: a
`suite eval` (or the end of `suite sweep`) with nothing new to evaluate is cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from suite.errors import ConfigError, SuiteError
from suite.eval.ledger import part_files, set_stale, task_key
from suite.publish.base import RepoNotFound, Store
from suite.publish.manifest import weights_fingerprint
from suite.publish.metadata import METADATA_FILE, FileDigest, step_of_revision


@dataclass(frozen=True)
class TaskSpec:
    """One unit of evaluation of a checkpoint, written as one part."""

    name: str  #: the ledger's `task`: `ppl/heldout`, `ppl/<set>`, a harness task name
    key: str  #: hash of the task's definition: a changed one is re-evaluated

    @property
    def is_perplexity(self) -> bool:
        return self.name.startswith("ppl/")


@dataclass(frozen=True)
class Checkpoint:
    """One published revision of a run, as the store holds it now."""

    run_name: str
    repo: str
    revision: str
    step: int
    tokens: int
    weights_sha256: str
    commit: str
    tokenizer_sha256: str


@dataclass
class RunPlan:
    run: object  #: the RunSpec
    store: Store
    checkpoints: list[Checkpoint]  #: every revision in scope
    todo: dict[str, list[TaskSpec]] = field(default_factory=dict)  #: revision → missing tasks

    @property
    def pending(self) -> list[Checkpoint]:
        return [c for c in self.checkpoints if self.todo.get(c.revision)]


def run_store(cfg, run) -> Store | None:
    """The store the run published to (its `run.json` says; else the suite's `publish.store`)."""
    from suite.publish.store import open_store
    from suite.rundir import run_dir

    spec = run_dir(cfg, run).read().info.get("store") or cfg.publish.store
    return open_store(spec)


def commit_id(store: Store, repo: str, revision: str) -> str:
    """The revision's commit in the store; for the local store (no commits), the immutable
    version folder its branch link points to (a re-publish makes a new one)."""
    head = store.head(repo, revision)
    if head:
        return head
    return Path(store.download(repo, revision)).resolve().name


def read_checkpoint(store: Store, run_name: str, repo: str, revision: str) -> Checkpoint:
    raw = store.read_file(repo, revision, METADATA_FILE)
    if raw is None:
        raise SuiteError(
            f"{repo}@{revision} ({store.spec}) has no {METADATA_FILE}; republish it "
            "(`suite publish RUN_DIR`) or check it with `suite verify`"
        )
    meta = json.loads(raw)
    files = {path: FileDigest(**digest) for path, digest in meta["files"].items()}
    tokenizer = files.get("tokenizer.json")
    return Checkpoint(
        run_name=run_name,
        repo=repo,
        revision=revision,
        step=int(meta["step"]),
        tokens=int(meta["tokens_seen"]),
        weights_sha256=weights_fingerprint(files),
        commit=commit_id(store, repo, revision),
        tokenizer_sha256=tokenizer.sha256 if tokenizer else "",
    )


def published_revisions(store: Store, repo: str) -> list[str] | None:
    """The repo's `step{N}` revisions by step; None when the repo does not exist yet."""
    try:
        revisions = store.list_revisions(repo)
    except RepoNotFound:
        return None
    steps = sorted((s, r) for r in revisions if (s := step_of_revision(r)) is not None)
    return [r for _, r in steps]


def select_revisions(run_name: str, revisions: list[str], steps: list[int]) -> list[str]:
    """`eval.steps` of the published revisions (all when empty); an unpublished step is an error."""
    if not steps:
        return revisions
    published = {step_of_revision(r): r for r in revisions}
    for step in steps:
        if step not in published:
            shown = ", ".join(str(s) for s in sorted(published)) or "none"
            raise ConfigError(
                "eval.steps",
                step,
                f"{run_name} has no published step{step} (published steps: {shown}); "
                "use published steps or leave eval.steps empty for all",
            )
    return [published[s] for s in sorted(set(steps))]


def _parse_part(eval_dir: Path, path: Path) -> tuple[str, str, str, str] | None:
    """(revision, weights12, dtype, task slug) of a part path, None when not one."""
    try:
        _, revision, leaf, name = path.relative_to(eval_dir / "parts").parts
    except ValueError:
        return None
    weights12, _, dtype = leaf.partition("-")
    return revision, weights12, dtype, name.removesuffix(".parquet")


def part_key_of(path: Path) -> str:
    import pyarrow.parquet as pq

    from suite.eval.ledger import TASK_KEY_FIELD

    return (pq.read_schema(path).metadata or {}).get(TASK_KEY_FIELD, b"").decode()


def plan_run(
    eval_dir: Path, run, store: Store, tasks: list[TaskSpec], steps: list[int], dtype: str
) -> RunPlan | None:
    """The run's checkpoints in scope and what is missing; flags its stale parts on disk.

    A part is stale when its revision left the store, when the revision's weights changed,
    or when the definition of its (requested) task changed; a stale part that becomes
    current again (the same weights republished) is unflagged. None: not published yet.
    """
    revisions = published_revisions(store, run.repo_id)
    if revisions is None:
        stale_all(eval_dir, run.run_name, keep=set())
        return None
    current = {r: read_checkpoint(store, run.run_name, run.repo_id, r) for r in revisions}
    chosen = select_revisions(run.run_name, revisions, steps)
    wanted = {t.name.replace("/", "__"): t for t in tasks}
    done: set[tuple[str, str]] = set()
    for path in part_files(eval_dir, run.run_name):
        parsed = _parse_part(eval_dir, path)
        if parsed is None:
            continue
        revision, weights12, part_dtype, slug = parsed
        checkpoint = current.get(revision)
        stale = checkpoint is None or checkpoint.weights_sha256[:12] != weights12
        key = None
        if not stale and part_dtype == dtype and slug in wanted:
            key = part_key_of(path)
            stale = key != wanted[slug].key
        # Unflag only parts this plan owns (its dtype and tasks): another command's task
        # (`suite memorization`'s) may be stale by a definition this plan cannot check.
        if stale or key is not None:
            set_stale(path, stale)
        if not stale and key is not None:
            done.add((revision, slug))
    plan = RunPlan(run, store, [current[r] for r in chosen])
    for revision in chosen:
        missing = [t for slug, t in wanted.items() if (revision, slug) not in done]
        if missing:
            plan.todo[revision] = missing
    return plan


def stale_all(eval_dir: Path, run_name: str, keep: set[str]) -> None:
    """Flag every part of a run whose revision is not in `keep` (the repo is gone)."""
    for path in part_files(eval_dir, run_name):
        parsed = _parse_part(eval_dir, path)
        if parsed and parsed[0] not in keep:
            set_stale(path, True)


def perplexity_task_keys(cfg, fingerprint: str) -> list[TaskSpec]:
    """`ppl/heldout` and one `ppl/<name>` per extra set, keyed by what defines their tokens."""
    tasks = [TaskSpec("ppl/heldout", task_key("heldout", fingerprint, cfg.eval.samples))]
    for name, inputs in sorted(cfg.eval.perplexity_sets.items()):
        key = task_key(
            name, fingerprint, sorted(inputs), cfg.eval.perplexity_set_tokens, cfg.data.text_field
        )
        tasks.append(TaskSpec(f"ppl/{name}", key))
    return tasks


def harness_task_keys(cfg, builtin_key: str | None) -> list[TaskSpec]:
    tasks = []
    if builtin_key is not None:
        from suite.eval.builtin_task import TASK_NAME

        tasks.append(TaskSpec(TASK_NAME, task_key(TASK_NAME, builtin_key, cfg.eval.num_fewshot)))
    for name in cfg.eval.tasks:
        tasks.append(TaskSpec(name, task_key(name, cfg.eval.num_fewshot, cfg.eval.include_path)))
    return tasks
