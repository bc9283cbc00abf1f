"""Model cards: every published revision's README.md, its `model-index` from the ledger, and
the suite's overview, read back with `huggingface_hub.ModelCard` from the local store and
through the Hub protocol (the test server on 127.0.0.1).

The checkpoints are the mini ladder's smallest model (160k) at its real shape, exported at
steps 0, 1, 2 with the card the trainer writes (`export_checkpoint(card=…)`); the weights
differ per step by a fixed offset (no training: the cards, not the optimizer, are tested).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from hub_server import HubServer
from publish_helpers import BATCH, EOS, train_tokenizer

from suite.publish.metadata import CARD_FILE, CheckpointMeta
from suite.publish.publisher import Publisher, RetryPolicy

STEPS = (0, 1, 2)
TOKENS_PER_STEP = BATCH * 32  # global batch 4 × seq_len 32
FAST = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.4, drain_timeout_s=60.0)
TOKEN = "hf_cardtoken_0123456789abcdef"


def _overrides(root: Path) -> list[str]:
    return [
        f"root={root}",
        f"publish.store=local:{root}/store",
        "sizes=[160k,250k]",
        "seq_len=32",
        "global_batch=4",
        "default_resources.micro_batch=4",
        "train_steps=2",
        "checkpoints.log_until=2",
        "checkpoints.every=2",
        "publish.card.license=mit",
        "publish.card.tags=[card-test]",
        "+publish.card.hub_datasets.stdlib=[acme/python-stdlib]",
    ]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """(cfg, run, overrides, exports {step: folder}, numel) of one carded run."""
    from transformers import GPTNeoXForCausalLM

    from suite.cards import card_context
    from suite.config import resolve_run
    from suite.publish.export import export_checkpoint
    from suite.publish.spec import absolute_store_spec
    from suite.settings import load_suite
    from suite.train.factory import init_recipe

    root = tmp_path_factory.mktemp("cards")
    overrides = _overrides(root)
    cfg = load_suite(overrides)
    tokenizer = train_tokenizer(root / "tokenizer.json")
    run = resolve_run(cfg, "160k", "stdlib", vocab=120)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(run.family.to_hf_config(run.size, run.padded_vocab, run.seq_len))
    model = model.to(torch.float32).eval()
    context = card_context(cfg, run, absolute_store_spec(cfg.publish.store))
    exports = {}
    for step in STEPS:
        with torch.no_grad():  # distinct weights per step (`suite verify` flags equal ones)
            next(model.parameters()).add_(0.01)
        meta = CheckpointMeta(
            run_name=run.run_name,
            step=step,
            tokens_seen=step * TOKENS_PER_STEP,
            data_fingerprint="f" * 64,
            batches_hash=f"{step:064x}",
            config_hash="c" * 64,
            total_steps=STEPS[-1],
            init_recipe=init_recipe(cfg, run),
        )
        exports[step] = export_checkpoint(
            model, tokenizer, root / "exports" / f"step{step}", meta, eos_token=EOS, card=context
        )
    numel = sum(p.numel() for p in model.parameters())
    return cfg, run, overrides, exports, numel


def _publish(run_dir: Path, store, repo: str, exports: dict) -> None:
    publisher = Publisher(run_dir, store, repo, FAST)
    for step in STEPS:
        publisher.submit(exports[step])
    publisher.close()


def _write_ledger(cfg, run, store) -> dict:
    """A ledger with step1's results (current weights) among rows that must not reach its
    card: a stale row, another weights' row, an older result of the same metric. Returns
    {(task, metric): value} that step1's card must hold."""
    from suite.eval.ledger import as_frame, write_ledger
    from suite.eval.plan import read_checkpoint
    from suite.rundir import sweep_dir

    checkpoint = read_checkpoint(store, run.run_name, run.repo_id, "step1")
    base = {
        "run": run.run_name,
        "size": "160k",
        "dataset": "stdlib",
        "init_seed": run.init_seed,
        "data_seed": run.data_seed,
        "revision": "step1",
        "step": 1,
        "tokens": TOKENS_PER_STEP,
        "stderr": 0.0,
        "n": 256,
        "commit": checkpoint.commit,
        "weights_sha256": checkpoint.weights_sha256,
        "harness_version": "",
        "dtype": "fp32",
        "batch_size": 32,
        "eval_seed": 1234,
        "wall_s": 0.5,
        "evaluated_at": "2026-01-02T00:00:00",
        "stale": False,
        "params": 1,
        "non_embedding_params": 1,
    }
    rows = [
        {**base, "task": "ppl/heldout", "metric": "nll", "value": 6.931471805599453},
        {**base, "task": "ppl/heldout", "metric": "perplexity", "value": 1024.0000000000002},
        {**base, "task": "heldout_continuation", "metric": "acc", "value": 0.1 + 0.2, "n": 24},
        # an older evaluation of the same metric: the newest one wins (the report's rule)
        {
            **base,
            "task": "heldout_continuation",
            "metric": "acc",
            "value": 0.5,
            "evaluated_at": "2026-01-01T00:00:00",
        },
        # stale (newer, but its part no longer counts) and NaN (no number for model-index)
        {
            **base,
            "task": "ppl/heldout",
            "metric": "nll",
            "value": 9.0,
            "stale": True,
            "evaluated_at": "2026-01-03T00:00:00",
        },
        {**base, "task": "ppl/heldout", "metric": "bits_per_byte", "value": float("nan")},
        {**base, "task": "ppl/heldout", "metric": "loss", "value": 8.0, "weights_sha256": "0" * 64},
    ]
    write_ledger(sweep_dir(cfg).ledger_path, as_frame(rows))
    return {
        ("ppl/heldout", "nll"): 6.931471805599453,
        ("ppl/heldout", "perplexity"): 1024.0000000000002,
        ("heldout_continuation", "acc"): 0.1 + 0.2,
    }


