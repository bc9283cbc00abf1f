"""Fast unit tests of the trainer's pure parts: LR schedule, parallel dims, DeepSpeed config,
AdamW groups, resume identity checks and the running batch hash."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from suite.config import resolve_run
from suite.errors import ConfigError
from suite.parallel import ParallelLayout
from suite.settings import load_suite
from suite.train.batches import EMPTY_BATCHES_HASH, batches_hash_upto, chain_hash
from suite.train.engine import deepspeed_config, param_groups
from suite.train.lr_schedule import LRSchedule
from suite.train.resume import ResumeMismatch, check_identity


def test_pythia_schedule_warmup_then_cosine_to_ten_percent():
    lr = LRSchedule(peak=1e-3, total_steps=143_000, warmup_fraction=0.01, min_lr_ratio=0.1)
    assert lr.warmup_steps == 1430  # Pythia's published warmup
    assert lr(1) == pytest.approx(1e-3 / 1430, rel=1e-12)
    assert lr(715) == pytest.approx(0.5e-3, rel=1e-12)
    assert lr(1430) == pytest.approx(1e-3, rel=1e-12)
    assert lr(143_000) == pytest.approx(1e-4, rel=1e-12)  # exactly 10% at the last update
    middle = 1430 + (143_000 - 1430) // 2
    assert lr(middle) == pytest.approx(0.55e-3, rel=1e-4)  # halfway down the cosine
    decay = [lr(s) for s in range(1430, 143_001, 997)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    warm = [lr(s) for s in range(1, 1431)]
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False))


def test_schedule_without_warmup_and_bad_steps():
    lr = LRSchedule(peak=2.0, total_steps=10, warmup_fraction=0.0, min_lr_ratio=0.0)
    assert lr(10) == pytest.approx(0.0, abs=1e-15)
    assert lr(5) == pytest.approx(1.0 + math.cos(math.pi * 0.5), rel=1e-12)
    for bad in (0, 11):
        with pytest.raises(ConfigError, match=r"step=.*1 … 10"):
            lr(bad)
    with pytest.raises(ConfigError, match="optim.warmup_fraction"):
        LRSchedule(peak=1.0, total_steps=10, warmup_fraction=1.0)


def test_parallel_layout_names_every_value():
    dims = ParallelLayout(gpus=4, tp=2)
    dims.check_world(4)
    assert [(dims.dp_rank(r), dims.tp_rank(r)) for r in range(4)] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    with pytest.raises(ConfigError) as err:
        dims.check_world(3)
    message = str(err.value)
    assert "world_size=3" in message and "2 × 2 = 4" in message


def _run(overrides=()):
    cfg = load_suite(["size=360k", "dataset=stdlib", *overrides])
    return cfg, resolve_run(cfg, "360k", "stdlib")


def test_deepspeed_config_from_suite():
    extra = ["parallel.gpus=4", "parallel.tp=2", "parallel.micro_batch=8"]
    cfg, run = _run([*extra, "precision=fp16", "zero_stage=1"])
    assert (run.dp, run.tp) == (2, 2)
    ds = deepspeed_config(cfg, run)
    assert "train_batch_size" not in ds  # with TP, DeepSpeed must not count TP ranks as DP
    assert ds["train_micro_batch_size_per_gpu"] == run.micro_batch
    assert ds["gradient_accumulation_steps"] == run.grad_accum
    assert ds["gradient_clipping"] == cfg.optim.grad_clip
    assert ds["zero_optimization"]["stage"] == 1 and ds["zero_optimization"]["overlap_comm"]
    assert ds["fp16"]["enabled"] and ds["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    tp = ds["tensor_parallel"]
    assert tp["autotp_size"] == 2
    column, row = tp["partition_config"]["layer_specs"]
    assert column["partition_type"] == "column" and row["partition_type"] == "row"
    assert any("query_key_value" in p for p in column["patterns"])
    assert any("dense_4h_to_h" in p for p in row["patterns"])
    cfg, run = _run(["zero_stage=2"])  # one fp32 process: no ZeRO, the trainer clips
    assert deepspeed_config(cfg, run)["zero_optimization"] == {"stage": 0}
    assert deepspeed_config(cfg, run)["gradient_clipping"] == 0.0
    cfg, run = _run(["zero_stage=3"])
    with pytest.raises(ConfigError, match="zero_stage=3"):
        deepspeed_config(cfg, run)
    cfg, run = _run(["precision=bf16"])
    assert deepspeed_config(cfg, run)["bf16"] == {
        "enabled": True
    } and "tensor_parallel" not in deepspeed_config(cfg, run)


def test_deepspeed_config_of_pythia_runs():
    """ZeRO and precision settings against their sources: EleutherAI/pythia
    `models/*/pythia-*.yml` (GPT-NeoX configs) and DeepSpeed 0.19.8's config keys."""
    cfg = load_suite(["suite=pythia", "size=1b", "dataset=pile", "precision=bf16"])
    run = resolve_run(cfg, "1b", "pile")
    assert (run.dp, run.tp, run.micro_batch, run.grad_accum) == (64, 1, 16, 1)  # pythia-1b.yml
    ds = deepspeed_config(cfg, run)
    assert ds["zero_optimization"] == {
        "stage": 1,  # every pythia-*.yml
        "overlap_comm": True,  # every pythia-*.yml
        "contiguous_gradients": True,  # every pythia-*.yml
        "reduce_scatter": True,  # every pythia-*.yml
        # pythia-12b.yml: 1.26e9, capped at the gradient a rank holds (1b: 1,011,781,632
        # parameters, PYTHIA_FACTS.md) since overlap_comm allocates 2 buffers of this size.
        "reduce_bucket_size": 1_011_781_632,
        "allgather_bucket_size": 1_011_781_632,
    }
    assert ds["bf16"] == {"enabled": True}
    # bf16 gradients are reduced in fp32 (DeepSpeed's default for bf16 is bf16).
    assert ds["communication_data_type"] == "fp32" and "data_types" not in ds
    assert "fp16" not in ds

    cfg = load_suite(["suite=pythia", "size=12b", "dataset=pile"])  # fp16, TP 4 × DP 64
    run = resolve_run(cfg, "12b", "pile")
    ds = deepspeed_config(cfg, run)
    assert ds["zero_optimization"]["reduce_bucket_size"] == 1_260_000_000  # pythia-12b.yml
    assert ds["zero_optimization"]["allgather_bucket_size"] == 1_260_000_000  # pythia-12b.yml
    assert ds["fp16"] == {
        "enabled": True,
        "loss_scale": 0,  # dynamic (pythia-*.yml)
        "initial_scale_power": 12,  # pythia-*.yml; DeepSpeed's default is 16
        "loss_scale_window": 1000,  # pythia-*.yml
        "hysteresis": 2,  # pythia-*.yml
        "min_loss_scale": 1,  # pythia-*.yml
    }
    assert "communication_data_type" not in ds  # fp16 reduces in fp16 as Pythia did
    assert ds["tensor_parallel"]["autotp_size"] == 4

    # One DP rank: nothing to reduce or overlap; the bucket is no larger than the rank's
    # gradient (DeepSpeed's default 5e8 elements would cost 1 GB of bf16 for nothing).
    cfg, run = _run(["precision=bf16", "parallel.gpus=2", "parallel.tp=2"])
    per_rank = -(-run.family.total_params(run.size, run.padded_vocab) // 2)
    assert run.dp == 1 and deepspeed_config(cfg, run)["zero_optimization"] == {
        "stage": 1,
        "reduce_bucket_size": per_rank,
        "allgather_bucket_size": per_rank,
    }


def test_attention_defaults_to_sdpa_and_flash_attn_is_checked_up_front(monkeypatch):
    import types

    import torch

    from suite.train.model import check_attention

    cfg, run = _run()
    assert cfg.attention == "sdpa"
    from suite.train.model import build_model, hf_config

    config = hf_config(run, eos_id=0, precision="fp32")
    assert build_model(config, seed=1).config._attn_implementation == "sdpa"
    assert check_attention("eager", "fp32") == "eager"
    with pytest.raises(ConfigError, match="attention='flash'"):
        load_suite(["size=360k", "dataset=stdlib", "attention=flash"])
    # fp32: flash-attn has no fp32 kernels, whatever the machine has.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    with pytest.raises(ConfigError) as err:
        check_attention("flash_attention_2", "fp32")
    message = str(err.value)
    assert message.startswith("attention='flash_attention_2'") and "precision='fp32'" in message
    assert check_attention("flash_attention_2", "bf16") == "flash_attention_2"
    assert check_attention("flash_attention_2", "fp16") == "flash_attention_2"

    # A wheel built against another torch fails at import with an undefined symbol.
    class BrokenWheel:
        def find_spec(self, name, path=None, target=None):
            if name == "flash_attn":
                raise ImportError("flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDevice")

    monkeypatch.delitem(sys.modules, "flash_attn")
    monkeypatch.setattr(sys, "meta_path", [BrokenWheel(), *sys.meta_path])
    with pytest.raises(ConfigError) as err:
        check_attention("flash_attention_2", "bf16")
    message = str(err.value)
    assert "flash-attn" in message and f"torch {torch.__version__}" in message
    assert "undefined symbol" in message
    assert "pip install flash-attn" in message and "attention=sdpa" in message
    assert len(message.splitlines()) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        check_attention("flash_attention_2", "bf16")


def test_no_weight_decay_on_biases_and_norms():
    from suite.train.model import build_model, hf_config

    _, run = _run()
    model = build_model(hf_config(run, eos_id=0, precision="fp32"), seed=1)
    decay, no_decay = param_groups(model, run, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(
        names[id(p)].endswith(".weight") and "norm" not in names[id(p)] for p in decay["params"]
    )
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert "gpt_neox.final_layer_norm.weight" in exempt
    assert "gpt_neox.layers.0.attention.query_key_value.bias" in exempt
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    # Seeded init: the same seed gives the same weights, another seed does not.
    again = build_model(hf_config(run, eos_id=0, precision="fp32"), seed=1)
    other = build_model(hf_config(run, eos_id=0, precision="fp32"), seed=2)
    first = dict(model.named_parameters())
    assert all((first[n] == p).all() for n, p in again.named_parameters())
    assert not (
        first["gpt_neox.embed_in.weight"] == other.get_parameter("gpt_neox.embed_in.weight")
    ).all()


def test_identity_mismatch_names_each_field(tmp_path):
    saved = {"data_fingerprint": "aaa", "layout": {"tp": 1}, "train_steps": 10}
    check_identity(saved, dict(saved), tmp_path)
    with pytest.raises(ResumeMismatch) as err:
        check_identity(saved, saved | {"data_fingerprint": "bbb", "train_steps": 20}, tmp_path)
    message = str(err.value)
    assert "data_fingerprint: saved 'aaa', now 'bbb'" in message
    assert "train_steps: saved 10, now 20" in message and "new run directory" in message


class _Batches:
    """Stands in for a dataset: batch i is a deterministic function of i."""

    def batch(self, index, global_batch):
        return np.arange(global_batch * 5).reshape(global_batch, 5) + 1000 * index


def test_running_batch_hash():
    from data_order import batch_hash

    data = _Batches()
    assert batches_hash_upto(data, 4, 0) == EMPTY_BATCHES_HASH
    expected = chain_hash(
        chain_hash(EMPTY_BATCHES_HASH, batch_hash(data.batch(0, 4))), batch_hash(data.batch(1, 4))
    )
    assert batches_hash_upto(data, 4, 2) == expected
    assert batches_hash_upto(data, 4, 3) != expected


def test_bad_input_is_one_line_naming_the_field(tmp_path):
    from dist_helpers import run_train

    cases = {
        f"datasets.stdlib.path={tmp_path / 'missing'}": "datasets.stdlib.path=",
        "parallel.gpus=2 parallel.micro_batch=8": "world_size=1: dp × tp = 2 × 1 = 2",
    }
    for override, expected in cases.items():
        result = run_train(["size=160k", "dataset=stdlib", f"root={tmp_path}", *override.split()])
        assert result.returncode == 2, result.stderr[-2000:]
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not any(tmp_path.iterdir())  # nothing half-made (no run dir, no dataset)


def test_partial_resume_checkpoint_is_ignored_and_removed(tmp_path):
    """A crash mid-save leaves a folder the pointer does not name: it is never loaded."""
    import json

    from suite.train.resume import read_latest, remove_partial

    resume = tmp_path / "resume"
    for tag in ("step4", "step8", "step12"):
        (resume / tag).mkdir(parents=True)
        (resume / tag / "mp_rank_00_model_states.pt").write_bytes(b"x")
    (resume / "latest.json").write_text(
        json.dumps({"step": 8, "tag": "step8", "kept": ["step4", "step8"]})
    )
    latest = read_latest(tmp_path)
    assert latest["tag"] == "step8"  # step12 was being written when the process died
    remove_partial(tmp_path, latest)
    assert sorted(p.name for p in resume.iterdir() if p.is_dir()) == ["step4", "step8"]


def test_flash_attention_with_fp32_fails_when_the_suite_is_loaded():
    with pytest.raises(ConfigError, match=r"^attention='flash_attention_2': .*no fp32 kernels"):
        load_suite(["attention=flash_attention_2", "precision=fp32"])
