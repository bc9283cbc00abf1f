"""`suite eval`'s loop: every published checkpoint of the runs in scope, every task, once.

Reads top to bottom: plan (stores + ledger parts, no torch) → for each dataset, its fixed
inputs once (held-out windows, extra sets, the built-in task, the harness tasks) → for each
run, its tokenizer once → for each checkpoint with missing results, load the model once and
run every missing task on it, writing each task's rows as a part the moment it finishes →
merge the parts into the ledger. One process, warm throughout.
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite.errors import SuiteError
from suite.eval.ledger import PartKey, as_frame, merge_parts, write_ledger, write_part
from suite.eval.plan import (
    Checkpoint,
    RunPlan,
    TaskSpec,
    harness_task_keys,
    perplexity_task_keys,
    plan_run,
    run_store,
)

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Upper bound of automatic CPU workers: each holds its own torch, harness and tokenizer
#: (~0.5 GB), and models big enough to want many cores use threads well anyway.
MAX_AUTO_WORKERS = 8


@dataclass
class DatasetInputs:
    """What every checkpoint of one dataset is evaluated on, built once."""

    name: str
    path: Path
    tasks: list[TaskSpec]
    builtin_folder: Path | None
    _loaded: dict = field(default_factory=dict)

    def windows(self, cfg, task: str):
        """Token windows of a perplexity task (loaded on first use)."""
        if task not in self._loaded:
            from data_order import open_dataset
            from suite.eval.perplexity import set_windows

            dataset = open_dataset(self.path)
            if task == "ppl/heldout":
                self._loaded[task] = dataset.eval_samples(cfg.eval.samples)
            else:
                self._loaded[task] = set_windows(
                    cfg.eval.perplexity_sets[task.removeprefix("ppl/")],
                    Path(dataset.tokenizer_path),
                    cfg.data.text_field,
                    dataset.eos_id,
                    dataset.seq_len,
                    cfg.eval.perplexity_set_tokens,
                )
        return self._loaded[task]

    def byte_lengths(self):
        if "bytes" not in self._loaded:
            from data_order import open_dataset
            from suite.eval.perplexity import token_byte_lengths

            self._loaded["bytes"] = token_byte_lengths(Path(open_dataset(self.path).tokenizer_path))
        return self._loaded["bytes"]

    def harness(self, cfg):
        if "harness" not in self._loaded:
            from suite.eval.harness import HarnessTasks

            names = [t.name for t in self.tasks if not t.is_perplexity]
            include = [str(self.builtin_folder)] if self.builtin_folder else []
            if cfg.eval.include_path:
                include.append(str(Path(cfg.eval.include_path).absolute()))
            self._loaded["harness"] = HarnessTasks(
                names, include, cfg.eval.num_fewshot, cfg.eval.seed
            )
        return self._loaded["harness"]


def dataset_inputs(cfg, dataset: str, eval_dir: Path) -> DatasetInputs:
    """The tasks of `dataset` (generating the built-in task's files), validated, no torch."""
    from data_order import DataError, open_dataset
    from suite.rundir import dataset_dir

    path = dataset_dir(cfg, dataset)
    try:
        data = open_dataset(path)
    except (DataError, OSError) as err:
        raise SuiteError(
            f"dataset {dataset!r} ({path}) cannot be read ({err}); `suite eval` needs the "
            "prepared data for the held-out split: run `suite prepare` with the same config"
        ) from None
    builtin_folder, builtin_key = None, None
    if cfg.eval.builtin_examples:
        from suite.eval.builtin_task import heldout_documents, write_task

        builtin_folder = eval_dir / "tasks" / dataset
        documents = heldout_documents(data, Path(data.tokenizer_path))
        task = write_task(builtin_folder, documents, cfg.eval.builtin_examples, cfg.eval.seed)
        builtin_key = task.key
    tasks = perplexity_task_keys(cfg, data.fingerprint) + harness_task_keys(cfg, builtin_key)
    return DatasetInputs(dataset, path, tasks, builtin_folder)


@dataclass
class Outcome:
    evaluated: int = 0  #: checkpoints evaluated now
    parts: int = 0  #: task results written now
    rows: int = 0  #: ledger rows
    stale: int = 0  #: ledger rows flagged stale
    checkpoints: int = 0  #: checkpoints in scope
    ledger: Path | None = None
    seconds: float = 0.0


def _seeds(cfg, run) -> tuple[int, int]:
    """(init_seed, data_seed) of a run: its own (seed replicates), else the suite's fields,
    else the suite's `seed` for both."""

    def pick(name: str) -> int:
        for source in (run, cfg):
            value = getattr(source, name, None)
            if value is not None:
                return int(value)
        return int(getattr(run, "seed", None) or cfg.seed)

    return pick("init_seed"), pick("data_seed")


def plan_sweep(cfg, runs) -> tuple[list[RunPlan], dict[str, DatasetInputs], list[str]]:
    """Plans of the runs in scope and the inputs of their datasets; notes for runs skipped."""
    from suite.rundir import sweep_dir

    sweep = sweep_dir(cfg)
    if not sweep.is_sweep():
        raise SuiteError(
            f"no sweep at {sweep.path} (no sweep.json, no runs/); run `suite sweep` first, or "
            "point root=/name= at the sweep to evaluate"
        )
    eval_dir = sweep.eval_dir
    inputs = {
        ds: dataset_inputs(cfg, ds, eval_dir) for ds in dict.fromkeys(r.dataset_name for r in runs)
    }
    plans, notes = [], []
    for run in runs:
        store = run_store(cfg, run)
        if store is None:
            notes.append(f"{run.run_name}: publishes nowhere (publish.store=none): skipped")
            continue
        plan = plan_run(
            eval_dir,
            run,
            store,
            inputs[run.dataset_name].tasks,
            list(cfg.eval.steps),
            cfg.eval.dtype,
        )
        if plan is None:
            notes.append(f"{run.run_name}: nothing published in {store.spec} yet: skipped")
            continue
        plans.append(plan)
    return plans, inputs, notes


def merge_ledger(cfg):
    """Rebuild `{sweep}/eval/ledger.parquet` from the parts (written only when it changed)."""
    from suite.rundir import sweep_dir

    sweep = sweep_dir(cfg)
    ledger = merge_parts(sweep.eval_dir)
    if len(ledger) or sweep.ledger_path.exists():
        write_ledger(sweep.ledger_path, ledger)
    return ledger


def evaluate_sweep(cfg, runs, echo=print, merge: bool = True) -> Outcome:
    """Evaluate every missing (checkpoint, task) of `runs`, then rebuild the ledger (unless
    `merge` is False: a SLURM job, whose submitter merges once every job is done)."""
    import os

    from suite.rundir import sweep_dir

    started = time.perf_counter()
    if not cfg.eval.tasks:
        # Only local tasks: `datasets` must not look for the JSON builder on the Hub (a
        # cluster node without network would wait for time-outs). Harness tasks may need it.
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    plans, inputs, notes = plan_sweep(cfg, runs)
    for note in notes:
        echo(f"[eval] {note}")
    outcome = Outcome(checkpoints=sum(len(p.checkpoints) for p in plans))
    pending = [p for p in plans if p.pending]
    if pending:
        total = sum(len(p.pending) for p in pending)
        echo(
            f"[eval] {total} of {outcome.checkpoints} checkpoint(s) to evaluate ({cfg.eval.dtype})"
        )
        workers = worker_count(cfg, pending)
        if workers > 1:
            outcome.evaluated = _evaluate_in_workers(cfg, pending, workers)
        else:
            evaluator = Evaluator(cfg)
            for plan in pending:
                evaluator.run_plan(
                    plan, inputs[plan.run.dataset_name], sweep_dir(cfg).eval_dir, outcome, echo
                )
    sweep = sweep_dir(cfg)
    if not merge:
        outcome.seconds = time.perf_counter() - started
        return outcome
    ledger = merge_parts(sweep.eval_dir)
    written = (
        write_ledger(sweep.ledger_path, ledger)
        if len(ledger) or sweep.ledger_path.exists()
        else False
    )
    outcome.rows, outcome.stale = len(ledger), int(ledger["stale"].sum()) if len(ledger) else 0
    outcome.ledger, outcome.seconds = sweep.ledger_path, time.perf_counter() - started
    if not pending:
        echo(
            f"[eval] nothing new: {outcome.checkpoints} checkpoint(s) already in the ledger "
            f"({outcome.rows} rows{', updated' if written else ''})"
        )
    return outcome


def worker_count(cfg, pending: list[RunPlan]) -> int:
    """`eval.workers`, or on CPU (None) one process per usable core (at most
    `MAX_AUTO_WORKERS`, at most one per checkpoint); 1 on a GPU.

    Tiny models use two cores better as two single-threaded processes than as one process
    with two threads: their matmuls are too small to split well, and the harness's request
    handling is single-threaded Python.
    """
    import os

    checkpoints = sum(len(p.pending) for p in pending)
    if cfg.eval.workers is not None:
        return max(1, min(cfg.eval.workers, checkpoints))
    device = cfg.eval.device or ("cuda" if _cuda_available() else "cpu")
    cores = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, SLURM)
    return 1 if device != "cpu" else max(1, min(cores, MAX_AUTO_WORKERS, checkpoints))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _balance(pending: list[RunPlan], workers: int) -> list[list[tuple[str, str]]]:
    """(run, revision) pairs in `workers` groups of about equal cost (parameters per
    checkpoint), largest first; a run's checkpoints are spread, so its load is too."""
    groups: list[list[tuple[str, str]]] = [[] for _ in range(workers)]
    load = [0] * workers
    items = [(p.run.total_params, p.run.run_name, c.revision) for p in pending for c in p.pending]
    for cost, name, revision in sorted(items, key=lambda item: -item[0]):
        lightest = load.index(min(load))
        groups[lightest].append((name, revision))
        load[lightest] += cost
    return [g for g in groups if g]


