"""Activation checkpointing is really on: layers recompute in backward, saved activations
shrink, evaluation does not recompute, and TP=2 with it trains like TP=1 with and without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dist_helpers import LOSS_RTOL, REPO, WEIGHT_ATOL, check_ok, free_port, run_python, train_env

from suite.config import resolve_run
from suite.settings import load_suite
from suite.train.model import ExportModel, build_model, hf_config


def _model(size: str, seq_len: int, checkpointing: bool):
    cfg = load_suite([f"size={size}", "dataset=stdlib", f"seq_len={seq_len}"])
    run = resolve_run(cfg, size, "stdlib")
    config = hf_config(run, eos_id=0, precision="fp32")
    return build_model(config, seed=1, activation_checkpointing=checkpointing), config


def _count_mlp_forwards(model) -> list[int]:
    """Count every forward of each layer's MLP (an instance attribute: the layer's own
    forward-hooks are outside the checkpoint and do not fire on the recompute)."""
    counts = [0] * len(model.gpt_neox.layers)
    for index, layer in enumerate(model.gpt_neox.layers):
        forward = layer.mlp.forward

        def counting(*args, _forward=forward, _index=index, **kwargs):
            counts[_index] += 1
            return _forward(*args, **kwargs)

        layer.mlp.forward = counting
    return counts


def _loss(model, ids):
    logits = model(input_ids=ids).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))


def test_each_layer_recomputes_in_training_backward_only():
    ids = torch.randint(0, 300, (4, 64), generator=torch.Generator().manual_seed(0))
    grads = {}
    for checkpointing in (False, True):
        model, _ = _model("360k", 64, checkpointing)
        counts = _count_mlp_forwards(model)
        model.train()
        _loss(model, ids).backward()
        # Every layer runs forward once, and once more in backward when checkpointed.
        assert counts == [2 if checkpointing else 1] * 2
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters()}
        # Evaluation (eval mode, no grad) never recomputes, and builds no KV cache.
        model.eval()
        with torch.no_grad():
            out = model(input_ids=ids)
        assert counts == [3 if checkpointing else 2] * 2 and out.past_key_values is None
        # Train mode without grad (e.g. a probe under no_grad) does not checkpoint either.
        model.train()
        with torch.no_grad():
            model(input_ids=ids)
        assert counts == [4 if checkpointing else 3] * 2
    # The recompute repeats the same kernels on the same inputs: identical gradients.
    for name, grad in grads[False].items():
        assert torch.equal(grads[True][name], grad), name


def test_checkpointing_keeps_a_fraction_of_the_activations():
    """Bytes of distinct non-parameter storages autograd saves during one training forward
    (2.2m mini size: 5 layers, d 160, vocab 2048; micro batch 4 × 128 tokens): 34.5 MB
    without checkpointing, 6.5 MB with it, of which 4.2 MB are the fp32 logits the loss
    keeps either way (measured). Checkpointing keeps only each layer's input."""
    ids = torch.randint(0, 300, (4, 128), generator=torch.Generator().manual_seed(0))
    saved = {}
    for checkpointing in (False, True):
        model, _ = _model("2.2m", 128, checkpointing)
        model.train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(tensor, _storages=storages):
            storage = tensor.untyped_storage()
            _storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            _loss(model, ids)
        saved[checkpointing] = sum(n for ptr, n in storages.items() if ptr not in params)
    logits = 4 * 128 * 2048 * 4
    assert saved[False] > 30e6
    assert saved[True] < saved[False] / 4
    # Without the logits (which no layer checkpoint can drop) the layers keep ~8% of it.
    assert saved[True] - logits < (saved[False] - logits) / 10


def test_export_model_neither_checkpoints_nor_disables_the_cache(tmp_path):
    model, config = _model("160k", 32, checkpointing=True)
    export = ExportModel(config, "float32")
    assert not any(getattr(m, "gradient_checkpointing", False) for m in export.model.modules())
    assert model.gpt_neox.layers[0].gradient_checkpointing  # the training model still does
    assert config.use_cache is False and model.config.use_cache is False
    # The export model is built on meta and receives the gathered weights at each export.
    assert {p.device.type for p in export.model.parameters()} == {"meta"}
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    export.load(state).save_pretrained(tmp_path)
    export.release()
    assert {p.device.type for p in export.model.parameters()} == {"meta"}
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["use_cache"] is True  # from_pretrained(...).generate() uses the KV cache
    assert "attn_implementation" not in json.dumps(saved)