def _model_index(card) -> dict:
    return {(r.task_name, r.metric_type): r.metric_value for r in card.data.eval_results or []}


def _check_published_card(card, step: int, numel: int) -> None:
    """The metadata the Hub reads and the body's facts of a freshly exported revision."""
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.license == "mit" and data.language == ["en"]
    assert data.datasets == ["acme/python-stdlib"]
    assert data.tags == ["scaling-suite", "pythia", "mini", "card-test"]
    text = card.text
    assert f"# mini-160k — step{step}" in text
    assert f"**{step * TOKENS_PER_STEP:,} tokens** seen" in text
    assert f'from_pretrained("local/mini-160k", revision="step{step}")' in text
    assert f"suite pull local/mini-160k --step {step}" in text
    assert "f" * 64 in text  # the data fingerprint, and the command that checks it
    batch = f"suite batch {max(step - 1, 0)} --data "
    assert batch in text and "--expect-fingerprint " + "f" * 64 in text
    # The analytic parameter count of the ladder row equals the model that was exported.
    assert f"| parameters | {numel:,} " in text
    assert "[local/mini-250k](/local/mini-250k)" in text  # the suite's other runs
    assert "[local/mini](/local/mini)" in text  # and its overview


def _branch_links(root: Path) -> dict[str, str]:
    """Every branch of a local store and the immutable version it points to."""
    return {str(p): os.readlink(p) for p in Path(root).rglob("*") if p.is_symlink()}


