"""Initialization by (seed, parameter name): the family tables, the statistics, placeholders.

Step0 byte-equality across TP=1, TP=2 and DP=2 is checked on real `suite train` runs in
tests/test_train_runs.py (`_assert_same_training`, tolerance 0 at step 0).
"""

from __future__ import annotations

import math

import pytest
import torch

from model_zoo import FAMILIES, get_family, get_size, pad_vocab
from model_zoo.families import InitRule
from suite.train.init import (
    ParamInit,
    full_tensor,
    init_plan,
    materialize_in_engine,
    param_seed,
    pending,
)
from suite.train.model import build_model


def _config(family: str, size: str = "1.3m", vocab: int = 512):
    config = get_family(family).to_hf_config(get_size("mini", size), pad_vocab(vocab), seq_len=32)
    config.use_cache = False
    config._attn_implementation = "sdpa"
    return config


def _transformers_init(config):
    """The family's class initialized by transformers itself (`_init_weights`)."""
    import transformers

    cls = getattr(transformers, get_family(_family_of(config)).hf_model_class)
    torch.manual_seed(0)
    return cls._from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def _family_of(config) -> str:
    return next(f.name for f in FAMILIES.values() if f.hf_config_class == type(config).__name__)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_table_covers_every_parameter_with_transformers_rule(family):
    """Each family's table matches every parameter, and each rule is what transformers'
    `_init_weights` does to it: ones, zeros, or normal with the same std."""
    config = _config(family)
    reference = dict(_transformers_init(config).named_parameters())
    model = build_model(config, seed=3)
    plan = init_plan(model, get_family(family).init_rules)
    assert set(plan) == set(reference) == set(dict(model.named_parameters()))
    for name, init in plan.items():
        theirs = reference[name].detach()
        if init.kind == "ones":
            assert torch.equal(theirs, torch.ones_like(theirs)), name
        elif init.kind == "zeros":
            assert torch.equal(theirs, torch.zeros_like(theirs)), name
        else:
            assert init.std == config.initializer_range == 0.02
            assert abs(theirs.std().item() - init.std) < 6 * init.std / math.sqrt(
                2 * theirs.numel()
            )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_statistics_of_every_parameter_follow_its_rule(family):
    """Mean 0 and the rule's std within sampling error (6 sigma; the std of a sample std
    is σ/√(2n)), exact ones and zeros — per parameter of the built model."""
    config = _config(family, size="2.2m")
    model = build_model(config, seed=1234)
    plan = init_plan(model, get_family(family).init_rules)
    kinds = set()
    for name, param in model.named_parameters():
        init, value = plan[name], param.detach()
        kinds.add(init.kind)
        if init.kind == "normal":
            n = value.numel()
            assert abs(value.mean().item()) < 6 * init.std / math.sqrt(n), name
            assert abs(value.std().item() - init.std) < 6 * init.std / math.sqrt(2 * n), name
        else:
            assert torch.equal(value, torch.full_like(value, init.kind == "ones")), name
    assert "normal" in kinds