# --- the real trainer: TP=2 with checkpointing vs TP=1 with and without -----------------

STEPS = 4
#: Runs `train_run` with each layer's MLP forward counted; writes the count per rank.
_DRIVER = """
import json, os, sys
from pathlib import Path
from transformers.models.gpt_neox import modeling_gpt_neox

calls = 0
forward = modeling_gpt_neox.GPTNeoXMLP.forward

def counting(self, *args, **kwargs):
    global calls
    calls += 1
    return forward(self, *args, **kwargs)

modeling_gpt_neox.GPTNeoXMLP.forward = counting
from suite.settings import load_suite
from suite.train import train_run

for out, overrides in json.loads(sys.argv[1]):
    calls = 0
    train_run(load_suite(overrides), "160k", "stdlib")
    Path(f"{out}-rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(calls))
"""


def _overrides(root: Path, data: Path, *extra: str) -> list[str]:
    return [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        "publish.store=none", "publish.keep_exports=true", "seq_len=32", "global_batch=8",
        "default_resources.micro_batch=8", f"train_steps={STEPS}", "padded_vocab=512",
        "checkpoints.log_until=1", f"checkpoints.every={STEPS}", f"checkpoints.resume_every={STEPS}",
        "eval.every=0", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_tp2_with_checkpointing_matches_tp1_with_and_without(tiny_data, tmp_path):
    on, off, tp2 = (tmp_path / name for name in ("tp1-on", "tp1-off", "tp2-on"))
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    single = [
        (str(on), _overrides(on, tiny_data, "activation_checkpointing=true")),
        (str(off), _overrides(off, tiny_data, "activation_checkpointing=false")),
    ]
    check_ok(run_python(f"import sys; sys.argv = ['driver', {json.dumps(single)!r}]\n" + _DRIVER))
    split = [
        (str(tp2), _overrides(tp2, tiny_data, "activation_checkpointing=true",
                              "parallel.gpus=2", "parallel.tp=2")),
    ]  # fmt: skip
    check_ok(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(free_port()),
                str(script),
                json.dumps(split),
            ],  # fmt: skip
            env=train_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    )
    # 2 layers × STEPS updates × 1 micro-batch: one forward each, two with checkpointing
    # (TP=2: on both ranks, through AutoTP's replaced linear layers).
    calls = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*-rank*.json")}
    layers_x_steps = 2 * STEPS
    assert calls == {
        "tp1-on-rank0": 2 * layers_x_steps,
        "tp1-off-rank0": layers_x_steps,
        "tp2-on-rank0": 2 * layers_x_steps,
        "tp2-on-rank1": 2 * layers_x_steps,
    }

    def rows(root: Path) -> pd.DataFrame:
        metrics = pd.read_json(root / "mini/runs/mini-160k/metrics.jsonl", lines=True)
        return metrics[metrics["loss"].notna()].reset_index(drop=True)

    def weights(root: Path) -> dict:
        from safetensors.numpy import load_file

        return load_file(root / f"mini/runs/mini-160k/exports/step{STEPS}/model.safetensors")

    reference = rows(on)
    assert list(reference["step"]) == list(range(1, STEPS + 1))
    for other in (off, tp2):
        np.testing.assert_allclose(rows(other)["loss"], reference["loss"], rtol=LOSS_RTOL)
        np.testing.assert_allclose(rows(other)["grad_norm"], reference["grad_norm"], rtol=1e-4)
        want, have = weights(on), weights(other)
        for name in want:
            np.testing.assert_allclose(have[name], want[name], rtol=0, atol=WEIGHT_ATOL)
    # Recomputing runs the same kernels on the same inputs: bitwise the same training.
    assert list(rows(off)["loss"]) == list(reference["loss"])
