"""LocalStore semantics, the publisher, pull and verify — on a directory store.

The same behaviour is tested against the Hub protocol in test_hub_publish.py.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from publish_helpers import SMALL_SCHEDULE

from suite.cli import main as suite_main
from suite.config import PublishConfig
from suite.errors import ConfigError, SuiteError
from suite.publish.base import MANIFEST_CSV, MANIFEST_JSON, RevisionNotFound
from suite.publish.local_store import LocalStore
from suite.publish.manifest import read_manifest
from suite.publish.metadata import METADATA_FILE
from suite.publish.publisher import (
    QUEUE_DIR,
    Publisher,
    PublishError,
    PublishPending,
    RetryPolicy,
    pending_entries,
    publish_pending,
)
from suite.publish.pull import pull
from suite.publish.spec import DEFAULT_STORE, NO_STORE, absolute_store_spec
from suite.publish.store import open_store, require_store
from suite.publish.verify import render, verify_repo

REPO = "org/tiny"
FAST = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, drain_timeout_s=30.0)


@pytest.fixture
def published(tmp_path, tiny_run):
    store = LocalStore(tmp_path / "store")
    publisher = Publisher(tmp_path / "run", store, REPO, FAST)
    for step in SMALL_SCHEDULE.steps():
        publisher.submit(tiny_run.exports[step])
    publisher.close(wait=True)
    return store


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_local_store_publish_is_atomic_and_idempotent(tmp_path):
    store = LocalStore(tmp_path / "store")
    first = _folder(tmp_path / "a", {"a.bin": b"A" * 10, "sub/b.txt": b"b", "gone.txt": b"x"})
    assert store.publish(REPO, "step1", first) == ["a.bin", "gone.txt", "sub/b.txt"]
    assert store.publish(REPO, "step1", first) == []  # nothing missing or different
    link = tmp_path / "store" / REPO / "step1"
    assert link.is_symlink()
    old_version = link.resolve()
    second = _folder(tmp_path / "b", {"a.bin": b"A" * 10, "sub/b.txt": b"B"})
    assert store.publish(REPO, "step1", second) == ["gone.txt", "sub/b.txt"]
    assert not old_version.exists()  # replaced as a whole by one symlink swap
    assert {p: f.size for p, f in store.list_files(REPO, "step1").items()} == {
        "a.bin": 10,
        "sub/b.txt": 1,
    }
    assert store.mismatches(REPO, "step1", second) == []
    assert store.mismatches(REPO, "step1", first) == [
        "gone.txt: missing",
        "sub/b.txt: content differs",
    ]
    store.put_files(REPO, "step1", {"extra.json": b"{}"})
    assert store.read_file(REPO, "step1", "extra.json") == b"{}"
    assert store.read_file(REPO, "step1", "sub/b.txt") == b"B"
    assert store.read_file(REPO, "step1", "nope") is None
    assert store.list_revisions(REPO) == ["step1"]
    with pytest.raises(RevisionNotFound):
        store.list_files(REPO, "step2")
    # Nothing half-written is left behind next to the revisions.
    leftovers = [p.name for p in (tmp_path / "store" / REPO).iterdir() if p.name.startswith(".")]
    assert leftovers == [".versions"]
    assert len(list((tmp_path / "store" / REPO / ".versions").iterdir())) == 1


def test_open_store_parses_specs(tmp_path, monkeypatch):
    assert isinstance(open_store(f"local:{tmp_path}"), LocalStore)
    monkeypatch.setenv("SUITE_STORE", f"local:{tmp_path}/env")
    assert open_store(None).spec == f"local:{tmp_path}/env"
    for bad in ("s3://bucket", "local:", "hub:ftp://x", "None"):
        with pytest.raises(ConfigError, match="^store="):
            open_store(bad)
    with pytest.raises(ConfigError, match="^repo="):
        LocalStore(tmp_path).ensure_repo("../escape")


def test_store_none_opens_nothing_and_commands_needing_a_store_say_so(tmp_path, monkeypatch):
    assert NO_STORE == "none"
    assert open_store(NO_STORE) is None
    with pytest.raises(ConfigError, match=r"^--store='none': .*local:/path"):
        require_store(NO_STORE)
    with pytest.raises(ConfigError, match="^--store='none'"):
        pull(REPO, 1, store=NO_STORE)
    monkeypatch.setenv("SUITE_STORE", NO_STORE)
    assert open_store(None) is None
    with pytest.raises(ConfigError, match="^SUITE_STORE='none'"):
        require_store(None)
    # The trainer's builder: no publisher, and nothing written into the run dir.
    assert Publisher.for_run(PublishConfig(store=NO_STORE), tmp_path / "run", REPO) is None
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["pull", REPO, "--step", "1", "--store", "none"],
        ["verify", REPO, "--store", "none"],
        ["publish", "some/run/dir", "--store", "none"],
    ],
)
def test_cli_store_none_is_a_one_line_usage_error(argv, capsys):
    assert suite_main(argv) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"suite {argv[0]}: --store='none': ") and "local:/path" in line
    assert "Traceback" not in captured.err and captured.out == ""


def test_absolute_store_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_store_spec("local:rel/store") == f"local:{tmp_path}/rel/store"
    assert absolute_store_spec(f"local:{tmp_path}/abs") == f"local:{tmp_path}/abs"
    for unchanged in ("hub", "hub:https://mirror.example", NO_STORE):
        assert absolute_store_spec(unchanged) == unchanged
    # Equal to the spec the opened store reports: a record holding it reopens the same store.
    assert absolute_store_spec("local:rel/store") == open_store("local:rel/store").spec
    with pytest.raises(ConfigError, match="^store="):
        absolute_store_spec("s3://bucket")


def test_one_default_store(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SUITE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert PublishConfig().store == DEFAULT_STORE == "local:suite_runs/store"
    assert open_store(None).spec == absolute_store_spec(DEFAULT_STORE)
    assert open_store(None).spec == f"local:{tmp_path}/suite_runs/store"
    # The commands' help names that same default.
    for command in ("pull", "verify"):
        with pytest.raises(SystemExit):
            suite_main([command, "--help"])
        assert DEFAULT_STORE in " ".join(capsys.readouterr().out.split()), command


def test_publisher_publishes_every_step_main_and_manifest(published, tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    store = published
    steps = SMALL_SCHEDULE.steps()
    assert store.list_revisions(REPO) == sorted(["main"] + [f"step{s}" for s in steps])
    assert pending_entries(tmp_path / "run") == []  # queue drained
    manifest = read_manifest(store, REPO)
    assert [e.step for e in manifest.sorted_entries()] == steps
    assert manifest.final_revision == "step4"
    csv = store.read_file(REPO, "main", MANIFEST_CSV).decode().splitlines()
    assert csv[0].startswith("revision,step,tokens_seen,weights_sha256")
    assert [line.split(",")[0] for line in csv[1:]] == [f"step{s}" for s in steps]
    # main = final step + the manifest.
    main_files = set(store.list_files(REPO, "main"))
    assert main_files == set(store.list_files(REPO, "step4")) | {MANIFEST_JSON, MANIFEST_CSV}
    for step in (0, 2, 4):
        folder = pull(REPO, step, store=store)
        model = AutoModelForCausalLM.from_pretrained(folder)
        with torch.no_grad():
            logits = model(tiny_run.probe).logits
        assert torch.equal(logits, tiny_run.logits[step])  # same bytes: bitwise equal
    assert verify_repo(store, REPO).ok
    log = [
        json.loads(line)
        for line in (tmp_path / "run/publish/published.jsonl").read_text().splitlines()
    ]
    assert [r["revision"] for r in log] == [f"step{s}" for s in steps]


def test_pull_by_tokens_nearest_and_missing(published):
    store = published
    assert pull(REPO, tokens=2 * 32, store=store).name.startswith("step2")
    with pytest.raises(RevisionNotFound, match=r"no step7; nearest published: step3, step4"):
        pull(REPO, 7, store=store)
    assert pull(REPO, 7, nearest_ok=True, store=store) == pull(REPO, 4, store=store)
    with pytest.raises(
        RevisionNotFound,
        match=r"nearest steps: 0 \(0 tokens\), 1 \(32 tokens\), 2 \(64 tokens\), 3 ",
    ):
        pull(REPO, tokens=50, store=store)
    assert pull(REPO, tokens=50, nearest_ok=True, store=store) == pull(REPO, 2, store=store)
    with pytest.raises(ConfigError, match="exactly one"):
        pull(REPO, 1, tokens=32, store=store)


def test_cli_pull_and_verify(published, capsys):
    spec = published.spec
    assert suite_main(["pull", REPO, "--step", "2", "--store", spec]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert (path / METADATA_FILE).is_file()
    assert suite_main(["pull", REPO, "--step", "3000", "--store", spec]) == 1
    err = capsys.readouterr().err
    assert err.startswith("suite pull: ") and "nearest published: step3, step4" in err
    assert "Traceback" not in err
    assert suite_main(["verify", REPO, "--store", spec]) == 0
    assert "all" in capsys.readouterr().out


def test_verify_catches_swapped_weights_corruption_bad_metadata_and_missing(published, capsys):
    store = published
    root = store.root / REPO
    # step2 gets step1's weights (the Pythia failure: a branch holding another step's weights).
    store.put_files(
        REPO, "step2", {"model.safetensors": store.read_file(REPO, "step1", "model.safetensors")}
    )
    # Bit rot inside step3's config, in place.
    (root / "step3" / "config.json").write_bytes(b"{ corrupted")
    # step4's metadata claims another step.
    meta = json.loads(store.read_file(REPO, "step4", METADATA_FILE))
    meta["step"] = 3
    store.put_files(REPO, "step4", {METADATA_FILE: json.dumps(meta).encode()})
    # step0 disappears.
    (root / "step0").unlink()
    # main holds its own copy of the final step's files: edits of step4 leave it intact.

    report = verify_repo(store, REPO)
    problems = {(f.revision, f.check) for f in report.problems}
    assert problems == {
        ("step0", "present"),
        ("step1", "distinct weights"),
        ("step2", "distinct weights"),
        ("step2", "files"),
        ("step3", "files"),
        ("step4", "files"),
        ("step4", "metadata step"),
    }
    text = render(report)
    assert "weights byte-identical to step1" in text and "config.json: content differs" in text
    assert suite_main(["verify", REPO, "--store", store.spec]) == 1
    assert "PROBLEM" in capsys.readouterr().out


class FlakyStore(LocalStore):
    """A LocalStore whose publish fails the first `failures` times (a flaky network)."""

    def __init__(self, root, failures):
        super().__init__(root)
        self.failures = failures
        self.calls = 0

    def publish(self, repo, revision, folder, keep=()):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"simulated outage #{self.calls}")
        return super().publish(repo, revision, folder, keep)


def test_publisher_retries_then_succeeds(tmp_path, tiny_run, caplog):
    store = FlakyStore(tmp_path / "store", failures=2)
    publisher = Publisher(tmp_path / "run", store, REPO, FAST)
    with caplog.at_level(logging.WARNING, logger="suite.publish"):
        publisher.submit(tiny_run.exports[1])
        publisher.close()
    assert publisher.published == ["step1"]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "simulated outage #1" in retries[0]


def test_unreachable_store_leaves_checkpoints_pending_and_keeps_the_queue(
    tmp_path, tiny_run, caplog, capsys
):
    store = FlakyStore(tmp_path / "store", failures=100)
    short = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, drain_timeout_s=0.3)
    publisher = Publisher(tmp_path / "run", store, REPO, short)
    publisher.submit(tiny_run.exports[0])
    publisher.submit(tiny_run.exports[1])
    publisher.close()  # a store that cannot be reached fails nothing: the drain ends
    assert [e.revision for e in publisher.pending] == ["step0", "step1"]
    assert not publisher.failures and store.calls >= 2
    assert any("still pending, retrying" in r.getMessage() for r in caplog.records)
    queued = pending_entries(tmp_path / "run")
    assert [e.revision for e in queued] == ["step0", "step1"]
    assert all(e.attempts >= 1 and "simulated outage" in e.last_error for e in queued)
    # `suite publish RUN_DIR` while it is still down: one line, the queue kept.
    with pytest.raises(PublishPending, match=r"^2 revision\(s\) still pending .*suite publish"):
        publish_pending(tmp_path / "run", store, short)
    assert len(pending_entries(tmp_path / "run")) == 2
    # `suite verify RUN_DIR` reports what is still queued (and that nothing was published).
    capsys.readouterr()
    assert suite_main(["verify", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert "no manifest on main" in out and "still queued" in out
    # `suite publish RUN_DIR` finishes the job once the store works again.
    assert suite_main(["publish", str(tmp_path / "run")]) == 0
    assert pending_entries(tmp_path / "run") == []
    capsys.readouterr()
    assert suite_main(["verify", str(tmp_path / "run")]) == 0
    (verdict,) = capsys.readouterr().out.splitlines()  # no empty table when all is well
    assert re.match(rf"{REPO}: all \d+ checks passed \(local:", verdict), verdict
    assert LocalStore(tmp_path / "store").list_revisions(REPO) == ["main", "step0", "step1"]


def test_damaged_export_is_not_retried_and_not_published(tmp_path, tiny_run):
    export = shutil.copytree(tiny_run.exports[1], tmp_path / "step1")
    (export / "config.json").write_text("{}")
    store = FlakyStore(tmp_path / "store", failures=0)
    publisher = Publisher(tmp_path / "run", store, REPO, FAST)
    publisher.submit(export)
    with pytest.raises(PublishError, match="config.json"):
        publisher.close()
    assert store.calls == 0


def test_run_dir_cannot_silently_switch_target(tmp_path, tiny_run):
    Publisher(tmp_path / "run", LocalStore(tmp_path / "a"), REPO, FAST).close()
    with pytest.raises(ConfigError, match="publishes to"):
        Publisher(tmp_path / "run", LocalStore(tmp_path / "b"), REPO, FAST)
    assert publish_pending(tmp_path / "run").published == []
    assert (tmp_path / "run" / QUEUE_DIR).is_dir()


def test_close_without_wait_returns_at_once_and_keeps_the_queue(tmp_path, tiny_run):
    store = FlakyStore(tmp_path / "store", failures=100)
    slow = RetryPolicy(initial_backoff_s=30.0, max_backoff_s=30.0)
    publisher = Publisher(tmp_path / "run", store, REPO, slow)
    publisher.submit(tiny_run.exports[2])
    deadline = time.time() + 10
    while store.calls == 0 and time.time() < deadline:  # wait for the first failed attempt
        time.sleep(0.01)
    started = time.time()
    publisher.close(wait=False)
    publisher._thread.join(timeout=5)
    assert not publisher._thread.is_alive() and time.time() - started < 5  # no 30 s backoff
    assert [e.revision for e in pending_entries(tmp_path / "run")] == ["step2"]
    with pytest.raises(SuiteError, match="closed"):
        publisher.submit(tiny_run.exports[3])


def test_publisher_for_run_builds_from_the_suite_config_and_validates(tmp_path, tiny_run):
    config = PublishConfig(
        store=f"local:{tmp_path / 'store'}", drain_timeout_s=2, initial_backoff_s=0.01
    )
    publisher = Publisher.for_run(config, tmp_path / "run", repo_id="local/tiny-run")
    expected = RetryPolicy(initial_backoff_s=0.01, drain_timeout_s=2)
    assert publisher.retry == expected and publisher.keep_exports
    publisher.submit(tiny_run.exports[0])
    publisher.close()
    assert LocalStore(tmp_path / "store").list_revisions("local/tiny-run") == ["main", "step0"]
    with pytest.raises(ConfigError, match="^publish.drain_timeout_s=-1"):
        PublishConfig(drain_timeout_s=-1)
    with pytest.raises(ConfigError, match="^publish.max_backoff_s=1"):
        PublishConfig(max_backoff_s=1)
    with pytest.raises(ConfigError, match="^publish.org="):
        PublishConfig(org="a/b")
    with pytest.raises(ConfigError, match="^publish.store="):
        PublishConfig(store="s3://bucket")


class BlockedStore(LocalStore):
    """A LocalStore whose publish waits for a signal (a network that is slow to answer)."""

    def __init__(self, root):
        super().__init__(root)
        self.release = threading.Event()
        self.entered = threading.Event()

    def publish(self, repo, revision, folder, keep=()):
        self.entered.set()
        assert self.release.wait(timeout=60), "test never released the store"
        return super().publish(repo, revision, folder, keep)


def test_submit_never_waits_for_the_store(tmp_path, tiny_run):
    store = BlockedStore(tmp_path / "store")
    publisher = Publisher(tmp_path / "run", store, REPO, FAST)
    try:
        for step in SMALL_SCHEDULE.steps():
            publisher.submit(tiny_run.exports[step])  # returns although publish is blocked
        assert store.entered.wait(timeout=30)
        queued = [e.revision for e in pending_entries(tmp_path / "run")]
        assert queued == [f"step{s}" for s in SMALL_SCHEDULE.steps()]  # persisted, in order
        assert publisher.published == []
    finally:
        store.release.set()
    publisher.close()
    assert publisher.published == [f"step{s}" for s in SMALL_SCHEDULE.steps()]
