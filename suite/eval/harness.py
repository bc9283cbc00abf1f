"""Downstream tasks through EleutherAI's lm-evaluation-harness, loaded once, run per checkpoint.

`HarnessTasks` resolves and loads the tasks once (a `TaskManager` over the harness's own
tasks when harness task names are asked for, plus the built-in task's folder and the user's
`eval.include_path`), so the datasets are read once per `suite eval`, not once per
checkpoint. Each checkpoint is then wrapped in an `HFLM` around the already loaded model and
tokenizer and evaluated with `lm_eval.evaluator.evaluate` — the step `simple_evaluate` ends
with, without its per-call task loading, git and environment probing (seconds per call,
which over 160 tiny checkpoints would cost more than the evaluation itself).

Two more things are the same for every checkpoint and are done once: the requests
(`Task.build_all_requests`: every prompt rendered through Jinja, few-shot examples drawn)
and their tokenization (`HFLM._encode_pair`, per tokenizer). For a model of a few million
parameters they cost about as much as its forward passes. Built once, the prompts are
also the same for every checkpoint when `eval.num_fewshot` > 0 (rebuilt per call, the
few-shot sampler's random state would move on between checkpoints).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import math
from dataclasses import dataclass

from suite.errors import ConfigError

#: Bootstrap draws for metrics without a closed-form standard error (acc and acc_norm, means,
#: have one and draw nothing); the harness's default of 100,000 is minutes per call.
BOOTSTRAP_ITERS = 1000


def harness_version() -> str:
    from importlib.metadata import version

    return f"lm-eval {version('lm_eval')}"


def quiet_harness() -> None:
    """The harness logs every request batch and draws bars: one line per checkpoint is ours."""
    import logging
    import os

    import datasets
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm reads it when imported: set it early too
    for name in ("lm-eval", "lm_eval", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


@dataclass(frozen=True)
class TaskResult:
    metric: str
    value: float
    stderr: float
    n: int


class HarnessTasks:
    """The harness tasks of one dataset, loaded once."""

    def __init__(self, names: list[str], include_paths: list[str], num_fewshot: int, seed: int):
        from lm_eval.tasks import TaskManager

        quiet_harness()
        self.names = list(names)
        # The harness's own task index (thousands of YAMLs, seconds) only when asked for.
        builtin_only = all(self._is_local(n, include_paths) for n in names)
        manager = TaskManager(include_path=include_paths or None, include_defaults=not builtin_only)
        known = set(manager.all_tasks)
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigError(
                    "eval.tasks",
                    name,
                    f"no such lm-eval task; {hint}use a harness task name (`lm_eval ls tasks`) "
                    "or a task YAML under eval.include_path",
                )
        self.task_dict = manager.load(names)
        for task in self.task_dict["tasks"].values():
            task.set_config(key="num_fewshot", value=num_fewshot)  # zero-shot unless asked
            task.set_fewshot_seed(seed=seed)
            _build_requests_once(task)
        #: tokenizer id → (tokenizer, {(context, continuation): encodings}); the tokenizer is
        #: held so its id is not reused while the cache lives.
        self._encodings: dict[int, tuple[object, dict]] = {}

    @staticmethod
    def _is_local(name: str, include_paths: list[str]) -> bool:
        from pathlib import Path

        return any(
            any(Path(p).rglob(f"{name}.yaml")) or any(Path(p).rglob(f"{name}.yml"))
            for p in include_paths
        )

    def run(self, model, tokenizer, batch_size: int, seed: int) -> dict[str, list[TaskResult]]:
        """task name → its metrics, for a loaded model (zero-shot unless eval.num_fewshot).

        The global random generators are seeded with `seed` as `simple_evaluate` seeds them
        (the same draws for every checkpoint) and given back their state afterwards: in the
        training loop the run's own random state must not move.
        """
        from lm_eval.evaluator import evaluate

        _, encodings = self._encodings.setdefault(id(tokenizer), (tokenizer, {}))
        # The harness draws a progress bar per request type on stderr (tqdm, which reads
        # TQDM_DISABLE only when first imported): kept out of the sweep's log, one line per
        # checkpoint is ours. Errors still raise.
        with _seeded(seed), contextlib.redirect_stderr(io.StringIO()):
            lm = _hflm_class()(
                pretrained=model, tokenizer=tokenizer, batch_size=batch_size, encodings=encodings
            )
            output = evaluate(
                lm, self.task_dict, log_samples=False, bootstrap_iters=BOOTSTRAP_ITERS
            )
        results: dict[str, list[TaskResult]] = {}
        for task, values in output["results"].items():
            n = int(output.get("n-samples", {}).get(task, {}).get("effective", 0))
            rows = []
            for key, value in values.items():
                metric, comma, filter_name = key.partition(",")
                if not comma or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                    continue
                stderr = values.get(f"{metric}_stderr,{filter_name}")
                stderr = float(stderr) if isinstance(stderr, (int, float)) else math.nan
                name = metric if filter_name == "none" else f"{metric},{filter_name}"
                rows.append(TaskResult(name, float(value), stderr, n))
            results[task] = rows
        return results


@contextlib.contextmanager
def _seeded(seed: int):
    """Python's, NumPy's and torch's (CPU) global generators seeded, then restored."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state()
    cuda = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


def _build_requests_once(task) -> None:
    """Make `task.build_all_requests` build the requests on its first call only; later calls
    with the same arguments get fresh copies of them (empty `resps`, which `evaluate`
    appends to). Other arguments (another rank, a limit) build as the harness does."""
    import dataclasses

    build = task.build_all_requests
    built: dict = {}

    def build_all_requests(**kwargs) -> None:
        key = repr(sorted(kwargs.items()))
        if built.get("key") != key:
            build(**kwargs)
            built.update(key=key, instances=list(task._instances))
        task._instances = [
            dataclasses.replace(instance, resps=[], filtered_resps={})
            for instance in built["instances"]
        ]

    task.build_all_requests = build_all_requests


@functools.cache
def _hflm_class():
    """`HFLM` remembering its (context, continuation) tokenizations in a dict it is given,
    shared by every checkpoint evaluated with the same tokenizer (a subclass, defined on
    first use: importing lm_eval's model module costs seconds)."""
    from lm_eval.models.huggingface import HFLM

    class WarmHFLM(HFLM):
        def __init__(self, *args, encodings: dict, **kwargs):
            super().__init__(*args, **kwargs)
            self._encodings = encodings

        def _encode_pair(self, context: str, continuation: str):
            key = (context, continuation)
            if key not in self._encodings:
                self._encodings[key] = super()._encode_pair(context, continuation)
            return self._encodings[key]

    return WarmHFLM
