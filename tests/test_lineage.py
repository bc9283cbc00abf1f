"""Full training-state lineage: publish a run's training state, continue it elsewhere.

Run A (`suite train`, 8 updates, `publish.training_state=[4]`) publishes the weights and,
beside them, the full training state of step 4 (`local/mini-160k-training-state@step4`).
Run B, in a fresh root, continues it with `init_from=…@step4`: its losses of updates 5…8
and its final weights equal A's bit for bit (same thread count and kernels). The same for
DP=2 (ZeRO-1 optimizer shards), and on the loopback Hub, which is down for A's whole run: A
completes owing its weights and its state, and `suite publish RUN_DIR` finishes both before
B continues. A damaged state and another layout are refused in one line; a warm start with
another LR decay runs and is recorded.

Runtime on the shared 2-core machine: about 3 min in all (the DP=2 pair ~60-90 s, the Hub
pair ~35 s, the source run ~20 s, each continuation ~25 s, each refusal ~6 s); the unit
tests at the top take seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dist_helpers import REPO as REPO_ROOT
from dist_helpers import check_ok, mini_run_dir, run_train
from publish_helpers import fake_resume_checkpoint
from safetensors.torch import load_file

from suite.errors import ConfigError
from suite.publish.local_store import LocalStore
from suite.publish.metadata import digest_file
from suite.publish.pending import finish_pending
from suite.publish.publisher import PublishError, PublishPending
from suite.publish.retry import RetryPolicy
from suite.publish.training_state import (
    TRAINING_STATE_FILE,
    InitFrom,
    TrainingStatePublisher,
    parse_init_from,
    pending_states,
)
from suite.train.lineage import warm_start_changes

STEPS = 8
STATE_STEP = 4
REPO = "local/mini-160k"


def _overrides(root: Path, data: Path, store: str, dp: int = 1) -> list[str]:
    return [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        f"publish.store={store}", "publish.keep_exports=true", "seq_len=32", "global_batch=8",
        f"parallel.gpus={dp}", f"default_resources.micro_batch={8 // dp}",
        f"train_steps={STEPS}", "padded_vocab=512", "checkpoints.log_until=0",
        f"checkpoints.every={STEPS}", "checkpoints.resume_every=100", "eval.every=0",
    ]  # fmt: skip


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines) if "loss" in row}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "exports" / f"step{STEPS}" / "model.safetensors")


def _assert_bitwise_continuation(source: Path, continued: Path) -> None:
    a, b = _losses(source), _losses(continued)
    assert sorted(b) == list(range(STATE_STEP + 1, STEPS + 1))
    assert b == {step: a[step] for step in b}  # floats compared exactly
    wa, wb = _weights(source), _weights(continued)
    assert wa.keys() == wb.keys()
    for name, tensor in wa.items():
        assert torch.equal(tensor, wb[name]), name


def _one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("suite train:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- units -----------------------------------------------------------------------------------


def test_init_from_syntax_names_store_repo_and_step(tmp_path):
    assert parse_init_from(f"local:{tmp_path}/store/org/run@step4", "none") == InitFrom(
        f"local:{tmp_path}/store", "org/run", 4
    )
    assert parse_init_from("hub:org/run@step1000", "none") == InitFrom("hub", "org/run", 1000)
    assert parse_init_from("hub:https://hub.example:8080/org/run@step7", "none") == InitFrom(
        "hub:https://hub.example:8080", "org/run", 7
    )
    assert parse_init_from("org/run@step3", f"local:{tmp_path}") == InitFrom(
        f"local:{tmp_path}", "org/run", 3
    )
    for bad in ("org/run", "org/run@4", "run@step4", "local:/org/run@step4", "a/b/c@step1"):
        with pytest.raises(ConfigError) as err:
            parse_init_from(bad, "local:/x")
        assert err.value.field == "init_from"


def test_training_state_steps_are_validated():
    from suite.config import PublishConfig
    from suite.settings import load_suite

    cfg = PublishConfig(store="local:/tmp/x", training_state=[3], training_state_every=10)
    assert [s for s in range(1, 31) if cfg.training_state_at(s)] == [3, 10, 20, 30]
    assert not PublishConfig().training_state_at(1000)  # off by default
    for kwargs in ({"training_state": [0]}, {"training_state_every": -1}):
        with pytest.raises(ConfigError):
            PublishConfig(store="local:/tmp/x", **kwargs)
    with pytest.raises(ConfigError) as err:
        PublishConfig(store="none", training_state=[4])
    assert err.value.field == "publish.training_state"
    with pytest.raises(ConfigError) as err:
        load_suite(["train_steps=8", "publish.training_state=[9]"])
    assert err.value.field == "publish.training_state"
    with pytest.raises(ConfigError) as err:
        load_suite(["init_from=org/run"])
    assert err.value.field == "init_from"


def test_warm_start_lists_schedule_changes_and_refuses_layout_or_model_changes():
    saved = {
        "layout": {"dp": 2, "tp": 1, "global_batch": 8, "micro_batch": 4},
        "zero_stage": 1,
        "model_config": {"hidden_size": 64},
        "optim": {"lr": 1e-3, "min_lr_ratio": 0.1},
        "train_steps": 100,
        "init_from": {"repo": "older/run"},  # the source's own lineage: not compared
    }
    same = json.loads(json.dumps(saved))
    assert warm_start_changes(saved, same, "s") == []
    decay = same | {"optim": {"lr": 1e-3, "min_lr_ratio": 0.5}, "train_steps": 200}
    assert warm_start_changes(saved, decay, "s") == ["optim.min_lr_ratio", "train_steps"]
    with pytest.raises(ConfigError, match=r"saved with dp=2 × tp=1, ZeRO stage 1"):
        warm_start_changes(saved, same | {"layout": same["layout"] | {"dp": 1}}, "s")
    with pytest.raises(ConfigError, match=r"model_config.hidden_size: saved 64, now 128"):
        warm_start_changes(saved, same | {"model_config": {"hidden_size": 128}}, "s")


class _DownStore(LocalStore):
    """A local store that refuses uploads until `up` is set (a store outage)."""

    up = False

    def publish(self, *args, **kwargs):
        if not self.up:
            raise ConnectionError("store unreachable")
        return super().publish(*args, **kwargs)


def test_a_state_the_store_refused_stays_pending_and_suite_publish_finishes_it(tmp_path):
    checkpoint = fake_resume_checkpoint(tmp_path / "resume" / "step4")
    run_dir, store = tmp_path / "run", _DownStore(tmp_path / "store")
    short = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, drain_timeout_s=0.3)
    publisher = TrainingStatePublisher(run_dir, store, "org/run", short)
    publisher.submit(checkpoint, 4, {"step": 4, "batches_hash": "h"})
    publisher.close(wait=True)  # a store that cannot be reached fails nothing: it stays pending
    assert [e.revision for e in publisher.pending] == ["step4"] and not publisher.failures
    (entry,) = pending_states(run_dir)
    assert entry.attempts >= 1 and "upload: ConnectionError" in entry.last_error
    # `suite publish` while the store is still down: one line, the queue kept.
    with pytest.raises(PublishPending, match=r"^1 training state\(s\) still pending \(step4\)"):
        finish_pending(run_dir, store, short)
    assert [e.step for e in pending_states(run_dir)] == [4]
    with pytest.raises(ConfigError, match="publishes to org/run-training-state in local:"):
        TrainingStatePublisher(run_dir, LocalStore(tmp_path / "elsewhere"), "org/run")
    shutil.rmtree(checkpoint)  # the resume folder may be pruned: the staged links remain
    (publisher,) = finish_pending(run_dir)  # the entry's own store, now reachable
    assert publisher.published == ["step4"]
    assert pending_states(run_dir) == [] and not (run_dir / "training_state" / "step4").exists()
    published = LocalStore(tmp_path / "store").download("org/run-training-state", "step4")
    document = json.loads((published / TRAINING_STATE_FILE).read_text())
    assert document["step"] == 4 and document["batches_hash"] == "h"
    assert document["files"]["mp_rank_00_model_states.pt"] == {
        "sha256": digest_file(published / "mp_rank_00_model_states.pt").sha256,
        "size": 1900,
    }


def test_a_state_whose_staged_files_are_gone_fails_in_one_line_and_stays_queued(tmp_path):
    checkpoint = fake_resume_checkpoint(tmp_path / "resume" / "step2")
    run_dir, store = tmp_path / "run", _DownStore(tmp_path / "store")
    publisher = TrainingStatePublisher(run_dir, store, "org/run", RetryPolicy(drain_timeout_s=0))
    staged = publisher.submit(checkpoint, 2, {"step": 2})
    publisher.close(wait=False)
    shutil.rmtree(staged)
    store.up = True
    with pytest.raises(PublishError) as err:
        finish_pending(run_dir)
    message = str(err.value)
    assert "\n" not in message and "1 training state(s) not published" in message
    assert "is missing" in message and f"suite publish {run_dir}" in message
    assert [e.step for e in pending_states(run_dir)] == [2]  # kept until the user deletes it


def test_a_state_saved_but_not_queued_before_a_crash_is_queued_at_the_next_start(tmp_path):
    from types import SimpleNamespace

    from suite.train.hooks import ResumeHook
    from suite.train.loop import TrainState

    run_dir, store = tmp_path / "run", LocalStore(tmp_path / "store")
    (run_dir / "resume" / "step4").mkdir(parents=True)
    (run_dir / "resume" / "step4" / "mp_rank_00_model_states.pt").write_bytes(b"state")

    def start(step: int, directory: Path) -> TrainingStatePublisher:
        publisher = TrainingStatePublisher(directory, store, "org/run")
        hook = ResumeHook(
            directory, 100, 2, {}, state_at=lambda s: s == 4, state_publisher=publisher
        )
        trainer = SimpleNamespace(state=TrainState(step, "h", tokens_per_step=10))
        hook.on_start(trainer)
        hook.on_end(trainer)  # drains the publisher
        return publisher

    # Resumed at step 4 of a continued run: its step 4 came from elsewhere, nothing queued.
    assert start(4, tmp_path / "continued").published == []
    assert start(4, run_dir).published == ["step4"]  # its own checkpoint, never queued
    assert start(4, run_dir).published == []  # published once: not again
    assert store.list_revisions("org/run-training-state") == ["step4"]


# --- real runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tiny_data, tmp_path_factory) -> tuple[Path, Path]:
    """(run dir of A, its local store): 8 updates, training state of step 4 published."""
    root = tmp_path_factory.mktemp("source")
    store = root / "store"
    overrides = _overrides(root, tiny_data, f"local:{store}")
    check_ok(run_train([*overrides, f"publish.training_state=[{STATE_STEP}]"]))
    return mini_run_dir(root), store


@pytest.mark.slow
def test_training_state_is_published_beside_the_weights_and_verified(source):
    run_dir, store = source
    local = LocalStore(store)
    assert local.list_revisions(f"{REPO}-training-state") == ["step4"]
    assert "step4" not in local.list_revisions(REPO)  # the weights repo holds no optimizer
    folder = local.download(f"{REPO}-training-state", "step4")
    document = json.loads((folder / TRAINING_STATE_FILE).read_text())
    assert document["step"] == document["batches_consumed"] == STATE_STEP
    assert document["layout"] == {"dp": 1, "tp": 1, "zero_stage": 1, "world": 1}
    assert document["seq_len"] == 32 and document["identity"]["train_steps"] == STEPS
    resume = run_dir / "resume" / "step4"
    assert set(document["files"]) == {p.name for p in resume.iterdir()}
    for name, digest in document["files"].items():
        assert digest_file(folder / name).sha256 == digest["sha256"]
    assert pending_states(run_dir) == [] and not (run_dir / "training_state" / "step4").exists()


@pytest.mark.slow
def test_continuing_a_published_step_equals_the_uninterrupted_run_bitwise(
    source, tiny_data, tmp_path
):
    run_dir, store = source
    overrides = [
        *_overrides(tmp_path, tiny_data, "none"),
        f"init_from=local:{store}/{REPO}@step{STATE_STEP}",
    ]
    result = check_ok(run_train(overrides))
    assert f"continuing {REPO}@step4" in result.stdout and "exact" in result.stdout
    continued = mini_run_dir(tmp_path)
    _assert_bitwise_continuation(run_dir, continued)
    origin = json.loads((continued / "run.json").read_text())["identity"]["init_from"]
    assert (origin["repo"], origin["step"], origin["warm_start"]) == (REPO, 4, None)
    assert origin["training_state_sha256"] and origin["source_run"] == "mini-160k"
    # A restart finds the run complete from its own record, without reading the store.
    states, aside = store / f"{REPO}-training-state", store.parent / "aside"
    states.rename(aside)
    try:
        again = check_ok(run_train(overrides))
    finally:
        aside.rename(states)  # the module's other tests read it
    assert "already complete at step 8" in again.stdout


@pytest.mark.slow
def test_a_damaged_training_state_is_refused_in_one_line(source, tiny_data, tmp_path):
    _, store = source
    copy = tmp_path / "store"
    shutil.copytree(store, copy, symlinks=True)
    target = (copy / f"{REPO}-training-state" / "step4" / "mp_rank_00_model_states.pt").resolve()
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed in the middle
    target.write_bytes(bytes(data))
    result = run_train(
        [*_overrides(tmp_path / "root", tiny_data, "none"), f"init_from=local:{copy}/{REPO}@step4"]
    )
    _one_line_refusal(result, "is damaged", "mp_rank_00_model_states.pt differs")
    assert not (mini_run_dir(tmp_path / "root") / "run.json").exists()


@pytest.mark.slow
def test_another_layout_is_refused_in_one_line(source, tiny_data, tmp_path):
    _, store = source
    result = run_train(
        [
            *_overrides(tmp_path, tiny_data, "none"),
            f"init_from=local:{store}/{REPO}@step4",
            "zero_stage=0",
        ]
    )
    _one_line_refusal(result, "saved with dp=1 × tp=1, ZeRO stage 1", "zero_stage", "universal")


@pytest.mark.slow
def test_a_warm_start_with_another_decay_runs_and_is_recorded(source, tiny_data, tmp_path):
    run_dir, store = source
    spec = f"init_from=local:{store}/{REPO}@step4"
    # Into the source's own repo it would replace the source's later steps: refused.
    refused = run_train(
        [*_overrides(tmp_path, tiny_data, f"local:{store}"), spec, "optim.min_lr_ratio=0.5"]
    )
    _one_line_refusal(refused, "publish.repo_prefix", "optim.min_lr_ratio")
    result = check_ok(
        run_train([*_overrides(tmp_path, tiny_data, "none"), spec, "optim.min_lr_ratio=0.5"])
    )
    assert "warm start, changed optim.min_lr_ratio" in result.stdout
    warm = mini_run_dir(tmp_path)
    identity = json.loads((warm / "run.json").read_text())["identity"]
    assert identity["init_from"]["warm_start"] == {"changed": ["optim.min_lr_ratio"]}
    assert identity["optim"]["min_lr_ratio"] == 0.5
    a, b = _losses(run_dir), _losses(warm)
    assert b[5] == a[5]  # computed on the state's weights, before the first new-schedule update
    assert b[8] != a[8]  # then the higher LR floor trains differently


@pytest.mark.slow
def test_data_parallel_state_continues_bitwise_and_needs_the_same_dp(tiny_data, tmp_path):
    """DP=2 in bf16: ZeRO-1 shards of DeepSpeed's bf16 optimizer (fp32 master weights and
    moments per rank), the path a GPU run takes, where fp32 on one process keeps a plain
    optimizer in the model states file."""
    store = tmp_path / "store"
    a_root, b_root = tmp_path / "a", tmp_path / "b"
    bf16 = "precision=bf16"
    publish = "publish.training_state=[4]"
    check_ok(run_train([*_overrides(a_root, tiny_data, f"local:{store}", 2), bf16, publish], 2))
    state = LocalStore(store).download(f"{REPO}-training-state", "step4")
    assert (state / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").is_file()
    spec = f"init_from=local:{store}/{REPO}@step4"
    refused = run_train([*_overrides(tmp_path / "dp1", tiny_data, "none"), bf16, spec])
    _one_line_refusal(refused, "saved with dp=2 × tp=1", "parallel.gpus=2 parallel.tp=1")
    check_ok(run_train([*_overrides(b_root, tiny_data, "none", dp=2), bf16, spec], nproc=2))
    _assert_bitwise_continuation(mini_run_dir(a_root), mini_run_dir(b_root))


@pytest.mark.slow
def test_a_state_pending_at_the_end_is_finished_by_suite_publish_and_continues_bitwise(
    tiny_data, tmp_path
):
    """Run A finds the Hub down for its whole run: it completes, owing its weights and its
    training state, says so in one line and in run.json; `suite status` shows both;
    `suite publish RUN_DIR` finishes both once the Hub is up; run B continues from it."""
    from hub_server import HubServer
    from publish_helpers import hub_env

    with HubServer(token="secret-token", down=True) as hub:
        env = hub_env(hub.endpoint, tmp_path / "hf-home", "secret-token")
        store = f"hub:{hub.endpoint}"

        def suite(*argv: str) -> subprocess.CompletedProcess:  # `suite ARGV` against the Hub
            command = [sys.executable, "-m", "suite.cli", *argv]
            return subprocess.run(
                command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
            )

        fast = ["publish.initial_backoff_s=0.2", "publish.max_backoff_s=1"]
        a_root = tmp_path / "a"
        run_a = mini_run_dir(a_root)
        result = check_ok(
            suite(
                "train",
                *_overrides(a_root, tiny_data, store),
                "publish.training_state=[4]",
                "publish.drain_timeout_s=1",
                *fast,
            )
        )
        expected = (
            "publish: 3 revision(s) still pending (step0, step8, main), 1 training state(s) "
            f"still pending (step4); finish with: suite publish {run_a}"
        )
        assert expected in result.stdout.splitlines(), result.stdout[-2000:]
        record = json.loads((run_a / "run.json").read_text())
        assert record["status"] == "complete"
        assert (record["publish_pending"], record["training_state_pending"]) == (3, 1)
        assert record["training_state_pending_revisions"] == ["step4"]
        status = check_ok(suite("status", str(a_root / "mini"), "--format", "json"))
        (row,) = json.loads(status.stdout)
        assert (row["pending"], row["pending_training_states"]) == (3, 1)
        assert "3+1" in check_ok(suite("status", str(a_root / "mini"))).stdout

        hub.come_up()
        published = check_ok(suite("publish", str(run_a)))
        assert "1 training state(s) (step4)" in published.stdout, published.stdout
        assert pending_states(run_a) == []
        record = json.loads((run_a / "run.json").read_text())
        assert (record["publish_pending"], record["training_state_pending"]) == (0, 0)

        b_root = tmp_path / "b"
        check_ok(
            suite(
                "train", *_overrides(b_root, tiny_data, "none"), f"init_from={store}/{REPO}@step4"
            )
        )
        origin = json.loads((mini_run_dir(b_root) / "run.json").read_text())["identity"]
        assert len(origin["init_from"]["commit"]) == 40  # the Hub's commit id is recorded
    _assert_bitwise_continuation(run_a, mini_run_dir(b_root))
