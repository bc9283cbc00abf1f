"""Parameter initialization by name: layout-independent, one tensor at a time.

Every parameter is drawn from its own generator, seeded by (init seed, parameter name), by
the rule its family's table (`model_zoo.Family.init_rules`) gives its name. The values are
therefore a pure function of (seed, name, shape, rule): the same for every TP/DP layout, for
every module construction order and whatever else consumed random numbers, and so step0 is
byte-identical between TP=1, TP=2 and DP=2 by construction.

How it meets DeepSpeed AutoTP (0.19.8): the model is constructed with its parameters on the
meta device (free), and each is then replaced by a *placeholder* (`defer_init`): a real
tensor of the full shape whose one element is broadcast (stride 0), 4 bytes however large
the shape. Meta itself cannot go through DeepSpeed: a meta Parameter cannot later receive
real data in place (`param.data = x` is refused across the meta boundary, and
`torch.utils.swap_tensors` is refused because DeepSpeed holds weak references to every
parameter), and a new Parameter object would be unknown to the optimizer built over the
model. `deepspeed.initialize` splits the placeholders: AutoTP copies each rank's slice of a
placeholder into a shard-sized tensor on the device, so a split layer holds its shard's
memory only. Then, before the engine casts and moves the module
(`DeepSpeedEngine._configure_distributed_model`, the first step after AutoTP that reads
weights, and before any optimizer or ZeRO copy), `materialize_in_engine` fills each
parameter: the full tensor is generated on the host, a split layer cuts its own shard out
of it with its own `_tp_partition` (the very code that would have split a full model, so the
shard is what TP=1 holds at those indices), the shard becomes the parameter's data on the
engine's device, and the full tensor is freed. A rank's host peak is its shard plus one
full tensor (the largest: an embedding, 1 GB at 12b) instead of the whole fp32 model
(47 GB at 12b, on every rank). The Parameter objects never change after `build_model`.

Why the values are generated on the host and not on the GPU: torch's CPU generator gives the
same numbers on every machine, while CUDA's `normal_` assigns elements to Philox streams by a
grid sized from the GPU's SM count, so an H100 and an A100 draw different step0 weights from
one seed. Host generation keeps step0 recomputable anywhere (issue 16's `verify --deep`). The
cost is CPU time: ~120 M values/s per rank (measured here), about 12 s at 1.4b and 100 s at
12b — every rank draws every full tensor, so ranks of a node work in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_zoo.families import InitRule

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

#: Standard deviation of each named `InitStd` (`model_zoo.families`), from the transformers
#: config of the model: GPT-NeoX v1.0's `megatron/model/init_functions.py` with d =
#: `hidden_size`, L = `num_hidden_layers` and its `init_method_std` = `initializer_range`.
INIT_STDS: dict[str, Callable[[PretrainedConfig], float]] = {
    "initializer_range": lambda config: float(config.initializer_range),
    "small_init": lambda config: math.sqrt(2 / (5 * config.hidden_size)),
    "wang_init": lambda config: 2 / config.num_hidden_layers / math.sqrt(config.hidden_size),
    "scaled_normal": lambda config: (
        float(config.initializer_range) / math.sqrt(2.0 * config.num_hidden_layers)
    ),
}


@dataclass(frozen=True)
class ParamInit:
    """How one parameter is filled: its full (unsplit) shape and its rule, resolved."""

    name: str
    shape: tuple[int, ...]
    kind: str
    """`normal`, `zeros` or `ones` (`InitRule.kind`)."""
    std: float | None
    """Standard deviation of a `normal` fill."""
    padding_idx: int | None = None
    """Row of an embedding that transformers zeroes after the normal fill (none in our
    families; honoured so a family with a padding token keeps transformers' init)."""


def param_seed(seed: int, name: str) -> int:
    """The generator seed of parameter `name` in a run seeded `seed` (63 bits of sha256)."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def init_plan(model: torch.nn.Module, rules: tuple[InitRule, ...]) -> dict[str, ParamInit]:
    """Each parameter's rule, by name, for `model` as built (before any TP split).

    Raises ValueError for a parameter that no rule matches: a new family or a new
    transformers version must not leave a parameter silently uninitialized.
    """
    import torch

    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    padding = {
        f"{prefix}.weight" if prefix else "weight": module.padding_idx
        for prefix, module in model.named_modules()
        if isinstance(module, torch.nn.Embedding) and module.padding_idx is not None
    }
    plan: dict[str, ParamInit] = {}
    unmatched = []
    for name, param in model.named_parameters():
        rule = next((rule for regex, rule in compiled if regex.fullmatch(name)), None)
        if rule is None:
            unmatched.append(name)
            continue
        std = INIT_STDS[rule.std](model.config) if rule.std is not None else None
        plan[name] = ParamInit(name, tuple(param.shape), rule.kind, std, padding.get(name))
    if unmatched:
        raise ValueError(
            f"no init rule of the family matches {len(unmatched)} parameters, e.g. "
            f"{unmatched[:3]}; add rows to its `init_rules` (model_zoo/families.py)"
        )
    return plan


def full_tensor(init: ParamInit, seed: int) -> torch.Tensor:
    """The whole parameter `init.name` as initialized, fp32, on the host."""
    import torch

    if init.kind == "zeros":
        return torch.zeros(init.shape)
    if init.kind == "ones":
        return torch.ones(init.shape)
    generator = torch.Generator(device="cpu").manual_seed(param_seed(seed, init.name))
    tensor = torch.empty(init.shape).normal_(0.0, init.std, generator=generator)
    if init.padding_idx is not None:
        tensor[init.padding_idx].zero_()
    return tensor


#: Marks a parameter that still holds its placeholder (set by `defer_init`, cleared when
#: `materialize` fills it); survives AutoTP, which keeps the Parameter objects.
PENDING = "_suite_init_pending"


def defer_init(model: torch.nn.Module) -> None:
    """Replace every meta parameter of a freshly built `model` by a placeholder Parameter.

    The placeholder is `torch.empty(()).expand(shape)`: full shape, one element of storage.
    Anything that would compute with it is a bug; `materialize` fills it and
    `materialize_in_engine` checks that nothing is left. Call it before anything else holds
    the parameters (an optimizer): the Parameter objects are new.
    """
    import torch

    replaced: dict[int, torch.nn.Parameter] = {}  # a tied parameter stays one object
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or not param.is_meta:
                continue
            if id(param) not in replaced:
                data = torch.empty((), dtype=param.dtype).expand(param.shape)
                placeholder = torch.nn.Parameter(data, requires_grad=param.requires_grad)
                setattr(placeholder, PENDING, True)
                replaced[id(param)] = placeholder
            module._parameters[name] = replaced[id(param)]


def pending(model: torch.nn.Module) -> list[str]:
    """Names of the parameters of `model` that still hold their placeholder."""
    return [name for name, param in model.named_parameters() if getattr(param, PENDING, False)]


def materialize(
    model: torch.nn.Module, plan: dict[str, ParamInit], seed: int, device: torch.device | str
) -> None:
    """Fill every placeholder parameter of `model` (whole or AutoTP-split) on `device`.

    The Parameter objects stay the same (their `.data` is replaced), so an optimizer built
    over the model holds the real parameters afterwards. One module at a time: the full
    tensors of one layer (weight and bias) exist at once, nothing more.
    """
    import sys

    # An AutoTP layer exists only if DeepSpeed was imported; a plain model is filled without
    # paying DeepSpeed's import.
    tp_layer = None
    if "deepspeed" in sys.modules:
        from deepspeed.module_inject.layers import TensorParallel_Layer as tp_layer

    for prefix, module in model.named_modules():
        own = [
            (name, param)
            for name, param in module.named_parameters(recurse=False)
            if getattr(param, PENDING, False)
        ]
        if not own:
            continue
        full = {}
        for name, _ in own:
            qualified = f"{prefix}.{name}" if prefix else name
            if qualified not in plan:
                raise RuntimeError(f"{qualified}: a parameter the plan does not know")
            full[name] = full_tensor(plan[qualified], seed)
        if tp_layer is not None and isinstance(module, tp_layer):
            if set(full) - {"weight", "bias"}:
                raise RuntimeError(f"{prefix}: AutoTP layer with parameters {sorted(full)}")
            # The layer's own split: it cuts and moves (to the accelerator's current device)
            # exactly as it cut the placeholders, and as it would have cut a full model.
            pieces = [full.get("weight"), full.get("bias")]
            module._tp_partition(pieces)
            full = {"weight": pieces[0], "bias": pieces[1]}
        for name, param in own:
            value = full.pop(name).to(device=device, dtype=param.dtype)
            if value.shape != param.shape:
                raise RuntimeError(
                    f"{prefix}.{name}: initialized shard {tuple(value.shape)} does not fit "
                    f"the parameter {tuple(param.shape)}"
                )
            param.data = value
            delattr(param, PENDING)


def materialize_on_host(model: torch.nn.Module, rules: tuple[InitRule, ...], seed: int) -> None:
    """Fill a whole (unsplit) model built with `defer_init` on the host: what one process
    without DeepSpeed holds, and what step0 of every layout equals."""
    materialize(model, init_plan(model, rules), seed, "cpu")


@contextlib.contextmanager
def materialize_in_engine(
    model: torch.nn.Module, rules: tuple[InitRule, ...], seed: int
) -> Iterator[None]:
    """Around `deepspeed.initialize(model=model, ...)`: fill the placeholder parameters right
    after AutoTP has split them (or, without TP, before the engine first touches them).

    DeepSpeed 0.19.8 has no hook between AutoTP and the engine's cast/move of the module,
    so `DeepSpeedEngine._configure_distributed_model` is wrapped for the duration of the
    block (it runs once per engine, after `_apply_autotp_partitioning` and before the
    optimizer or ZeRO copies any weight). Should a DeepSpeed version stop calling it, the
    block fails loudly on exit rather than train a model of placeholders.
    """
    from deepspeed.runtime.engine import DeepSpeedEngine

    plan = init_plan(model, rules)
    original = DeepSpeedEngine._configure_distributed_model

    def configure(engine, module):
        if module is model:
            materialize(module, plan, seed, engine.device)
        return original(engine, module)

    DeepSpeedEngine._configure_distributed_model = configure
    try:
        yield
    finally:
        DeepSpeedEngine._configure_distributed_model = original
    left = pending(model)
    if left:
        raise RuntimeError(
            f"{len(left)} parameters still hold their placeholder after deepspeed.initialize "
            f"(e.g. {left[:3]}): DeepSpeed no longer calls _configure_distributed_model after "
            "AutoTP; update suite/train/init.py for this DeepSpeed version"
        )