def test_local_store_cards_model_index_idempotent_and_verified(suite, tmp_path, capsys):
    from huggingface_hub import ModelCard

    from suite.cli import main as suite_main
    from suite.eval.plan import read_checkpoint
    from suite.publish.manifest import read_manifest
    from suite.publish.store import open_store
    from suite.publish.verify import verify_repo

    cfg, run, overrides, exports, numel = suite
    store = open_store(cfg.publish.store)
    _publish(tmp_path / "run", store, run.repo_id, exports)
    for step in STEPS:
        card = ModelCard.load(store.download(run.repo_id, f"step{step}") / CARD_FILE)
        _check_published_card(card, step, numel)
        assert card.data.eval_results is None
    main_card = (store.download(run.repo_id, "main") / CARD_FILE).read_bytes()
    assert main_card == (exports[STEPS[-1]] / CARD_FILE).read_bytes()
    assert verify_repo(store, run.repo_id).ok

    expected = _write_ledger(cfg, run, store)
    weights = {s: read_checkpoint(store, run.run_name, run.repo_id, f"step{s}") for s in STEPS}
    assert suite_main(["cards", *overrides]) == 0
    out = capsys.readouterr().out
    assert "3 revision card(s) checked" in out and "overview local/mini written" in out

    card = ModelCard.load(store.download(run.repo_id, "step1") / CARD_FILE)
    assert _model_index(card) == expected  # exactly the ledger's current values
    assert "| heldout_continuation | acc | 0.3 |" in card.text
    assert "| ppl/heldout | bits_per_byte | — |" in card.text
    types = {r.task_name: r.dataset_type for r in card.data.eval_results}
    assert types == {
        "ppl/heldout": "acme/python-stdlib",
        "heldout_continuation": "heldout_continuation",
    }
    for step in (0, 2):  # no results in the ledger: no model-index
        other = ModelCard.load(store.download(run.repo_id, f"step{step}") / CARD_FILE)
        assert other.data.eval_results is None
    # The manifest names each card's new sha256: files, metadata, main = final all check.
    report = verify_repo(store, run.repo_id)
    assert report.ok, report.problems
    # The weights are what `suite eval` fingerprints: a card refresh changes none of them.
    for step in STEPS:
        again = read_checkpoint(store, run.run_name, run.repo_id, f"step{step}")
        assert again.weights_sha256 == weights[step].weights_sha256
    manifest = read_manifest(store, run.repo_id)
    assert (
        manifest.entries["step1"].files[CARD_FILE].sha256
        == hashlib.sha256(str(card).encode()).hexdigest()
    )

    overview = ModelCard.load(store.download("local/mini", "main") / CARD_FILE)
    assert overview.data.library_name == "transformers" and "scaling-suite" in overview.data.tags
    assert "| [mini-160k](/local/mini-160k) | 160k |" in overview.text
    assert "3 (step0 … step2) | step2 |" in overview.text
    assert "| [mini-250k](/local/mini-250k) |" in overview.text and "not published yet" in (
        overview.text
    )
    assert "| mini-160k | step1 |" in overview.text  # the newest evaluated revision

    # A second refresh finds every card current: no new version of any branch.
    links = _branch_links(store.root)
    assert suite_main(["cards", *overrides]) == 0
    assert "all up to date; overview local/mini unchanged" in capsys.readouterr().out
    assert _branch_links(store.root) == links


def test_refresh_cut_short_before_its_manifest_commit_is_finished_next_time(
    suite, tmp_path, monkeypatch
):
    """A refresh killed between a branch's commit and the manifest's: the next one commits
    the manifest only, and `suite verify` passes again."""
    from suite.cards import card_context
    from suite.eval.ledger import read_ledger
    from suite.publish import model_card
    from suite.publish.local_store import LocalStore
    from suite.publish.verify import verify_repo
    from suite.rundir import sweep_dir

    cfg, run, _, exports, _ = suite
    store = LocalStore(tmp_path / "store")
    _publish(tmp_path / "run", store, run.repo_id, exports)
    context = card_context(cfg, run, store.spec)
    _write_ledger(cfg, run, store)
    ledger = read_ledger(sweep_dir(cfg).ledger_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest commit")

    monkeypatch.setattr(model_card, "_commit_main", killed)
    with pytest.raises(KeyboardInterrupt):
        model_card.refresh_run(store, context, ledger)
    assert not verify_repo(store, run.repo_id).ok  # step1's card is new, the manifest old
    monkeypatch.undo()
    links = _branch_links(store.root)
    done = model_card.refresh_run(store, context, ledger)
    # The step branches hold their cards already (this store's cards differ from the
    # exports' in `--store`, so all three were committed before the kill): only `main`
    # moves, with the manifest and the final revision's card in one commit.
    assert done.updated == ["main"] and done.checked == ["step0", "step1", "step2"]
    changed = {k for k in links if _branch_links(store.root)[k] != links[k]}
    assert changed == {str(store.root / run.repo_id / "main")}
    assert verify_repo(store, run.repo_id).ok


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def _offline_hf_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)


