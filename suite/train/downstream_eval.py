"""In-loop downstream evaluation: `eval.in_loop_tasks` on the current weights, beside the loss.

OLMo evaluates downstream tasks in the training loop; here `eval.in_loop_tasks` (empty by
default: nothing runs) names harness tasks — the built-in `heldout_continuation`, lm-eval
task names, YAMLs under `eval.include_path` — that rank 0 runs every `eval.every` updates
and after the last one, through the code `suite eval` runs them with (`HarnessTasks`:
lm-evaluation-harness's `HFLM` and `evaluate`, the same dtype, batch size, seed and
built-in examples). Each evaluation is one `metrics.jsonl` line, `{"step": N,
"eval/<task>/<metric>": value, ...}`, written after the step's `eval_loss` line.

The weights are the ones an export of that step would publish: the ranks of the first
tensor-parallel group gather the shards (`consolidated_state_dict`, as `ExportHook` does;
a collective within that group), rank 0 casts them to the saved dtype and loads them into
an unsplit model of the published class, evaluated in `eval.dtype`. So at a step that is
also a published checkpoint the logged numbers are `suite eval`'s for that revision. The
other ranks go on to the next update and wait in its first collective meanwhile.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite.train.loop import Hook, Priority, Trainer

#: Where the built-in task's files are generated, under the run directory.
TASKS_DIR = "eval_tasks"


@dataclass
class DownstreamEvalHook(Hook):
    """`eval.in_loop_tasks` every `every` updates and after the last one (rank 0 evaluates;
    the first TP group gathers)."""

    priority = Priority.EVAL  # ties keep the given order: after `EvalHook`'s eval_loss line

    eval_cfg: object
    """The suite's `EvalConfig`."""
    model_config: object
    """The run's transformers config (the training model's)."""
    save_dtype: str
    """The dtype exports are saved in (`publish.save_dtype`), e.g. `float32`."""
    tokenizer_file: Path
    eos_token: str
    data: object
    """The run's open `data_order.Dataset` (held-out documents for the built-in task)."""
    tasks_dir: Path
    gathers: bool
    """This rank belongs to the first TP group and takes part in the gather."""
    metrics: object | None
    """`MetricsFile` on rank 0, None elsewhere."""
    seconds: float = 0.0
    """Time the training loop spent on these evaluations (rank 0)."""
    _tasks: object = field(default=None, init=False, repr=False)
    _model: object = field(default=None, init=False, repr=False)
    _tokenizer: object = field(default=None, init=False, repr=False)

    def on_start(self, trainer: Trainer) -> None:
        if trainer.is_main:
            self._harness()  # a task name the harness does not know fails now, not at step N

    def after_update(self, trainer: Trainer, record: dict) -> None:
        step = record["step"]
        if not (step == trainer.total_steps or step % self.eval_cfg.every == 0):
            return
        if not self.gathers:
            return
        from suite.train.model import consolidated_state_dict

        started = time.perf_counter()
        state = consolidated_state_dict(trainer.engine.module, keep=trainer.is_main)
        if not trainer.is_main:
            return
        model = self._load(state, trainer.engine.device)
        del state
        results = self._harness().run(
            model, self._hf_tokenizer(), self.eval_cfg.batch_size, self.eval_cfg.seed
        )
        line = {"step": step}
        for task in self._harness().names:
            for result in results[task]:
                line[f"eval/{task}/{result.metric}"] = result.value
        self.metrics.write(line)
        self.seconds += time.perf_counter() - started
        shown = ", ".join(
            f"{key.removeprefix('eval/')} {value:.3f}"
            for key, value in line.items()
            if key.endswith("/acc")
        )
        print(f"[eval] step {step}: {shown or ', '.join(line)}", flush=True)

    def _harness(self):
        """The tasks, loaded once (the built-in task generated first when asked for)."""
        if self._tasks is None:
            from suite.eval.harness import HarnessTasks

            names = list(self.eval_cfg.in_loop_tasks)
            include = []
            if names == ["heldout_continuation"]:
                # As `suite eval` with only local tasks: `datasets` must not look for the
                # JSON builder on the Hub (a node without network would wait for time-outs).
                os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            if "heldout_continuation" in names:
                from suite.eval.builtin_task import heldout_documents, write_task

                documents = heldout_documents(self.data, Path(self.data.tokenizer_path))
                cfg = self.eval_cfg
                write_task(self.tasks_dir, documents, cfg.builtin_examples, cfg.seed)
                include.append(str(self.tasks_dir))
            if self.eval_cfg.include_path:
                include.append(str(Path(self.eval_cfg.include_path).absolute()))
            self._tasks = HarnessTasks(
                names, include, self.eval_cfg.num_fewshot, self.eval_cfg.seed
            )
        return self._tasks

    def _hf_tokenizer(self):
        """The tokenizer an export saves (`export_checkpoint`'s), built once."""
        if self._tokenizer is None:
            from transformers import PreTrainedTokenizerFast

            self._tokenizer = PreTrainedTokenizerFast(
                tokenizer_file=str(self.tokenizer_file),
                eos_token=self.eos_token,
                bos_token=self.eos_token,
            )
        return self._tokenizer

    def _load(self, state: dict, device):
        """The published class holding `state` as an export saves it (cast to the saved
        dtype), in `eval.dtype`, on the training device; the model is built once."""
        import torch

        from suite.eval.runner import TORCH_DTYPES

        eval_dtype = getattr(torch, TORCH_DTYPES[self.eval_cfg.dtype])
        if self._model is None:
            from transformers import AutoModelForCausalLM

            # The class `suite eval` loads, with the attention `ExportModel` writes into
            # config.json (sdpa) and, as `suite eval`, no KV cache (scoring never decodes);
            # built once, on the host, then moved.
            config = copy.deepcopy(self.model_config)
            config.use_cache = False
            config._attn_implementation = "sdpa"
            self._model = AutoModelForCausalLM.from_config(
                config, attn_implementation="sdpa", dtype=eval_dtype
            )
            self._model.to(device).eval()
        save_dtype = getattr(torch, self.save_dtype)
        saved = {
            name: tensor.to(save_dtype) if tensor.is_floating_point() else tensor
            for name, tensor in state.items()
        }
        missing, unexpected = self._model.load_state_dict(saved, strict=False)
        parameters = dict(self._model.named_parameters())
        if unexpected or [name for name in missing if name in parameters]:
            raise RuntimeError(f"gathered weights do not fit the model: {missing=} {unexpected=}")
        return self._model


def downstream_eval_hooks(cfg, data, run_dir, config, save_dtype, eos_token, gathers, metrics):
    """The hook when `eval.in_loop_tasks` names tasks (none otherwise)."""
    if not cfg.eval.in_loop_tasks:
        return ()
    return (
        DownstreamEvalHook(
            eval_cfg=cfg.eval,
            model_config=config,
            save_dtype=save_dtype,
            tokenizer_file=Path(data.tokenizer_path),
            eos_token=eos_token,
            data=data,
            tasks_dir=Path(run_dir.path) / TASKS_DIR,
            gathers=gathers,
            metrics=metrics,
        ),
    )
