"""`suite eval` and the evaluation ledger against real published checkpoints (contract 7).

One real `suite train` run (DeepSpeed on CPU, 8 updates) publishes step0, 1, 2, 4, 8 to a
local store; `suite eval` then runs the real lm-evaluation-harness (offline, on the
built-in task generated from the held-out documents) and the perplexity pass over them.
The tests check the ledger against an independent forward pass, then idempotency,
kill-and-resume, re-evaluation of re-published weights, stale marking and bad input.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dist_helpers import REPO, check_ok, run_train, train_env
from slurm_cluster import slurm_cluster  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow

STEPS = (0, 1, 2, 4, 8)
RUN = "mini-160k"
#: The ledger's perplexity vs an independent forward pass over the same tokens, both fp32 on
#: this CPU: they differ only in batch composition and the order of float additions (the
#: ledger sums per-window means in float64, the check sums all token losses at once), a few
#: ulp of float32 (~1e-7 relative). 1e-5 is the issue's bar and ~100x that noise, while a
#: wrong token window, a missing shift or a padding token counted changes nll by >1e-3.
PPL_RTOL = 1e-5
#: Columns that legitimately differ between two evaluations of the same checkpoint.
VOLATILE = ["wall_s", "evaluated_at"]

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "river",
    "stone",
    "cloud",
    "light",
    "paper",
    "engine",
    "garden",
    "window",
]


def _line_corpus(folder: Path, n_docs: int = 60) -> Path:
    """Code-like documents: lines of 16-60 characters with indentation (the built-in task
    needs line structure), deterministic."""
    rng = random.Random(7)
    folder.mkdir(parents=True)
    for i in range(n_docs):
        lines = []
        for _ in range(rng.randint(12, 24)):
            indent = "    " * rng.randint(0, 2)
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
            lines.append(f"{indent}{words[0]} = {'_'.join(words[1:])}({rng.randint(0, 99)})")
        (folder / f"doc{i:03d}.py").write_text("\n".join(lines) + "\n")
    return folder


def _eval_env() -> dict[str, str]:
    return train_env({"HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, data, overrides): a published 8-update run and the overrides that name it."""
    from data_helpers import write_tokenizer

    from data_order import PrepareConfig, prepare

    base = tmp_path_factory.mktemp("eval")
    corpus = _line_corpus(base / "corpus")
    tokenizer = write_tokenizer(base / "tokenizer.json", corpus, vocab_size=300)
    (data,) = prepare(
        PrepareConfig(
            inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=32, seed=1234, workers=1,
            out_dir=str(base / "data"), name="lines", progress=False, eval_fraction=0.15,
        )
    )  # fmt: skip
    root = base / "runs"
    overrides = [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={root}",
        f"publish.store=local:{root}/store", "seq_len=32", "global_batch=8",
        "default_resources.micro_batch=8", "train_steps=8", "checkpoints.log_until=4",
        "checkpoints.every=8", "checkpoints.resume_every=8", "eval.every=4",
        "eval.builtin_examples=24", "eval.batch_size=16",
        # The in-loop downstream eval runs in this same training (steps 4 and 8).
        "eval.in_loop_tasks=[heldout_continuation]",
    ]  # fmt: skip
    check_ok(run_train(overrides))
    return root, Path(data), overrides


#: One process (`eval.workers=1`) where the test needs one: the kill, in-process calls.
ONE_WORKER = ["eval.workers=1"]