@pytest.mark.usefixtures("_offline_hf_env")
def test_hub_cards_refresh_commits_once(suite, hub, tmp_path):
    from huggingface_hub import ModelCard, hf_hub_download

    from suite.cards import card_context
    from suite.publish.hub_store import HubStore
    from suite.publish.model_card import refresh_run, summarize_run, write_overview
    from suite.publish.verify import verify_repo

    cfg, run, _, exports, numel = suite
    store = HubStore(endpoint=hub.endpoint, token=TOKEN, cache_dir=tmp_path / "cache")
    _publish(tmp_path / "run", store, run.repo_id, exports)

    def load(repo: str, revision: str):
        path = hf_hub_download(
            repo, CARD_FILE, revision=revision, endpoint=hub.endpoint, cache_dir=tmp_path / "dl"
        )
        return ModelCard.load(path)

    for step in STEPS:
        _check_published_card(load(run.repo_id, f"step{step}"), step, numel)
    assert str(load(run.repo_id, "main")) == str(load(run.repo_id, "step2"))

    expected = _write_ledger(cfg, run, store)
    from suite.eval.ledger import read_ledger
    from suite.rundir import sweep_dir

    ledger = read_ledger(sweep_dir(cfg).ledger_path)
    # The cards name the store they were exported for; this one is the Hub's.
    context = card_context(cfg, run, store.spec)
    assert refresh_run(store, context, ledger).updated == ["step0", "step1", "step2", "main"]
    assert _model_index(load(run.repo_id, "step1")) == expected
    assert str(load(run.repo_id, "main")) == str(load(run.repo_id, "step2"))
    assert verify_repo(store, run.repo_id).ok

    summaries = [summarize_run(store, r, ledger) for r in context.runs]
    assert write_overview(store, "local/mini", context, summaries)
    assert "| mini-160k | step1 |" in load("local/mini", "main").text

    commits = {repo: len(state.commits) for repo, state in hub.state.repos.items()}
    assert refresh_run(store, context, ledger).updated == []
    assert not write_overview(store, "local/mini", context, summaries)
    assert {repo: len(state.commits) for repo, state in hub.state.repos.items()} == commits


@pytest.mark.parametrize(
    ("field", "value", "name"),
    [
        ("license", "Apache 2.0", "publish.card.license"),
        ("language", ["english"], "publish.card.language"),
        ("hub_datasets", {"stdlib": ["not a hub id"]}, "publish.card.hub_datasets.stdlib"),
    ],
)
def test_card_config_refuses_what_the_hub_would_not_read(field, value, name):
    from suite.config import CardConfig
    from suite.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        CardConfig(**{field: value})
    assert caught.value.field == name


def test_card_datasets_must_name_datasets_of_the_suite(tmp_path, capsys):
    from suite.cli import main as suite_main

    code = suite_main(["cards", f"root={tmp_path}", "+publish.card.hub_datasets.pile=[a/b]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "publish.card.hub_datasets.pile" in err and "stdlib, stdlib-deduped" in err


def test_the_trainer_writes_the_card_a_refresh_would(suite, tmp_path):
    """The export hook writes the card of the factory's context, which is the context a
    refresh builds for the same run and store: the first refresh after training, with no
    ledger yet, finds every card current."""
    from transformers import AutoModelForCausalLM

    from suite.cards import card_context
    from suite.publish.metadata import read_metadata
    from suite.publish.model_card import card_bytes, render_card
    from suite.publish.store import open_store
    from suite.train.factory import _card_context
    from suite.train.hooks import ExportHook

    cfg, run, _, exports, _ = suite
    context = _card_context(cfg, run)
    assert context == card_context(cfg, run, open_store(cfg.publish.store).spec)
    model = AutoModelForCausalLM.from_pretrained(exports[1])

    class Loaded:  # the hook's export model, holding the weights it was handed
        def load(self, state):
            return model

        def release(self):
            pass

    hook = ExportHook(
        schedule=None,
        export_model=Loaded(),
        publisher=None,
        gathers=True,
        exports_dir=tmp_path,
        tokenizer_file=exports[1] / "tokenizer.json",
        eos_token=EOS,
        meta_fields={},
        card=context,
    )
    # step1's metadata again (code_version included), as the trainer would build it.
    meta = read_metadata(exports[1])
    hook._write({}, CheckpointMeta(**{f.name: meta[f.name] for f in fields(CheckpointMeta)}))
    written = (tmp_path / "step1" / CARD_FILE).read_bytes()
    assert written == card_bytes(render_card(context, read_metadata(tmp_path / "step1")))
    assert written == (exports[1] / CARD_FILE).read_bytes()
