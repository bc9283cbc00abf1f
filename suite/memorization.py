"""Extractable memorization across checkpoints (Pythia §memorization; Biderman et al. 2023,
"Emergent and predictable memorization in large language models").

A checkpoint has *memorized* a training sequence when, prompted with the sequence's first k
tokens (`memorization.prompt_tokens`, 32), greedy decoding reproduces its next c tokens
(`continuation_tokens`, 32) exactly; the sequence's *token accuracy* is the fraction of the c
tokens reproduced position by position (Pythia's "memorization score").

The sequences are a seeded draw of rows of the training order (`memorization.batches`,
`samples`, `seed`): the same global positions for every run of the suite, so sizes compare
on the same data (the tokens differ only between data seeds, whose orders differ). A row of
batch b is trained at update b + 1 (contract 1), so checkpoint stepN saw it N − (b + 1)
updates ago: `steps_since_seen`, negative while it is not yet trained on.

Results go through the evaluation ledger's machinery (contract 7, `suite.eval`): one part
per (run, revision, weights, dtype) with task `memorization` and metrics `exact_match` and
`token_accuracy` over the whole sample — planned from the stores, written atomically,
idempotent, resumable and flagged stale exactly as `suite eval`'s parts. Beside it, written
first (a part implies its sequences), the per-sequence results
`{sweep}/eval/memorization/{run}/{revision}/{weights12}-{dtype}.parquet` (`SEQUENCE_COLUMNS`),
for memorization against steps since a sequence was seen.
"""

from __future__ import annotations

import datetime
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suite.errors import ConfigError, SuiteError, one_line

#: The ledger's task of the default sample; a named one is `memorization/<name>`.
TASK = "memorization"
METRICS = ("exact_match", "token_accuracy")
#: Folder of the per-sequence results under `{sweep}/eval/`.
SEQUENCES_DIR = "memorization"
#: Columns of a per-sequence file, in order.
SEQUENCE_COLUMNS: dict[str, str] = {
    "run": "string",
    "size": "string",
    "dataset": "string",
    "task": "string",
    "revision": "string",
    "step": "int64",
    "weights_sha256": "string",
    "dtype": "string",
    "non_embedding_params": "int64",
    "batch": "int64",
    "row": "int64",
    "position": "int64",
    "sample": "int64",
    "steps_since_seen": "int64",
    "exact": "bool",
    "token_accuracy": "float64",
    "matched_prefix": "int64",
}
#: Bumped when what the metric means changes (joins the task key: old parts go stale).
METHOD = "greedy-argmax-v1"


# --- the sample --------------------------------------------------------------------------


def task_name(settings) -> str:
    """The ledger task of a sample: `memorization`, or `memorization/<memorization.name>`."""
    return f"{TASK}/{settings.name}" if settings.name else TASK


def is_memorization(task: str) -> bool:
    return task == TASK or task.startswith(f"{TASK}/")


def batch_range(settings, train_steps: int) -> tuple[int, int]:
    """(first, last) batch index, inclusive: `memorization.batches`, else every trained batch."""
    if settings.batches:
        first, last = settings.batches
        return int(first), int(last)
    return 0, train_steps - 1


def sample_positions(first: int, last: int, global_batch: int, samples: int, seed: int):
    """Sorted global positions of `samples` distinct rows of batches first … last (all of them
    when there are fewer), drawn from PCG64(SeedSequence([seed])).

    Hand-written rather than `Generator.choice`: like the data order (`data_order.order`) it
    depends only on PCG64's raw output, which numpy specifies exactly, not on a sampling
    algorithm numpy may change; and it needs memory for the draw only, not for every row of
    the range (Pythia's 143,000 batches hold 146M rows).
    """
    start, total = first * global_batch, (last - first + 1) * global_batch
    if samples >= total:
        return np.arange(start, start + total, dtype=np.int64)
    bits = np.random.PCG64(np.random.SeedSequence([seed]))
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < samples:  # rejection of repeats: a few rounds at most
        draws = (bits.random_raw(samples - len(chosen)) % np.uint64(total)).astype(np.int64)
        merged = np.concatenate([chosen, draws])
        _, first_seen = np.unique(merged, return_index=True)
        chosen = merged[np.sort(first_seen)]
    return np.sort(chosen) + start


