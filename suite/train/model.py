"""The run's transformers model: seeded construction, attention choice, TP consolidation.

The model is built with its parameters on the meta device; each parameter is then filled
from a generator seeded by (seed, parameter name) by its family's init table
(`suite.train.init`): on the host for a single process, or — in the trainer — shard by
shard right after DeepSpeed AutoTP has split the meta model. The initialization is
identical for every world size and TP degree (and equal to what a single process builds)
by construction, and no rank ever holds the whole model it does not keep.
`consolidated_state_dict` undoes the split for export.

Activation checkpointing is transformers' own: every decoder layer (`GPTNeoXLayer`,
`LlamaDecoderLayer`, `OlmoDecoderLayer` all derive from `GradientCheckpointingLayer`) runs
its `forward` under non-reentrant `torch.utils.checkpoint` when the model is in train mode
with grad enabled, so evaluation (`eval()` + `no_grad`) never recomputes. AutoTP later
replaces the `nn.Linear` children of those layers by its TP layers; the checkpoint wraps the
layer's `forward`, not its children, so the replaced layers are recomputed too (their
forward all-reduce runs again in backward, in the same order on every TP rank).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING

from suite.config import RunSpec

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

    from model_zoo.families import InitRule

#: torch dtype names of the suite's precisions.
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def export_dtype(precision: str, save_dtype: str | None) -> str:
    """dtype of published weights: `publish.save_dtype` if set, else the training precision."""
    from suite.errors import ConfigError

    name = save_dtype or precision
    if name in PRECISION_DTYPES:
        return PRECISION_DTYPES[name]
    if name in PRECISION_DTYPES.values():
        return name
    raise ConfigError(
        "publish.save_dtype", save_dtype, f"use one of {', '.join(PRECISION_DTYPES)} or null"
    )


def check_attention(attention: str, precision: str) -> str:
    """The `attn_implementation` for `SuiteConfig.attention`; fails early where it cannot run.

    Called at start-up, before the model is built. `sdpa` and `eager` run everywhere.
    `flash_attention_2` needs fp16/bf16 (flash-attn has no fp32 kernels: an fp32 model
    crashes at its first forward), CUDA, and a flash-attn wheel built against this torch:
    it is imported here, so a mismatched wheel (an undefined C++ symbol) is one line now
    rather than a traceback after the model and engine are built, and transformers cannot
    silently swap in a Hub kernel instead.
    """
    from suite.config import ATTENTIONS, check_attention_precision
    from suite.errors import ConfigError

    if attention not in ATTENTIONS:
        raise ConfigError("attention", attention, f"use one of: {', '.join(ATTENTIONS)}")
    if attention != "flash_attention_2":
        return attention
    check_attention_precision(attention, precision)
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "attention", attention, "flash-attn 2 needs a CUDA GPU; use attention=sdpa here"
        )
    try:
        import flash_attn  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: a missing/incompatible CUDA library
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            "attention",
            attention,
            f"the flash-attn package does not load with torch {torch.__version__} ({reason}); "
            "install a flash-attn wheel built for this torch and CUDA "
            "(pip install flash-attn --no-build-isolation) or use attention=sdpa",
        ) from None
    return attention


def hf_config(
    run: RunSpec, eos_id: int, precision: str, attention: str = "sdpa"
) -> PretrainedConfig:
    """The transformers config of the run for training (family shape, padded vocab, seq_len,
    dtype, attention kernel, checked by `check_attention` before anything is built).

    `use_cache` is off: a training forward must not build a KV cache it never reads (the
    family configs default to on, for generation). `ExportModel` turns it back on in what is
    published, so `from_pretrained(...).generate()` stays fast.
    """
    config = run.family.to_hf_config(
        run.size, run.padded_vocab, run.seq_len, eos_id=eos_id, bos_id=eos_id
    )
    config.dtype = PRECISION_DTYPES[precision]
    config.use_cache = False
    config._attn_implementation = check_attention(attention, precision)
    return config


def build_model(
    config: PretrainedConfig,
    seed: int,
    activation_checkpointing: bool = False,
    materialize: bool = True,
    init_rules: tuple[InitRule, ...] | None = None,
) -> PreTrainedModel:
    """The family's transformers class (fp32), initialized from `seed` by `init_rules` (a
    run's: `run.family.init_rules_for(run.size)`; None: the family's transformers table
    `model_zoo.Family.init_rules`), values per (seed, parameter name).

    With `materialize` the parameters are filled on the host. Without, they hold
    placeholders (full shape, no memory; `suite.train.init.defer_init`) for
    `suite.train.init.materialize_in_engine` to fill after AutoTP's split. Buffers (rotary
    frequencies) are real either way, computed by the class.
    With `activation_checkpointing` every decoder layer recomputes its activations in
    backward (train mode only; non-reentrant `torch.utils.checkpoint`).
    """
    import torch
    import transformers

    from suite.train.init import defer_init, materialize_on_host

    cls = getattr(transformers, _model_class(config))
    # fork_rng: whatever the class's own init draws (on meta tensors, nothing) leaves the
    # caller's RNG streams untouched.
    with torch.random.fork_rng(devices=[]), _parameters_on_meta():
        model = cls._from_config(
            config, attn_implementation=config._attn_implementation or "sdpa", dtype=torch.float32
        )
    defer_init(model)
    if materialize:
        rules = _family(config).init_rules if init_rules is None else init_rules
        materialize_on_host(model, rules, seed)
    if activation_checkpointing:
        # Non-reentrant: works with inputs that do not require grad and with keyword
        # arguments, and is the variant torch recommends. `gradient_checkpointing_enable` is
        # a deprecated alias of this in transformers 5.
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    return model


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside the block goes to the meta device; buffers do not.

    Not `with torch.device("meta")`: that would put the non-persistent buffers (rotary
    `inv_freq`, computed in the class's `__init__` and never saved) on meta too, and they
    would have to be recomputed by hand for every family. A parameter is created on the
    host first (`torch.empty`: address space, no pages touched) and moved to meta as it is
    registered, before the module's own `reset_parameters` runs — on meta, for free.
    """
    import torch

    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        if param is not None and not param.is_meta:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _family(config: PretrainedConfig):
    from model_zoo import FAMILIES

    for family in FAMILIES.values():
        if family.hf_config_class == type(config).__name__:
            return family
    raise ValueError(f"no family uses {type(config).__name__}")


