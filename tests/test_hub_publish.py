"""Publishing through the real `huggingface_hub` client to a Hub-protocol server on 127.0.0.1.

The tiny run is a publishing fixture (plain torch loop, see test_publish_export.py), not the
trainer. Most tests talk to the server with an explicit endpoint; the `from_pretrained`
test runs in a subprocess because transformers and huggingface_hub read HF_ENDPOINT when
`huggingface_hub.constants` is imported, and another test may have imported it already.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from hub_server import FaultPolicy, HubServer
from publish_helpers import SMALL_SCHEDULE

from suite.cli import main as suite_main
from suite.publish.base import RevisionNotFound
from suite.publish.hub_store import HubStore
from suite.publish.manifest import read_manifest, write_manifest
from suite.publish.metadata import METADATA_FILE
from suite.publish.publisher import Publisher, RetryPolicy, pending_entries, publish_pending
from suite.publish.pull import pull
from suite.publish.verify import verify_repo

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_testtoken_7f3a9c0d2b4e6f81"  # a recognisable secret to search for leaks
STEPS = SMALL_SCHEDULE.steps()
FAST = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.4, drain_timeout_s=120.0)


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _offline_hf_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # The test hub stores weights through LFS (the Hub itself uses Xet, which needs a CAS
    # server): read at import time, so set both the variable (children) and the constant.
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)


def _store(hub: HubServer, tmp_path: Path) -> HubStore:
    return HubStore(endpoint=hub.endpoint, token=TOKEN, cache_dir=tmp_path / "hf-cache")


def _publish(hub, tmp_path, tiny_run, repo, retry=FAST) -> Path:
    run_dir = tmp_path / f"run-{repo.split('/')[1]}"
    publisher = Publisher(run_dir, _store(hub, tmp_path), repo, retry)
    for step in STEPS:
        publisher.submit(tiny_run.exports[step])
    publisher.close(wait=True)
    return run_dir


def _content_commits(hub: HubServer, repo: str, branch: str) -> list:
    return [c for c in hub.state.commits_on(repo, branch) if "model.safetensors" in c.changed]


def test_every_step_branch_published_once_and_verified(hub, tiny_run, tmp_path, caplog):
    from huggingface_hub import HfApi

    repo = "org/tiny"
    with caplog.at_level(logging.DEBUG):
        run_dir = _publish(hub, tmp_path, tiny_run, repo)
    branches = {b.name for b in HfApi(endpoint=hub.endpoint).list_repo_refs(repo).branches}
    assert branches == {"main"} | {f"step{s}" for s in STEPS}
    for step in STEPS:
        assert len(_content_commits(hub, repo, f"step{step}")) == 1
    # Weights went through LFS, as on the Hub: listed with their sha256, each step's sent
    # once, and promoting the final step to main sent no weights again (same sha256).
    store = _store(hub, tmp_path)
    weights = store.list_files(repo, "step4")["model.safetensors"]
    assert (
        weights.sha256
        == hashlib.sha256((tiny_run.exports[4] / "model.safetensors").read_bytes()).hexdigest()
    )
    puts = [path for method, path in hub.state.requests if method == "PUT" and repo in path]
    assert len(puts) == len(STEPS)
    report = verify_repo(store, repo, deep=True)
    assert report.ok, report.problems
    manifest = read_manifest(store, repo)
    assert manifest.final_revision == "step4" and sorted(manifest.entries) == [
        f"step{s}" for s in STEPS
    ]
    # Publishing again is a no-op: nothing missing or different, so no new commit.
    commits_before = len(hub.state.repos[repo].commits)
    Publisher(tmp_path / "again", store, repo, FAST).close()
    for step in STEPS:
        assert store.publish(repo, f"step{step}", tiny_run.exports[step]) == []
    assert len(hub.state.repos[repo].commits) == commits_before

    # The token was sent (the server refuses writes without it) but is written nowhere.
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(store) and TOKEN not in store.spec
    for path in [*run_dir.rglob("*"), *(tiny_run.exports[4]).rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for revision in ("main", "step4"):
        for name in store.list_files(repo, revision):
            assert TOKEN.encode() not in store.read_file(repo, revision, name)


def test_from_pretrained_by_revision_with_hf_endpoint(hub, tiny_run, tmp_path):
    repo = "org/tiny-load"
    _publish(hub, tmp_path, tiny_run, repo)
    probe_file = tmp_path / "probe.pt"
    torch.save(tiny_run.probe, probe_file)
    script = textwrap.dedent(f"""
        import json, sys, torch
        from huggingface_hub import HfApi
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from suite.cli import main as suite_main

        probe = torch.load({str(probe_file)!r})
        out = {{"branches": sorted(b.name for b in HfApi().list_repo_refs({repo!r}).branches)}}
        for step in (0, 2, 4):
            model = AutoModelForCausalLM.from_pretrained({repo!r}, revision=f"step{{step}}")
            with torch.no_grad():
                torch.save(model(probe).logits, {str(tmp_path)!r} + f"/logits{{step}}.pt")
            tokenizer = AutoTokenizer.from_pretrained({repo!r}, revision=f"step{{step}}")
            out[f"ids{{step}}"] = tokenizer("every checkpoint").input_ids
        sys.stdout.flush()
        print("RESULT", json.dumps(out))
        sys.exit(suite_main(["pull", {repo!r}, "--step", "2", "--store", "hub"]))
    """)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "child-hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert result["branches"] == sorted(["main"] + [f"step{s}" for s in STEPS])
    from tokenizers import Tokenizer

    expected_ids = Tokenizer.from_file(str(tiny_run.tokenizer_file)).encode("every checkpoint").ids
    for step in (0, 2, 4):
        logits = torch.load(tmp_path / f"logits{step}.pt")
        # Same bytes through the Hub, same architecture and CPU kernels: bitwise equal.
        assert torch.equal(logits, tiny_run.logits[step]), step
        assert result[f"ids{step}"] == expected_ids
    pulled = Path(lines[-1])  # `suite pull --store hub` honoured HF_ENDPOINT
    assert json.loads((pulled / METADATA_FILE).read_text())["step"] == 2
    assert (pulled / "model.safetensors").read_bytes() == (
        tiny_run.exports[2] / "model.safetensors"
    ).read_bytes()


class CountingHubStore(HubStore):
    """A HubStore that notes how many requests the server had seen when each upload began."""

    def __init__(self, hub: HubServer, cache_dir: Path):
        super().__init__(endpoint=hub.endpoint, token=TOKEN, cache_dir=cache_dir)
        self.hub = hub
        self.marks: dict[str, int] = {}

    def publish_verified(self, repo, revision, *args, **kwargs):
        self.marks.setdefault(revision, len(self.hub.state.requests))
        return super().publish_verified(repo, revision, *args, **kwargs)


def test_a_checkpoint_costs_eight_requests_and_sends_only_what_changed(hub, tiny_run, tmp_path):
    repo = "org/tiny-lean"
    store = CountingHubStore(hub, tmp_path / "hf-cache")
    publisher = Publisher(tmp_path / "run", store, repo, FAST)
    for step in STEPS:
        publisher.submit(tiny_run.exports[step])
    publisher.close()
    # A step after the first: create its branch; preupload, LFS batch, PUT of the weights,
    # commit; list the new commit (verification); preupload + commit the manifest. Each is
    # a round trip to a remote server in a real run, so this budget guards against
    # regressions (it was 14 before steps started from the previous step's commit and the
    # manifest stayed in memory).
    per_step = {
        f"step{step}": store.marks[f"step{next_step}"] - store.marks[f"step{step}"]
        for step, next_step in pairwise(STEPS[1:-1])
    }
    assert per_step and all(n == 8 for n in per_step.values()), per_step
    # Each step branch starts from the previous step's commit, so a step commits only the
    # files that changed (weights, metadata) and `git log stepN` is the run's history.
    for previous, step in pairwise(STEPS):
        (commit,) = _content_commits(hub, repo, f"step{step}")
        (parent,) = _content_commits(hub, repo, f"step{previous}")
        assert commit.parent == parent.oid
        assert commit.changed == ("model.safetensors", METADATA_FILE), commit.changed
    assert verify_repo(_store(hub, tmp_path), repo, deep=True).ok
    # A branch that already exists (an earlier attempt) is looked at, not recreated: the
    # same store publishing an old step again finds nothing to do.
    assert store.publish_verified(repo, f"step{STEPS[1]}", tiny_run.exports[STEPS[1]]) == []


def test_manifest_written_by_someone_else_meanwhile_is_kept(hub, tiny_run, tmp_path, caplog):
    from suite.publish.manifest import ManifestEntry

    repo = "org/tiny-two-writers"
    store = _store(hub, tmp_path)
    publisher = Publisher(tmp_path / "run", store, repo, FAST)
    publisher.submit(tiny_run.exports[0])
    deadline = time.time() + 60
    while publisher.published != ["step0"]:
        assert time.time() < deadline and not publisher.failures, publisher.failures
        time.sleep(0.01)
    # Another writer (say `suite publish` on a copy of the run dir) adds step3 to the
    # manifest behind the publisher's back; the publisher's copy is now stale.
    other = _store(hub, tmp_path / "other")
    manifest = read_manifest(other, repo)
    manifest.add(ManifestEntry.from_export(tiny_run.exports[3]))
    write_manifest(other, repo, manifest)
    publisher.submit(tiny_run.exports[1])
    with caplog.at_level(logging.WARNING, logger="suite.publish"):
        publisher.close()
    refused = [r.getMessage() for r in caplog.records if "manifest:" in r.getMessage()]
    assert len(refused) == 1 and "412" in refused[0], refused
    # The stale write was refused (parent commit moved), re-read and redone: nothing lost.
    assert sorted(read_manifest(store, repo).entries) == ["step0", "step1", "step3"]


def test_faulty_server_still_publishes_each_revision_exactly_once(hub, tiny_run, tmp_path):
    repo = "org/tiny-faults"
    hub.state.set_faults(FaultPolicy(rate=0.08, seed=7))
    try:
        _publish(hub, tmp_path, tiny_run, repo)
        injected = dict(hub.state.injected)
    finally:
        hub.state.set_faults(FaultPolicy())
    assert injected["drop"] > 0 and injected["status"] > 0, injected
    for step in STEPS:
        assert len(_content_commits(hub, repo, f"step{step}")) == 1, step
    assert verify_repo(_store(hub, tmp_path), repo).ok


def test_publisher_killed_mid_upload_resumes_without_duplicates(
    hub, tiny_run, tmp_path, monkeypatch
):
    repo = "org/tiny-killed"
    run_dir = tmp_path / "run"
    exports = [str(tiny_run.exports[s]) for s in STEPS]
    script = textwrap.dedent(f"""
        from suite.publish.hub_store import HubStore
        from suite.publish.publisher import Publisher
        publisher = Publisher({str(run_dir)!r}, HubStore(endpoint={hub.endpoint!r}, token={TOKEN!r}),
                              {repo!r})
        for export in {exports!r}:
            publisher.submit(export)
        publisher.close()
    """)
    hub.state.commit_delay_s = 0.5
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        target = f"/api/models/{repo}/commit/step1"
        deadline = time.time() + 120
        while not any(target in path for _, path in list(hub.state.requests)):
            assert child.poll() is None, child.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "the child never started uploading step1"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)  # in the middle of step1's upload
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        time.sleep(0.8)  # let the server finish the commit the dead client had sent
        hub.state.commit_delay_s = 0.0
    pending = [e.revision for e in pending_entries(run_dir)]
    assert "step1" in pending and "step4" in pending  # the crash left the queue on disk

    monkeypatch.setenv("HF_TOKEN", TOKEN)  # `suite publish` finds the token like any HF tool
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cli-cache"))
    assert suite_main(["publish", str(run_dir)]) == 0
    assert pending_entries(run_dir) == []
    for step in STEPS:
        assert len(_content_commits(hub, repo, f"step{step}")) == 1, step
    report = verify_repo(_store(hub, tmp_path), repo)
    assert report.ok, report.problems
    assert publish_pending(run_dir, _store(hub, tmp_path)).published == []


def test_verify_catches_wrong_weights_and_corrupted_files(hub, tiny_run, tmp_path, capsys):
    from huggingface_hub import HfApi

    repo = "org/tiny-broken"
    _publish(hub, tmp_path, tiny_run, repo)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    step1_weights = (tiny_run.exports[1] / "model.safetensors").read_bytes()
    api.upload_file(
        path_or_fileobj=step1_weights,
        path_in_repo="model.safetensors",
        repo_id=repo,
        revision="step2",
    )
    api.upload_file(
        path_or_fileobj=b"{ corrupted", path_in_repo="config.json", repo_id=repo, revision="step3"
    )
    # Bit rot on the server: the stored bytes of step0's (unique) weights change, same size,
    # while the recorded oid does not — only a --deep verify, which re-hashes, can see it.
    weights = (tiny_run.exports[0] / "model.safetensors").read_bytes()
    rotten = weights[:-8] + bytes(b ^ 0xFF for b in weights[-8:])
    hub.state.corrupt_blob_at(repo, "step0", "model.safetensors", rotten)
    api.delete_branch(repo, branch="step4")

    store = _store(hub, tmp_path)
    shallow = {(f.revision, f.check) for f in verify_repo(store, repo).problems}
    assert shallow == {
        ("step1", "distinct weights"),
        ("step2", "distinct weights"),
        ("step2", "files"),
        ("step3", "files"),
        ("step4", "present"),
    }
    deep = {(f.revision, f.check) for f in verify_repo(store, repo, deep=True).problems}
    assert deep == shallow | {("step0", "bytes"), ("step2", "bytes"), ("step3", "bytes")}
    assert suite_main(["verify", repo, "--store", f"hub:{hub.endpoint}"]) == 1
    out = capsys.readouterr().out
    assert "weights byte-identical to step1" in out and "config.json: content differs" in out
    with pytest.raises(RevisionNotFound, match="no step4; nearest published: step2, step3"):
        pull(repo, 4, store=store)
