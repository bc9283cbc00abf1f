"""Near-dedup on datatrove (`dedup_engine="datatrove"`) against the single-process engine,
streaming tokenizing, resuming after a kill at every stage, and the SLURM launcher."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from data_helpers import WORDS, dir_bytes, make_corpus, write_tokenizer
from slurm_cluster import slurm_cluster  # noqa: F401  (pytest fixture)

from data_order import PrepareConfig, prepare
from data_order.build import shard_of_files
from data_order.corpus import expand_inputs

REPO = Path(__file__).resolve().parents[1]
#: Small enough for 2 shards and 7 bands to leave some tasks with nothing to do.
BASE = dict(seq_len=32, dedup="minhash", workers=1, progress=False, num_shards=3)


def _report(folder: Path) -> list[list[str]]:
    with open(folder / "dedup_report.csv") as handle:
        return list(csv.reader(handle))[1:]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The mini-style corpus (3 near copies + 1 exact copy) and its single-engine datasets."""
    root = tmp_path_factory.mktemp("mini")
    corpus = make_corpus(root / "corpus", n_docs=40, near_dups=3)
    tokenizer = write_tokenizer(root / "tokenizer.json", corpus)
    cfg = dict(BASE, inputs=[str(corpus)], tokenizer=str(tokenizer))
    single = prepare(PrepareConfig(**cfg, out_dir=str(root / "single")))
    return root, cfg, single


def test_engine_equals_single_on_the_mini_corpus(mini):
    root, cfg, (standard, deduped) = mini
    engine = prepare(PrepareConfig(**cfg, out_dir=str(root / "engine"), dedup_engine="datatrove"))
    # Same bytes: same removed documents, same report (kept twin, estimate), same metadata
    # (the engine is not part of the fingerprint because it does not change the result).
    assert dir_bytes(engine[1]) == dir_bytes(deduped)
    assert dir_bytes(engine[0]) == dir_bytes(standard)
    assert [r[0] for r in _report(deduped)] == ["exact000.txt", "near001.txt", "near002.txt"]
    assert not list((root / "engine").glob(".work-*")), "the work folder is removed after the merge"


