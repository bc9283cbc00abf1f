"""prepare(): determinism, fingerprints, caching, shards, dedup, held-out split, bad input,
atomic output, and both on-disk layouts giving identical batches."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import dir_bytes, make_corpus, metadata, spec_read, write_tokenizer

from data_order import (
    BatchLayout,
    DataConfigError,
    DataError,
    DataFormatError,
    FingerprintMismatch,
    PrepareConfig,
    batch_hash,
    epoch_permutation,
    open_dataset,
    prepare,
    write_preshuffled,
)

SEQ = 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "docs")


@pytest.fixture(scope="module")
def tokenizer(corpus, tmp_path_factory) -> Path:
    return write_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", corpus)


def cfg(corpus, out, **kw) -> PrepareConfig:
    base = dict(
        inputs=[str(corpus)],
        vocab_size=300,
        seq_len=SEQ,
        workers=1,
        out_dir=str(out),
        progress=False,
    )
    return PrepareConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    """The standard and minhash-deduplicated datasets of the tiny corpus."""
    out = tmp_path_factory.mktemp("built")
    return prepare(cfg(corpus, out, dedup="minhash", global_batch=4))


def test_same_inputs_give_identical_bytes_and_fingerprint(corpus, built, tmp_path):
    again = prepare(
        cfg(corpus, tmp_path, dedup="minhash", global_batch=4, workers=2)
    )  # workers never matter
    for a, b in zip(built, again, strict=True):
        assert a.name == b.name
        assert dir_bytes(a) == dir_bytes(b)


def test_tokenizer_training_is_deterministic(corpus, tmp_path):
    a = write_tokenizer(tmp_path / "a.json", corpus).read_bytes()
    b = write_tokenizer(tmp_path / "b.json", corpus).read_bytes()
    assert a == b


def test_fingerprint_changes_with_each_input(corpus, tokenizer, built, tmp_path):
    base = open_dataset(built[0]).fingerprint
    other_tok = write_tokenizer(tmp_path / "t2.json", corpus, vocab_size=290)
    edited = make_corpus(tmp_path / "edited")
    (edited / "doc007.txt").write_text((edited / "doc007.txt").read_text() + " extra")
    variants = {
        "seq_len": cfg(corpus, tmp_path / "a", seq_len=SEQ + 1),
        "seed": cfg(corpus, tmp_path / "b", seed=1),
        "tokenizer": cfg(corpus, tmp_path / "c", tokenizer=str(other_tok)),
        "input": cfg(edited, tmp_path / "d"),
        "eval": cfg(corpus, tmp_path / "e", eval_min_docs=5),
    }
    prints = {name: open_dataset(prepare(c)[0]).fingerprint for name, c in variants.items()}
    assert base not in prints.values() and len(set(prints.values())) == len(prints)
    # workers, shards, max_epochs and global_batch do not enter it.
    same = prepare(cfg(corpus, tmp_path / "f", num_shards=3, max_epochs=2, workers=2))
    assert open_dataset(same[0]).fingerprint == base


def test_cached_dataset_is_returned_without_recomputing(corpus, built, monkeypatch):
    import data_order.build as module

    def boom(*a, **k):
        raise AssertionError("recomputed a cached dataset")

    monkeypatch.setattr(module, "_merge_shards", boom)
    assert prepare(cfg(corpus, built[0].parent, dedup="minhash", global_batch=4)) == built


def test_different_dataset_under_same_name_is_refused(corpus, built):
    with pytest.raises(DataConfigError, match="already holds a dataset with fingerprint"):
        prepare(cfg(corpus, built[0].parent, seed=99))


def test_sharded_then_merged_equals_single_shot(corpus, tmp_path):
    single = prepare(cfg(corpus, tmp_path / "single", dedup="exact"))
    shards = 3
    for i in range(shards):  # as separate tasks would (e.g. a SLURM array)
        (shard_dir,) = prepare(
            cfg(corpus, tmp_path / "sharded", dedup="exact", num_shards=shards, shard_index=i)
        )
        assert (shard_dir / "done.json").is_file()
    merged = prepare(cfg(corpus, tmp_path / "sharded", dedup="exact", num_shards=shards))
    for a, b in zip(single, merged, strict=True):
        assert dir_bytes(a) == dir_bytes(b)
    assert not list((tmp_path / "sharded").glob(".work-*"))  # shards cleaned up after the merge


def test_layout_of_the_dataset_folder(built):
    meta = metadata(built[0])
    code, items, doc_idx = spec_read(built[0] / "train")  # the independent reader reads it
    assert code == 8 and len(items) == meta["counts"]["train_documents"]
    stream = [t for item in items for t in item]
    ds = open_dataset(built[0])
    eos = ds.eos_id
    assert all(item[-1] == eos and eos not in item[:-1] for item in items)  # one EOS per document
    # Sample k covers tokens [k*seq_len, k*seq_len + seq_len + 1) of the stream.
    assert ds.num_samples == (len(stream) - 1) // SEQ
    for k in (0, 1, ds.num_samples - 1):
        assert ds.samples(np.array([k]))[0].tolist() == stream[k * SEQ : k * SEQ + SEQ + 1]
    assert np.array_equal(
        np.load(built[0] / "order.npy"), epoch_permutation(ds.num_samples, ds.seed, 0)
    )
    assert ds.tokenizer_path.is_file() and ds.default_global_batch == 4


def test_batches_follow_the_global_order_across_epochs(built):
    ds = open_dataset(built[0])
    n = ds.num_samples
    B = 4
    rows = np.concatenate([ds.global_rows(i * B, (i + 1) * B) for i in range(3 * n // B)])
    for epoch in range(3 * n // B * B // n):
        assert sorted(rows[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))
    i = n // B + 1  # a batch past the first epoch boundary
    assert np.array_equal(ds.batch(i, B), ds.samples(rows[i * B : (i + 1) * B]))


@pytest.mark.parametrize("dp,micro,accum", [(1, 4, 1), (2, 2, 1), (2, 1, 2), (4, 1, 1)])
def test_rank_batches_reassemble_the_global_batch(built, dp, micro, accum):
    ds = open_dataset(built[0])
    layout = BatchLayout(4, micro, dp, accum)
    for i in (0, 5):
        full = ds.batch(i, 4)
        parts = [ds.rank_batch(layout, i, r) for r in range(dp)]
        assert parts[0].shape == (accum, micro, SEQ + 1)
        # GPT-NeoX order: micro step k, rank r takes rows k*micro*dp + r*micro ... + micro
        rebuilt = np.concatenate([parts[r][k] for k in range(accum) for r in range(dp)])
        assert np.array_equal(rebuilt, full)


def test_preshuffled_layout_gives_identical_batches(built, tmp_path):
    ds = open_dataset(built[0])
    positions = 2 * ds.num_samples + 3  # crosses two epoch boundaries
    write_preshuffled(ds, tmp_path / "pre", positions)
    pre = open_dataset(tmp_path / "pre")
    assert (
        pre.fingerprint == ds.fingerprint and pre.seq_len == SEQ and pre.num_positions == positions
    )
    # The independent reader sees items of seq_len+1 tokens in training order.
    _, items, _ = spec_read(tmp_path / "pre")
    assert items[7] == ds.samples(ds.global_rows(7, 8))[0].tolist()
    layout = BatchLayout(4, 1, 2, 2)
    for i in range(positions // 4):
        assert batch_hash(pre.batch(i, 4)) == batch_hash(ds.batch(i, 4))
        assert np.array_equal(pre.rank_batch(layout, i, 1), ds.rank_batch(layout, i, 1))
    with pytest.raises(DataConfigError, match="batch_index"):
        pre.batch(positions // 4, 4)


def test_preshuffled_shards_without_sidecar_read_like_pythia(built, tmp_path):
    ds = open_dataset(built[0])
    write_preshuffled(ds, tmp_path / "pile", 40, shard_bytes=101)  # odd size: splits items
    (tmp_path / "pile.json").unlink()  # a foreign file: no sidecar
    shards = sorted(tmp_path.glob("pile-*-of-*.bin"))
    assert len(shards) > 3 and not (tmp_path / "pile.bin").exists()
    # Pythia's names: shard i of N is "-{i:05}-of-{N-1:05}.bin".
    assert shards[-1].name == f"pile-{len(shards) - 1:05d}-of-{len(shards) - 1:05d}.bin"
    pre = open_dataset(tmp_path / "pile.idx")
    assert (
        pre.fingerprint.startswith("preshuffled-")
        and pre.eos_id == 0
        and pre.default_global_batch == 1024
    )
    assert np.array_equal(pre.batch(3, 8), ds.batch(3, 8))
    # The other naming ("of" = count) reads the same.
    for i, shard in enumerate(shards):
        shard.rename(tmp_path / f"pile-{i:05d}-of-{len(shards):05d}.bin")
    assert np.array_equal(open_dataset(tmp_path / "pile").batch(3, 8), ds.batch(3, 8))
    (tmp_path / f"pile-00001-of-{len(shards):05d}.bin").unlink()
    with pytest.raises(DataFormatError, match=r"shards \[1\] .* are missing"):
        open_dataset(tmp_path / "pile")


def test_eval_split_is_held_out_and_fixed(built):
    ds = open_dataset(built[0])
    docs = [json.loads(line) for line in (built[0] / "documents.jsonl").read_text().splitlines()]
    held = [d for d in docs if d["split"] == "eval"]
    assert len(held) == 4  # eval_min_docs wins over 1% of 44 documents
    dedup_docs = {
        d["id"]: d["split"]
        for d in map(json.loads, (built[1] / "documents.jsonl").read_text().splitlines())
    }
    assert all(
        dedup_docs.get(d["id"]) == "eval" for d in held
    )  # same held-out set in both datasets
    _, train_items, _ = spec_read(built[0] / "train")
    _, eval_items, _ = spec_read(built[0] / "eval")
    assert not {tuple(i) for i in eval_items} & {tuple(i) for i in train_items}
    ev = ds.eval_samples(3)
    stream = [t for item in eval_items for t in item]
    assert ev.shape == (3, SEQ + 1) and ev[1].tolist() == stream[SEQ : 2 * SEQ + 1]


def test_dedup_removes_exact_and_near_duplicates_with_a_report(built):
    standard, deduped = (metadata(p) for p in built)
    report = (built[1] / "dedup_report.csv").read_text().splitlines()
    assert report[0] == "removed,kept,similarity,method"
    rows = [line.split(",") for line in report[1:]]
    removed = {r[0]: r for r in rows}
    assert removed["exact000.txt"][1:] == ["doc005.txt", "1.000000", "exact"]
    for j in range(3):  # near copies unless the original was held out
        row = removed.get(f"near{j:03d}.txt")
        if row is not None:
            assert row[1] == f"doc{j:03d}.txt" and row[3] == "minhash" and float(row[2]) >= 0.87
    assert len(rows) >= 3
    assert deduped["counts"]["train_documents"] == standard["counts"]["train_documents"] - len(rows)
    assert deduped["fingerprint"] != standard["fingerprint"]
    assert (
        deduped["dedup"]["report"] == "dedup_report.csv" and deduped["dedup"]["threshold"] == 0.87
    )


def test_input_formats_jsonl_gz_zst_parquet(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    texts = [f"document number {i} " + "lorem ipsum dolor " * (i + 3) for i in range(12)]
    lines = "".join(json.dumps({"content": t}) + "\n" for t in texts).encode()
    (tmp_path / "a.jsonl").write_bytes(lines)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    pq.write_table(pa.table({"content": texts}), tmp_path / "d.parquet")
    datasets = []
    for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.parquet"):
        c = cfg(
            tmp_path / name,
            tmp_path / "out",
            text_field="content",
            tokenizer=str(tokenizer),
            name=name.replace(".", "_"),
        )
        datasets.append(prepare(c)[0])
    streams = {spec_read(d / "train")[1].__repr__() for d in datasets}
    assert len(streams) == 1  # same documents, same tokens, whatever the container
    assert metadata(datasets[0])["counts"]["documents"] == 12


# --- bad input: clear errors, nothing half-written ------------------------------------------


def _no_dataset_left(out: Path) -> None:
    """Only caches may remain: the tokenizer cache, lock files and finished (done.json) shards."""
    if out.exists():
        leftovers = [
            p.name
            for p in out.iterdir()
            if p.name != ".tokenizers" and not p.name.startswith((".work-", ".lock-"))
        ]
        assert leftovers == [], leftovers
        for work in out.glob(".work-*"):
            assert all((shard / "done.json").is_file() for shard in work.iterdir()), list(
                work.iterdir()
            )


def test_empty_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("")
    with pytest.raises(DataConfigError, match="inputs=.*no non-empty document"):
        prepare(cfg(tmp_path / "empty", tmp_path / "out"))
    _no_dataset_left(tmp_path / "out")
    with pytest.raises(DataConfigError, match="no such file or folder"):
        prepare(cfg(tmp_path / "missing", tmp_path / "out"))


def test_undecodable_text_names_the_file(tmp_path, tokenizer):
    folder = make_corpus(tmp_path / "docs", n_docs=6, near_dups=0)
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt: not valid UTF-8 at byte 3"):
        prepare(cfg(folder, tmp_path / "out", tokenizer=str(tokenizer)))
    _no_dataset_left(tmp_path / "out")


def test_bad_jsonl_field(tmp_path, tokenizer):
    (tmp_path / "x.jsonl").write_text('{"body": "hello"}\n')
    with pytest.raises(DataConfigError, match="text_field='text'.*x.jsonl:1 has no such field"):
        prepare(cfg(tmp_path / "x.jsonl", tmp_path / "out", tokenizer=str(tokenizer)))


def test_corpus_smaller_than_one_sample(tmp_path, tokenizer):
    (tmp_path / "tiny.txt").write_text("hi")
    with pytest.raises(DataConfigError, match="seq_len=16"):
        prepare(
            cfg(
                tmp_path / "tiny.txt",
                tmp_path / "out",
                tokenizer=str(tokenizer),
                eval_min_docs=0,
                eval_fraction=0,
            )
        )
    _no_dataset_left(tmp_path / "out")


def test_crash_mid_write_leaves_no_dataset(corpus, tmp_path, monkeypatch):
    import data_order.build as module

    def crash(*a, **k):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(module, "write_npy", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg(corpus, tmp_path))
    assert not (tmp_path / "corpus").exists()
    assert not list(tmp_path.glob(".corpus*"))  # no temporary folder left behind
    monkeypatch.undo()
    assert prepare(cfg(corpus, tmp_path))[0].name == "corpus"  # and the next run completes


def test_damaged_dataset_and_fingerprint_mismatch(built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built[0], copy)
    ds = open_dataset(copy, expected_fingerprint=open_dataset(built[0]).fingerprint)
    with pytest.raises(FingerprintMismatch, match="differs from the expected 0000"):
        open_dataset(copy, expected_fingerprint="0000")
    with pytest.raises(DataConfigError, match="batch_index=.*has batches 0"):
        ds.batch(10**9, 4)
    data = (copy / "train.bin").read_bytes()
    (copy / "train.bin").write_bytes(data[:-6])
    with pytest.raises(DataFormatError, match="train.bin.*metadata says"):
        open_dataset(copy)
    (copy / "metadata.json").unlink()
    with pytest.raises(DataFormatError, match="not a finished dataset folder"):
        open_dataset(copy)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"seq_len": 0}, "seq_len"),
        ({"dedup": "fuzzy"}, "dedup"),
        ({"eval_fraction": 0.7}, "eval_fraction"),
        ({"minhash_threshold": 1.5}, "minhash_threshold"),
        ({"shard_index": 3, "num_shards": 2}, "shard_index"),
        ({"name": "../x"}, "name"),
        ({"inputs": []}, "inputs"),
    ],
)
def test_bad_config_names_the_field(kw, field, tmp_path):
    with pytest.raises(DataConfigError, match=f"^{field}="):
        PrepareConfig(**{"out_dir": str(tmp_path), **kw})


def test_concurrent_identical_prepare_keeps_one_dataset(corpus, tmp_path):
    # Two processes (e.g. array tasks) racing on the same dataset: both succeed, one folder.
    import multiprocessing

    c = cfg(corpus, tmp_path, dedup="exact")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=prepare, args=(c,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "corpus",
        "corpus-deduped",
    ]
    assert not list(tmp_path.glob(".corpus*")) and not list(tmp_path.glob(".work-*"))
    assert dir_bytes(prepare(c)[0]) == dir_bytes(prepare(cfg(corpus, tmp_path / "ref"))[0])


def test_worker_processes_give_the_same_bytes(corpus, built, tmp_path, monkeypatch):
    import data_order.tokenize as tokenize

    # Small chunks so the tiny corpus is really spread over 2 spawned worker processes.
    monkeypatch.setattr(tokenize, "CHUNK_CHARS", 2000)
    calls = []
    real_pool = tokenize._pool

    def spy(tokenizer_json, workers):
        calls.append(workers)
        return real_pool(tokenizer_json, workers)

    monkeypatch.setattr(tokenize, "_pool", spy)
    parallel = prepare(cfg(corpus, tmp_path, dedup="minhash", global_batch=4, workers=2))
    assert calls == [2]
    for a, b in zip(built, parallel, strict=True):
        assert dir_bytes(a) == dir_bytes(b)


def test_merge_retokenizes_a_shard_whose_files_changed(tmp_path, tokenizer):
    docs = make_corpus(tmp_path / "docs", n_docs=10, near_dups=0)
    common = dict(tokenizer=str(tokenizer), num_shards=2, eval_min_docs=1)
    for i in range(2):
        prepare(cfg(docs, tmp_path / "sharded", shard_index=i, **common))
    # Same size, different content: the cheap shard key cannot see it, the content check must.
    text = (docs / "doc001.txt").read_text()
    (docs / "doc001.txt").write_text(text.replace("a", "o", 1))
    merged = prepare(cfg(docs, tmp_path / "sharded", **common))
    single = prepare(cfg(docs, tmp_path / "single", tokenizer=str(tokenizer), eval_min_docs=1))
    assert dir_bytes(merged[0]) == dir_bytes(single[0])


def test_tokenizer_without_eos_is_a_clear_error(tmp_path, tokenizer, corpus):
    text = tokenizer.read_text().replace("<|endoftext|>", "<|something|>")
    (tmp_path / "no_eos.json").write_text(text)
    with pytest.raises(DataConfigError, match="eos_token=None: the tokenizer has none of"):
        prepare(cfg(corpus, tmp_path / "out", tokenizer=str(tmp_path / "no_eos.json")))
    with pytest.raises(DataConfigError, match="tokenizer=.*no such file"):
        prepare(cfg(corpus, tmp_path / "out", tokenizer=str(tmp_path / "missing.json")))
    # Naming the EOS explicitly works.
    (path,) = prepare(
        cfg(
            corpus,
            tmp_path / "ok",
            tokenizer=str(tmp_path / "no_eos.json"),
            eos_token="<|something|>",
        )
    )
    assert open_dataset(path).eos_id == 0


def test_atomic_writers_leave_the_old_or_the_new_and_no_temporary(tmp_path):
    from data_order.atomic import atomic_directory, atomic_file, write_npy
    from data_order.indexed import IndexedReader, IndexedWriter

    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    write_npy(tmp_path / "o.npy", np.arange(5))
    assert np.load(tmp_path / "o.npy").tolist() == [0, 1, 2, 3, 4]

    folder = tmp_path / "ds"
    with atomic_directory(folder) as staging:
        (staging / "x").write_text("1")
    with atomic_directory(folder, replace=False) as staging:  # an existing folder wins
        (staging / "x").write_text("2")
    assert (folder / "x").read_text() == "1"
    with atomic_directory(folder) as staging:  # replace=True swaps it whole
        (staging / "y").write_text("3")
    assert [p.name for p in folder.iterdir()] == ["y"]
    with pytest.raises(RuntimeError), atomic_directory(folder):
        raise RuntimeError("crash")
    assert [p.name for p in folder.iterdir()] == ["y"]

    writer = IndexedWriter(tmp_path / "t", np.uint16)
    writer.add_item(np.array([1, 2, 3]))
    writer.close()
    assert IndexedReader(tmp_path / "t")[0].tolist() == [1, 2, 3]
    aborted = IndexedWriter(tmp_path / "u", np.uint16)
    aborted.abort()
    assert not list(tmp_path.glob(".*")), list(tmp_path.glob(".*"))  # no temporary left
    assert not list(tmp_path.glob("u*"))
