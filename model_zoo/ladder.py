"""The size ladders: one table per suite, one row per model size.

Shapes and learning rates of the Pythia rows are EleutherAI's published GPT-NeoX configs
(`pythia/models/*.yml` in the Pythia repository) and model cards; parameter counts derived
from them match the published totals exactly (see `tests/test_model_zoo.py`). The `mini`
ladder keeps the shape of the suite (eight sizes, growing depth and width, LR falling with
size like Pythia's) at a scale where all 16 runs train on 2 CPU cores in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

InitScheme = Literal["small_wang", "neox_default", "hf_default"]
"""How a size's weights are initialized (the rule tables: `model_zoo.families`).

- `small_wang`: GPT-NeoX's `init_method: small_init` (normal, std √(2/(5d))) for the
  embeddings, QKV, MLP input and output layer, `output_layer_init_method: wang_init` (std
  2/(L·√d)) for the attention output (`attention.dense`) and MLP output
  (`mlp.dense_4h_to_h`) projections — what the Pythia 14M…2.8B configs name.
- `neox_default`: GPT-NeoX v1.0's defaults, `normal` (std `init_method_std` = 0.02) and
  `scaled_normal` (0.02/√(2L)) on those two projections — what the 6.9B and 12B configs,
  which name no init method, trained with (pythia#135; the Pythia README's erratum).
- `hf_default`: transformers' `_init_weights`, normal(0, 0.02) for every matrix.

Biases are zero and norms one (scale) / zero (shift) in every scheme.
"""
INIT_SCHEMES: tuple[InitScheme, ...] = get_args(InitScheme)

PYTHIA_SOURCE = "EleutherAI/pythia models/*.yml (GPT-NeoX v1.0 configs) and model cards"
MINI_SOURCE = "scaling-suite mini ladder: chosen to train 16 runs on 2 CPU cores in minutes"


@dataclass(frozen=True)
class SizeSpec:
    """One row of a ladder: the shape of a model and its size-dependent training settings."""

    name: str
    """Size label used in run names and sweeps, e.g. `70m`."""
    n_layers: int
    """Number of transformer blocks."""
    d_model: int
    """Hidden size."""
    n_heads: int
    """Attention heads (head dim = d_model / n_heads)."""
    lr: float
    """Peak learning rate of this size."""
    source: str
    """Where the numbers of this row come from."""
    published_params: int | None = None
    """Total parameter count published for this size (None where nothing was published)."""
    init_scheme: InitScheme = "hf_default"
    """How this size's weights are initialized (`InitScheme`). A field of the row, so it is
    part of the config hash (`asdict(run)` holds the size) and of the run identity: Pythia's
    sizes did not all use one scheme."""

    def __post_init__(self) -> None:
        if self.init_scheme not in INIT_SCHEMES:
            raise ValueError(
                f"size {self.name}: init_scheme={self.init_scheme!r} is unknown; "
                f"use one of {', '.join(INIT_SCHEMES)}"
            )
        if min(self.n_layers, self.d_model, self.n_heads) <= 0:
            raise ValueError(f"size {self.name}: layers, d_model and heads must be positive")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"size {self.name}: d_model={self.d_model} is not divisible by "
                f"n_heads={self.n_heads}; pick heads that divide d_model"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def _pythia(name, layers, d, heads, lr, params, init: InitScheme = "small_wang"):
    return SizeSpec(name, layers, d, heads, lr, PYTHIA_SOURCE, params, init)


PYTHIA_LADDER: dict[str, SizeSpec] = {
    s.name: s
    for s in [
        _pythia("14m", 6, 128, 4, 1.0e-3, 14_067_712),
        _pythia("31m", 6, 256, 8, 1.0e-3, 30_494_720),
        _pythia("70m", 6, 512, 8, 1.0e-3, 70_426_624),
        _pythia("160m", 12, 768, 12, 6.0e-4, 162_322_944),
        _pythia("410m", 24, 1024, 16, 3.0e-4, 405_334_016),
        # The model card says 3e-4; the published config trained with 2.5e-4. We follow the
        # config, since that is what produced the released checkpoints.
        _pythia("1b", 16, 2048, 8, 2.5e-4, 1_011_781_632),
        _pythia("1.4b", 24, 2048, 16, 2.0e-4, 1_414_647_808),
        _pythia("2.8b", 32, 2560, 32, 1.6e-4, 2_775_208_960),
        # The 6.9B and 12B configs name no init method, so GPT-NeoX's defaults applied (the
        # paper's table says small/wang for all sizes; the Pythia README's erratum and
        # pythia#135, which measured 0.02 and 0.0025 on pythia-6.9b's step0).
        _pythia("6.9b", 32, 4096, 32, 1.2e-4, 6_857_302_016, "neox_default"),
        _pythia("12b", 36, 5120, 40, 1.2e-4, 11_846_072_320, "neox_default"),
    ]
}


# Eight tiny sizes, named (like Pythia's) by total parameters at the mini suite's 2048-token
# vocabulary. Head dim stays 16; depth grows with width as in Pythia; LR falls with size as in
# Pythia. Sized so that 16 runs × 160 updates of 16 × 129 tokens take minutes on 2 CPU cores.
# Init: the scheme of the Pythia configs that name one (small_init + wang_init).
def _mini(name, layers, d, heads, lr):
    return SizeSpec(name, layers, d, heads, lr, MINI_SOURCE, init_scheme="small_wang")


MINI_LADDER: dict[str, SizeSpec] = {
    s.name: s
    for s in [
        _mini("160k", 2, 32, 2, 3.0e-3),
        _mini("250k", 2, 48, 3, 3.0e-3),
        _mini("360k", 2, 64, 4, 2.5e-3),
        _mini("560k", 3, 80, 5, 2.5e-3),
        _mini("730k", 3, 96, 6, 2.0e-3),
        _mini("1.1m", 4, 112, 7, 2.0e-3),
        _mini("1.3m", 4, 128, 8, 1.5e-3),
        _mini("2.2m", 5, 160, 10, 1.2e-3),
    ]
}

LADDERS: dict[str, dict[str, SizeSpec]] = {"pythia": PYTHIA_LADDER, "mini": MINI_LADDER}


def get_size(ladder: str, size: str) -> SizeSpec:
    """Look up one row, with an error that lists what exists."""
    if ladder not in LADDERS:
        raise KeyError(f"ladder={ladder!r} is unknown; known ladders: {', '.join(LADDERS)}")
    table = LADDERS[ladder]
    if size not in table:
        raise KeyError(
            f"size={size!r} is not in the {ladder!r} ladder; known sizes: {', '.join(table)}"
        )
    return table[size]
