"""`suite memorization`: Pythia's extractable memorization against real published checkpoints.

The corpus plants one 148-token passage in 48 of its 60 documents (each followed by four
random words, so the documents differ and the held-out split, chosen by document, takes
few of them); the other 12 are random words. A tiny GPT-NeoX (the mini ladder's 360k, the
suite's own init) is trained with plain torch — DeepSpeed's start-up would cost more than
the whole test — on the exact training order (`Dataset.batch(s - 1)` at update s, contract
1) and every scheduled checkpoint is published to a local store by the suite's own
publisher. `suite memorization` then scores a seeded sample of training rows at every
revision. The passage must be memorized by the last checkpoint and not at step0, a passage
never in the corpus must not be, and every per-sequence result must agree with an
independent decode of the row the data order names.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

WORDS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi",
    "chi", "psi", "omega", "river", "stone", "cloud", "light", "shadow", "paper",
]  # fmt: skip
RUN = "mini-360k"
STEPS = (0, 1, 2, 4, 32, 64, 96, 128)
SAMPLES = 96
#: Training: AdamW at 1e-2 decaying (cosine) to 1e-3 over 128 updates of 8 × 64 tokens.
#: Measured on this CPU: every planted window is memorized at step128 (54 of 54), ~80% at
#: step64; the thresholds below leave margin for another CPU's float rounding.
UPDATES, LR = 128, 1e-2


def _corpus(folder: Path) -> tuple[Path, str, str]:
    """(corpus folder, the planted passage, a control passage never written to the corpus)."""
    rng = random.Random(3)
    planted = " ".join(rng.choice(WORDS) for _ in range(48))
    control = " ".join(rng.choice(WORDS) for _ in range(48))
    folder.mkdir(parents=True)
    for i in range(48):
        tail = " ".join(rng.choice(WORDS) for _ in range(4))
        (folder / f"a-planted{i:03d}.txt").write_text(f"{planted} {tail}")
    for i in range(12):
        words = [rng.choice(WORDS) for _ in range(rng.randint(40, 80))]
        (folder / f"b-random{i:03d}.txt").write_text(" ".join(words))
    return folder, planted, control


def _overrides(root: Path, data: Path) -> list[str]:
    return [
        f"root={root}", "size=360k", "dataset=stdlib", f"datasets.stdlib.path={data}",
        f"publish.store=local:{root}/store", "seq_len=64", "global_batch=8",
        "default_resources.micro_batch=8", f"train_steps={UPDATES}", "checkpoints.log_until=4",
        "checkpoints.every=32", f"memorization.samples={SAMPLES}", "memorization.batch_size=48",
        "eval.device=cpu",
    ]  # fmt: skip


def _train_and_publish(cfg, data_path: Path) -> None:
    """Plain-torch training on the run's exact order, publishing every scheduled step."""
    import torch

    from data_order import batch_hash, open_dataset
    from suite.config import resolve_all
    from suite.publish.export import export_checkpoint
    from suite.publish.metadata import CheckpointMeta
    from suite.publish.publisher import Publisher
    from suite.rundir import run_dir
    from suite.train.batches import EMPTY_BATCHES_HASH, chain_hash
    from suite.train.model import build_model, hf_config

    (run,) = [r for r in resolve_all(cfg) if r.run_name == RUN]
    data = open_dataset(data_path)
    schedule = cfg.checkpoint_schedule()
    assert tuple(schedule.steps()) == STEPS
    model = build_model(
        hf_config(run, data.eos_id, "fp32"),
        run.init_seed,
        init_rules=run.family.init_rules_for(run.size),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, UPDATES, eta_min=LR / 10)
    publisher = Publisher.for_run(cfg.publish, run_dir(cfg, run).path, run.repo_id)
    running = EMPTY_BATCHES_HASH
    folder = run_dir(cfg, run).path / "exports"

    def publish(step: int) -> None:
        meta = CheckpointMeta(
            run_name=run.run_name, step=step, tokens_seen=step * 8 * 64,
            data_fingerprint=data.fingerprint, batches_hash=running, config_hash="test",
            total_steps=UPDATES,
        )  # fmt: skip
        model.eval()
        publisher.submit(
            export_checkpoint(model, data.tokenizer_path, folder / f"step{step}", meta)
        )
        model.train()

    publish(0)
    for step in range(1, UPDATES + 1):
        rows = data.batch(step - 1, run.global_batch)  # update s trains on batch s - 1
        running = chain_hash(running, batch_hash(rows))
        tokens = torch.from_numpy(rows)
        logits = model(tokens[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        decay.step()
        if schedule.is_checkpoint(step):
            publish(step)
    publisher.close(wait=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: reproducible float reductions, and tiny models' matmuls run faster
    single-threaded than split across the 2-core CI machine's contended cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """(overrides, data path, planted ids, control ids) of the published run."""
    from data_helpers import make_corpus, write_tokenizer
    from tokenizers import Tokenizer

    from data_order import PrepareConfig, prepare
    from suite.settings import load_suite

    base = tmp_path_factory.mktemp("memorization")
    corpus, planted, control = _corpus(base / "corpus")
    # A tokenizer trained without the planted passage: one trained on this corpus would
    # merge the passage into a few tokens.
    tokenizer = write_tokenizer(
        base / "tokenizer.json", make_corpus(base / "words", n_docs=20, near_dups=0), 300
    )
    (data,) = prepare(
        PrepareConfig(
            inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=64, seed=1234, workers=1,
            out_dir=str(base / "data"), name="planted", progress=False, eval_fraction=0.05,
        )
    )  # fmt: skip
    overrides = _overrides(base / "runs", Path(data))
    _train_and_publish(load_suite(overrides), Path(data))
    encode = Tokenizer.from_file(str(tokenizer)).encode
    return overrides, Path(data), encode(planted).ids, encode(control).ids


def _memorization(overrides: list[str], capsys) -> tuple[int, str, str]:
    from suite.commands.memorization import main

    code = main(overrides)
    out = capsys.readouterr()
    return code, out.out, out.err


def _inside(window: list[int], passage: list[int]) -> bool:
    n = len(window)
    return any(passage[i : i + n] == window for i in range(len(passage) - n + 1))


def _reference_decode(model, prompt, length: int):
    """Greedy decoding by re-running the whole prefix each step (no KV cache): the reference."""
    import torch

    x = torch.as_tensor(prompt)
    with torch.inference_mode():
        for _ in range(length):
            token = model(input_ids=x, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            x = torch.cat([x, token], dim=1)
    return x[:, -length:].numpy()


def test_memorization_ledger_per_sequence_and_rerun(trained, capsys):
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM

    from data_order import open_dataset
    from suite.eval.ledger import COLUMNS, part_files, read_ledger
    from suite.memorization import read_sequences, score

    overrides, data_path, planted, control = trained
    root = Path(overrides[0].removeprefix("root="))
    code, out, err = _memorization(overrides, capsys)
    assert code == 0, err
    assert out.count(f"[memorization] {RUN} step") == len(STEPS)

    # The ledger: the standard columns, one exact_match and one token_accuracy row per
    # revision, n = the sample; the keys identify the published weights.
    ledger = read_ledger(root / "mini" / "eval" / "ledger.parquet")
    assert list(ledger.columns) == list(COLUMNS)
    assert sorted(set(zip(ledger["task"], ledger["metric"], strict=True))) == [
        ("memorization", "exact_match"),
        ("memorization", "token_accuracy"),
    ]
    assert sorted(set(ledger["step"])) == list(STEPS) and len(ledger) == 2 * len(STEPS)
    assert set(ledger["n"]) == {SAMPLES} and not ledger["stale"].any()
    meta = json.loads(
        (root / "store" / "local" / RUN / "step128" / "scaling_suite.json").read_text()
    )
    final = ledger[ledger["step"] == 128]
    assert set(final["tokens"]) == {meta["tokens_seen"]} == {128 * 8 * 64}
    assert set(ledger["run"]) == {RUN} and set(ledger["dtype"]) == {"fp32"}
    value = {(s, m): v for s, m, v in zip(ledger["step"], ledger["metric"], ledger["value"], strict=True)}  # fmt: skip

    # Per sequence: every row names a row of the training order; an independent decode
    # (no KV cache, the row fetched by batch and row) gives the same verdicts.
    sequences = read_sequences(root / "mini" / "eval", ledger)
    assert len(sequences) == SAMPLES * len(STEPS)
    assert (sequences["position"] == sequences["batch"] * 8 + sequences["row"]).all()
    assert (sequences["steps_since_seen"] == sequences["step"] - (sequences["batch"] + 1)).all()
    assert sequences["batch"].between(0, UPDATES - 1).all()
    data = open_dataset(data_path)
    last = sequences[sequences["step"] == 128].sort_values("position").reset_index(drop=True)
    rows = np.stack(
        [data.batch(b, 8)[r, :64] for b, r in zip(last["batch"], last["row"], strict=True)]
    )
    assert (data.sample_ids(last["position"].to_numpy()) == last["sample"].to_numpy()).all()
    folder = root / "store" / "local" / RUN / "step128"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    reference = _reference_decode(model, rows[:, :32], 32) == rows[:, 32:]
    assert (reference.all(axis=1) == last["exact"].to_numpy()).all()
    assert np.array_equal(reference.mean(axis=1), last["token_accuracy"].to_numpy())
    # The fractions in the ledger are those of the per-sequence rows (exact, binary means).
    for step, group in sequences.groupby("step"):
        assert value[(step, "exact_match")] == group["exact"].mean()
        assert value[(step, "token_accuracy")] == pytest.approx(group["token_accuracy"].mean(), abs=1e-12)  # fmt: skip

    # The planted passage: unmemorized at step0, memorized at the end. Its windows are the
    # sampled rows whose 64 tokens lie inside it (a third of the sample here).
    planted_rows = np.array([_inside(list(r), planted) for r in rows])
    assert planted_rows.sum() >= 20
    planted_exact = last["exact"].to_numpy()[planted_rows]
    assert planted_exact.mean() >= 0.9, planted_exact.mean()  # measured 1.0
    step0 = sequences[sequences["step"] == 0]
    assert not step0["exact"].any() and value[(0, "token_accuracy")] < 0.1
    # The whole-sample metric rises with training: zero at step0, its maximum at the end.
    exact = [value[(s, "exact_match")] for s in STEPS]
    assert exact[0] == 0 and exact[-1] == max(exact) and exact[-1] > 0.3, exact

    # A passage never in the corpus (same words, same tokenizer), at ten offsets: never
    # reproduced; the model drifts off it within a few tokens. Measured here: token accuracy
    # <= 0.22 and at most 2 tokens matched before the first miss, at every step; the planted
    # passage's windows score 1.0 and 32 with the same model.
    windows = np.array([control[o : o + 64] for o in range(0, 80, 8)])
    control_scores = score(model, windows, 32, batch_size=16)
    assert not control_scores.exact.any()
    assert control_scores.token_accuracy.max() <= 0.4 and control_scores.matched_prefix.max() < 8

    # A rerun evaluates nothing and rewrites nothing.
    parts = {p: p.stat().st_mtime_ns for p in part_files(root / "mini" / "eval")}
    code, out, err = _memorization(overrides, capsys)
    assert code == 0, err
    assert "nothing new: 8 checkpoint(s)" in out and "0 checkpoint(s) evaluated" in out
    assert {p: p.stat().st_mtime_ns for p in part_files(root / "mini" / "eval")} == parts
    pd.testing.assert_frame_equal(read_ledger(root / "mini" / "eval" / "ledger.parquet"), ledger)


def test_changed_sample_is_pending_and_report_draws_it(trained, capsys, tmp_path):
    """A changed definition (another seed) leaves every revision to re-evaluate; a named
    sample stands beside the main one; the report draws the per-sequence files."""
    from suite.config import resolve_all
    from suite.memorization import plan, read_sequences
    from suite.report_ledger import read_ledger
    from suite.report_memorization import (
        UNSEEN_X,
        memorization_section,
        seen_fraction,
        since_seen_bin,
        since_seen_fraction,
    )
    from suite.settings import load_suite

    overrides, _, _, _ = trained
    root = Path(overrides[0].removeprefix("root="))
    if not (root / "mini" / "eval" / "ledger.parquet").exists():
        assert _memorization(overrides, capsys)[0] == 0
    cfg = load_suite([*overrides, "memorization.seed=7"])
    runs = [r for r in resolve_all(cfg) if r.run_name == RUN]
    (run_plan,), _, _ = plan(cfg, runs)
    assert len(run_plan.pending) == len(STEPS)
    cfg = load_suite([*overrides, "memorization.steps=[0,128]"])
    (run_plan,), _, _ = plan(cfg, runs)
    assert [c.step for c in run_plan.checkpoints] == [0, 128] and not run_plan.pending

    # A named sample stands beside the main one: batches past training (not yet seen at
    # step128: steps_since_seen < 0), its own task, the main results untouched.
    control = [
        "memorization.name=control", "memorization.batches=[128,131]",
        "memorization.steps=[128]", "memorization.samples=16",
    ]  # fmt: skip
    code, out, err = _memorization([*overrides, *control], capsys)
    assert code == 0 and "1 checkpoint(s) evaluated" in out, err
    ledger, _ = read_ledger(root / "mini")
    assert set(ledger["task"]) == {"memorization", "memorization/control"}
    assert len(ledger[ledger["task"] == "memorization"]) == 2 * len(STEPS)
    assert set(ledger[ledger["task"] == "memorization/control"]["step"]) == {128}
    sequences = read_sequences(root / "mini" / "eval", ledger)
    unseen = sequences[sequences["task"] == "memorization/control"]
    assert len(unseen) == 16 and (unseen["steps_since_seen"] < 0).all()

    assert since_seen_bin([-3, 0, 1, 2, 3, 4, 100]).tolist() == [UNSEEN_X, 0, 1, 2, 2, 4, 64]
    out = tmp_path / "report"
    out.mkdir()
    lines = memorization_section(root / "mini" / "eval", ledger, out)
    assert lines[0] == "## Memorization" and (out / "memorization.png").is_file()
    from suite.report_memorization import plot_memorization

    plotted = plot_memorization(sequences, out)
    by_step = plotted.panel("stdlib vs step").line("360k")
    seen = sequences[sequences["steps_since_seen"] >= 0]
    expected = seen.groupby("step")["exact"].mean()
    assert by_step.x.tolist() == [float(s) for s in expected.index] and 0 not in by_step.x
    assert np.allclose(by_step.y, expected.to_numpy(), atol=0, rtol=0)
    assert seen_fraction(sequences)["n"].sum() == len(seen)
    since = plotted.panel("stdlib vs since").line("360k")
    final = sequences[sequences["step"] == 128]
    bins = since_seen_bin(final["steps_since_seen"])
    assert since.x.tolist() == sorted(set(bins.tolist())) and since.x[0] == UNSEEN_X
    for x, y in zip(since.x, since.y, strict=True):
        assert y == final["exact"].to_numpy()[bins == x].mean()
    assert since_seen_fraction(sequences)["n"].sum() == len(final)
    # Without memorization results: no section, and an old figure is removed.
    assert memorization_section(root / "mini" / "eval", ledger.iloc[0:0], out) == []
    assert not (out / "memorization.png").exists()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("memorization.batches=[5,2]", "memorization.batches=[5, 2]"),
        ("memorization.batches=[1]", "memorization.batches=[1]"),
        ("memorization.samples=0", "memorization.samples=0"),
        ("memorization.seed=-1", "memorization.seed=-1"),
        ("memorization.continuation_tokens=40", "memorization.continuation_tokens=40"),
        ("memorization.steps=[-1]", "memorization.steps=[-1]"),
        ("memorization.sample=3", "memorization.samples"),
    ],
)
def test_bad_settings_are_one_line_errors(override, field, capsys, tmp_path):
    code, out, err = _memorization([f"root={tmp_path}", "seq_len=64", override], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and field in err and "Traceback" not in err, err


def test_bad_range_and_steps_against_the_run(trained, capsys):
    overrides, _, _, _ = trained
    code, _, err = _memorization([*overrides, "memorization.batches=[0,100000]"], capsys)
    assert code == 2 and err.count("\n") == 1 and "memorization.batches" in err, err
    assert "orders batches 0.." in err
    code, _, err = _memorization([*overrides, "memorization.steps=[3]"], capsys)
    assert code == 2 and err.count("\n") == 1 and "memorization.steps=[3]" in err, err
    assert "no published step3" in err and "memorization.steps empty" in err


def test_sample_positions_is_a_seeded_draw_without_repeats():
    from suite.memorization import sample_positions

    drawn = sample_positions(10, 19, 8, 30, seed=5)
    assert len(drawn) == 30 and len(set(drawn.tolist())) == 30
    assert drawn.min() >= 80 and drawn.max() < 160 and (np.diff(drawn) > 0).all()
    assert np.array_equal(drawn, sample_positions(10, 19, 8, 30, seed=5))
    assert not np.array_equal(drawn, sample_positions(10, 19, 8, 30, seed=6))
    assert sample_positions(0, 1, 4, 100, seed=5).tolist() == list(range(8))  # all rows
    # Uniform over the rows: 20,000 distinct of 100,000, whose mean lies within 5 standard
    # errors of the middle (a uniform draw's: 100,000 / sqrt(12 · 20,000) ≈ 204; without
    # replacement a little less), where a draw biased to either end misses by thousands.
    many = sample_positions(0, 999, 100, 20_000, seed=1)
    assert len(set(many.tolist())) == 20_000
    assert abs(many.mean() - 49_999.5) < 5 * 100_000 / math.sqrt(12 * 20_000)