def _evaluate_in_workers(cfg, pending: list[RunPlan], workers: int) -> int:
    """Evaluate the pending checkpoints in `workers` spawned processes, one thread each;
    their parts are on disk when they return. Returns the checkpoints evaluated."""
    import multiprocessing
    import os

    groups = _balance(pending, workers)
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    pool = context.Pool(len(groups))
    try:
        answers = pool.map(_worker, [(cfg, group, os.getpid()) for group in groups], chunksize=1)
        pool.close()  # let the workers exit on their own (terminate() leaks their semaphores)
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    errors = [a for a in answers if isinstance(a, str)]
    if errors:
        raise SuiteError(errors[0])
    return sum(answers)


def _worker(job) -> int | str:
    """One worker: plan its checkpoints' runs again (cheap) and evaluate its checkpoints,
    single-threaded."""
    import torch

    from suite.config import resolve_all
    from suite.rundir import sweep_dir

    cfg, mine, parent = job
    torch.set_num_threads(1)
    try:
        names = {name for name, _ in mine}
        plans, inputs, _ = plan_sweep(cfg, [r for r in resolve_all(cfg) if r.run_name in names])
        outcome = Outcome()
        evaluator = Evaluator(cfg)
        for plan in plans:
            plan.todo = {
                rev: tasks for rev, tasks in plan.todo.items() if (plan.run.run_name, rev) in mine
            }
            evaluator.run_plan(
                plan,
                inputs[plan.run.dataset_name],
                sweep_dir(cfg).eval_dir,
                outcome,
                lambda line: print(line, flush=True),
                parent=parent,
            )
        return outcome.evaluated
    except SuiteError as err:  # a plain string crosses the process boundary safely
        return str(err)


