"""The size ladder: analytic counts, transformers counts on the meta device, FLOPs, memory."""

from __future__ import annotations

import pytest

from model_zoo import (
    BYTES,
    FAMILIES,
    FAMILY_NAMES,
    MINI_LADDER,
    PYTHIA_LADDER,
    flops_per_token,
    get_family,
    get_size,
    memory_per_gpu,
    pad_vocab,
)

PYTHIA_TOKENIZER_VOCAB = 50277
PUBLISHED_TOTALS = {
    "14m": 14_067_712,
    "31m": 30_494_720,
    "70m": 70_426_624,
    "160m": 162_322_944,
    "410m": 405_334_016,
    "1b": 1_011_781_632,
    "1.4b": 1_414_647_808,
    "2.8b": 2_775_208_960,
    "6.9b": 6_857_302_016,
    "12b": 11_846_072_320,
}
PUBLISHED_NON_EMBEDDING = {"70m": 18_915_328, "1b": 805_736_448, "12b": 11_327_027_200}
PYTHIA_TP = {"6.9b": 2, "12b": 4}


def meta_param_count(family_name: str, spec, vocab: int, seq_len: int = 2048) -> int:
    """Parameters of the real transformers class, instantiated without allocating weights."""
    import torch
    import transformers

    family = get_family(family_name)
    config = family.to_hf_config(spec, vocab, seq_len)
    with torch.device("meta"):
        model = getattr(transformers, family.hf_model_class)(config)
    return sum(p.numel() for p in model.parameters())


def test_padded_vocabulary_matches_pythia():
    assert pad_vocab(PYTHIA_TOKENIZER_VOCAB, tp=1) == 50304
    assert pad_vocab(PYTHIA_TOKENIZER_VOCAB, tp=2) == 50432
    assert pad_vocab(PYTHIA_TOKENIZER_VOCAB, tp=4) == 50688
    assert pad_vocab(128) == 128 and pad_vocab(129) == 256


@pytest.mark.parametrize("size", list(PUBLISHED_TOTALS))
def test_analytic_and_meta_counts_equal_published_totals(size):
    spec = PYTHIA_LADDER[size]
    vocab = pad_vocab(PYTHIA_TOKENIZER_VOCAB, tp=PYTHIA_TP.get(size, 1))
    family = get_family("pythia")
    assert family.total_params(spec, vocab) == PUBLISHED_TOTALS[size] == spec.published_params
    assert meta_param_count("pythia", spec, vocab) == PUBLISHED_TOTALS[size]
    if size in PUBLISHED_NON_EMBEDDING:
        assert family.non_embedding_params(spec) == PUBLISHED_NON_EMBEDDING[size]


@pytest.mark.parametrize("family_name", ["olmo", "llama"])
@pytest.mark.parametrize("size", ["70m", "1b"])
def test_other_families_count_what_transformers_allocates(family_name, size):
    spec = PYTHIA_LADDER[size]
    vocab = pad_vocab(PYTHIA_TOKENIZER_VOCAB)
    assert get_family(family_name).total_params(spec, vocab) == meta_param_count(
        family_name, spec, vocab
    )


def test_families_map_to_distinct_transformers_classes():
    classes = {family.hf_model_class for family in FAMILIES.values()}
    assert classes == {"GPTNeoXForCausalLM", "OlmoForCausalLM", "LlamaForCausalLM"}
    pythia = get_family("pythia").hf_config_kwargs(PYTHIA_LADDER["70m"], 50304, 2048)
    assert pythia["use_parallel_residual"] and pythia["hidden_act"] == "gelu"
    assert pythia["rope_parameters"]["partial_rotary_factor"] == 0.25
    assert pythia["intermediate_size"] == 4 * 512 and not pythia["tie_word_embeddings"]


def test_family_differences_are_data_not_name_branches():
    import inspect
    import typing

    from model_zoo import Family, FamilyName, Precision

    source = inspect.getsource(Family)
    assert "self.name ==" not in source and "self.name in" not in source
    assert FAMILY_NAMES == typing.get_args(FamilyName) == tuple(FAMILIES)
    assert set(BYTES) == set(typing.get_args(Precision))
    pythia, olmo, llama = (FAMILIES[name] for name in ("pythia", "olmo", "llama"))
    assert (pythia.mlp_kind, olmo.mlp_kind, llama.mlp_kind) == ("gelu", "swiglu", "swiglu")
    assert (pythia.norm_kind, olmo.norm_kind, llama.norm_kind) == (
        "layernorm",
        "nonparametric_layernorm",
        "rmsnorm",
    )
    assert pythia.parallel_residual and pythia.bias and pythia.rotary_pct == 0.25
    assert not (olmo.parallel_residual or olmo.bias or llama.parallel_residual or llama.bias)
    # Every transformers-class-specific kwarg a family passes comes from its data fields.
    llama_kwargs = llama.hf_config_kwargs(PYTHIA_LADDER["70m"], 50304, 2048)
    assert llama_kwargs["rms_norm_eps"] == llama.norm_eps and llama_kwargs["mlp_bias"] is False
    assert "partial_rotary_factor" not in llama_kwargs["rope_parameters"]
    assert "use_parallel_residual" not in llama_kwargs


