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

from model_zoo.ladder import SizeSpec


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


@dataclass(frozen=True)
class Family:
    """One architecture family and its transformers mapping."""

    name: str
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
    tie_embeddings: bool = False
    """Whether input and output embeddings share weights (all our families: untied, like Pythia)."""
    norm_exempt_patterns: tuple[str, ...] = field(default=("bias", "norm", "layernorm"))
    """Parameter-name fragments excluded from weight decay (biases and norms)."""

    # --- analytic parameter counts (exactly what the transformers class allocates) ---

    def mlp_hidden(self, spec: SizeSpec) -> int:
        return 4 * spec.d_model if self.name == "pythia" else swiglu_hidden(spec.d_model)

    def non_embedding_params(self, spec: SizeSpec) -> int:
        d, layers, hidden = spec.d_model, spec.n_layers, self.mlp_hidden(spec)
        if self.name == "pythia":
            # 2 LayerNorms (4d) + QKV (3d²+3d) + out (d²+d) + MLP (8d²+5d) per layer, final LN.
            return layers * (12 * d * d + 13 * d) + 2 * d
        attention = 4 * d * d  # q, k, v, o without biases
        mlp = 3 * d * hidden  # gate, up, down
        if self.name == "olmo":
            return layers * (attention + mlp)  # non-parametric LayerNorm: no weights at all
        return layers * (attention + mlp + 2 * d) + d  # llama: two RMSNorm weights + final

    def embedding_params(self, spec: SizeSpec, vocab: int) -> int:
        return vocab * spec.d_model * (1 if self.tie_embeddings else 2)

    def total_params(self, spec: SizeSpec, vocab: int) -> int:
        return self.non_embedding_params(spec) + self.embedding_params(spec, vocab)

    # --- transformers mapping ---

    def hf_config_kwargs(
        self, spec: SizeSpec, vocab: int, seq_len: int, eos_id: int = 0, bos_id: int = 0
    ) -> dict:
        common = dict(
            vocab_size=vocab,
            hidden_size=spec.d_model,
            num_hidden_layers=spec.n_layers,
            num_attention_heads=spec.n_heads,
            max_position_embeddings=seq_len,
            tie_word_embeddings=self.tie_embeddings,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            initializer_range=0.02,
        )
        if self.name == "pythia":
            return common | dict(
                intermediate_size=4 * spec.d_model,
                hidden_act="gelu",
                use_parallel_residual=True,
                layer_norm_eps=1e-5,
                attention_dropout=0.0,
                hidden_dropout=0.0,
                attention_bias=True,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "partial_rotary_factor": 0.25,
                },
            )
        swiglu = dict(
            intermediate_size=self.mlp_hidden(spec),
            hidden_act="silu",
            attention_bias=False,
            num_key_value_heads=spec.n_heads,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
        if self.name == "llama":
            swiglu |= dict(mlp_bias=False, rms_norm_eps=1e-5)
        return common | swiglu

    def to_hf_config(self, spec: SizeSpec, vocab: int, seq_len: int, **kwargs):
        import transformers  # lazy: pulls in torch

        config_cls = getattr(transformers, self.hf_config_class)
        return config_cls(**self.hf_config_kwargs(spec, vocab, seq_len, **kwargs))


FAMILIES: dict[str, Family] = {
    "pythia": Family(
        name="pythia",
        hf_model_class="GPTNeoXForCausalLM",
        hf_config_class="GPTNeoXConfig",
        description="GPT-NeoX: parallel attn+MLP residual, rotary on 25% of head dims, "
        "LayerNorm, GELU, FFN 4d, biases, untied embeddings",
        tp_column_layers=("attention.query_key_value", "mlp.dense_h_to_4h"),
        tp_row_layers=("attention.dense", "mlp.dense_4h_to_h"),
    ),
    "olmo": Family(
        name="olmo",
        hf_model_class="OlmoForCausalLM",
        hf_config_class="OlmoConfig",
        description="OLMo: no biases, non-parametric LayerNorm, SwiGLU, full RoPE, "
        "sequential residual",
        tp_column_layers=(
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
        ),
        tp_row_layers=("self_attn.o_proj", "mlp.down_proj"),
    ),
    "llama": Family(
        name="llama",
        hf_model_class="LlamaForCausalLM",
        hf_config_class="LlamaConfig",
        description="LLaMA: RMSNorm, SwiGLU, full RoPE, no biases, sequential residual",
        tp_column_layers=(
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
        ),
        tp_row_layers=("self_attn.o_proj", "mlp.down_proj"),
    ),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"family={name!r} is unknown; known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]