class Evaluator:
    """Holds the warm state: torch, the harness, tokenizers by hash."""

    def __init__(self, cfg):
        import torch

        from suite.eval.harness import harness_version, quiet_harness

        quiet_harness()
        self.cfg = cfg
        self.device = cfg.eval.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, TORCH_DTYPES[cfg.eval.dtype])
        self.harness_version = harness_version()
        self.tokenizers: dict[str, object] = {}

    def tokenizer(self, checkpoint: Checkpoint, folder: Path):
        key = checkpoint.tokenizer_sha256 or str(folder)
        if key not in self.tokenizers:
            from transformers import AutoTokenizer

            self.tokenizers[key] = AutoTokenizer.from_pretrained(str(folder))
        return self.tokenizers[key]

    def load(self, folder: Path):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=self.dtype)
        # Scoring never decodes: without a KV cache a forward pass copies no keys and values
        # into one (5-15% of it for these models; the logits are bitwise the same).
        model.config.use_cache = False
        return model.to(self.device).eval()

    def run_plan(
        self,
        plan: RunPlan,
        data: DatasetInputs,
        eval_dir: Path,
        outcome: Outcome,
        echo,
        parent: int | None = None,
    ) -> None:
        """Evaluate the plan's missing tasks, checkpoint by checkpoint. `parent`: in a
        worker, the process that started it; the worker stops if that one is gone."""
        import os

        run, cfg = plan.run, self.cfg
        init_seed, data_seed = _seeds(cfg, run)
        for checkpoint in plan.pending:
            if parent is not None and os.getppid() != parent:
                return
            started = time.perf_counter()
            folder = Path(plan.store.download(checkpoint.repo, checkpoint.revision))
            model = self.load(folder)
            params = sum(p.numel() for p in model.parameters())
            common = {
                "run": run.run_name,
                "size": run.size_name,
                "dataset": run.dataset_name,
                "init_seed": init_seed,
                "data_seed": data_seed,
                "revision": checkpoint.revision,
                "step": checkpoint.step,
                "tokens": checkpoint.tokens,
                "commit": checkpoint.commit,
                "weights_sha256": checkpoint.weights_sha256,
                "harness_version": self.harness_version,
                "dtype": cfg.eval.dtype,
                "batch_size": cfg.eval.batch_size,
                "eval_seed": cfg.eval.seed,
                "stale": False,
                "params": params,
                "non_embedding_params": run.non_embedding_params,
            }
            shown = []
            tasks = plan.todo[checkpoint.revision]
            harness_tasks = [t for t in tasks if not t.is_perplexity]
            for task in [t for t in tasks if t.is_perplexity]:
                t0 = time.perf_counter()
                rows = self._perplexity_rows(model, data, task)
                self._write(eval_dir, checkpoint, task, rows, common, time.perf_counter() - t0)
                shown.append(f"{task.name} {rows[0][1]:.4f} nats ({rows[1][1]:.3f} bpb)")
                outcome.parts += 1
            if harness_tasks:
                t0 = time.perf_counter()
                results = self._harness(model, checkpoint, folder, data)
                seconds = (time.perf_counter() - t0) / len(harness_tasks)
                for task in harness_tasks:
                    if task.name not in results:
                        raise SuiteError(f"lm-eval returned no result for task {task.name!r}")
                    rows = [(r.metric, r.value, r.stderr, r.n) for r in results[task.name]]
                    self._write(eval_dir, checkpoint, task, rows, common, seconds)
                    acc = next((v for m, v, _, _ in rows if m == "acc"), None)
                    shown.append(f"{task.name} acc {acc:.3f}" if acc is not None else task.name)
                    outcome.parts += 1
            del model
            outcome.evaluated += 1
            echo(
                f"[eval] {run.run_name} {checkpoint.revision}: {', '.join(shown)} "
                f"({time.perf_counter() - started:.1f}s)"
            )

    def _perplexity_rows(self, model, data: DatasetInputs, task: TaskSpec):
        from suite.eval.perplexity import perplexity

        result = perplexity(
            model, data.windows(self.cfg, task.name), data.byte_lengths(), self.cfg.eval.batch_size
        )
        return [(m, v, s, result.tokens) for m, (v, s) in result.metrics().items()]

    def _harness(self, model, checkpoint: Checkpoint, folder: Path, data: DatasetInputs):
        return data.harness(self.cfg).run(
            model, self.tokenizer(checkpoint, folder), self.cfg.eval.batch_size, self.cfg.eval.seed
        )

    def _write(
        self, eval_dir: Path, checkpoint: Checkpoint, task: TaskSpec, rows, common, seconds
    ) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        frame = as_frame(
            [
                {
                    **common,
                    "task": task.name,
                    "metric": metric,
                    "value": value,
                    "stderr": stderr if stderr is not None else math.nan,
                    "n": n,
                    "wall_s": seconds,
                    "evaluated_at": now,
                }
                for metric, value, stderr, n in rows
            ]
        )
        key = PartKey(
            checkpoint.run_name,
            checkpoint.revision,
            checkpoint.weights_sha256,
            self.cfg.eval.dtype,
            task.name,
        )
        write_part(key.path(eval_dir), frame, task.key)
