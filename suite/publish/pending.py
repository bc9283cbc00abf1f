"""What a run directory still owes its store, both kinds together: checkpoints (weights
revisions, `suite.publish.publisher.Publisher`) and training states
(`suite.publish.training_state.TrainingStatePublisher`).

One vocabulary for both, read from the persistent queues (the truth after any crash): the
end-of-run line and run.json's fields (`Pending`), `suite status`'s pending column, and
`suite publish RUN_DIR` (`finish_pending`), which finishes both kinds in one drain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from suite.publish.base import Store
from suite.publish.publisher import (
    TARGET_FILE,
    Publisher,
    QueuedPublisher,
    describe_pending,
    finish,
    pending_revisions,
    read_target,
)
from suite.publish.retry import RetryPolicy
from suite.publish.store import require_store
from suite.publish.training_state import TrainingStatePublisher

__all__ = ["KINDS", "Pending", "finish_pending"]

#: Every kind of publication a run directory may queue, in the order they are reported.
KINDS: tuple[type[QueuedPublisher], ...] = (Publisher, TrainingStatePublisher)


@dataclass(frozen=True)
class Pending:
    """The branches a run still owes its store, per kind (queued entries, failed or not)."""

    revisions: list[str]
    """Weights branches (`step4`, …, `main`), step order."""
    training_states: list[str]
    """Training-state branches of `{repo}-training-state`, step order."""

    @classmethod
    def of(cls, run_dir: Path) -> Pending:
        """From the run directory's queues; SuiteError (one line) for an unreadable entry."""
        weights, states = (pending_revisions(kind.queued(run_dir)) for kind in KINDS)
        return cls(weights, states)

    def __bool__(self) -> bool:
        return bool(self.revisions or self.training_states)

    def fields(self) -> dict:
        """run.json: `publish_pending` / `training_state_pending` (counts) and their
        `…_revisions` (the branches); `suite publish RUN_DIR` updates them."""
        lists = (self.revisions, self.training_states)
        return {
            k: v
            for kind, revs in zip(KINDS, lists, strict=True)
            for k, v in kind.record(revs).items()
        }

    def message(self, run_dir: Path) -> str:
        """The one line that ends a run owing something, with the one command that
        finishes it: `publish: 5 revision(s) still pending (…), 1 training state(s) still
        pending (step4); finish with: suite publish RUN_DIR`."""
        lists = (self.revisions, self.training_states)
        owed = describe_pending(
            [(kind.pending_noun, revisions) for kind, revisions in zip(KINDS, lists, strict=True)]
        )
        return f"publish: {owed}; finish with: suite publish {Path(run_dir).absolute()}"


def finish_pending(
    run_dir: Path, store: Store | None = None, retry: RetryPolicy | None = None
) -> list[QueuedPublisher]:
    """`suite publish RUN_DIR`: finish the run's queued checkpoints and training states in
    one drain (`suite.publish.publisher.finish`: run.json updated, `PublishPending` or
    `PublishError` in one line when something is left). Returns the publishers, whose
    `published` say what went through.

    `store`: overrides the store the queues name (it must be the same store: the weights'
    `publish/target.json` refuses another one in one line, and so do training-state entries).
    """
    run_dir = Path(run_dir).absolute()
    states = TrainingStatePublisher.queued(run_dir)
    targets = []  # (kind, store, repo): every store opened before any worker starts
    if (run_dir / TARGET_FILE).is_file() or not states:
        target = read_target(run_dir)  # one line for a dir that never published anything
        targets.append((Publisher, store or require_store(target["store"]), target["repo"]))
    if states:  # their entries name store and repo (the publisher refuses another one)
        weights_repo = states[0].repo.removesuffix("-training-state")
        targets.append(
            (TrainingStatePublisher, store or require_store(states[0].store), weights_repo)
        )
    publishers: list[QueuedPublisher] = []
    try:
        for kind, kind_store, repo in targets:
            publishers.append(kind(run_dir, kind_store, repo, retry))
    except BaseException:  # another target: leave nothing running
        for publisher in publishers:
            publisher.close(wait=False)
        raise
    finish(run_dir, publishers)
    return publishers