def test_values_depend_on_seed_and_name_only():
    """Not on the global RNG, module construction order or the parameter's neighbours."""
    config = _config("pythia")
    torch.manual_seed(0)
    a = dict(build_model(config, seed=5).named_parameters())
    torch.manual_seed(99)
    torch.rand(1000)  # consume the global stream: no effect
    b = dict(build_model(config, seed=5).named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    c = dict(build_model(config, seed=6).named_parameters())
    name = "gpt_neox.layers.0.attention.dense.weight"
    assert not torch.equal(a[name], c[name])
    # A parameter's values are its own generator's: equal to drawing it alone.
    alone = full_tensor(ParamInit(name, tuple(a[name].shape), "normal", 0.02), seed=5)
    assert torch.equal(alone, a[name].detach())
    # Same shape, another name: other values.
    other = "gpt_neox.layers.1.attention.dense.weight"
    assert not torch.equal(a[name], a[other])


def test_param_seed_is_stable():
    """The seed derivation is part of what step0 is: changing it changes every published
    step0, so it is pinned here."""
    assert param_seed(1234, "gpt_neox.embed_in.weight") == 0x5737A95E8B33C4E7
    assert param_seed(1234, "a") != param_seed(1235, "a")
    assert param_seed(1234, "a") != param_seed(1234, "b")
    assert 0 <= param_seed(1, "x") < 2**63
    # And the values the generator draws from it (torch's CPU mt19937 + Box-Muller).
    first = full_tensor(ParamInit("w", (4,), "normal", 1.0), seed=1234)
    assert torch.equal(first, full_tensor(ParamInit("w", (4,), "normal", 1.0), seed=1234))


def test_deferred_model_holds_placeholders_without_memory():
    config = _config("pythia")
    model = build_model(config, seed=1, materialize=False)
    names = [name for name, _ in model.named_parameters()]
    assert pending(model) == names
    for param in model.parameters():
        assert param.untyped_storage().nbytes() <= param.element_size()
    # Buffers are real: the class computed them (rotary frequencies).
    buffers = dict(model.named_buffers())
    assert buffers and all(not b.is_meta for b in buffers.values())
    reference = dict(build_model(config, seed=1).named_buffers())
    assert all(torch.equal(buffers[n], reference[n]) for n in reference)


def test_unmatched_parameter_is_an_error():
    model = build_model(_config("pythia"), seed=1, materialize=False)
    rules = (InitRule(r".*\.bias", "zeros"),)
    with pytest.raises(ValueError, match="no init rule"):
        init_plan(model, rules)


def test_engine_that_never_materializes_fails_loudly():
    """Should DeepSpeed stop calling the wrapped method, the block refuses to return a
    model of placeholders."""
    model = build_model(_config("pythia"), seed=1, materialize=False)
    with (
        pytest.raises(RuntimeError, match="still hold their placeholder"),
        materialize_in_engine(model, get_family("pythia").init_rules, seed=1),
    ):
        pass  # no deepspeed.initialize


@pytest.mark.parametrize("scheme", ["small_wang", "neox_default", "hf_default"])
def test_pythia_schemes_cover_every_parameter_with_gpt_neox_stds(scheme):
    """Each scheme of the Pythia family matches every parameter, with GPT-NeoX v1.0's stds
    (`init_functions.py`): small_init √(2/(5d)), wang_init 2/(L·√d), scaled_normal
    0.02/√(2L); embeddings and the output layer take the input-side std. The built model's
    statistics follow it (6 standard errors, as above)."""
    from dataclasses import replace

    spec = replace(get_size("mini", "2.2m"), init_scheme=scheme)
    d, layers = spec.d_model, spec.n_layers
    inputs, outputs = {
        "small_wang": (math.sqrt(2 / (5 * d)), 2 / layers / math.sqrt(d)),
        "neox_default": (0.02, 0.02 / math.sqrt(2 * layers)),
        "hf_default": (0.02, 0.02),
    }[scheme]
    rules = get_family("pythia").init_rules_for(spec)
    config = _config("pythia", size="2.2m")
    model = build_model(config, seed=7, init_rules=rules)
    plan = init_plan(model, rules)
    assert set(plan) == set(dict(model.named_parameters()))
    for name, param in model.named_parameters():
        init, value = plan[name], param.detach()
        if init.kind != "normal":
            assert torch.equal(value, torch.full_like(value, init.kind == "ones")), name
            assert name.endswith(".bias") or "norm" in name, name
            continue
        output_side = ".attention.dense." in name or ".dense_4h_to_h." in name
        assert init.std == pytest.approx(outputs if output_side else inputs, rel=1e-12), name
        n = value.numel()
        assert abs(value.std().item() - init.std) < 6 * init.std / math.sqrt(2 * n), name


def test_other_families_keep_their_table_whatever_the_row_says():
    """OLMo and LLaMA define no GPT-NeoX schemes: their transformers table applies."""
    spec = get_size("mini", "160k")
    assert spec.init_scheme == "small_wang"
    for name in ("olmo", "llama"):
        family = get_family(name)
        assert family.init_rules_for(spec) == family.init_rules


def test_a_family_gives_every_scheme_or_none():
    from dataclasses import replace

    pythia = get_family("pythia")
    with pytest.raises(ValueError, match="every scheme"):
        replace(pythia, init_schemes=pythia.init_schemes[:1])
