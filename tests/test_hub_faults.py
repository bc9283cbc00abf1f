"""Hub faults while publishing (issue 18): the Hub down, rate limits, errors no retry fixes.

The real `huggingface_hub` client talks to the test Hub (`tests/hub_server.py`), which is
switched at runtime to refuse connections (down), to answer 429/503 with `Retry-After`, or
to refuse a token. Two tests run the real trainer (`suite train`, DeepSpeed on gloo, four
updates, checkpoints 0, 1, 2, 4); the others drive the publisher on real exports of the tiny
run (`publish_helpers.build_tiny_run`). Backoffs and the end-of-run drain are config knobs,
set to fractions of a second so that an outage costs seconds here.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest
from dist_helpers import REPO, mini_run_dir, train_command
from hub_server import HubServer, RateLimit
from publish_helpers import SMALL_SCHEDULE, content_commits, fake_resume_checkpoint, hub_env

from suite.cli import main as suite_main
from suite.publish.hub_store import HubStore
from suite.publish.manifest import read_manifest
from suite.publish.publisher import (
    Publisher,
    PublishError,
    RetryPolicy,
    finish,
    pending_entries,
)
from suite.publish.retry import classify, parse_retry_after
from suite.publish.training_state import (
    TRAINING_STATE_FILE,
    TrainingStatePublisher,
    pending_states,
    training_state_repo,
)
from suite.publish.verify import verify_repo

TOKEN = "hf_hubfaults_0b8e2d4c6a1f3975"
STEPS = SMALL_SCHEDULE.steps()  # 0, 1, 2, 3, 4
TRAINED = (0, 1, 2, 4)  #: the checkpoints of the training runs below
#: Fractions of a second, so an outage or a rate limit costs seconds, not minutes.
FAST = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=0.5, drain_timeout_s=60.0)


@pytest.fixture(autouse=True)
def _hf_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the test hub stores weights through LFS
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)


def _store(hub: HubServer, tmp_path: Path, token: str = TOKEN) -> HubStore:
    return HubStore(endpoint=hub.endpoint, token=token, cache_dir=tmp_path / "hf-cache")


def _publish_all(publisher: Publisher, tiny_run) -> Publisher:
    for step in STEPS:
        publisher.submit(tiny_run.exports[step])
    publisher.close(wait=True)
    return publisher


def _assert_published_once(hub: HubServer, store: HubStore, repo: str, steps) -> None:
    """Every step branch got its weights in exactly one commit; manifest and main complete."""
    for step in steps:
        assert len(content_commits(hub, repo, f"step{step}")) == 1, step
    manifest = read_manifest(store, repo)
    assert sorted(manifest.entries) == sorted(f"step{s}" for s in steps)
    assert manifest.final_revision == f"step{max(steps)}"
    report = verify_repo(store, repo)
    assert report.ok, report.problems


def _waits_after_refusals(hub: HubServer) -> list[tuple[float, float]]:
    """(Retry-After asked, seconds until the next request) for every 429/503 answered."""
    exchanges = list(hub.state.exchanges)
    waits = []
    for i, refused in enumerate(exchanges):
        if refused.status in (429, 503) and i + 1 < len(exchanges):
            waits.append((refused.received, exchanges[i + 1].received - refused.received))
    return waits


# --- the failures, classified from real answers of the Hub ---------------------------------


def test_retry_after_is_read_as_seconds_or_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=4.0, max_retry_after_s=30.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, retry_after=12.0) == 12.0  # the server's wait, not the backoff
    assert policy.delay(1, retry_after=3600.0) == 30.0  # capped


def test_failures_are_classified_from_real_hub_answers(tmp_path):
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # Retry-After as an HTTP-date (past: wait 0)
    errors = {}
    with HubServer(token=TOKEN, down=True) as hub:
        for name, limit, token in [
            ("down", None, TOKEN),
            ("unauthorized", None, "hf_wrong"),
            ("429", RateLimit(status=429, retry_after="3", requests=1), TOKEN),
            ("503", RateLimit(status=503, retry_after=date, requests=1), TOKEN),
        ]:
            if name != "down":
                hub.come_up()
            hub.state.set_rate_limit(limit)
            with pytest.raises(Exception) as caught:  # noqa: PT011 - classified below
                _store(hub, tmp_path, token).ensure_repo("org/x")
            errors[name] = classify(caught.value, "upload")
    assert errors["down"].retryable and "cannot reach" in errors["down"].reason
    assert not errors["unauthorized"].retryable and "401" in errors["unauthorized"].reason
    assert errors["429"].retryable and errors["429"].retry_after == 3.0
    assert errors["503"].retryable and errors["503"].retry_after == 0.0


# --- rate limits and errors, on the publisher with real exports ----------------------------


def test_rate_limits_are_waited_out_and_every_revision_is_published_once(
    tiny_run, tmp_path, caplog
):
    repo = "org/limited"
    with HubServer(token=TOKEN) as hub:
        store = _store(hub, tmp_path)
        # The first writes (creating the repo) are refused with 429, Retry-After 1 s.
        hub.state.set_rate_limit(RateLimit(status=429, retry_after="1", requests=3))
        publisher = Publisher(tmp_path / "run", store, repo, FAST)
        with caplog.at_level(logging.WARNING):
            publisher.submit(tiny_run.exports[0])
            deadline = time.time() + 120
            while publisher.published != ["step0"]:
                assert time.time() < deadline and not publisher.failures, publisher.failures
                time.sleep(0.05)
            # Mid-run, the Hub answers every write with 503 for two seconds.
            hub.state.set_rate_limit(RateLimit(status=503, retry_after="1", seconds=2.0))
            for step in STEPS[1:]:
                publisher.submit(tiny_run.exports[step])
            publisher.close(wait=True)
        refused = {e.status for e in hub.state.refused()}
        waits = _waits_after_refusals(hub)
        _assert_published_once(hub, store, repo, STEPS)
    assert refused == {429, 503}, refused
    # Server-side clock: after each refusal the client waited the Retry-After it was given
    # (the publisher itself, or huggingface_hub's own backoff, which also reads it).
    assert waits and all(wait >= 1.0 for _, wait in waits), waits
    assert publisher.published == [f"step{s}" for s in STEPS] and not publisher.failures
    assert publisher.pending == [] and pending_entries(tmp_path / "run") == []
    assert "Retry-After" in caplog.text and "still pending, retrying in" in caplog.text


def test_a_long_retry_after_is_capped(tiny_run, tmp_path):
    # The server asks for an hour; the publisher waits publish.max_retry_after_s instead. If
    # it waited the hour, the 20 s drain would end first and step1 would still be pending.
    policy = RetryPolicy(initial_backoff_s=0.1, max_retry_after_s=0.5, drain_timeout_s=20.0)
    with HubServer(token=TOKEN) as hub:
        hub.state.set_rate_limit(RateLimit(status=429, retry_after="3600", requests=1))
        publisher = Publisher(tmp_path / "run", _store(hub, tmp_path), "org/capped", policy)
        publisher.submit(tiny_run.exports[1])
        publisher.close(wait=True)
        waits = _waits_after_refusals(hub)
    assert publisher.published == ["step1"] and publisher.pending == []
    assert len(waits) == 1 and waits[0][1] >= 0.5, waits


def test_a_pending_checkpoint_is_retried_as_soon_as_a_later_one_goes_through(tiny_run, tmp_path):
    # step0 finds the Hub down and waits 30 s; the drain allows 10 s. Only the rule "retry
    # pending checkpoints right after any success" gets it published.
    policy = RetryPolicy(initial_backoff_s=30.0, max_backoff_s=30.0, drain_timeout_s=10.0)
    with HubServer(token=TOKEN, down=True) as hub:
        publisher = Publisher(tmp_path / "run", _store(hub, tmp_path), "org/later", policy)
        publisher.submit(tiny_run.exports[0])
        deadline = time.time() + 60
        while not (publisher.pending and publisher.pending[0].attempts):
            assert time.time() < deadline, "step0 was never tried"
            time.sleep(0.05)
        hub.come_up()
        publisher.submit(tiny_run.exports[1])
        publisher.close(wait=True)
    assert publisher.published == ["step1", "step0"] and publisher.pending == []


def test_an_error_no_retry_fixes_fails_its_checkpoints_in_one_line(tiny_run, tmp_path, monkeypatch):
    repo = "org/refused"
    run_dir = tmp_path / "run"
    with HubServer(token=TOKEN) as hub:
        publisher = Publisher(run_dir, _store(hub, tmp_path, token="hf_wrong"), repo, FAST)
        publisher.submit(tiny_run.exports[0])
        publisher.submit(tiny_run.exports[1])
        with pytest.raises(PublishError) as failed:
            publisher.close(wait=True)
        message = str(failed.value)
        creates = [p for m, p in hub.state.requests if m == "POST" and p == "/api/repos/create"]
        assert len(creates) == 2  # one attempt per checkpoint: a 401 is not retried
        assert "\n" not in message and "401" in message and f"suite publish {run_dir}" in message
        assert publisher.pending == [] and sorted(publisher.failures) == ["step0", "step1"]
        # The queue is kept: once the token is right, `suite publish` finishes the job.
        assert [e.revision for e in pending_entries(run_dir)] == ["step0", "step1"]
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert suite_main(["publish", str(run_dir)]) == 0
        assert pending_entries(run_dir) == []
        for step in (0, 1):
            assert len(content_commits(hub, repo, f"step{step}")) == 1


def test_weights_and_a_training_state_wait_out_a_hub_that_is_down_at_first(tiny_run, tmp_path):
    # One model for both kinds: the training state waits out the outage under the weights'
    # rules (pending, retried, never given up), and `finish` drains both side by side.
    run_dir, repo = tmp_path / "run", "org/both"
    state_repo = training_state_repo(repo)
    checkpoint = fake_resume_checkpoint(tmp_path / "resume" / "step4")
    with HubServer(token=TOKEN, down=True) as hub:
        weights = Publisher(run_dir, _store(hub, tmp_path), repo, FAST)
        states = TrainingStatePublisher(run_dir, _store(hub, tmp_path), repo, FAST)
        for step in STEPS:
            weights.submit(tiny_run.exports[step])
        states.submit(checkpoint, 4, {"step": 4, "batches_hash": "h"})
        deadline = time.time() + 60
        while not (states.pending and states.pending[0].attempts):
            assert time.time() < deadline, "the training state was never tried"
            time.sleep(0.05)
        assert "cannot reach" in states.pending[0].last_error
        hub.come_up(after_s=1.0)
        finish(run_dir, [weights, states])  # raises if anything is left
        _assert_published_once(hub, _store(hub, tmp_path), repo, STEPS)
        state_commits = [
            c for c in hub.state.commits_on(state_repo, "step4")
            if "mp_rank_00_model_states.pt" in c.changed
        ]  # fmt: skip
        assert len(state_commits) == 1
        folder = _store(hub, tmp_path).download(state_repo, "step4")
    assert states.published == ["step4"] and not states.failures
    assert pending_states(run_dir) == [] and pending_entries(run_dir) == []
    document = json.loads((folder / TRAINING_STATE_FILE).read_text())
    assert document["step"] == 4 and set(document["files"]) == {
        "mp_rank_00_model_states.pt",
        "rng-rank0.pt",
    }


# --- the real trainer -----------------------------------------------------------------------


def _train_overrides(root: Path, data: Path, hub: HubServer, drain_s: float) -> list[str]:
    return [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        f"publish.store=hub:{hub.endpoint}", "publish.org=faults",
        "publish.initial_backoff_s=0.2", "publish.max_backoff_s=1",
        f"publish.drain_timeout_s={drain_s}",
        "seq_len=32", "global_batch=8", "default_resources.micro_batch=8", "train_steps=4",
        "checkpoints.log_until=2", "checkpoints.every=4", "checkpoints.resume_every=4",
        "checkpoints.keep_resume=1", "eval.every=0",
    ]  # fmt: skip


def _run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.slow  # a real DeepSpeed run (about 20 s)
def test_trainer_publishes_every_revision_once_when_the_hub_is_down_at_first(tiny_data, tmp_path):
    root = tmp_path / "suite"
    run_dir = mini_run_dir(root)
    log = tmp_path / "train.log"
    with HubServer(token=TOKEN, down=True) as hub, open(log, "w") as out:
        child = subprocess.Popen(
            train_command(_train_overrides(root, tiny_data, hub, drain_s=300)),
            env=hub_env(hub.endpoint, tmp_path / "hf-home", TOKEN),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # The Hub comes up only after the trainer's publisher found it down.
            deadline = time.time() + 300
            while "still pending, retrying in" not in log.read_text():
                assert child.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "the publisher never tried the Hub"
                time.sleep(0.1)
            hub.come_up()
            assert child.wait(timeout=300) == 0, log.read_text()[-3000:]
        finally:
            if child.poll() is None:
                child.kill()
        _assert_published_once(hub, _store(hub, tmp_path), "faults/mini-160k", TRAINED)
    output = log.read_text()
    assert "cannot reach" in output and "finish with: suite publish" not in output
    record = _run_json(run_dir)
    assert record["status"] == "complete" and record["publish_pending"] == 0
    assert pending_entries(run_dir) == []


@pytest.mark.slow  # a real DeepSpeed run (about 20 s)
def test_hub_down_for_the_whole_run_leaves_pending_revisions_that_suite_publish_finishes(
    tiny_data, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "suite"
    run_dir = mini_run_dir(root)
    repo = "faults/mini-160k"
    with HubServer(token=TOKEN, down=True) as hub:
        result = subprocess.run(
            train_command(_train_overrides(root, tiny_data, hub, drain_s=1)),
            env=hub_env(hub.endpoint, tmp_path / "hf-home", TOKEN),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # Training is done and the exports are on disk: the run is complete, and says what
        # it still owes the Hub and the one command that finishes it.
        expected = (
            "publish: 5 revision(s) still pending (step0, step1, step2, step4, main); "
            f"finish with: suite publish {run_dir}"
        )
        assert expected in result.stdout.splitlines(), result.stdout[-2000:]
        record = _run_json(run_dir)
        assert record["status"] == "complete" and record["publish_pending"] == 5
        assert record["publish_pending_revisions"] == ["step0", "step1", "step2", "step4", "main"]

        capsys.readouterr()
        assert suite_main(["status", str(root / "mini"), "--format", "json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert row["status"] == "complete" and row["pending"] == 5
        assert suite_main(["status", str(root / "mini")]) == 0
        assert f"finish with: suite publish {run_dir}" in capsys.readouterr().out

        # Still down: `suite publish` says so in one line and keeps the queue.
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert suite_main(["publish", str(run_dir), "--wait", "0.5"]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "5 revision(s) still pending" in line and "cannot reach" in line, line
        assert len(pending_entries(run_dir)) == 4

        hub.come_up()
        assert suite_main(["publish", str(run_dir)]) == 0
        _assert_published_once(hub, _store(hub, tmp_path), repo, TRAINED)
    assert pending_entries(run_dir) == [] and _run_json(run_dir)["publish_pending"] == 0
    capsys.readouterr()
    assert suite_main(["status", str(root / "mini"), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["pending"] == 0
