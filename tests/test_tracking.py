"""Experiment tracking (`suite/train/tracking.py`): TensorBoard and W&B (offline) read back
against `metrics.jsonl`, one W&B run and one step axis across a crash and its restart, and no
Hub token in anything the run wrote.

One module-scoped run: training crashes after update 5 (a resume checkpoint at 4), then
is started again and finishes at 6 — the requeue case: update 5 is trained twice, and
must be tracked once.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dist_helpers import REPO, check_ok, mini_run_dir, train_env

STEPS = 6
EVAL_STEPS = [3, 6]
CRASH_AFTER = 5
RESUME_EVERY = 2  # the restart resumes at 4 and redoes 5
#: What a Hub token looks like: the training process has it as HF_TOKEN and in its config.
TOKEN = "hf_TrackingTestSentinel0123456789abcdef"
#: float32 keeps 24 significant bits: TensorBoard's scalars (`simple_value`) equal the
#: float64 values of metrics.jsonl to within half an ulp, a relative 2**-24.
FLOAT32_RTOL = 2.0**-24


def _overrides(root: Path, data: Path) -> list[str]:
    return [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        "publish.store=none", "seq_len=32", "global_batch=8", "default_resources.micro_batch=8",
        f"train_steps={STEPS}", "checkpoints.log_until=1", f"checkpoints.every={STEPS}",
        f"checkpoints.resume_every={RESUME_EVERY}", "eval.every=3", "eval.samples=8",
        "logging.tensorboard=true", "logging.wandb.mode=offline",
        # A token that made its way into the config (here a path `suite eval` would read)
        # must be masked in the config the trackers log.
        f"eval.include_path=/nonexistent/{TOKEN}",
    ]  # fmt: skip


def _run(command: list[str], home: Path) -> subprocess.CompletedProcess:
    env = train_env(
        {
            "HF_TOKEN": TOKEN,
            "WANDB_MODE": "offline",  # belt and braces: the config says offline too
            # W&B's settings and caches in the test's folder, not the user's home.
            "WANDB_CONFIG_DIR": str(home / "wandb-config"),
            "WANDB_CACHE_DIR": str(home / "wandb-cache"),
            "WANDB_DATA_DIR": str(home / "wandb-data"),
        }
    )
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


#: The crashed start and its requeue, in one interpreter to save a second start-up of
#: torch and DeepSpeed (the trackers keep nothing between runs in memory: the second run
#: finds the W&B id and the event files on disk, as a new process does). A hook fails right
#: after update CRASH_AFTER, when every tracker has logged it (the preemption check is the
#: last hook), then the same `train_run` is called again, as `suite train` would be.
REQUEUE = """
import sys
from suite.settings import load_suite
from suite.train import train_run
from suite.train.preemption import PreemptionHook

checked = PreemptionHook.after_update

def crash(self, trainer, record):
    checked(self, trainer, record)
    if record["step"] == {step}:
        raise RuntimeError("injected crash")

cfg = load_suite({overrides!r})
sys.argv = ["suite", "train", *{overrides!r}]  # what W&B records as the command line
PreemptionHook.after_update = crash
try:
    train_run(cfg, "160k", "stdlib")
except RuntimeError as error:
    print("crashed:", error)
