"""A tiny run to publish: shared by the export and publishing tests (through conftest.py).

`build_tiny_run` trains a GPT-NeoX model of a few thousand parameters with a plain torch
loop on a tokenizer trained here on a few sentences, exporting at the scheduled steps. It
exercises *publishing*; the trainer's own integration tests drive the publisher with real
DeepSpeed runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from suite.publish.export import export_checkpoint
from suite.publish.metadata import CheckpointMeta
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


def hub_env(endpoint: str, hf_home: Path, token: str | None = None) -> dict[str, str]:
    """The training environment (`dist_helpers.train_env`), online against a loopback Hub
    only: HF_ENDPOINT, an own HF_HOME, LFS instead of Xet, and the token where given."""
    from dist_helpers import train_env

    env = train_env(
        {
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",  # the loopback Hub stores weights through LFS, not Xet
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        }
    )
    env.pop("HF_TOKEN", None)
    if token is not None:
        env["HF_TOKEN"] = token  # how any HF tool finds it; never part of the store spec
    return env


def content_commits(hub, repo: str, branch: str) -> list:
    """Commits on `branch` of the test hub that changed the weights (one per publication)."""
    return [c for c in hub.state.commits_on(repo, branch) if "model.safetensors" in c.changed]


def fake_resume_checkpoint(folder: Path, model_bytes: bytes = b"model and optimizer" * 100) -> Path:
    """A resume checkpoint folder as `TrainingStatePublisher.submit` takes it (DeepSpeed's
    model-states file and one rank's RNG state; their content does not matter there)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(model_bytes)
    (folder / "rng-rank0.pt").write_bytes(b"rng")
    return folder