@dataclass
class Sequences:
    """The drawn rows of one data order: where they are and their first k + c tokens."""

    positions: np.ndarray  #: global positions (batch · B + row)
    sample_ids: np.ndarray  #: sample id at each position
    tokens: np.ndarray  #: int64 [n, k + c]
    global_batch: int
    key: str  #: the ledger task key: what defines the sample and the metric

    @property
    def batches(self) -> np.ndarray:
        return self.positions // self.global_batch

    @property
    def rows(self) -> np.ndarray:
        return self.positions % self.global_batch


def check_settings(cfg) -> None:
    """Cross-field checks of `memorization.*` against the suite, before anything is read."""
    settings = cfg.memorization
    needed = settings.prompt_tokens + settings.continuation_tokens
    if needed > cfg.seq_len + 1:
        raise ConfigError(
            "memorization.continuation_tokens",
            settings.continuation_tokens,
            f"prompt_tokens {settings.prompt_tokens} + continuation_tokens "
            f"{settings.continuation_tokens} = {needed} exceed a sample's seq_len + 1 = "
            f"{cfg.seq_len + 1} tokens; shorten them",
        )


def run_data(cfg, run):
    """The run's dataset in the run's own order (its data seed), as its trainer read it."""
    from data_order import DataError, open_dataset
    from suite.data_seed import with_data_seed
    from suite.rundir import dataset_dir

    path = dataset_dir(cfg, run.dataset_name)
    try:
        data = open_dataset(path)
    except (DataError, OSError) as err:
        raise SuiteError(
            f"dataset {run.dataset_name!r} ({path}) cannot be read ({err}); `suite "
            "memorization` reads the training order: run `suite prepare` with the same config"
        ) from None
    return with_data_seed(data, run.data_seed, cfg.data_seed_of(cfg.reference_seed))


def draw_sequences(cfg, run, data) -> Sequences:
    """The sample of `run` (its dataset in its order `data`), checked against the order."""
    from suite.eval.ledger import task_key

    settings = cfg.memorization
    first, last = batch_range(settings, run.train_steps)
    batches = data.num_positions // run.global_batch
    if last >= batches:
        raise ConfigError(
            "memorization.batches",
            [first, last],
            f"{data.path} orders batches 0..{batches - 1} at global_batch={run.global_batch}; "
            "choose batches inside them",
        )
    positions = sample_positions(first, last, run.global_batch, settings.samples, settings.seed)
    sample_ids = data.sample_ids(positions)
    width = settings.prompt_tokens + settings.continuation_tokens
    tokens = data.samples(sample_ids, f"memorization sample of {run.run_name}")[:, :width]
    key = task_key(
        TASK,
        METHOD,
        data.fingerprint,
        run.global_batch,
        first,
        last,
        settings.samples,
        settings.seed,
        settings.prompt_tokens,
        settings.continuation_tokens,
    )
    return Sequences(positions, sample_ids, tokens, run.global_batch, key)


# --- the metric --------------------------------------------------------------------------


def greedy_continuations(model, prompts, length: int):
    """Greedy continuations `[n, length]` of prompts `[n, k]` of equal length, one argmax
    per position and nothing else.

    Hand-written rather than `model.generate`: generate stops a row at EOS (it falls back to
    the checkpoint's `eos_token_id` even when told None), and Pythia's `min_length` instead
    masks EOS out; a training sequence holds an EOS at every document boundary, and either
    would score it wrong. Equal-length prompts need no padding or attention mask; the KV
    cache gives the same tokens as re-running the whole prefix (checked in the tests).
    """
    import inspect

    import torch

    names = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in names else "past_key_values"  # transformers 5 vs 4
    keep = {"logits_to_keep": 1} if "logits_to_keep" in names else {}
    out = model(input_ids=prompts, use_cache=True, **keep)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    generated = [token]
    for _ in range(length - 1):
        cache = out.cache if cache_arg == "cache" else out.past_key_values
        out = model(input_ids=token, use_cache=True, **{cache_arg: cache}, **keep)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        generated.append(token)
    return torch.cat(generated, dim=1)


