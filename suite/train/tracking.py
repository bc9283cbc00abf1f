"""Experiment tracking: every run's metrics to TensorBoard and Weights & Biases (rank 0).

Two trainer hooks, built by `tracking_hooks` on rank 0 when `logging.*` asks for them, read
the same records `metrics.jsonl` gets (`LogHook`): the metrics of each update become
`train/<name>` (loss, lr, grad_norm, tokens_per_s, mfu on GPU, loss_scale, …) and those of an
evaluation at that update `eval/<name>` (`eval_loss` → `eval/loss`), all on the step axis of
contract 1 (update `s`, 1-based). Each logs the run's resolved config and data fingerprint
once per process (`tracked_config`), scrubbed of secrets: no Hub token reaches either.

A resumed or requeued run continues where it stands, without a step twice:

- TensorBoard: each process writes a new event file in `{run_dir}/tensorboard/` with
  `purge_step` = resumed step + 1, so TensorBoard discards what an interrupted process wrote
  beyond the resume point (those updates are redone) — the curves equal `metrics.jsonl`.
- W&B: the run's id is kept in `{run_dir}/wandb/suite-run.jsonl` and every process continues
  it (`wandb.init(id=…, resume="allow")`): one W&B run per suite run (pythia#86: resumed
  runs split their logs). W&B's step axis only moves forward, so the steps an interrupted
  process already logged are not offered again (the file records each step logged). Offline,
  each process writes its own `{run_dir}/wandb/offline-run-*-{id}/`; `wandb sync` uploads
  them in order of start time as the one run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from suite.train.loop import Hook, Priority, Trainer

log = logging.getLogger(__name__)

#: `{run_dir}/tensorboard/`: the run's TensorBoard event files (one file per process).
TENSORBOARD_DIR = "tensorboard"
#: `{run_dir}/wandb/`: W&B's own directory (`wandb.init(dir=run_dir)` creates it).
WANDB_DIR = "wandb"
#: `{run_dir}/wandb/suite-run.jsonl`: the run's W&B id (first line), then one line per step
#: logged to it. Appended, never rewritten: no rename per update (a metadata operation per
#: step on a cluster's parallel file system) and a crash cuts at most the last line.
WANDB_STATE_FILE = "suite-run.jsonl"

#: After every evaluation hook (`Priority.EVAL`) and before the export: the metrics of an
#: evaluation at update `s` are in `trainer.state.last_eval` when the trackers see update `s`.
TRACKING_PRIORITY = Priority.EVAL - 10

#: Fields of a metrics record that are not a tracked number: the axis, hashes, flags.
_NOT_TRACKED = {"step", "batch_hash", "nonfinite", "skipped"}
#: Keys whose value is a secret whatever it holds (`token`, `hub_token`, `api_key`…), but not
#: `tokens`, `tokenizer` or `loss_chunk_tokens`.
_SECRET_KEY = re.compile(r"(?:^|_)(?:token|secret|password|passwd|api_key|apikey)$", re.I)
#: `scheme://user:password@host`: the credentials part of a URL.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
#: Environment variables holding the Hub's (or W&B's) credentials.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN", "WANDB_API_KEY")
MASK = "***"


def scalars(record: dict, prefix: str) -> dict[str, float]:
    """The tracked numbers of one metrics record, named `{prefix}/{name}`; an evaluation's
    `eval_` prefix is dropped (`eval_loss` → `eval/loss`). Bools and strings are not tracked."""
    out = {}
    for key, value in record.items():
        if key in _NOT_TRACKED or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = key.removeprefix("eval_") if prefix == "eval" else key
        out[f"{prefix}/{name}"] = float(value)
    return out


def known_secrets() -> set[str]:
    """The credentials this process could leak: the Hub token (environment or
    `huggingface-cli login`'s file) and W&B's API key."""
    found = {os.environ.get(name, "") for name in SECRET_ENV}
    try:
        from huggingface_hub import get_token

        found.add(get_token() or "")
    except Exception:  # an unreadable token file: nothing to hide from it
        pass
    return {value for value in found if len(value) >= 8}  # never mask "1" everywhere


def scrub(value, hidden: set[str]):
    """`value` (JSON-like) with every secret masked: values under secret-looking keys, the
    credentials of URLs, and any occurrence of a string of `hidden`."""
    if isinstance(value, dict):
        return {
            key: MASK if item and _SECRET_KEY.search(str(key)) else scrub(item, hidden)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item, hidden) for item in value]
    if isinstance(value, str):
        value = _URL_CREDENTIALS.sub(f"{MASK}@", value)
        for secret in hidden:
            value = value.replace(secret, MASK)
    return value


def tracked_config(cfg, run, identity: dict, meta_fields: dict) -> dict:
    """What the trackers record about the run: its resolved shape, data fingerprint, config
    hash, code version, identity (the fields a resume must match), step0 recipe and the
    whole suite config — JSON, secrets masked (`scrub`)."""
    from suite.publish.metadata import code_version

    document = {
        "run": {
            "name": run.run_name,
            "repo_id": run.repo_id,
            "size": run.size_name,
            "dataset": run.dataset_name,
            "seed": run.seed,
            "init_seed": run.init_seed,
            "data_seed": run.data_seed,
            "params": run.total_params,
            "non_embedding_params": run.non_embedding_params,
            "tp": run.tp,
            "dp": run.dp,
            "micro_batch": run.micro_batch,
            "grad_accum": run.grad_accum,
            "global_batch": run.global_batch,
            "seq_len": run.seq_len,
            "train_steps": run.train_steps,
            "lr": run.lr,
        },
        "data_fingerprint": meta_fields["data_fingerprint"],
        "config_hash": meta_fields["config_hash"],
        "code_version": code_version(),
        "identity": identity,
        "init_recipe": meta_fields.get("init_recipe"),
        "suite": asdict(cfg),
    }
    return scrub(json.loads(json.dumps(document, default=str)), known_secrets())


@dataclass
class _Tracker(Hook):
    """Hands each update's metrics, and those of an evaluation at that update, to `write`."""

    priority = TRACKING_PRIORITY

    config: dict
    """`tracked_config` of the run."""

    def after_update(self, trainer: Trainer, record: dict) -> None:
        values = scalars(record, "train")
        evaluation = trainer.state.last_eval
        if evaluation.get("step") == record["step"]:
            values |= scalars(evaluation, "eval")
        self.write(record["step"], values)

    def write(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError


@dataclass
class TensorBoardHook(_Tracker):
    """`{run_dir}/tensorboard/`: scalars per update, the config as text, and the run's
    hyperparameters for TensorBoard's HParams table (a sweep's runs side by side)."""

    log_dir: Path
    _writer: object = field(default=None, init=False, repr=False)

    def on_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        step = trainer.state.step
        earlier = self.log_dir.is_dir() and any(self.log_dir.glob("events.out.tfevents.*"))
        # An earlier process's events after the resumed step are redone now: TensorBoard
        # drops them from the earlier files (a SessionLog.START at `purge_step`).
        self._writer = SummaryWriter(str(self.log_dir), purge_step=step + 1 if earlier else None)
        text = json.dumps(self.config, indent=2, sort_keys=True)
        self._writer.add_text("config", f"```json\n{text}\n```", global_step=step)
        run = self.config["run"]
        wanted = ("size", "dataset", "seed", "init_seed", "data_seed", "params", "lr")
        table = {name: run[name] for name in wanted if run.get(name) is not None} | {
            "global_batch": run["global_batch"],
            "seq_len": run["seq_len"],
            "train_steps": run["train_steps"],
            "data_fingerprint": self.config["data_fingerprint"],
            "config_hash": self.config["config_hash"],
        }
        # Into this run's own event file (`add_hparams` would open a sub-run and log dummy
        # metric values): HParams then shows one row per run, its losses read from the scalars.
        for summary in hparams(table, {"train/loss": 0.0, "eval/loss": 0.0}):
            self._writer.file_writer.add_summary(summary)

    def write(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


@dataclass
class WandbHook(_Tracker):
    """One W&B run per suite run: created by the run's first process, continued (same id,
    same step axis) by every resume and requeue; `{run_dir}/wandb/`."""

    run_dir: Path
    mode: str
    """`online` or `offline` (`WandbConfig.mode`)."""
    project: str
    entity: str | None
    name: str
    """The W&B run's display name: the suite run's name."""
    group: str
    """The suite's name: W&B groups a sweep's runs."""
    _run: object = field(default=None, init=False, repr=False)
    _last_step: int = field(default=0, init=False)
    _run_id: str = field(default="", init=False)
    _steps: object = field(default=None, init=False, repr=False)
    _exit_code: int = field(default=0, init=False)

    @property
    def state_file(self) -> Path:
        return self.run_dir / WANDB_DIR / WANDB_STATE_FILE

    def on_start(self, trainer: Trainer) -> None:
        import wandb

        from suite.errors import SuiteError

        run_id, self._last_step = self._read_state()
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self._steps = open(self.state_file, "a")  # noqa: SIM115 - open for the run's lifetime
        if self._steps.tell() and not self.state_file.read_text().endswith("\n"):
            self._steps.write("\n")  # after a line cut by a crash: never glue onto it
        if run_id is None:  # the run's first process (recorded before init: a crash keeps it)
            run_id = uuid.uuid4().hex[:12]  # W&B takes any [a-z0-9]
            self._append({"id": run_id})
        self._run_id = run_id
        settings = wandb.Settings(
            silent=True,  # the run's own lines say where the files are
            # The suite owns the console (live display, train.log): W&B does not wrap it.
            console="off",
            # A git remote URL may carry credentials; the code version is in the config.
            disable_git=True,
            save_code=False,
        )
        argv = list(sys.argv)
        # W&B records the command line; a token typed there (a URL's credentials, an
        # override) must not reach it.
        sys.argv[:] = scrub(argv, known_secrets())
        try:
            self._run = wandb.init(
                id=self._run_id,
                resume="allow",
                project=self.project,
                entity=self.entity,
                mode=self.mode,
                dir=str(self.run_dir),
                name=self.name,
                group=self.group,
                job_type="train",
                settings=settings,
            )
        except Exception as err:  # no network, no login, a refused project …
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise SuiteError(
                f"W&B could not start run {self._run_id} ({type(err).__name__}: {reason}); "
                "check `wandb login` and the network, or set logging.wandb.mode=offline and "
                f"upload later with `wandb sync {self.run_dir / WANDB_DIR}`"
            ) from None
        finally:
            sys.argv[:] = argv
        # After init, not as its `config=`: a resumed W&B run refuses changed values there,
        # and a requeue may legitimately differ (e.g. the code version).
        self._run.config.update(self.config, allow_val_change=True)
        where = self._run.url if self.mode == "online" else self.run_dir / WANDB_DIR
        log.info("W&B run %s (%s): %s", self._run_id, self.mode, where)

    def write(self, step: int, values: dict[str, float]) -> None:
        if step <= self._last_step:
            return  # logged by an earlier process of this run; W&B's steps only move forward
        self._run.log(values, step=step)
        self._last_step = step
        self._append({"step": step})

    def on_error(self, trainer: Trainer, error: BaseException) -> None:
        from suite.train.preemption import TrainingInterrupted

        self._exit_code = 1
        if self._run is not None and isinstance(error, TrainingInterrupted):
            self._run.mark_preempting()  # W&B shows it preempted, expecting the requeue

    def close(self) -> None:
        try:
            if self._run is not None:
                run, self._run = self._run, None
                run.finish(exit_code=self._exit_code)
        finally:
            if self._steps is not None:
                steps, self._steps = self._steps, None
                steps.close()

    def _read_state(self) -> tuple[str | None, int]:
        """The run's W&B id (None: none yet) and the last step logged to it (0: none)."""
        run_id, last = None, 0
        try:
            lines = self.state_file.read_text().splitlines()
        except OSError:
            return None, 0
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and run_id is None:
                run_id = entry["id"]
            if isinstance(entry, dict) and isinstance(entry.get("step"), int):
                last = max(last, entry["step"])
        return run_id, last

    def _append(self, entry: dict) -> None:
        # Flushed, not fsynced: after a machine crash a lost line only offers W&B a step it
        # already holds again, which it ignores (its steps only move forward).
        self._steps.write(json.dumps(entry) + "\n")
        self._steps.flush()


def tracking_hooks(cfg, run, run_dir, identity: dict, meta_fields: dict) -> list[Hook]:
    """The tracking hooks `cfg.logging` asks for (rank 0 only: the caller decides), sharing
    one `tracked_config`; none when tracking is off."""
    settings = cfg.logging
    wandb = settings.wandb
    if not settings.tensorboard and wandb.mode == "disabled":
        return []
    config = tracked_config(cfg, run, identity, meta_fields)
    hooks: list[Hook] = []
    if settings.tensorboard:
        hooks.append(TensorBoardHook(config, log_dir=run_dir.path / TENSORBOARD_DIR))
    if wandb.mode != "disabled":
        hooks.append(
            WandbHook(
                config,
                run_dir=run_dir.path,
                mode=wandb.mode,
                project=wandb.project or cfg.name,
                entity=wandb.entity,
                name=run.run_name,
                group=cfg.name,
            )
        )
    return hooks
