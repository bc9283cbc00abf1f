"""Checkpoint export (transformers folder + scaling_suite.json), and a tiny run to publish.

`build_tiny_run` is shared with the publishing tests: a GPT-NeoX model of a few thousand
parameters, a tokenizer trained here on a few sentences, and a short plain torch loop that
exports at the scheduled steps. It exercises *publishing*; it is not the trainer (issue 4),
whose own integration test drives the publisher with real DeepSpeed runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from suite.errors import ConfigError, SuiteError
from suite.publish.export import _check_saved_dtype, export_checkpoint
from suite.publish.metadata import (
    METADATA_FILE,
    CheckpointMeta,
    check_folder_against_metadata,
    digest_file,
)
from suite.schedule import CheckpointSchedule

SENTENCES = [
    "the suite trains a ladder of model sizes on the same data in the same order",
    "every checkpoint is published as a branch named after its step",
    "researchers load any step with from_pretrained and a revision",
    "a batch index maps to the same tokens for every model of the suite",
] * 4
EOS = "<|endoftext|>"
SEQ_LEN = 8
BATCH = 4


def train_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=[EOS], show_progress=False)
    tokenizer.train_from_iterator(SENTENCES, trainer)
    tokenizer.save(str(path))
    return path


def tiny_model(vocab_size: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        rotary_pct=0.25,
    )
    return GPTNeoXForCausalLM(config).to(dtype).eval()


@dataclass
class TinyRun:
    tokenizer_file: Path
    exports: dict[int, Path] = field(default_factory=dict)  #: step -> export folder
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  #: step -> probe logits
    probe: torch.Tensor | None = None  #: token ids the logits were computed on
    run_name: str = "tiny"


def build_tiny_run(root: Path, schedule: CheckpointSchedule, run_name: str = "tiny") -> TinyRun:
    """Train a tiny model with plain torch, exporting at every scheduled step."""
    from tokenizers import Tokenizer

    root.mkdir(parents=True, exist_ok=True)
    tokenizer_file = train_tokenizer(root / "tokenizer.json")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    ids = []
    for sentence in SENTENCES:
        ids += tokenizer.encode(sentence).ids + [tokenizer.token_to_id(EOS)]
    stream = torch.tensor(ids)
    model = tiny_model(tokenizer.get_vocab_size())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    run = TinyRun(tokenizer_file, probe=stream[:SEQ_LEN].unsqueeze(0), run_name=run_name)
    batches = hashlib.sha256()
    fingerprint = hashlib.sha256(stream.numpy().tobytes()).hexdigest()
    config_hash = hashlib.sha256(model.config.to_json_string().encode()).hexdigest()

    def export(step: int) -> None:
        meta = CheckpointMeta(
            run_name=run_name,
            step=step,
            tokens_seen=step * BATCH * SEQ_LEN,
            data_fingerprint=fingerprint,
            batches_hash=batches.hexdigest(),
            config_hash=config_hash,
            total_steps=schedule.total_steps,
        )
        run.exports[step] = export_checkpoint(model, tokenizer_file, root / f"step{step}", meta)
        with torch.no_grad():
            run.logits[step] = model(run.probe).logits.clone()

    if schedule.is_checkpoint(0):
        export(0)
    for step in range(1, schedule.total_steps + 1):
        # Update `step` consumes batch `step - 1` (Contract 1).
        start = ((step - 1) * BATCH * SEQ_LEN) % (len(stream) - BATCH * (SEQ_LEN + 1))
        rows = torch.stack(
            [stream[start + r * SEQ_LEN : start + r * SEQ_LEN + SEQ_LEN + 1] for r in range(BATCH)]
        )
        batches.update(rows.numpy().tobytes())
        model.train()
        loss = model(rows[:, :-1], labels=rows[:, :-1]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.eval()
        if schedule.is_checkpoint(step):
            export(step)
    return run


SMALL_SCHEDULE = CheckpointSchedule(log_until=2, every=3, total_steps=4)  # 0, 1, 2, 3, 4


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> TinyRun:
    return build_tiny_run(tmp_path_factory.mktemp("tiny-run"), SMALL_SCHEDULE)


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