def _planted_corpus(folder: Path, seed: int = 7) -> Path:
    """Documents with planted duplicates: exact copies, near copies over a range of edit
    counts (estimated Jaccard from ~0.97 down to ~0.6, so some sit at the 0.87 threshold),
    chains A→B→C whose ends are further apart than either link (the corpus-order rule keeps
    C when B was removed and C is too far from A; a connected-components rule would not),
    and copies of copies of exact duplicates."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    texts: list[str] = []

    def mutate(text: str, edits: int) -> str:
        words = text.split()
        for _ in range(edits):
            words[rng.randrange(len(words))] = rng.choice(WORDS).upper()
        return " ".join(words)

    for _ in range(90):
        base = " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 200)))
        texts.append(base)
        roll = rng.random()
        if roll < 0.25:
            texts.append(mutate(base, rng.randint(1, 6)))  # near copy, various distances
        elif roll < 0.4:
            b = mutate(base, 2)
            texts += [b, mutate(b, 2)]  # chain
        elif roll < 0.5:
            texts.append(base)  # exact copy
    rng.shuffle(texts)
    for i, text in enumerate(texts):
        (folder / f"d{i:04d}.txt").write_text(text)
    return folder


def test_engine_equals_single_on_planted_duplicates(tmp_path):
    corpus = _planted_corpus(tmp_path / "corpus")
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json", corpus)
    cfg = dict(BASE, inputs=[str(corpus)], tokenizer=str(tokenizer), emit_standard=False)
    (single,) = prepare(PrepareConfig(**cfg, out_dir=str(tmp_path / "single")))
    (engine,) = prepare(
        PrepareConfig(**cfg, out_dir=str(tmp_path / "engine"), dedup_engine="datatrove")
    )
    report = _report(single)
    methods = [row[3] for row in report]
    similarities = sorted(float(row[2]) for row in report if row[3] == "minhash")
    # The planted duplicates are there, near ones on both sides of the threshold's reach.
    assert methods.count("exact") >= 5 and methods.count("minhash") >= 15, methods
    assert similarities[0] < 0.9 and similarities[0] >= 0.87
    # The difference between the engines is bounded by zero documents: same bytes.
    assert _report(engine) == report
    assert dir_bytes(engine) == dir_bytes(single)


def test_feeder_reads_a_bounded_number_of_chunks_ahead(tmp_path, monkeypatch):
    """The pool's feeder must not read the shard ahead: when the first tokenized document
    comes back, at most IN_FLIGHT_PER_WORKER x workers (+ the 2 head chunks) were read."""
    from data_order import tokenize
    from data_order.corpus import Document

    corpus = make_corpus(tmp_path / "corpus", n_docs=8, near_dups=0)
    tokenizer_json = write_tokenizer(tmp_path / "tok.json", corpus).read_text()
    monkeypatch.setattr(tokenize, "CHUNK_CHARS", 1)  # one document per chunk
    read = []

    def documents():
        for i in range(200):
            read.append(i)
            yield Document(f"d{i}", f"{WORDS[i % len(WORDS)]} text number {i}")

    stream = tokenize.tokenize_documents(documents(), tokenizer_json, 0, workers=2)
    first = next(stream)
    assert first.id == "d0"
    bound = tokenize.IN_FLIGHT_PER_WORKER * 2 + 2
    assert len(read) <= bound, f"read {len(read)} documents ahead, bound {bound}"
    assert [d.id for d in stream] == [f"d{i}" for i in range(1, 200)]  # order kept
    stream.close()


# --- kill at every stage, then resume ---------------------------------------------------------

#: Kill points: (stage, what to patch in the killed process). Each kills the process with
#: SIGKILL (no cleanup, no completion marker) after part of the stage's output is written.
KILLS = {
    # the 2nd shard's 5th document: shard 0 finished, shard 1 half written
    "tokenize": ("data_order.indexed", "IndexedWriter.add_item", "calls == {first_shard} + 5"),
    # the 2nd shard's signatures, mid-file
    "signatures": ("data_order.dedup_engine", "TokenSignatures.get_signature", "calls == {first_shard} + 5"),
    # after the 2nd band's pairs are written, before its completion marker
    "buckets": ("datatrove.pipeline.dedup.minhash", "MinhashDedupBuckets.run", "calls == 2", "after"),
    # after removals.jsonl is written, before removals.json and the marker
    "removals": ("data_order.dedup_engine", "write_bytes", "calls == 1", "after"),
}  # fmt: skip


KILLER = """
import functools, importlib, json, os, signal, sys
module_name, attr, condition, when, config = sys.argv[1:6]
owner, _, name = attr.rpartition(".")
target = importlib.import_module(module_name)
target = getattr(target, owner) if owner else target
original = getattr(target, name)
calls = 0
@functools.wraps(original)
def patched(*args, **kwargs):
    global calls
    calls += 1
    if when == "before" and eval(condition):
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if when == "after" and eval(condition):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(target, name, patched)
from data_order import PrepareConfig, prepare
prepare(PrepareConfig(**json.loads(config)))
sys.exit(3)  # the kill point was never reached
"""


def test_kill_during_each_stage_then_rerun_gives_identical_datasets(mini, tmp_path):
    """SIGKILL inside each stage (a fresh process each time, patched to kill itself at a
    chosen call), then a clean run: finished work is kept, the datasets are byte-identical.
    (Kills while tokenizing and writing with the single engine: test_data_faults.)"""
    root, cfg, (standard, deduped) = mini
    out = tmp_path / "out"
    config = dict(cfg, out_dir=str(out), dedup_engine="datatrove")
    files = expand_inputs(cfg["inputs"])
    # Documents of shard 0 (one per file here): the kills fall inside shard 1.
    first_shard = shard_of_files([f.path.stat().st_size for f in files], 3).count(0)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    mtimes: dict[str, int] = {}

    def finished(pattern: str) -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in out.glob(pattern)}

    for stage, (module, attr, condition, *when) in KILLS.items():
        condition = condition.format(first_shard=first_shard)
        log = tmp_path / f"{stage}.log"
        with open(log, "w") as handle:
            process = subprocess.Popen(
                [sys.executable, "-c", KILLER, module, attr, condition, (when or ["before"])[0],
                 json.dumps(config)],
                env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                returncode = process.wait(timeout=120)
            finally:
                # Its whole group, like Slurm ending a job: datatrove's local executor forks
                # a multiprocess Manager that outlives a SIGKILLed parent.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        assert returncode == -signal.SIGKILL, f"{stage}: {returncode}\n{log.read_text()[-2000:]}"
        # Work finished before this kill was not redone by this run.
        for path, mtime in mtimes.items():
            assert Path(path).stat().st_mtime_ns == mtime, f"{stage} redid {path}"
        mtimes = finished(".work-*/shard-*/done.json") | finished(
            ".work-*/minhash-*/logs/*/completions/*"
        )
    # Finished at the last kill: 3 shards, 3 signature tasks, 7 bands (not the removals task).
    assert len(mtimes) == 3 + 3 + 7, sorted(mtimes)
    # The standard dataset is written before the dedup stages run.
    assert dir_bytes(out / "corpus") == dir_bytes(standard)
    assert not (out / "corpus-deduped").exists()
    paths = prepare(PrepareConfig(**config))
    assert dir_bytes(paths[0]) == dir_bytes(standard)
    assert dir_bytes(paths[1]) == dir_bytes(deduped)


# --- SLURM ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.slurm
def test_prepare_launcher_slurm_runs_every_stage_as_jobs(slurm_cluster, mini, tmp_path):  # noqa: F811
    from slurm_cluster import wait

    root, cfg, (standard, deduped) = mini
    out = tmp_path / "out"
    argv = [
        sys.executable, "-m", "suite.cli", "prepare", "--input", cfg["inputs"][0],
        "--tokenizer", cfg["tokenizer"], "--seq-len", "32", "--dedup", "minhash",
        "--dedup-engine", "datatrove", "--shards", "3", "--workers", "1", "--out", str(out),
        "--launcher", "slurm", "--slurm-time", "00:10:00", "--slurm-mem-per-cpu-gb", "1",
        # Each stage's tasks in one job: fewer Python starts on the 2-CPU test node.
        "--slurm-tasks-per-job", "8",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dict(line.split(": ") for line in result.stdout.strip().splitlines())
    assert list(jobs) == ["tokenize", "signatures", "buckets", "removals", "merge"], jobs
    assert wait(jobs["merge"], timeout=240) == "COMPLETED", textwrap.shorten(
        " ".join(p.read_text() for p in out.glob(".slurm-*/slurm/*/*.out")), 3000
    )
    for job in jobs.values():
        assert wait(job, timeout=5) == "COMPLETED"
    assert dir_bytes(out / "corpus") == dir_bytes(standard)
    assert dir_bytes(out / "corpus-deduped") == dir_bytes(deduped)
