"""Architecture families: how a ladder row becomes a transformers config.

A family fixes everything about the architecture except the size: normalization, MLP,
positional encoding, biases, embedding tying, and the tensor-parallel partition rules that
DeepSpeed AutoTP needs for its layers. Each maps to one transformers model class, so every
checkpoint of every family loads with `from_pretrained`.

transformers is imported only inside `to_hf_config` (it pulls in torch); planning and
parameter counting stay pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from model_zoo.ladder import INIT_SCHEMES, InitScheme, SizeSpec


def pad_vocab(vocab_size: int, tp: int = 1, multiple: int = 128) -> int:
    """Embedding rows after padding to a multiple of `multiple * tp` (GPT-NeoX's rule).

    Pythia: 50,277 tokens → 50304 (TP 1), 50432 (TP 2, 6.9B), 50688 (TP 4, 12B).
    """
    if vocab_size <= 0 or tp <= 0 or multiple <= 0:
        raise ValueError(f"pad_vocab needs positive values, got {vocab_size=}, {tp=}, {multiple=}")
    step = multiple * tp
    return -(-vocab_size // step) * step


def swiglu_hidden(d_model: int, multiple_of: int = 256) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4·d, rounded up to a multiple (keeps FLOPs ≈ a 4·d GELU MLP)."""
    return -(-(8 * d_model // 3) // multiple_of) * multiple_of


InitKind = Literal["normal", "zeros", "ones"]
"""How an init rule fills a parameter: normal(0, std), all zeros, all ones."""
InitStd = Literal["initializer_range", "small_init", "wang_init", "scaled_normal"]
"""Named standard deviations of `normal` rules, resolved from the transformers config (d =
`hidden_size`, L = `num_hidden_layers`) by `suite.train.init.INIT_STDS`, as GPT-NeoX v1.0's
`megatron/model/init_functions.py` defines them:

- `initializer_range`: the config's `initializer_range`, 0.02 (transformers' default for
  every matrix; GPT-NeoX's `normal` with its default `init_method_std` 0.02);
- `small_init`: √(2/(5d)) (Nguyen & Salazar, "Transformers without Tears");
- `wang_init`: 2/(L·√d);
- `scaled_normal`: initializer_range/√(2L) (GPT-NeoX's default for the output projections).
"""


@dataclass(frozen=True)
class InitRule:
    """One row of a family's initialization table: parameters whose name matches `pattern`
    are filled by `kind` (first matching row wins; a parameter no row matches is an error)."""

    pattern: str
    """Regular expression, matched in full against the parameter name (`named_parameters`
    of the transformers model, e.g. `gpt_neox.layers.0.attention.dense.weight`)."""
    kind: InitKind
    """`normal` (mean 0, standard deviation `std`), `zeros` or `ones`."""
    std: InitStd | None = None
    """Named standard deviation of a `normal` rule (None for `zeros`/`ones`)."""

    def __post_init__(self) -> None:
        if (self.kind == "normal") != (self.std is not None):
            raise ValueError(f"init rule {self.pattern!r}: a std goes with kind 'normal' only")


def _hf_default_init(
    norms: tuple[str, ...], matrices: tuple[str, ...], embeddings: tuple[str, ...]
):
    """transformers' `PreTrainedModel._init_weights` as a table: every Linear and Embedding
    weight normal(0, initializer_range), every bias zero, LayerNorm/RMSNorm weights one.

    `norms`, `matrices` and `embeddings` are regular expressions of module names.
    """

    def names(alternatives: tuple[str, ...]) -> str:
        return "(" + "|".join(alternatives) + ")"

    rules = [
        InitRule(rf"{names(embeddings)}\.weight", "normal", "initializer_range"),
        InitRule(rf"{names(matrices)}\.weight", "normal", "initializer_range"),
        InitRule(rf"{names(matrices)}\.bias", "zeros"),
    ]
    if norms:
        rules += [
            InitRule(rf"{names(norms)}\.weight", "ones"),
            InitRule(rf"{names(norms)}\.bias", "zeros"),
        ]
    return tuple(rules)


_NEOX_LAYER = r"gpt_neox\.layers\.\d+"
_LLAMA_LAYER = r"model\.layers\.\d+"
_NEOX_NORMS = (
    rf"{_NEOX_LAYER}\.(input_layernorm|post_attention_layernorm)",
    r"gpt_neox\.final_layer_norm",
)
#: transformers' init of GPT-NeoX (`GPTNeoXForCausalLM`; parameter names of transformers 5).
_PYTHIA_INIT = _hf_default_init(
    norms=_NEOX_NORMS,
    matrices=(
        rf"{_NEOX_LAYER}\.attention\.(query_key_value|dense)",
        rf"{_NEOX_LAYER}\.mlp\.(dense_h_to_4h|dense_4h_to_h)",
    ),
    embeddings=(r"gpt_neox\.embed_in", "lm_head"),  # `embed_out` in Pythia checkpoints
)


def _neox_init(input_std: InitStd, output_std: InitStd) -> tuple[InitRule, ...]:
    """GPT-NeoX v1.0's init of its GPT-2 model as a table (`megatron/model/gpt2_model.py`,
    `transformer.py`, `word_embeddings.py`, `mpu/layers.py`): `init_method` fills the input
    embedding (`embed_in`), QKV, the MLP's input projection and the untied output layer
    (`ParallelLinearPipe`, `embed_out` = transformers' `lm_head`); `output_layer_init_method`
    fills the two projections that write into the residual stream (`attention.dense`,
    `mlp.dense_4h_to_h`); every bias is zero; LayerNorms are torch's (weight one, bias zero).
    """
    return (
        InitRule(r"(gpt_neox\.embed_in|lm_head)\.weight", "normal", input_std),
        InitRule(
            rf"{_NEOX_LAYER}\.(attention\.query_key_value|mlp\.dense_h_to_4h)\.weight",
            "normal",
            input_std,
        ),
        InitRule(
            rf"{_NEOX_LAYER}\.(attention\.dense|mlp\.dense_4h_to_h)\.weight", "normal", output_std
        ),
        InitRule(rf"{_NEOX_LAYER}\.(attention|mlp)\.\w+\.bias", "zeros"),
        InitRule(rf"({'|'.join(_NEOX_NORMS)})\.weight", "ones"),
        InitRule(rf"({'|'.join(_NEOX_NORMS)})\.bias", "zeros"),
    )


#: The Pythia family's tables per scheme (`model_zoo.ladder.InitScheme`).
_PYTHIA_SCHEMES: dict[InitScheme, tuple[InitRule, ...]] = {
    "small_wang": _neox_init("small_init", "wang_init"),
    "neox_default": _neox_init("initializer_range", "scaled_normal"),
    "hf_default": _PYTHIA_INIT,
}
_LLAMA_MATRICES = (
    rf"{_LLAMA_LAYER}\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
    rf"{_LLAMA_LAYER}\.mlp\.(gate_proj|up_proj|down_proj)",
)
_LLAMA_EMBEDDINGS = (r"model\.embed_tokens", "lm_head")
#: transformers' init of LLaMA (RMSNorm weights one) and OLMo (its norms have no weights).
_LLAMA_INIT = _hf_default_init(
    norms=(rf"{_LLAMA_LAYER}\.(input_layernorm|post_attention_layernorm)", r"model\.norm"),
    matrices=_LLAMA_MATRICES,
    embeddings=_LLAMA_EMBEDDINGS,
)
_OLMO_INIT = _hf_default_init(norms=(), matrices=_LLAMA_MATRICES, embeddings=_LLAMA_EMBEDDINGS)

FamilyName = Literal["pythia", "olmo", "llama"]
"""The architecture families a suite can use (`family=` in the suite config)."""
MlpKind = Literal["gelu", "swiglu"]
NormKind = Literal["layernorm", "rmsnorm", "nonparametric_layernorm"]

#: Weights of one norm of width d: scale and shift, scale only, none.
_NORM_WEIGHTS_PER_DIM: dict[NormKind, int] = {
    "layernorm": 2,
    "rmsnorm": 1,
    "nonparametric_layernorm": 0,
}
#: transformers' `hidden_act` of each MLP kind (SwiGLU gates with SiLU).
_HIDDEN_ACT: dict[MlpKind, str] = {"gelu": "gelu", "swiglu": "silu"}
#: Settings that only some transformers config classes take; `Family.hf_class_kwargs` names
#: the ones its class takes (value: the Family data it comes from, see `hf_config_kwargs`).
HF_CLASS_KWARGS = (
    "use_parallel_residual",
    "layer_norm_eps",
    "rms_norm_eps",
    "mlp_bias",
    "num_key_value_heads",
    "attention_dropout",
    "hidden_dropout",
)


@dataclass(frozen=True)
class Family:
    """One architecture family and its transformers mapping.

    Everything that differs between families is a field here (litgpt style); no method looks
    at `name`, so a new family is a new `Family(...)` row, not new branches.
    """

    name: FamilyName
    """Family name used in configs (`pythia`, `olmo`, `llama`)."""
    hf_model_class: str
    """transformers class that implements it (loaded by name, lazily)."""
    hf_config_class: str
    """transformers config class."""
    description: str
    """One line on what distinguishes the family."""
    tp_column_layers: tuple[str, ...]
    """Module-name patterns AutoTP splits by output features (column parallel)."""
    tp_row_layers: tuple[str, ...]
    """Module-name patterns AutoTP splits by input features (row parallel, followed by all-reduce)."""
    mlp_kind: MlpKind
    """`gelu`: two matrices d → 4d → d (GPT-NeoX); `swiglu`: gate, up and down matrices of
    width `swiglu_hidden(d)` (LLaMA, OLMo)."""
    norm_kind: NormKind
    """Each layer's two norms and the final one: `layernorm` (scale + shift, 2d weights),
    `rmsnorm` (scale, d weights) or `nonparametric_layernorm` (no weights, OLMo)."""
    parallel_residual: bool
    """Attention and MLP read the same input and are summed (GPT-NeoX), instead of in sequence."""
    bias: bool
    """Every linear layer of attention and MLP has a bias (GPT-NeoX); none has (LLaMA, OLMo)."""
    hf_class_kwargs: tuple[str, ...]
    """Which of `HF_CLASS_KWARGS` this family's transformers config class takes (the others
    it does not have, or has fixed); passed with values from the fields above."""
    rotary_pct: float = 1.0
    """Fraction of each head's dimensions rotated by RoPE (Pythia: 0.25; full RoPE: 1.0)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    norm_eps: float = 1e-5
    """Epsilon of the norms (where the transformers class lets it be set)."""
    dropout: float = 0.0
    """Attention and residual dropout (Pythia trained without; where the class has it)."""
    tie_embeddings: bool = False
    """Whether input and output embeddings share weights (all our families: untied, like Pythia)."""
    norm_exempt_patterns: tuple[str, ...] = field(default=("bias", "norm", "layernorm"))
    """Parameter-name fragments excluded from weight decay (biases and norms)."""
    init_rules: tuple[InitRule, ...] = ()
    """transformers' initialization of the family as a table (`suite.train.init`): name
    pattern → rule, first match wins. The values come from a generator seeded by (seed,
    parameter name), so they do not depend on the parallel layout, module order or other RNG
    use. What a run uses is `init_rules_for(size)`."""
    init_schemes: tuple[tuple[InitScheme, tuple[InitRule, ...]], ...] = ()
    """The family's table for each `InitScheme` a ladder row may name (pairs, so the family
    stays hashable). Empty: the family has one table, `init_rules`, whatever the row says —
    OLMo and LLaMA, whose GPT-NeoX schemes would mean nothing."""

    def __post_init__(self) -> None:
        unknown = set(self.hf_class_kwargs) - set(HF_CLASS_KWARGS)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown hf_class_kwargs {sorted(unknown)}")
        schemes = {scheme for scheme, _ in self.init_schemes}
        if schemes and schemes != set(INIT_SCHEMES):
            raise ValueError(
                f"family {self.name!r}: init_schemes must give a table for every scheme "
                f"{INIT_SCHEMES} (or none), got {sorted(schemes)}"
            )

    def init_rules_for(self, spec: SizeSpec) -> tuple[InitRule, ...]:
        """The init table of a run of size `spec`: its row's `init_scheme` in this family."""
        return dict(self.init_schemes).get(spec.init_scheme, self.init_rules)

    # --- analytic parameter counts (exactly what the transformers class allocates) ---

    def mlp_hidden(self, spec: SizeSpec) -> int:
        return 4 * spec.d_model if self.mlp_kind == "gelu" else swiglu_hidden(spec.d_model)

    def non_embedding_params(self, spec: SizeSpec) -> int:
        d, hidden = spec.d_model, self.mlp_hidden(spec)
        # q, k, v and output projections (+ their biases).
        attention = 4 * d * d + (4 * d if self.bias else 0)
        if self.mlp_kind == "gelu":  # d → hidden → d
            mlp = 2 * d * hidden + ((hidden + d) if self.bias else 0)
        else:  # gate and up d → hidden, down hidden → d
            mlp = 3 * d * hidden + ((2 * hidden + d) if self.bias else 0)
        norm = _NORM_WEIGHTS_PER_DIM[self.norm_kind] * d
        # Pythia: 2 LayerNorms (4d) + QKV (3d²+3d) + out (d²+d) + MLP (8d²+5d) per layer, final LN.
        return spec.n_layers * (attention + mlp + 2 * norm) + norm

    def embedding_params(self, spec: SizeSpec, vocab: int) -> int:
        return vocab * spec.d_model * (1 if self.tie_embeddings else 2)

    def total_params(self, spec: SizeSpec, vocab: int) -> int:
        return self.non_embedding_params(spec) + self.embedding_params(spec, vocab)

    # --- transformers mapping ---

    def hf_config_kwargs(
        self, spec: SizeSpec, vocab: int, seq_len: int, eos_id: int = 0, bos_id: int = 0
    ) -> dict:
        rope: dict = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rotary_pct != 1.0:
            rope["partial_rotary_factor"] = self.rotary_pct
        by_class = {
            "use_parallel_residual": self.parallel_residual,
            "layer_norm_eps": self.norm_eps,
            "rms_norm_eps": self.norm_eps,
            "mlp_bias": self.bias,
            "num_key_value_heads": spec.n_heads,  # multi-head attention: no grouped KV heads
            "attention_dropout": self.dropout,
            "hidden_dropout": self.dropout,
        }
        return dict(
            vocab_size=vocab,
            hidden_size=spec.d_model,
            num_hidden_layers=spec.n_layers,
            num_attention_heads=spec.n_heads,
            max_position_embeddings=seq_len,
            tie_word_embeddings=self.tie_embeddings,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            initializer_range=0.02,
            intermediate_size=self.mlp_hidden(spec),
            hidden_act=_HIDDEN_ACT[self.mlp_kind],
            attention_bias=self.bias,
            rope_parameters=rope,
        ) | {key: by_class[key] for key in self.hf_class_kwargs}

    def to_hf_config(self, spec: SizeSpec, vocab: int, seq_len: int, **kwargs):
        import transformers  # lazy: pulls in torch

        config_cls = getattr(transformers, self.hf_config_class)
        return config_cls(**self.hf_config_kwargs(spec, vocab, seq_len, **kwargs))


#: AutoTP partition of the LLaMA-style modules (q/k/v/o projections, gate/up/down MLP).
_LLAMA_TP_COLUMN = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
)
_LLAMA_TP_ROW = ("self_attn.o_proj", "mlp.down_proj")

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="pythia",
            hf_model_class="GPTNeoXForCausalLM",
            hf_config_class="GPTNeoXConfig",
            description="GPT-NeoX: parallel attn+MLP residual, rotary on 25% of head dims, "
            "LayerNorm, GELU, FFN 4d, biases, untied embeddings",
            tp_column_layers=("attention.query_key_value", "mlp.dense_h_to_4h"),
            tp_row_layers=("attention.dense", "mlp.dense_4h_to_h"),
            mlp_kind="gelu",
            norm_kind="layernorm",
            parallel_residual=True,
            bias=True,
            rotary_pct=0.25,
            hf_class_kwargs=(
                "use_parallel_residual",
                "layer_norm_eps",
                "attention_dropout",
                "hidden_dropout",
            ),
            init_rules=_PYTHIA_INIT,
            init_schemes=tuple(_PYTHIA_SCHEMES.items()),
        ),
        Family(
            name="olmo",
            hf_model_class="OlmoForCausalLM",
            hf_config_class="OlmoConfig",
            description="OLMo: no biases, non-parametric LayerNorm, SwiGLU, full RoPE, "
            "sequential residual",
            tp_column_layers=_LLAMA_TP_COLUMN,
            tp_row_layers=_LLAMA_TP_ROW,
            mlp_kind="swiglu",
            norm_kind="nonparametric_layernorm",
            parallel_residual=False,
            bias=False,
            hf_class_kwargs=("num_key_value_heads",),
            init_rules=_OLMO_INIT,
        ),
        Family(
            name="llama",
            hf_model_class="LlamaForCausalLM",
            hf_config_class="LlamaConfig",
            description="LLaMA: RMSNorm, SwiGLU, full RoPE, no biases, sequential residual",
            tp_column_layers=_LLAMA_TP_COLUMN,
            tp_row_layers=_LLAMA_TP_ROW,
            mlp_kind="swiglu",
            norm_kind="rmsnorm",
            parallel_residual=False,
            bias=False,
            hf_class_kwargs=("num_key_value_heads", "mlp_bias", "rms_norm_eps"),
            init_rules=_LLAMA_INIT,
        ),
    )
}
FAMILY_NAMES: tuple[FamilyName, ...] = get_args(FamilyName)
"""The allowed `family` values, in FAMILIES' order (a test checks both list the same)."""


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"family={name!r} is unknown; known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]