PreemptionHook.after_update = checked
print(train_run(cfg, "160k", "stdlib"))
"""


@pytest.fixture(scope="module")
def requeued(tiny_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tracking")
    code = REQUEUE.format(step=CRASH_AFTER, overrides=_overrides(root, tiny_data))
    result = check_ok(_run([sys.executable, "-c", code], root))
    assert "crashed: injected crash" in result.stdout, result.stdout[-3000:]
    return mini_run_dir(root)


def _metrics(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    # json, not pandas.read_json: its default float parser is not round-trip exact.
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rows = pd.DataFrame([json.loads(line) for line in lines])
    train = rows[rows["loss"].notna()].reset_index(drop=True)
    evals = rows[rows["eval_loss"].notna()].reset_index(drop=True)
    assert list(train["step"]) == list(range(1, STEPS + 1)) and list(evals["step"]) == EVAL_STEPS
    return train, evals


def test_the_restart_resumed_the_crashed_run(requeued):
    record = json.loads((requeued / "run.json").read_text())
    assert record["status"] == "complete" and record["resumed_from"] == 4


def test_tensorboard_holds_each_update_once_with_the_values_of_metrics_jsonl(requeued):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, evals = _metrics(requeued)
    board = requeued / "tensorboard"
    assert len(list(board.glob("events.out.tfevents.*"))) == 2  # one file per start
    events = EventAccumulator(str(board), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    for tag, column in [
        ("train/loss", "loss"),
        ("train/lr", "lr"),
        ("train/grad_norm", "grad_norm"),
        ("train/tokens_per_s", "tokens_per_s"),  # update 5's of the restart
        ("train/tokens", "tokens"),
    ]:
        scalars = events.Scalars(tag)
        # The crashed start's update 5 was purged (purge_step): each step once, in order.
        assert [s.step for s in scalars] == list(range(1, STEPS + 1)), tag
        np.testing.assert_allclose(
            [s.value for s in scalars], train[column], rtol=FLOAT32_RTOL, atol=0, err_msg=tag
        )
    for tag, column in [("eval/loss", "eval_loss"), ("eval/perplexity", "eval_perplexity")]:
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == EVAL_STEPS
        np.testing.assert_allclose([s.value for s in scalars], evals[column], rtol=FLOAT32_RTOL)
    assert "train/mfu" not in events.Tags()["scalars"]  # a CPU run has no MFU
    # The config, with the data fingerprint the run recorded, as text at each start.
    fingerprint = json.loads((requeued / "run.json").read_text())["identity"]["data_fingerprint"]
    texts = events.Tensors("config/text_summary")
    assert [t.step for t in texts] == [0, 4]
    config = texts[-1].tensor_proto.string_val[0].decode()
    assert f'"data_fingerprint": "{fingerprint}"' in config
    # HParams: the run's row (a sweep's runs side by side, their losses from the scalars).
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    row = HParamsPluginData.FromString(content).session_start_info.hparams
    assert row["size"].string_value == "160k" and row["train_steps"].number_value == STEPS
    assert row["data_fingerprint"].string_value == fingerprint


# The .wandb file is W&B's transaction log (the LevelDB log format: a 7-byte file header,
# 32 KiB blocks of records with a CRC-32, a length and a FULL/FIRST/MIDDLE/LAST type); wandb
# 0.31 writes it from its Go core and no longer ships a Python reader
# (`wandb.sdk.internal.datastore` is gone), so the test reads it here. Each record is a
# `wandb_internal_pb2.Record` protobuf, parsed with wandb's own classes.
_BLOCK, _HEADER = 32768, 7


def _wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:_HEADER]) == (b":W&B", 0xBEE1, 0), path
    records, position, pending = [], _HEADER, b""
    while position + _HEADER <= len(data):
        left = _BLOCK - position % _BLOCK
        crc, length, kind = struct.unpack("<IHB", data[position : position + _HEADER])
        if left < _HEADER or (kind == 0 and length == 0):  # a block's zero padding
            position += left
            continue
        chunk = data[position + _HEADER : position + _HEADER + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, (path, position)
        position += _HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _history(records: list) -> list[dict]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return rows


def test_wandb_continues_one_run_and_its_step_axis_across_the_restart(requeued):
    train, evals = _metrics(requeued)
    first, *logged = (requeued / "wandb" / "suite-run.jsonl").read_text().splitlines()
    state = json.loads(first)
    # Each step logged once over both starts: the restart did not offer 5 again.
    assert [json.loads(line)["step"] for line in logged] == list(range(1, STEPS + 1))
    offline = sorted((requeued / "wandb").glob("offline-run-*"))
    assert len(offline) == 2  # one per start, uploaded by `wandb sync` as one run
    histories, configs = [], {}
    for folder in offline:
        (log,) = folder.glob("run-*.wandb")
        assert log.name == f"run-{state['id']}.wandb"  # the same W&B run id
        records = _wandb_records(log)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.run_id == state["id"] and run.project == "mini" and run.run_group == "mini"
        histories.append(_history(records))
        for record in records:
            if record.WhichOneof("record_type") == "config":
                configs |= {i.key: json.loads(i.value_json) for i in record.config.update}
    # The first start logged 1..5; the restart redid 5 (resumed at 4) and logged only 6.
    assert [row["_step"] for row in histories[0]] == [1, 2, 3, 4, 5]
    assert [row["_step"] for row in histories[1]] == [6]
    rows = {row["_step"]: row for history in histories for row in history}
    # JSON keeps float64: the values are metrics.jsonl's exactly. Update 5 was trained twice
    # from the same resume checkpoint, bitwise alike (tests/test_train_runs.py), so the
    # first start's logged loss is the one metrics.jsonl kept from the restart.
    for column in ("loss", "lr", "grad_norm", "tokens"):
        assert [rows[s][f"train/{column}"] for s in train["step"]] == list(train[column]), column
    for column in ("loss", "perplexity"):
        assert [rows[s][f"eval/{column}"] for s in EVAL_STEPS] == list(evals[f"eval_{column}"])
    assert all("eval/loss" not in rows[s] for s in rows if s not in EVAL_STEPS)
    # The resolved config: run shape, data fingerprint, the whole suite config.
    identity = json.loads((requeued / "run.json").read_text())["identity"]
    assert configs["data_fingerprint"] == identity["data_fingerprint"]
    assert configs["run"]["size"] == "160k" and configs["run"]["train_steps"] == STEPS
    assert configs["suite"]["logging"]["wandb"]["mode"] == "offline"
    assert configs["suite"]["eval"]["include_path"] == "/nonexistent/***"  # scrubbed


def test_no_file_the_run_wrote_holds_the_hub_token(requeued):
    written = [path for path in requeued.rglob("*") if path.is_file()]
    assert any("wandb" in p.parts for p in written) and any(
        "tensorboard" in p.parts for p in written
    )
    leaking = [path for path in written if TOKEN.encode() in path.read_bytes()]
    assert not leaking


def test_scrub_masks_secret_fields_url_credentials_and_known_tokens(monkeypatch):
    from suite.train.tracking import MASK, known_secrets, scrub

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hidden = known_secrets()
    assert TOKEN in hidden
    document = {
        "publish": {"store": "hub:https://alice:s3cr3t-pass@127.0.0.1:8080/"},
        "hub_token": "anything",
        "api_key": "anything",
        "note": [f"Bearer {TOKEN}"],
        "tokens": 5,
        "tokenizer": "/data/tokenizer.json",
        "loss_chunk_tokens": 4096,
        "hf_token": None,
    }
    assert scrub(document, hidden) == {
        "publish": {"store": f"hub:https://{MASK}@127.0.0.1:8080/"},
        "hub_token": MASK,
        "api_key": MASK,
        "note": [f"Bearer {MASK}"],
        "tokens": 5,
        "tokenizer": "/data/tokenizer.json",
        "loss_chunk_tokens": 4096,
        "hf_token": None,
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("logging.wandb.mode=onine", "logging.wandb.mode='onine': use one of: online, offline"),
        ("logging.wandb.project=my/proj", "logging.wandb.project='my/proj': use a W&B name"),
        ("logging.wandb.mdoe=offline", "did you mean logging.wandb.mode?"),
    ],
)
def test_a_bad_tracking_setting_is_one_line_naming_the_field(override, message):
    from suite.errors import ConfigError
    from suite.settings import load_suite

    with pytest.raises(ConfigError) as error:
        load_suite([override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_tracking_is_off_by_default_and_builds_no_hook():
    from suite.settings import load_suite
    from suite.train.tracking import tracking_hooks

    cfg = load_suite([])
    assert not cfg.logging.tensorboard and cfg.logging.wandb.mode == "disabled"
    assert tracking_hooks(cfg, None, None, {}, {}) == []