def test_mini_ladder_has_eight_growing_sizes():
    specs = list(MINI_LADDER.values())
    assert len(specs) == 8
    family = get_family("pythia")
    totals = [family.total_params(spec, 2048) for spec in specs]
    assert totals == sorted(totals) and len(set(totals)) == 8


def test_unknown_size_lists_known_sizes():
    with pytest.raises(KeyError, match="known sizes: 14m, 31m, 70m"):
        get_size("pythia", "13b")


def test_flops_per_token_is_about_six_n_plus_attention():
    family, spec = get_family("pythia"), PYTHIA_LADDER["1b"]
    flops = flops_per_token(family, spec, 50304, 2048)
    six_n = 6 * (family.non_embedding_params(spec) + 50304 * spec.d_model)
    assert flops == six_n + 12 * spec.n_layers * spec.d_model * 2048
    # Pythia-1B over 300B tokens is ≈ 1.9e21 FLOPs (6·N·D with N ≈ 1B).
    assert 1.5e21 < flops * 299_892_736_000 < 2.5e21


def test_memory_falls_with_tp_zero_and_checkpointing():
    family, spec = get_family("pythia"), PYTHIA_LADDER["6.9b"]
    args = dict(family=family, spec=spec, vocab=50432, seq_len=2048, micro_batch=8, dp=64)
    base = memory_per_gpu(tp=1, zero_stage=0, precision="fp16", **args)
    zero1 = memory_per_gpu(tp=1, zero_stage=1, precision="fp16", **args)
    tp2 = memory_per_gpu(tp=2, zero_stage=1, precision="fp16", **args)
    ckpt = memory_per_gpu(
        tp=2, zero_stage=1, precision="fp16", activation_checkpointing=True, **args
    )
    assert zero1.optimizer == pytest.approx(base.optimizer / 64)
    assert tp2.weights == pytest.approx(zero1.weights / 2)
    assert ckpt.activations < tp2.activations < zero1.activations
    # fp16 weights of 6.9B over TP 2: 6.86e9 × 2 bytes / 2.
    assert tp2.weights == pytest.approx(6_857_302_016, rel=1e-9)


def test_init_scheme_per_size_as_each_released_config():
    """70M…2.8B (and 14M, 31M) name small_init/wang_init in their configs; 6.9B and 12B name
    none, so GPT-NeoX's defaults (pythia#135); the mini ladder uses small_init/wang_init."""
    schemes = {name: spec.init_scheme for name, spec in PYTHIA_LADDER.items()}
    assert schemes == {
        **{
            name: "small_wang"
            for name in ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b")
        },
        "6.9b": "neox_default",
        "12b": "neox_default",
    }
    assert {spec.init_scheme for spec in MINI_LADDER.values()} == {"small_wang"}


def test_unknown_init_scheme_is_refused():
    from dataclasses import replace

    with pytest.raises(ValueError, match="init_scheme='xavier' is unknown"):
        replace(PYTHIA_LADDER["70m"], init_scheme="xavier")


def test_init_scheme_is_part_of_the_config_hash_and_the_run_identity():
    """A SizeSpec field: `asdict(run)` holds it, so the hash changes with it."""
    from dataclasses import replace

    from suite.config import resolve_run
    from suite.settings import load_suite
    from suite.train.factory import config_hash, init_recipe
    from suite.train.run import run_identity

    cfg = load_suite(["suite=pythia"])
    run = resolve_run(cfg, "70m", "pile")
    other = replace(run, size=replace(run.size, init_scheme="hf_default"), layout=run.layout)
    assert config_hash(cfg, run) != config_hash(cfg, other)
    assert run_identity(cfg, run, "fp", 0)["init_scheme"] == "small_wang"
    assert run_identity(cfg, other, "fp", 0)["init_scheme"] == "hf_default"
    recipe = init_recipe(cfg, run)
    assert recipe["size"]["init_scheme"] == "small_wang" and recipe["seed"] == cfg.seed
