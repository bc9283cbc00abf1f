"""The run's transformers model: seeded construction, attention choice, TP consolidation.

The model is built whole on every rank from the same seed *before* DeepSpeed AutoTP splits
it, so its initialization is identical for every world size and TP degree (and equal to
what a single process builds). `consolidated_state_dict` undoes the split for export.
"""

from __future__ import annotations

import importlib.util
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


def attention_implementation() -> str:
    """`flash_attention_2` where CUDA and flash-attn are present, else PyTorch's `sdpa`."""
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def hf_config(run: RunSpec, eos_id: int, precision: str) -> PretrainedConfig:
    """The transformers config of the run (family shape, padded vocab, seq_len, dtype)."""
    config = run.family.to_hf_config(
        run.size, run.padded_vocab, run.seq_len, eos_id=eos_id, bos_id=eos_id
    )
    config.dtype = PRECISION_DTYPES[precision]
    return config


def build_model(config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """The family's transformers class, freshly initialized from `seed` (fp32, on CPU)."""
    import torch
    import transformers

    cls = getattr(transformers, _model_class(config))
    # A private generator state for the init only: the caller's RNG streams stay untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls._from_config(
            config, attn_implementation=attention_implementation(), dtype=torch.float32
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
        self.model = build_model(config, seed=0)
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
