"""The real trainer publishing to the Hub: `suite train` → Hub server on 127.0.0.1 → clients.

Two real DeepSpeed runs (CPU, gloo) publish every scheduled checkpoint through the real
`huggingface_hub` client to the test Hub (`tests/hub_server.py`): TP=1 in one process and
TP=2 in two. The published revisions are then read back the way users read them —
`list_repo_refs`, `AutoModelForCausalLM/AutoTokenizer.from_pretrained(repo, revision=…)`
with HF_ENDPOINT, `suite verify` and `suite pull` — and the TP=2 repo is compared with the
TP=1 repo. DeepSpeed start-up dominates, so each launch serves several assertions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from dist_helpers import LOSS_RTOL, REPO, WEIGHT_ATOL, mini_run_dir, train_command, train_env
from hub_server import HubServer
from safetensors.numpy import load_file

pytestmark = pytest.mark.slow

STEPS = 24
#: log-spaced until 4, then every 8: what `checkpoints.*` below give for 24 updates.
SCHEDULED = (0, 1, 2, 4, 8, 16, 24)
#: A recognisable secret: the server refuses writes without it, and it must appear nowhere.
TOKEN = "hf_trainer_publish_5e1d0c9a7b3f2e48"
#: Logits of the TP=2 vs TP=1 published models. Like WEIGHT_ATOL (see dist_helpers.py),
#: the difference is float32 reordering amplified by 24 Adam updates: measured max
#: |Δweight| 1.1e-5 and max |Δlogit| 9.5e-7 (8 ulp of logits of magnitude ~1.5).
#: 1e-4 leaves ~100x margin, while a wrong, missing or ungathered shard changes logits by
#: O(0.1-1) (half a projection zeroed, duplicated or transposed).
LOGIT_ATOL = 1e-4


def _overrides(root: Path, data: Path, store: str, org: str, extra: tuple[str, ...] = ()):
    return [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        f"publish.store={store}", f"publish.org={org}", "publish.keep_exports=true",
        "seq_len=32", "global_batch=8", "default_resources.micro_batch=8",
        f"train_steps={STEPS}",
        # TP=2 pads the vocabulary to a multiple of 256, TP=1 of 128: pin it so both runs
        # build the same model from the same seed (as test_train_runs.py does).
        "padded_vocab=512",
        "checkpoints.log_until=4", "checkpoints.every=8", "checkpoints.resume_every=8",
        "checkpoints.keep_resume=1", "eval.every=0", *extra,
    ]  # fmt: skip


def _hub_env(hub: HubServer, hf_home: Path, token: bool) -> dict[str, str]:
    """The training env, online against the loopback Hub only (dist_helpers sets offline)."""
    extra = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",  # the loopback Hub stores weights through LFS, not Xet
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    env = train_env(extra)
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = TOKEN  # how any HF tool finds it; never part of the store spec
    return env


def _train(overrides: list[str], env: dict[str, str], nproc: int = 1):
    result = subprocess.run(
        train_command(overrides, nproc),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def tp1(hub, tiny_data, tmp_path_factory):
    """TP=1 run published to repo `tp1/mini-160k`; returns (root, repo, completed process)."""
    root = tmp_path_factory.mktemp("tp1")
    env = _hub_env(hub, root / "hf-home", token=True)
    result = _train(_overrides(root, tiny_data, f"hub:{hub.endpoint}", "tp1"), env)
    return root, "tp1/mini-160k", result


@pytest.fixture(scope="module")
def tp2(hub, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("tp2")
    env = _hub_env(hub, root / "hf-home", token=True)
    extra = ("parallel.gpus=2", "parallel.tp=2")
    _train(_overrides(root, tiny_data, f"hub:{hub.endpoint}", "tp2", extra), env, nproc=2)
    return root, "tp2/mini-160k"


def test_trainer_publishes_every_checkpoint_loadable_by_revision(hub, tp1, tmp_path):
    root, repo, trained = tp1
    run_dir = mini_run_dir(root)
    exports = run_dir / "exports"
    # Every scheduled step was exported and published exactly once, nothing left queued.
    assert sorted(int(p.name[4:]) for p in exports.iterdir()) == list(SCHEDULED)
    published = [
        json.loads(line)["revision"]
        for line in (run_dir / "publish" / "published.jsonl").read_text().splitlines()
    ]
    assert published == [f"step{s}" for s in SCHEDULED]
    assert not list((run_dir / "publish" / "queue").iterdir())
    for step in SCHEDULED:
        content = [c for c in hub.state.commits_on(repo, f"step{step}") if c.changed]
        assert len(content) == 1, (step, [c.changed for c in content])

    # Read back with the real clients in a fresh interpreter: HF_ENDPOINT is read when
    # huggingface_hub.constants is imported, so it must be set before any HF import.
    probe = [[5, 17, 42, 7, 99, 3, 250, 11, 64, 8, 120, 33]]
    env = _hub_env(hub, tmp_path / "reader-home", token=False)  # reads are public
    code = f"""
        import json, torch
        from huggingface_hub import list_repo_refs
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        probe = torch.tensor({probe!r})
        out = {{"branches": sorted(b.name for b in list_repo_refs({repo!r}).branches)}}
        for step in (0, 4, 16, {STEPS}):
            with torch.no_grad():
                hub = AutoModelForCausalLM.from_pretrained({repo!r}, revision=f"step{{step}}")
                local = AutoModelForCausalLM.from_pretrained({str(exports)!r} + f"/step{{step}}")
                logits = [m.eval()(probe).logits for m in (hub, local)]
            out[f"equal{{step}}"] = torch.equal(*logits)
            out[f"sum{{step}}"] = float(logits[0].double().sum())
            tokenizer = AutoTokenizer.from_pretrained({repo!r}, revision=f"step{{step}}")
            out[f"ids{{step}}"] = tokenizer("alpha river stone").input_ids
        with torch.no_grad():
            main = AutoModelForCausalLM.from_pretrained({repo!r}).eval()(probe).logits
            final = AutoModelForCausalLM.from_pretrained({repo!r}, revision="step{STEPS}")
            out["main_is_final"] = torch.equal(main, final.eval()(probe).logits)
        print("RESULT", json.dumps(out))
    """
    lines = _python(code, env).stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert result["branches"] == sorted(["main"] + [f"step{s}" for s in SCHEDULED])
    from tokenizers import Tokenizer

    expected_ids = Tokenizer.from_file(str(exports / "step0" / "tokenizer.json"))
    expected_ids = expected_ids.encode("alpha river stone").ids
    for step in (0, 4, 16, STEPS):
        # Same bytes through the Hub, same class and CPU kernels, one thread: bitwise.
        assert result[f"equal{step}"], step
        assert result[f"ids{step}"] == expected_ids, step
    assert result["main_is_final"]
    # Each revision holds its own step's weights (so the equalities above are not vacuous).
    assert len({result[f"sum{step}"] for step in (0, 4, 16, STEPS)}) == 4

    # `suite verify` (every manifest check) and `suite pull` from the Hub store.
    store = f"hub:{hub.endpoint}"
    verified = _python(
        f"import sys; from suite.cli import main; sys.exit(main(['verify', {repo!r}, "
        f"'--store', {store!r}, '--all']))",
        env,
    )
    assert f"{repo}: all" in verified.stdout and "PROBLEM" not in verified.stdout
    pulled = _python(
        f"import sys; from suite.cli import main; sys.exit(main(['pull', {repo!r}, "
        f"'--step', '8', '--store', {store!r}]))",
        env,
    )
    path = Path(pulled.stdout.strip().splitlines()[-1])
    assert json.loads((path / "scaling_suite.json").read_text())["step"] == 8
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    assert (path / "model.safetensors").read_bytes() == (
        exports / "step8" / "model.safetensors"
    ).read_bytes()
    assert model.gpt_neox.layers[0].attention.query_key_value.weight.shape == (96, 32)

    # The token was sent (the server refuses writes without it) yet is written nowhere:
    # not in the trainer's output, the run dir (configs, metadata, queue, publish log),
    # HF_HOME, nor any published file.
    assert TOKEN not in trained.stdout and TOKEN not in trained.stderr
    for file in root.rglob("*"):
        if file.is_file():
            assert TOKEN.encode() not in file.read_bytes(), file
    writes = [p for m, p in hub.state.requests if m == "POST" and repo in p]
    assert writes, "nothing was written with the token"
    for blob in hub.state.blobs.values():
        assert TOKEN.encode() not in blob


def test_tp2_published_checkpoint_equals_tp1_published(hub, tp1, tp2, tmp_path):
    """The TP=2 export really gathers the shards: full shapes, TP=1's weights and logits."""
    import torch
    from transformers import AutoModelForCausalLM

    from suite.publish.hub_store import HubStore
    from suite.publish.verify import verify_repo

    store = HubStore(endpoint=hub.endpoint, cache_dir=tmp_path / "cache")
    (_, repo1, _), (_, repo2) = tp1, tp2
    assert store.list_revisions(repo2) == store.list_revisions(repo1)
    report = verify_repo(store, repo2, deep=True)
    assert report.ok, report.problems
    probe = torch.tensor([[5, 17, 42, 7, 99, 3, 250, 11, 64, 8, 120, 33]])
    for step in (0, 8, STEPS):
        folders = [store.download(repo, f"step{step}") for repo in (repo1, repo2)]
        want, have = (load_file(f / "model.safetensors") for f in folders)
        assert set(have) == set(want)
        for name in want:
            assert have[name].shape == want[name].shape, name
            # step0 is the seeded init, built before AutoTP shards it: identical bits.
            tolerance = 0.0 if step == 0 else WEIGHT_ATOL
            np.testing.assert_allclose(have[name], want[name], rtol=0, atol=tolerance, err_msg=name)
        if step == 0:
            assert (folders[0] / "model.safetensors").read_bytes() == (
                folders[1] / "model.safetensors"
            ).read_bytes()
        else:  # trained: the runs really moved away from init (else the check is empty)
            init = load_file(store.download(repo1, "step0") / "model.safetensors")
            assert max(float(np.abs(want[n] - init[n]).max()) for n in want) > 1e-2
        with torch.no_grad():
            logits = [AutoModelForCausalLM.from_pretrained(f).eval()(probe).logits for f in folders]
        torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=LOGIT_ATOL)
        for name in ("scaling_suite.json",):
            metas = [json.loads((f / name).read_text()) for f in folders]
            for key in ("step", "tokens_seen", "batches_hash", "data_fingerprint"):
                assert metas[0][key] == metas[1][key], key
    # Same training: the losses of both runs agree within the trainer's stated tolerance.
    import pandas as pd

    losses = [
        pd.read_json(mini_run_dir(root) / "metrics.jsonl", lines=True).dropna(subset=["loss"])[
            "loss"
        ]
        for root in (tp1[0], tp2[0])
    ]
    np.testing.assert_allclose(losses[1], losses[0], rtol=LOSS_RTOL)