def _model_class(config: PretrainedConfig) -> str:
    return _family(config).hf_model_class


def consolidated_state_dict(module: torch.nn.Module, keep: bool) -> dict[str, torch.Tensor]:
    """Full (TP-gathered) CPU copies of every parameter and persistent buffer.

    Collective under TP: every rank must call it; only ranks with `keep` collect the copies
    (the others return an empty dict). Without TP it is a plain copy.
    """
    from deepspeed.module_inject.layers import GatherReplacedLayerParams

    out: dict[str, torch.Tensor] = {}
    for prefix, sub in module.named_modules():
        params = list(sub.parameters(recurse=False))
        if not params:
            continue
        with GatherReplacedLayerParams(params, sub, enabled=True):
            if keep:
                for name, param in sub.named_parameters(recurse=False):
                    # One host copy, made while the gathered tensor exists (on a GPU: the
                    # full tensor goes straight to host memory, nothing stays on device).
                    out[f"{prefix}.{name}" if prefix else name] = param.detach().to(
                        "cpu", copy=True
                    )
    if keep:
        for name, buffer in module.state_dict().items():
            out.setdefault(name, buffer.detach().to("cpu", copy=True))
    return out


class ExportModel:
    """The unsplit model class on rank 0 that receives gathered weights, built on the meta
    device: it holds no memory of its own between exports (no second full model on the
    host), and each export's weights are assigned into it in the saved dtype."""

    def __init__(self, config: PretrainedConfig, dtype_name: str):
        import torch
        import transformers

        self.dtype = getattr(torch, dtype_name)
        # A copy: `_from_config` writes into the config it is given, and the training model
        # holds the same object. The export never checkpoints and never runs attention
        # (it only receives weights and is saved), so it takes `sdpa` whatever trains;
        # `use_cache` is back on so that the published config.json generates fast.
        config = copy.deepcopy(config)
        config.use_cache = True
        config._attn_implementation = "sdpa"
        cls = getattr(transformers, _model_class(config))
        with torch.device("meta"):
            self.model = cls._from_config(config, attn_implementation="sdpa", dtype=self.dtype)
        # The export must state the saved dtype in its config.json.
        self.model.config.dtype = self.dtype
        self.model.eval()

    def load(self, state: dict[str, torch.Tensor]) -> PreTrainedModel:
        """The model holding `state` (cast to the saved dtype; floating tensors only)."""
        state = {
            name: tensor.to(self.dtype) if tensor.is_floating_point() else tensor
            for name, tensor in state.items()
        }
        missing, unexpected = self.model.load_state_dict(state, strict=False, assign=True)
        # Non-persistent buffers (rotary frequencies) are not saved: they may stay on meta.
        parameters = dict(self.model.named_parameters())
        if unexpected or [name for name in missing if name in parameters]:
            raise RuntimeError(f"gathered weights do not fit the model: {missing=} {unexpected=}")
        return self.model

    def release(self) -> None:
        """Back to meta: the exported weights are freed once the caller drops its state."""
        self.model.to("meta")
