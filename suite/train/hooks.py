"""Side effects of the training loop: metrics file, console progress, eval, resume, export.

Only rank 0 writes shared files; hooks that need every rank (evaluation, resume saves, TP
gathers for export) are collective and run on all ranks.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite.console import training_step
from suite.rundir import RESUME_DIR
from suite.train.loop import Hook, Priority, Trainer


class MetricsFile:
    """`run_dir/metrics.jsonl`: one JSON object per update (`loss`…) or evaluation (`eval_loss`…).

    On resume the lines of updates after the resumed step (written by the interrupted
    process, and about to be redone) are dropped, so every step appears once.
    """

    def __init__(self, path: Path, resumed_step: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_step == 0:
            self.path.write_text("")
        elif self.path.exists():
            from data_order.atomic import write_text

            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= resumed_step:
                        kept.append(line + "\n")
                except (ValueError, KeyError):
                    continue  # a line cut by the crash
            write_text(self.path, "".join(kept))
        self._handle = open(self.path, "a")  # noqa: SIM115 - open for the run's lifetime

    def write(self, record: dict) -> None:
        """One line of strict JSON: a non-finite number (an fp16 overflow's loss) is written
        as null and named in `nonfinite`, never as `Infinity`/`NaN`, which JSON lacks."""
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            record = {k: (None if k in bad else v) for k, v in record.items()} | {"nonfinite": bad}
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


@dataclass
class LogHook(Hook):
    """Metrics line per update; progress to the console (rank 0, `suite.console`): every
    update moves a sweep's live display, and a line every `every` updates with ETA is
    printed (plain output) or only logged (live display)."""

    priority = Priority.METRICS

    metrics: MetricsFile | None
    label: str
    every: int
    _started: float = field(default=0.0, init=False)
    _first_step: int = field(default=0, init=False)

    def on_start(self, trainer: Trainer) -> None:
        self._started, self._first_step = time.perf_counter(), trainer.state.step

    def after_update(self, trainer: Trainer, record: dict) -> None:
        if not trainer.is_main:
            return
        self.metrics.write(record)
        step, total, loss = record["step"], trainer.total_steps, record["loss"]
        if step % self.every and step != total and step != self._first_step + 1:
            training_step(self.label, step, total, loss, line=None)
            return
        done = step - self._first_step
        per_step = (time.perf_counter() - self._started) / done
        eta = per_step * (total - step)
        skipped = "  (skipped: fp16 overflow)" if record.get("skipped") else ""
        line = (
            f"[{self.label}] step {step}/{total}  loss {loss:.4f}{skipped}  "
            f"lr {record['lr']:.2e}  {record['tokens_per_s']:,.0f} tok/s  ETA {eta:,.0f}s"
        )
        training_step(self.label, step, total, loss, line=line)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


@dataclass
class EvalHook(Hook):
    """Held-out evaluation every `every` updates and after the last one (collective)."""

    priority = Priority.EVAL

    samples: object
    micro_batch: int
    dp_rank: int
    dp: int
    every: int
    metrics: MetricsFile | None

    def after_update(self, trainer: Trainer, record: dict) -> None:
        step = record["step"]
        if not (step == trainer.total_steps or (self.every and step % self.every == 0)):
            return
        from suite.train.evaluate import evaluate

        result = evaluate(
            trainer.engine,
            self.samples,
            self.micro_batch,
            self.dp_rank,
            self.dp,
            trainer.world_size,
        )
        trainer.state.last_eval = {"step": step, **result}
        if trainer.is_main:
            self.metrics.write(trainer.state.last_eval)
            print(
                f"[eval] step {step}: loss {result['eval_loss']:.4f}  "
                f"ppl {result['eval_perplexity']:.2f}",
                flush=True,
            )


@dataclass
class ResumeHook(Hook):
    """A resume checkpoint every `every` updates (not after the last: the run is complete),
    and at the steps whose training state is published (`publish.training_state`, the last
    one included): that checkpoint, complete and fsynced, is handed to the training-state
    publisher (rank 0), which uploads it in the background under the weights publisher's
    rules: its drain starts with the last update (beside the weights' drain, not after
    it); states still pending then stay queued for `suite publish RUN_DIR`, one failing for
    good fails the run in one line, like a checkpoint."""

    priority = Priority.RESUME

    run_dir: Path
    every: int
    keep: int
    identity: dict
    before_save: object = None
    """Called before every save (the export hook's `flush`): a resume point never lies after
    an export that is still being written."""
    state_at: object = None
    """`PublishConfig.training_state_at`: whether a step's training state is published."""
    state_publisher: object = None
    """`suite.publish.training_state.TrainingStatePublisher` on rank 0, None elsewhere."""
    state_document: dict = field(default_factory=dict)
    """The fields of `training_state.json` fixed for the run (identity, layout, names)."""
    last_saved: int | None = field(default=None, init=False)
    """Step of the latest checkpoint this process saved (the preemption hook reuses it)."""

    def on_start(self, trainer: Trainer) -> None:
        # A crash between a state's resume save and its queue entry: queue it now (only
        # from this run's own checkpoint, never one continued from elsewhere).
        step = trainer.state.step
        own = (self.run_dir / RESUME_DIR / f"step{step}").is_dir()
        if own and self._publishes(step) and not self.state_publisher.knows(step):
            self._submit(trainer, step)

    def after_update(self, trainer: Trainer, record: dict) -> None:
        step = record["step"]
        publish = self.state_at is not None and self.state_at(step)
        if publish or not (step % self.every or step == trainer.total_steps):
            self.save(trainer, step)
            if self._publishes(step):
                self._submit(trainer, step)
        if step == trainer.total_steps and self.state_publisher is not None:
            self.state_publisher.drain()  # nothing more to submit: drain beside the weights

    def _publishes(self, step: int) -> bool:
        publisher, state_at = self.state_publisher, self.state_at
        return publisher is not None and state_at is not None and step > 0 and state_at(step)

    def _submit(self, trainer: Trainer, step: int) -> None:
        state = trainer.state
        self.state_publisher.submit(
            self.run_dir / RESUME_DIR / f"step{step}",
            step,
            self.state_document
            | {
                "step": step,
                "batches_consumed": step,
                "batches_hash": state.batches_hash,
                "tokens_seen": state.tokens_seen,
            },
        )

    def on_end(self, trainer: Trainer) -> None:
        # After ExportHook.on_end (higher priority): every rank has left its collectives.
        if self.state_publisher is None:
            return
        publisher, self.state_publisher = self.state_publisher, None
        publisher.close(wait=True)  # raises when a state failed for good; pending ones stay

    def close(self) -> None:
        if self.state_publisher is not None:  # training failed: queued states stay on disk
            publisher, self.state_publisher = self.state_publisher, None
            publisher.close(wait=False)

    def save(self, trainer: Trainer, step: int) -> None:
        """Collective: the resume checkpoint of `step` (also on a preemption signal)."""
        from suite.train.resume import save_resume

        if self.before_save is not None:
            self.before_save()
        save_resume(
            trainer.engine,
            self.run_dir,
            step,
            trainer.state.batches_hash,
            self.identity,
            self.keep,
            trainer.rank,
        )
        self.last_saved = step


@dataclass
class ExportHook(Hook):
    """At every scheduled step (step 0 before the first update): gather, export, publish.

    The ranks of the first TP group gather the tensor-parallel shards (a collective within
    that group only: the other groups hold the same weights and skip it); rank 0 copies the
    full weights to host memory and hands them to a background thread, which writes
    `run_dir/exports/step{N}` (transformers folder + metadata, hashed) and submits it to the
    publisher — the training loop continues meanwhile. At most one export is in flight
    (bounded host memory); `flush` waits for it, and resume checkpoints flush first, so a
    resume point never lies after an export that was not written.

    The hook owns the publisher: at the end of the run every rank meets in a barrier, then
    rank 0 waits for every queued checkpoint to be published while the others are free (no
    rank sits in a collective under the timeout while rank 0 uploads); checkpoints the store
    still refuses after `publish.drain_timeout_s` stay pending (the run names them in one
    line with the command that finishes them, and records them in run.json); when training fails
    it stops after the checkpoint in flight and leaves the rest queued on disk for the next
    start (or `suite publish RUN_DIR`).
    """

    priority = Priority.EXPORT

    schedule: object
    """The suite's `CheckpointSchedule`."""
    export_model: object | None
    """`model.ExportModel` on rank 0, None elsewhere."""
    publisher: object | None
    """`suite.publish.Publisher` on rank 0, None elsewhere."""
    gathers: bool
    """This rank belongs to the first TP group (data-parallel rank 0) and takes part in the
    gather."""
    exports_dir: Path
    tokenizer_file: Path
    eos_token: str
    meta_fields: dict
    """CheckpointMeta fields fixed for the run (run_name, fingerprint, config hash, total)."""
    card: object | None = None
    """`suite.publish.model_card.CardContext`: each export gets its model card (README.md);
    None: none."""
    seconds: float = 0.0
    """Time the training loop spent on exports (gathers, waiting for the previous write)."""
    write_seconds: float = 0.0
    """Time the background thread spent writing and hashing exports."""
    publish_wait_seconds: float = 0.0
    """Time the run waited after its last update for the publisher to drain its queue."""
    exported: list[int] = field(default_factory=list)
    _writer: object = field(default=None, init=False, repr=False)
    _pending: object = field(default=None, init=False, repr=False)

    def on_start(self, trainer: Trainer) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" bars at every export
        if trainer.state.step == 0 and self.schedule.is_checkpoint(0):
            self.export(trainer)

    def after_update(self, trainer: Trainer, record: dict) -> None:
        if self.schedule.is_checkpoint(record["step"]):
            self.export(trainer)

    def export(self, trainer: Trainer) -> None:
        from suite.publish.metadata import CheckpointMeta
        from suite.train.model import consolidated_state_dict

        if not self.gathers:
            return
        started = time.perf_counter()
        self.flush()  # one export in flight at most: host memory stays bounded
        state = consolidated_state_dict(trainer.engine.module, keep=trainer.is_main)
        if trainer.is_main:
            meta = CheckpointMeta(
                step=trainer.state.step,
                tokens_seen=trainer.state.tokens_seen,
                batches_hash=trainer.state.batches_hash,
                **self.meta_fields,
            )
            if self._writer is None:
                from concurrent.futures import ThreadPoolExecutor

                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
            self._pending = self._writer.submit(self._write, state, meta)
        self.seconds += time.perf_counter() - started

    def _write(self, state: dict, meta) -> None:
        """Background: the export folder (atomic), then the publisher's queue."""
        from suite.publish.export import export_checkpoint

        started = time.perf_counter()
        folder = export_checkpoint(
            self.export_model.load(state),
            self.tokenizer_file,
            self.exports_dir / f"step{meta.step}",
            meta,
            eos_token=self.eos_token,
            card=self.card,
        )
        self.export_model.release()  # drop the weights: the folder holds them now
        if self.publisher is not None:  # None: `publish.store=none`
            self.publisher.submit(folder)
        self.exported.append(meta.step)
        self.write_seconds += time.perf_counter() - started

    def flush(self) -> None:
        """Wait for the export in flight; its error (a full disk, a dtype check) is raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def on_end(self, trainer: Trainer) -> None:
        import torch.distributed as dist

        started = time.perf_counter()
        self.flush()
        self.seconds += time.perf_counter() - started
        if trainer.world_size > 1:
            dist.barrier()  # every rank is done with collectives before rank 0 drains
        if self.publisher is not None:
            started = time.perf_counter()
            publisher, self.publisher = self.publisher, None
            publisher.close(wait=True)  # raises when a checkpoint failed for good
            self.publish_wait_seconds = time.perf_counter() - started

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # an export being written is finished, not cut
            self._writer = None
        if self.publisher is not None:  # training failed: queued exports stay on disk
            publisher, self.publisher = self.publisher, None
            publisher.close(wait=False)