def _suite_eval(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", "eval", *args],
        env=_eval_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _ledger(root: Path):
    from suite.eval.ledger import read_ledger

    return read_ledger(root / "mini" / "eval" / "ledger.parquet")


def _current(frame):
    """The rows that are not stale (other tests may have left stale ones)."""
    return frame[~frame["stale"]]


def _stable(frame):
    """The deterministic part of a ledger, in a canonical order."""
    keys = ["run", "revision", "weights_sha256", "task", "metric", "dtype"]
    return frame.drop(columns=VOLATILE).sort_values(keys).reset_index(drop=True)


def _independent_perplexity(folder: Path, data: Path, samples: int) -> tuple[float, float]:
    """(nats/token, bits/byte) of a checkpoint folder, computed with plain transformers."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from data_order import open_dataset

    windows = open_dataset(data).eval_samples(samples)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokens = torch.from_numpy(windows)
    with torch.no_grad():
        logits = model(input_ids=tokens[:, :-1]).logits
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).double(), tokens[:, 1:].reshape(-1), reduction="sum"
    ).item()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    text_bytes = sum(
        len(tokenizer.decode(row[1:].tolist(), skip_special_tokens=True).encode())
        for row in windows
    )
    return nll / tokens[:, 1:].numel(), nll / (math.log(2) * text_bytes)


def test_eval_ledger_real_harness_and_perplexity(trained):
    root, data, overrides = trained
    # Two worker processes (one thread each) split the 5 checkpoints: the CPU default.
    first = check_ok(_suite_eval([*overrides, "eval.workers=2"]))
    ledger = _ledger(root)
    from suite.eval.ledger import COLUMNS

    assert list(ledger.columns) == list(COLUMNS)
    assert sorted(set(ledger["step"])) == list(STEPS)
    assert not ledger["stale"].any()
    per_revision = ledger.groupby("revision").apply(
        lambda g: sorted(zip(g["task"], g["metric"], strict=True)), include_groups=False
    )
    expected = sorted(
        [("ppl/heldout", m) for m in ("nll", "bits_per_byte", "perplexity")]
        + [("heldout_continuation", m) for m in ("acc", "acc_norm")]
    )
    assert all(tasks == expected for tasks in per_revision), per_revision
    assert first.stdout.count("[eval] mini-160k step") == len(STEPS)

    # The real harness ran the built-in task: 24 examples, accuracies are fractions of them,
    # with the harness's closed-form stderr, and the harness version recorded.
    task = ledger[ledger["task"] == "heldout_continuation"]
    assert set(task["n"]) == {24}
    assert all(abs(v * 24 - round(v * 24)) < 1e-9 for v in task["value"])
    assert task["stderr"].notna().all() and (task["stderr"] > 0).all()
    assert task["harness_version"].str.startswith("lm-eval 0.4").all()

    # Perplexity equals an independent fp32 forward pass over the same held-out tokens.
    meta = json.loads((root / "store" / "local" / RUN / "step8" / "scaling_suite.json").read_text())
    nll, bpb = _independent_perplexity(root / "store" / "local" / RUN / "step8", data, 256)
    row = ledger[(ledger["revision"] == "step8") & (ledger["task"] == "ppl/heldout")]
    got = dict(zip(row["metric"], row["value"], strict=True))
    assert got["nll"] == pytest.approx(nll, rel=PPL_RTOL)
    assert got["bits_per_byte"] == pytest.approx(bpb, rel=PPL_RTOL)
    assert got["perplexity"] == pytest.approx(math.exp(nll), rel=PPL_RTOL)
    # ... and the trainer's own in-loop evaluation at that step (DeepSpeed engine, same
    # held-out samples): the ledger continues the training curve exactly.
    run_record = json.loads((root / "mini" / "runs" / RUN / "run.json").read_text())
    assert got["nll"] == pytest.approx(run_record["final_eval_loss"], rel=PPL_RTOL)
    assert int(row["tokens"].iloc[0]) == meta["tokens_seen"] == 8 * 8 * 32
    assert (row["params"] > row["non_embedding_params"]).all() and (
        row["non_embedding_params"] > 0
    ).all()

    # Idempotent: a second run evaluates nothing and leaves the ledger's bytes alone.
    before = (root / "mini" / "eval" / "ledger.parquet").read_bytes()
    second = check_ok(_suite_eval(overrides))
    assert "nothing new" in second.stdout and "[eval] mini-160k step" not in second.stdout
    assert (root / "mini" / "eval" / "ledger.parquet").read_bytes() == before


def test_in_loop_downstream_eval_equals_suite_eval(trained, capsys):
    """`eval.in_loop_tasks`: the trainer logged the built-in task at steps 4 and 8 (every
    `eval.every`=4 updates and the last), beside `eval_loss`, and its numbers are `suite
    eval`'s for the published step4 and step8. Runs before the test that re-publishes step4.

    Exactly equal: the same 24 examples and tokenizations, the same fp32 weights (the
    export's) in the same model class, batch size 16, so the same loglikelihoods up to the
    float rounding of another process's matmul blocking (~1e-7 relative); an accuracy could
    only move on a near-tie within that, and the data here are fixed (none occurs)."""
    from suite.commands.eval import main

    root, _, overrides = trained
    lines = (root / "mini" / "runs" / RUN / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    logged = {r["step"]: r for r in records if any(k.startswith("eval/") for k in r)}
    assert sorted(logged) == [4, 8]
    assert sorted(r["step"] for r in records if "eval_loss" in r) == [4, 8]
    assert main([*overrides, *ONE_WORKER]) == 0  # complete (whatever ran before)
    capsys.readouterr()
    ledger = _current(_ledger(root))
    for step in (4, 8):
        rows = ledger[(ledger["step"] == step) & (ledger["task"] == "heldout_continuation")]
        expected = dict(zip(rows["metric"], rows["value"], strict=True))
        got = {
            key.removeprefix("eval/heldout_continuation/"): value
            for key, value in logged[step].items()
            if key.startswith("eval/")
        }
        assert got == expected and set(got) == {"acc", "acc_norm"}, (step, got, expected)


def test_kill_and_resume_gives_the_clean_rows(trained, tmp_path):
    root, _, overrides = trained
    if not _ledger(root).shape[0]:
        check_ok(_suite_eval(overrides))
    clean = _stable(_current(_ledger(root)))
    eval_dir = root / "mini" / "eval"
    shutil.move(eval_dir, tmp_path / "clean-eval")
    try:
        log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - the child's for its lifetime
        child = subprocess.Popen(
            [sys.executable, "-m", "suite.cli", "eval", *overrides, *ONE_WORKER],
            env=_eval_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while not list((eval_dir / "parts").rglob("*.parquet")) and child.poll() is None:
            assert time.monotonic() < deadline, "no result part appeared"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        log.close()
        assert child.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
        parts = list((eval_dir / "parts").rglob("*.parquet"))
        assert 0 < len(parts) < len(STEPS) * 2
        assert not (eval_dir / "ledger.parquet").exists()  # merged only at the end
        resumed = check_ok(_suite_eval([*overrides, *ONE_WORKER]))
        assert resumed.stdout.count("[eval] mini-160k step") < len(STEPS) + 1
        resumed_rows = _stable(_ledger(root))
        assert resumed_rows.drop(columns=["commit"]).equals(clean.drop(columns=["commit"]))
    finally:
        shutil.rmtree(eval_dir, ignore_errors=True)
        shutil.move(tmp_path / "clean-eval", eval_dir)


def _republish_with_changed_weights(store_root: Path, revision: str, work: Path) -> None:
    """Publish `revision` again with one weight changed, as a re-run would (new metadata)."""
    from safetensors.numpy import load_file, save_file

    from suite.publish.local_store import LocalStore
    from suite.publish.metadata import METADATA_FILE, digest_folder

    folder = work / revision
    shutil.copytree(store_root / "local" / RUN / revision, folder)
    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + np.float32(0.5)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    meta = json.loads((folder / METADATA_FILE).read_text())
    digests = digest_folder(folder, exclude=(METADATA_FILE,))
    meta["files"] = {
        p: {"sha256": d.sha256, "git_sha1": d.git_sha1, "size": d.size} for p, d in digests.items()
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    LocalStore(store_root).publish(f"local/{RUN}", revision, folder)


def test_changed_weights_reevaluated_and_deleted_revision_stale(trained, tmp_path, capsys):
    """In-process (`suite.commands.eval.main`): the process stays warm across the calls."""
    from suite.commands.eval import main

    root, _, overrides = trained
    overrides = [*overrides, *ONE_WORKER]  # in this process: its output is captured
    assert main(overrides) == 0  # complete (whatever ran before)
    before = _ledger(root)
    old_sha = before.loc[before["revision"] == "step4", "weights_sha256"].iloc[0]
    capsys.readouterr()

    _republish_with_changed_weights(root / "store", "step4", tmp_path)
    assert main(overrides) == 0
    out = capsys.readouterr().out
    assert out.count("[eval] mini-160k step") == 1 and "mini-160k step4:" in out
    after = _ledger(root)
    step4 = after[after["revision"] == "step4"]
    assert set(step4.loc[step4["stale"], "weights_sha256"]) == {old_sha}
    current = step4[~step4["stale"]]
    assert len(current) == 5 and old_sha not in set(current["weights_sha256"])
    changed = current.set_index(["task", "metric"])["value"]
    old = before[before["revision"] == "step4"].set_index(["task", "metric"])["value"]
    assert changed[("ppl/heldout", "nll")] != old[("ppl/heldout", "nll")]
    others = after[(after["revision"] != "step4")]
    assert _stable(others).equals(_stable(before[before["revision"] != "step4"]))

    (root / "store" / "local" / RUN / "step2").unlink()  # the revision is gone from the store
    assert main(overrides) == 0
    out = capsys.readouterr().out
    assert "[eval] mini-160k step" not in out
    final = _ledger(root)
    assert final.loc[final["revision"] == "step2", "stale"].all()
    assert len(final[final["revision"] == "step2"]) == 5  # kept, flagged
    assert not final.loc[
        ~final["revision"].isin(["step2"]) & (final["weights_sha256"] != old_sha), "stale"
    ].any()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["eval.tasks=[no_such_task_xyz]"], "eval.tasks='no_such_task_xyz'"),
        (["eval.steps=[3]"], "mini-160k has no published step3"),
        (["eval.dtype=fp8"], "eval.dtype='fp8'"),
        (["eval.in_loop_tasks=[x]", "eval.every=0"], "eval.in_loop_tasks=['x']"),
    ],
)
def test_bad_input_is_one_line(trained, capsys, extra, expected):
    from suite.commands.eval import main

    _, _, overrides = trained
    assert main([*overrides, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err


def test_missing_sweep_is_one_line(tmp_path, capsys):
    from suite.commands.eval import main

    assert main([f"root={tmp_path}", "sizes=[160k]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no sweep at" in err and len(err.splitlines()) == 1, err


def test_slurm_dry_run_prints_one_single_task_job_per_run(trained, capsys):
    from suite.commands.eval import main

    _, _, overrides = trained
    slurm = ["hydra/launcher=slurm", "slurm.cpu_only=true", "cluster.gpus_per_node=2"]
    assert main([*overrides, "sizes=[160k,250k]", "size=null", *slurm, "--dry-run"]) == 0
    out = capsys.readouterr().out
    jobs = [line for line in out.splitlines() if line.startswith("#SBATCH --job-name=")]
    assert jobs == [f"#SBATCH --job-name=mini-{size}" for size in ("160k", "250k")]
    # One task each, whatever the training shape: a checkpoint is evaluated whole.
    assert out.count("#SBATCH --ntasks-per-node=1") == 2 and "--gpus" not in out
    assert not (trained[0] / "mini" / ".submitit").exists()  # nothing submitted


@pytest.mark.slurm
def test_eval_on_real_slurm_matches_local(trained, slurm_cluster, tmp_path):  # noqa: F811
    """One real SLURM job per run (here one run) writes the same rows as a local eval."""
    root, _, overrides = trained
    if not _ledger(root).shape[0]:
        check_ok(_suite_eval(overrides))
    clean = _stable(_current(_ledger(root)))
    eval_dir = root / "mini" / "eval"
    shutil.move(eval_dir, tmp_path / "clean-eval")
    try:
        env = _eval_env()
        env.pop("OMP_NUM_THREADS", None)
        slurm = ["hydra/launcher=slurm", "slurm.cpu_only=true", "cluster.gpus_per_node=2"]
        result = subprocess.run(
            [sys.executable, "-m", "suite.cli", "eval", *overrides, *slurm],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=480,
        )  # fmt: skip
        logs = "\n".join(p.read_text()[-3000:] for p in root.glob("mini/.submitit/*/*_log.*"))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
        assert len(list(root.glob("mini/.submitit/*/*_0_log.out"))) == 1  # one job, one run
        got = _stable(_ledger(root))
        assert got.drop(columns=["commit"]).equals(clean.drop(columns=["commit"]))
    finally:
        shutil.rmtree(eval_dir, ignore_errors=True)
        shutil.move(tmp_path / "clean-eval", eval_dir)


def test_builtin_examples_are_true_next_lines_among_other_documents_lines():
    from suite.eval.builtin_task import DISTRACTORS, make_examples

    docs = [
        "\n".join(f"    doc{d}_line{i} = value_{d}_{i} + {i}" for i in range(12)) for d in range(6)
    ]
    examples = make_examples(docs, count=20, seed=3)
    assert examples == make_examples(docs, count=20, seed=3)  # a pure function of the seed
    assert examples != make_examples(docs, count=20, seed=4)
    for example in examples:
        choices, context = example["choices"], example["context"]
        truth = choices[example["label"]]
        source = next(d for d, doc in enumerate(docs) if context in doc)
        # The true choice continues the context in its document, text for text...
        assert context + truth in docs[source]
        assert len(choices) == DISTRACTORS + 1 and len(set(choices)) == len(choices)
        # ...and every distractor is a line of another document.
        for other in (c for c in choices if c != truth):
            assert other.startswith("\n") and f"doc{source}_" not in other
        assert not context.endswith(("\n", " "))  # the boundary a BPE never merges across


def test_harness_reused_across_models_equals_a_fresh_harness(tmp_path):
    """`HarnessTasks` builds the requests and their tokenizations once and reuses them for
    every model: each model's results equal a fresh harness's for that model alone (a
    response left over from the previous model would show as the previous model's
    numbers). Two tiny random GPT-NeoX models, 16 built-in examples: fast."""
    import torch
    from data_helpers import write_tokenizer
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from suite.eval.builtin_task import TASK_NAME, write_task
    from suite.eval.harness import HarnessTasks

    corpus = _line_corpus(tmp_path / "corpus", n_docs=12)
    tokenizer_file = write_tokenizer(tmp_path / "tokenizer.json", corpus, vocab_size=300)
    documents = [p.read_text() for p in sorted(corpus.iterdir())]
    task = write_task(tmp_path / "task", documents, count=16, seed=1)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file), eos_token="<|endoftext|>"
    )
    config = GPTNeoXConfig(
        vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=128, initializer_range=0.5,
    )  # fmt: skip
    models = []
    for seed in (1, 4):  # wide random weights, seeds whose accuracies differ (0.375 vs 0.5)
        torch.manual_seed(seed)
        models.append(GPTNeoXForCausalLM(config).eval())

    def harness():
        return HarnessTasks([TASK_NAME], [str(task.folder)], num_fewshot=0, seed=1234)

    def values(results):
        return {r.metric: (r.value, r.stderr, r.n) for r in results[TASK_NAME]}

    warm = harness()
    reused = [values(warm.run(model, tokenizer, 8, seed=1234)) for model in models]
    fresh = [values(harness().run(model, tokenizer, 8, seed=1234)) for model in models]
    assert fresh[0] != fresh[1]  # the two models score differently: a leftover would show
    assert reused == fresh
    assert all(v["acc"][2] == 16 for v in reused)
