"""The run's transformers model: seeded construction, attention choice, TP consolidation.

The model is built whole on every rank from the same seed *before* DeepSpeed AutoTP splits
it, so its initialization is identical for every world size and TP degree (and equal to
what a single process builds). `consolidated_state_dict` undoes the split for export.

Activation checkpointing is transformers' own: every decoder layer (`GPTNeoXLayer`,
`LlamaDecoderLayer`, `OlmoDecoderLayer` all derive from `GradientCheckpointingLayer`) runs
its `forward` under non-reentrant `torch.utils.checkpoint` when the model is in train mode
with grad enabled, so evaluation (`eval()` + `no_grad`) never recomputes. AutoTP later
replaces the `nn.Linear` children of those layers by its TP layers; the checkpoint wraps the
layer's `forward`, not its children, so the replaced layers are recomputed too (their
forward all-reduce runs again in backward, in the same order on every TP rank).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from suite.config import RunSpec

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

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
    config: PretrainedConfig, seed: int, activation_checkpointing: bool = False
) -> PreTrainedModel:
    """The family's transformers class, freshly initialized from `seed` (fp32, on CPU).

    With `activation_checkpointing` every decoder layer recomputes its activations in
    backward (train mode only; non-reentrant `torch.utils.checkpoint`).
    """
    import torch
    import transformers

    cls = getattr(transformers, _model_class(config))
    # A private generator state for the init only: the caller's RNG streams stay untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls._from_config(
            config, attn_implementation=config._attn_implementation or "sdpa", dtype=torch.float32
        )
    if activation_checkpointing:
        # Non-reentrant: works with inputs that do not require grad and with keyword
        # arguments, and is the variant torch recommends. `gradient_checkpointing_enable` is
        # a deprecated alias of this in transformers 5.
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    return model


def _model_class(config: PretrainedConfig) -> str:
    from model_zoo import FAMILIES

    for family in FAMILIES.values():
        if family.hf_config_class == type(config).__name__:
            return family.hf_model_class
    raise ValueError(f"no family uses {type(config).__name__}")


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
                    out[f"{prefix}.{name}" if prefix else name] = param.detach().cpu().clone()
    if keep:
        for name, buffer in module.state_dict().items():
            out.setdefault(name, buffer.detach().cpu().clone())
    return out


class ExportModel:
    """A plain (unsplit) copy of the model on rank 0 that receives gathered weights."""

    def __init__(self, config: PretrainedConfig, dtype_name: str):
        import torch

        dtype = getattr(torch, dtype_name)
        # A copy: `_from_config` writes into the config it is given, and the training model
        # holds the same object. The export never checkpoints and never runs attention
        # (it only receives weights and is saved), so it takes `sdpa` whatever trains;
        # `use_cache` is back on so that the published config.json generates fast.
        config = copy.deepcopy(config)
        config.use_cache = True
        config._attn_implementation = "sdpa"
        self.model = build_model(config, seed=0, activation_checkpointing=False)
        self.model.to(dtype)
        # Construction in fp32 rewrote config.dtype; the export must state the saved dtype.
        self.model.config.dtype = dtype
        self.model.eval()

    def load(self, state: dict[str, torch.Tensor]) -> PreTrainedModel:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # Non-persistent buffers (rotary frequencies) are rebuilt by the class itself.
        if unexpected or [m for m in missing if m in dict(self.model.named_parameters())]:
            raise RuntimeError(f"gathered weights do not fit the model: {missing=} {unexpected=}")
        return self.model