@dataclass
class Scores:
    exact: np.ndarray  #: bool [n]: all c tokens reproduced
    token_accuracy: np.ndarray  #: float [n]: fraction of the c tokens reproduced
    matched_prefix: np.ndarray  #: int [n]: tokens reproduced before the first miss

    def metrics(self) -> dict[str, tuple[float, float, int]]:
        """metric → (mean, standard error of the mean, n)."""
        n = len(self.exact)
        out = {}
        for name, values in (("exact_match", self.exact), ("token_accuracy", self.token_accuracy)):
            values = values.astype(np.float64)
            stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            out[name] = (float(values.mean()), stderr, n)
        return out


def score(model, tokens: np.ndarray, prompt_tokens: int, batch_size: int, device="cpu") -> Scores:
    """Prompt with `tokens[:, :k]`, generate the rest greedily, compare with `tokens[:, k:]`."""
    import torch

    length = tokens.shape[1] - prompt_tokens
    hits = []
    with torch.inference_mode():
        for start in range(0, len(tokens), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(tokens[start : start + batch_size]))
            chunk = chunk.to(device)
            generated = greedy_continuations(model, chunk[:, :prompt_tokens], length)
            hits.append((generated == chunk[:, prompt_tokens:]).cpu().numpy())
    hit = np.concatenate(hits) if hits else np.zeros((0, length), dtype=bool)
    missed = ~hit
    matched = np.where(missed.any(axis=1), missed.argmax(axis=1), length)
    return Scores(hit.all(axis=1), hit.mean(axis=1), matched.astype(np.int64))


# --- per-sequence files ------------------------------------------------------------------


def sequences_path(
    eval_dir: Path, run: str, revision: str, weights_sha256: str, dtype: str, task: str
):
    """Per-sequence results of one ledger part (same run, revision, weights, dtype, task)."""
    leaf = f"{weights_sha256[:12]}-{dtype}"
    return eval_dir / SEQUENCES_DIR / run / revision / leaf / f"{task.replace('/', '__')}.parquet"


def write_sequences(path: Path, frame, key: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from data_order.atomic import write_bytes
    from suite.eval.ledger import TASK_KEY_FIELD

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), TASK_KEY_FIELD: key})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(path, buffer.getvalue())


def read_sequences(eval_dir: Path, ledger):
    """Per-sequence results of the ledger's current `memorization` rows (`ledger` as the
    report reads it: stale rows dropped), one frame; a missing or unreadable file is skipped."""
    import pandas as pd

    rows = ledger[ledger["task"].map(is_memorization) & (ledger["metric"] == "exact_match")]
    frames = []
    for run, revision, weights, dtype, task in zip(
        rows["run"],
        rows["revision"],
        rows["weights_sha256"],
        rows["dtype"],
        rows["task"],
        strict=True,
    ):
        path = sequences_path(Path(eval_dir), run, revision, weights, dtype, task)
        try:
            frames.append(pd.read_parquet(path))
        except (OSError, ValueError):  # missing or damaged: the next evaluation rewrites it
            continue
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SEQUENCE_COLUMNS.items()})
    return pd.concat(frames, ignore_index=True).astype(SEQUENCE_COLUMNS)


# --- the loop ----------------------------------------------------------------------------


@dataclass
class Outcome:
    evaluated: int = 0  #: checkpoints evaluated now
    checkpoints: int = 0  #: checkpoints in scope
    rows: int = 0  #: ledger rows after the merge
    notes: list[str] = field(default_factory=list)
    ledger: Path | None = None
    seconds: float = 0.0


