"""`suite train` that also reports what really ran: attention kernels called, model shape, peak memory.

Run it where `python -m suite.cli train` would run (plain, or under torchrun):
`GPU_PROBE_DIR=DIR python benchmarks/gpu_probe.py OVERRIDES`. Each rank writes
`DIR/rank{R}.json` when training returns or fails:

* `calls` — how often each attention kernel was entered in this process:
  `flash_attn_func` / `flash_attn_varlen_func` (the flash-attn 2 package's entry points,
  wrapped on the `flash_attn` module before transformers looks them up) and
  `scaled_dot_product_attention` (PyTorch's SDPA, which transformers' `sdpa` calls). A
  config that *claims* flash-attention while transformers silently took another path (a
  Hub kernel, SDPA, eager) shows up as zero flash calls.
* `model` — the trained module's `config._attn_implementation`, layers, width, heads,
  vocabulary, positions, parameter dtype and whether activation checkpointing is on, read
  off the DeepSpeed engine's module after it is built (wrapping
  `suite.train.factory.build_training`, as `tests/collective_probe.py` does).
* `max_memory_allocated_gb` / `max_memory_reserved_gb` — this rank's CUDA peaks over the
  whole run (null on CPU).

The wrappers only count and forward: what trains is exactly `suite train`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from pathlib import Path

CALLS: Counter[str] = Counter()
MODEL: dict = {}


def _counted(name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        CALLS[name] += 1
        return function(*args, **kwargs)

    return wrapper


def install_counters() -> dict[str, str]:
    """Wrap the attention entry points; returns what could not be wrapped and why."""
    import torch.nn.functional as F

    F.scaled_dot_product_attention = _counted(
        "scaled_dot_product_attention", F.scaled_dot_product_attention
    )
    missing: dict[str, str] = {}
    try:
        import flash_attn
    except Exception as err:  # ImportError, or OSError for a wheel built for another torch
        missing["flash_attn"] = f"{type(err).__name__}: {err}".splitlines()[0]
        return missing
    # transformers does `from flash_attn import flash_attn_func` when it first needs the
    # kernel (modeling_flash_attention_utils._lazy_imports), after this runs: it gets these.
    for name in ("flash_attn_func", "flash_attn_varlen_func"):
        setattr(flash_attn, name, _counted(name, getattr(flash_attn, name)))
    return missing


def _describe(module) -> dict:
    config = module.config
    param = next(module.parameters())
    return {
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "num_hidden_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "num_attention_heads": config.num_attention_heads,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "param_dtype": str(param.dtype).removeprefix("torch."),
        "device": str(param.device),
        # What `is_activation_checkpointing` (transformers 5) / `is_gradient_checkpointing` (4)
        # read, without their version-specific names and deprecation warnings.
        "activation_checkpointing": any(
            getattr(sub, "gradient_checkpointing", False) is True for sub in module.modules()
        ),
    }


def install_model_probe() -> None:
    import suite.train.factory as factory

    build = factory.build_training

    @functools.wraps(build)
    def build_and_describe(*args, **kwargs):
        training = build(*args, **kwargs)
        MODEL.update(_describe(training.trainer.engine.module))
        return training

    factory.build_training = build_and_describe


def _peaks() -> dict:
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {"max_memory_allocated_gb": None, "max_memory_reserved_gb": None}
    return {
        "max_memory_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
        "max_memory_reserved_gb": torch.cuda.max_memory_reserved() / 1e9,
    }


def main(overrides: list[str]) -> int:
    out = Path(os.environ.get("GPU_PROBE_DIR", "."))
    rank = int(os.environ.get("RANK", "0"))
    not_wrapped = install_counters()
    install_model_probe()
    from suite.cli import main as suite_main

    code = 1
    try:
        code = suite_main(["train", *overrides])
        return code
    finally:
        out.mkdir(parents=True, exist_ok=True)
        record = {"rank": rank, "exit_code": code, "calls": dict(CALLS), "model": MODEL}
        record |= {"not_wrapped": not_wrapped, **_peaks()}
        (out / f"rank{rank}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
