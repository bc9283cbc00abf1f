"""Checkpoint export: a transformers folder plus scaling_suite.json, dtype kept, checked."""

from __future__ import annotations

import json

import pytest
import torch
from publish_helpers import BATCH, EOS, SEQ_LEN, SMALL_SCHEDULE, tiny_model

from suite.errors import ConfigError, SuiteError
from suite.publish.export import _check_saved_dtype, export_checkpoint
from suite.publish.metadata import (
    METADATA_FILE,
    CheckpointMeta,
    check_folder_against_metadata,
    digest_file,
)


def test_export_is_a_loadable_transformers_folder_with_metadata(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert sorted(tiny_run.exports) == SMALL_SCHEDULE.steps()
    folder = tiny_run.exports[2]
    names = {p.name for p in folder.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        METADATA_FILE,
    } <= names
    meta = check_folder_against_metadata(folder)  # every file's sha256 recorded and right
    assert meta["step"] == 2 and meta["revision"] == "step2"
    assert meta["tokens_seen"] == 2 * BATCH * SEQ_LEN
    assert meta["dtype"] == "float32" and meta["run_name"] == "tiny"
    assert meta["code_version"].startswith("0.1.0")
    assert set(meta["files"]) == names - {METADATA_FILE}
    assert meta["files"]["config.json"]["sha256"] == digest_file(folder / "config.json").sha256
    # The running batch hash advances with every update, so exports are tied to their data.
    hashes = [
        json.loads((tiny_run.exports[s] / METADATA_FILE).read_text())["batches_hash"]
        for s in SMALL_SCHEDULE.steps()
    ]
    assert len(set(hashes)) == len(hashes)

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        logits = model(tiny_run.probe).logits
    # Same bytes, same architecture, same CPU kernels: the reload is bitwise identical.
    assert torch.equal(logits, tiny_run.logits[2])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == EOS
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_run.tokenizer_file))
    assert tokenizer("every checkpoint").input_ids == raw.encode("every checkpoint").ids
    assert tokenizer.decode(tokenizer("every checkpoint").input_ids) == "every checkpoint"


def test_bf16_model_is_saved_as_bf16_not_fp16(tmp_path, tiny_run):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    model = tiny_model(120, dtype=torch.bfloat16)
    meta = CheckpointMeta("bf16", 0, 0, "fp", "bh", "ch", total_steps=1)
    folder = export_checkpoint(model, tiny_run.tokenizer_file, tmp_path / "bf16", meta)
    with safe_open(folder / "model.safetensors", framework="pt") as handle:
        dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}  # noqa: SIM118
    assert dtypes == {"BF16"}
    assert json.loads((folder / METADATA_FILE).read_text())["dtype"] == "bfloat16"
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    assert {p.dtype for p in reloaded.parameters()} == {torch.bfloat16}
    for (name, a), b in zip(
        model.state_dict().items(), reloaded.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    # And the guard that refuses a dtype-changing save really fires.
    with pytest.raises(SuiteError, match="saved as BF16 but the model is float16"):
        _check_saved_dtype(folder, "float16")


def test_failed_export_leaves_no_folder_and_keeps_the_previous_one(tmp_path, tiny_run, monkeypatch):
    model = tiny_model(120)
    meta = CheckpointMeta("x", 1, 32, "fp", "bh", "ch", total_steps=1)
    out = export_checkpoint(model, tiny_run.tokenizer_file, tmp_path / "step1", meta)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        export_checkpoint(model, tiny_run.tokenizer_file, tmp_path / "step1", meta)
    with pytest.raises(OSError, match="disk full"):
        export_checkpoint(model, tiny_run.tokenizer_file, tmp_path / "step2", meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step1"]  # no temp dirs, no step2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_inputs_name_the_field(tmp_path, tiny_run):
    model = tiny_model(120)
    meta = CheckpointMeta("x", 0, 0, "fp", "bh", "ch", total_steps=1)
    with pytest.raises(ConfigError, match="^tokenizer_file="):
        export_checkpoint(model, tmp_path / "missing.json", tmp_path / "out", meta)
    with pytest.raises(ConfigError, match="^eos_token='<eos>'"):
        export_checkpoint(model, tiny_run.tokenizer_file, tmp_path / "out", meta, eos_token="<eos>")
    with pytest.raises(ConfigError, match="^step="):
        CheckpointMeta("x", -1, 0, "fp", "bh", "ch", total_steps=1)
    with pytest.raises(ConfigError, match="^total_steps="):
        CheckpointMeta("x", 5, 0, "fp", "bh", "ch", total_steps=4)
    with pytest.raises(ConfigError, match="^tokens_seen="):
        CheckpointMeta("x", 0, 10, "fp", "bh", "ch", total_steps=4)
    with pytest.raises(ConfigError, match="^data_fingerprint="):
        CheckpointMeta("x", 1, 10, "", "bh", "ch", total_steps=4)
    with pytest.raises(ConfigError, match="^run_name="):
        CheckpointMeta("org/x", 1, 10, "fp", "bh", "ch", total_steps=4)
    assert not (tmp_path / "out").exists()