def plan(cfg, runs):
    """(plans, sequences by run name, notes): the ledger's plan of every run for the
    memorization task (no model loaded); runs that publish nowhere or nothing are noted."""
    from pyarrow import ArrowException

    from suite.eval.plan import TaskSpec, plan_run, published_revisions, run_store, stale_all
    from suite.rundir import sweep_dir

    check_settings(cfg)
    sweep = sweep_dir(cfg)
    if not sweep.is_sweep():
        raise SuiteError(
            f"no sweep at {sweep.path} (no sweep.json, no runs/); run `suite sweep` first, or "
            "point root=/name= at the sweep to evaluate"
        )
    plans, sequences, notes, drawn = [], {}, [], {}
    for run in runs:
        store = run_store(cfg, run)
        if store is None:
            notes.append(f"{run.run_name}: publishes nowhere (publish.store=none): skipped")
            continue
        if published_revisions(store, run.repo_id) is None:  # before reading its data
            stale_all(sweep.eval_dir, run.run_name, keep=set())  # as plan_run does
            notes.append(f"{run.run_name}: nothing published in {store.spec} yet: skipped")
            continue
        # Runs of one dataset, data seed and batch share their sample: draw it once.
        order = (run.dataset_name, run.data_seed, run.global_batch, run.train_steps)
        if order not in drawn:
            drawn[order] = draw_sequences(cfg, run, run_data(cfg, run))
        sample = drawn[order]
        try:
            run_plan = plan_run(
                sweep.eval_dir,
                run,
                store,
                [TaskSpec(task_name(cfg.memorization), sample.key)],
                list(cfg.memorization.steps),
                cfg.eval.dtype,
            )
        except ConfigError as err:  # plan_run names `suite eval`'s knob
            fix = err.fix.replace("eval.steps", "memorization.steps")
            raise ConfigError("memorization.steps", list(cfg.memorization.steps), fix) from None
        except (OSError, ArrowException) as err:  # a ledger part cut short
            raise SuiteError(
                f"{_damaged_part(sweep.eval_dir / 'parts' / run.run_name) or sweep.eval_dir}: "
                f"unreadable ledger part ({one_line(str(err))[:200]}); delete it and re-run: its "
                "checkpoint is evaluated again"
            ) from None
        if run_plan is None:
            notes.append(f"{run.run_name}: nothing published in {store.spec} yet: skipped")
            continue
        plans.append(run_plan)
        sequences[run.run_name] = sample
    return plans, sequences, notes


def evaluate_memorization(cfg, runs, echo=print) -> Outcome:
    """Score every missing (run, checkpoint) of `runs`, then rebuild the ledger. With
    nothing missing it reads only the stores and the parts (no torch, as `suite eval`)."""
    from suite.eval.runner import merge_ledger
    from suite.rundir import sweep_dir

    started = time.perf_counter()
    plans, sequences, notes = plan(cfg, runs)
    outcome = Outcome(checkpoints=sum(len(p.checkpoints) for p in plans), notes=notes)
    for note in notes:
        echo(f"[memorization] {note}")
    pending = sum(len(p.pending) for p in plans)
    if pending:
        echo(
            f"[memorization] {pending} of {outcome.checkpoints} checkpoint(s) to evaluate "
            f"({cfg.eval.dtype}, {len(next(iter(sequences.values())).positions)} sequences)"
        )
    if pending:
        _check_device(cfg.eval.device)
    eval_dir = sweep_dir(cfg).eval_dir
    for run_plan in plans:
        sample = sequences[run_plan.run.run_name]
        for checkpoint in run_plan.pending:
            t0 = time.perf_counter()
            folder = run_plan.store.download(checkpoint.repo, checkpoint.revision)
            model, device = _load(folder, cfg.eval)
            scores = score(
                model,
                sample.tokens,
                cfg.memorization.prompt_tokens,
                cfg.memorization.batch_size,
                device,
            )
            params = sum(p.numel() for p in model.parameters())
            del model
            _write(cfg, eval_dir, run_plan, checkpoint, sample, scores, params, t0)
            outcome.evaluated += 1
            metrics = scores.metrics()
            echo(
                f"[memorization] {run_plan.run.run_name} {checkpoint.revision}: exact_match "
                f"{metrics['exact_match'][0]:.4f}, token_accuracy "
                f"{metrics['token_accuracy'][0]:.4f} ({time.perf_counter() - t0:.1f}s)"
            )
    ledger = merge_ledger(cfg)
    outcome.rows, outcome.ledger = len(ledger), sweep_dir(cfg).ledger_path
    outcome.seconds = time.perf_counter() - started
    if not pending:
        echo(
            f"[memorization] nothing new: {outcome.checkpoints} checkpoint(s) already in the ledger"
        )
    return outcome


def _damaged_part(folder: Path) -> Path | None:
    """The first `.parquet` under `folder` whose footer pyarrow cannot read (None: none)."""
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    for path in sorted(folder.rglob("*.parquet")):
        try:
            pq.read_schema(path)
        except (OSError, ArrowException):
            return path
    return None


def _check_device(device: str | None) -> None:
    """Refuse an `eval.device` torch cannot use here, before any checkpoint is downloaded."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(
            "eval.device", device, "use a torch device such as cpu, cuda or cuda:1"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "eval.device", device, "no CUDA device here; use eval.device=cpu or leave it unset"
        )


def _load(folder, settings):
    """(model, device): the checkpoint as `suite eval` loads it (`eval.dtype`, `eval.device`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from suite.eval.runner import TORCH_DTYPES

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, TORCH_DTYPES[settings.dtype])
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    return model.to(device).eval(), device


def _write(cfg, eval_dir: Path, run_plan, checkpoint, sample: Sequences, scores, params, t0):
    """The per-sequence file, then the ledger part (a part implies its sequences)."""
    import pandas as pd

    from suite.eval.ledger import PartKey, as_frame, write_part

    run, dtype, task = run_plan.run, cfg.eval.dtype, task_name(cfg.memorization)
    identity = {
        "run": run.run_name,
        "size": run.size_name,
        "dataset": run.dataset_name,
        "task": task,
        "revision": checkpoint.revision,
        "step": checkpoint.step,
        "weights_sha256": checkpoint.weights_sha256,
        "dtype": dtype,
    }
    per_sequence = pd.DataFrame(
        {
            **{k: [v] * len(sample.positions) for k, v in identity.items()},
            "non_embedding_params": run.non_embedding_params,
            "batch": sample.batches,
            "row": sample.rows,
            "position": sample.positions,
            "sample": sample.sample_ids,
            "steps_since_seen": checkpoint.step - (sample.batches + 1),  # contract 1
            "exact": scores.exact,
            "token_accuracy": scores.token_accuracy,
            "matched_prefix": scores.matched_prefix,
        }
    )[list(SEQUENCE_COLUMNS)].astype(SEQUENCE_COLUMNS)
    path = sequences_path(
        eval_dir, run.run_name, checkpoint.revision, checkpoint.weights_sha256, dtype, task
    )
    write_sequences(path, per_sequence, sample.key)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    common = {
        **identity,
        "init_seed": run.init_seed,
        "data_seed": run.data_seed,
        "tokens": checkpoint.tokens,
        "commit": checkpoint.commit,
        "harness_version": f"suite memorization {METHOD}",
        "batch_size": cfg.memorization.batch_size,
        "eval_seed": cfg.memorization.seed,
        "wall_s": time.perf_counter() - t0,
        "evaluated_at": now,
        "stale": False,
        "params": params,
        "non_embedding_params": run.non_embedding_params,
    }
    frame = as_frame(
        [
            {**common, "metric": metric, "value": value, "stderr": stderr, "n": n}
            for metric, (value, stderr, n) in scores.metrics().items()
        ]
    )
    key = PartKey(run.run_name, checkpoint.revision, checkpoint.weights_sha256, dtype, task)
    write_part(key.path(eval_dir), frame, sample.key)
