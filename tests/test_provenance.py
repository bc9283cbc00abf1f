"""Provenance (`data_order.provenance`, `suite batch --docs`, `suite seen`) against brute force.

The reference is a scan of every global position: the document of every token of the
stream (`np.repeat` of the document ids by their `train.idx` sizes), read through the
order as training reads it (`Dataset.global_rows`), with ranks from `order.rank_rows`. The
index must give exactly the same (position, row range, rank, micro step) sets — integers,
so equality, no tolerance — for several layouts, a second data seed, and a span of updates
that crosses two epoch boundaries.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_helpers import WORDS, write_tokenizer

from data_order import (
    BatchLayout,
    DataError,
    PrepareConfig,
    document_occurrences,
    first_checkpoint,
    open_dataset,
    open_index,
    prepare,
    rank_rows,
)
from suite import cli
from suite.schedule import CheckpointSchedule

B = 8
#: Updates searched: 60 x 8 positions of 195 samples per epoch span epochs 0, 1 and 2.
STEPS = 60
#: Layouts of B=8 (micro, dp, accum): one rank, 2x2 with accumulation, 2 ranks, 4 ranks x 2.
LAYOUTS = [BatchLayout(B, 8, 1, 1), BatchLayout(B, 2, 2, 2), BatchLayout(B, 4, 2, 1),
           BatchLayout(B, 1, 4, 2)]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Short documents (1-40 words, several per 17-token row), text files plus a JSONL
    file (ids `file:line`), seq_len 16, 4 epochs; `prov-deduped` beside it lacks dup.txt."""
    root = tmp_path_factory.mktemp("provenance")
    corpus = root / "corpus"
    corpus.mkdir()
    rng = random.Random(3)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))

    for i in range(30):
        (corpus / f"doc{i:02d}.txt").write_text(text())
    (corpus / "dup.txt").write_text((corpus / "doc00.txt").read_text())  # dedup removes it
    lines = [json.dumps({"text": text()}) for _ in range(25)]
    (corpus / "part.jsonl").write_text("\n".join(lines) + "\n")
    tokenizer = write_tokenizer(root / "tokenizer.json", corpus, vocab_size=300)
    path, _deduped = prepare(
        PrepareConfig(
            inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=16, seed=5, workers=1,
            out_dir=str(root / "out"), name="prov", progress=False, max_epochs=4,
            eval_min_docs=2, eval_fraction=0.0, dedup="exact",
        )
    )  # fmt: skip
    return path


def _stream_documents(dataset) -> tuple[np.ndarray, list[str]]:
    """Document index of every token of the stream, and the training ids (brute force)."""
    sizes = np.asarray(dataset.train.sizes, dtype=np.int64)
    listing = (dataset.path / "documents.jsonl").read_text().splitlines()
    ids = [r["id"] for r in map(json.loads, listing) if r["split"] == "train"]
    return np.repeat(np.arange(len(sizes)), sizes), ids


def _row_documents(doc_of: np.ndarray, sample: int, seq_len: int) -> list[tuple[int, int, int]]:
    """(document, row_start, row_stop) of each document in sample `sample`'s window."""
    window = doc_of[sample * seq_len : sample * seq_len + seq_len + 1]
    return [(int(d), int(np.argmax(window == d)), int(len(window) - np.argmax(window[::-1] == d)))
            for d in dict.fromkeys(window.tolist())]  # fmt: skip


def _brute_occurrences(dataset, layout: BatchLayout, stop: int) -> dict[int, set[tuple]]:
    """document -> {(position, batch, row, row_start, row_stop, dp_rank, micro_step, micro_row)}
    from a scan of every batch, ranks from `rank_rows`."""
    doc_of, _ = _stream_documents(dataset)
    found: dict[int, set[tuple]] = {}
    for batch in range(stop // layout.global_batch):
        for rank in range(layout.dp_size):
            positions = rank_rows(layout, batch, rank)  # [grad_accum, micro]
            samples = dataset.sample_ids(positions.reshape(-1)).reshape(positions.shape)
            for step in range(layout.grad_accum):
                for micro_row in range(layout.micro_batch):
                    position = int(positions[step, micro_row])
                    sample = int(samples[step, micro_row])
                    for doc, lo, hi in _row_documents(doc_of, sample, dataset.seq_len):
                        found.setdefault(doc, set()).add(
                            (position, batch, position - batch * layout.global_batch, lo, hi,
                             rank, step, micro_row)
                        )  # fmt: skip
    return found


def _as_tuples(occurrences) -> set[tuple]:
    return {(o.position, o.batch, o.row, o.row_start, o.row_stop, o.dp_rank, o.micro_step,
             o.micro_row) for o in occurrences}  # fmt: skip


def test_prepare_builds_the_index_outside_the_fingerprint(data):
    meta = json.loads((data / "metadata.json").read_text())
    assert meta["provenance"] == {"folder": "provenance", "format": 1}
    assert "provenance" not in json.dumps(meta["fingerprint_fields"])
    assert (data / "provenance" / "provenance.json").is_file()
    dataset = open_dataset(data)
    assert 2 * dataset.num_samples < STEPS * B < 3 * dataset.num_samples  # crosses 2 epochs


def test_every_sample_lists_the_documents_a_scan_finds(data):
    dataset = open_dataset(data)
    index = open_index(dataset, build=False)
    doc_of, ids = _stream_documents(dataset)
    multi = 0
    for sample in range(dataset.num_samples):
        expected = _row_documents(doc_of, sample, dataset.seq_len)
        got = index.sample_documents(sample)
        assert [(s.document, s.row_start, s.row_stop) for s in got] == expected
        for s in got:
            start, stop = index.document_span(s.document)
            assert s.id == ids[s.document] and s.doc_tokens == stop - start
            # The row's slice and the document's slice are the same tokens of the stream.
            first = sample * dataset.seq_len
            assert start + s.doc_start == first + s.row_start
            assert start + s.doc_stop == first + s.row_stop
        multi += len(got) > 1
    assert multi > dataset.num_samples // 5  # rows really do hold several documents
    assert any(":" in i for i in ids)  # JSONL ids (`file:line`) are indexed too


@pytest.mark.parametrize(
    "layout", LAYOUTS, ids=lambda x: f"m{x.micro_batch}dp{x.dp_size}a{x.grad_accum}"
)
def test_seen_matches_a_scan_of_every_batch(data, layout):
    dataset = open_dataset(data)
    index = open_index(dataset, build=False)
    stop = STEPS * B
    brute = _brute_occurrences(dataset, layout, stop)
    epochs = set()
    for doc in range(index.num_documents):
        got = document_occurrences(index, index.document_id(doc), B, stop, layout)
        assert _as_tuples(got) == brute.get(doc, set()), index.document_id(doc)
        epochs |= {o.epoch for o in got}
    assert epochs == {0, 1, 2}


def test_seen_in_another_data_seed_order(data):
    dataset = open_dataset(data).reordered(77)
    index = open_index(dataset, build=False)
    layout, stop = LAYOUTS[1], STEPS * B
    brute = _brute_occurrences(dataset, layout, stop)
    for doc in range(index.num_documents):
        got = document_occurrences(index, index.document_id(doc), B, stop, layout)
        assert _as_tuples(got) == brute.get(doc, set())
    assert (data / "provenance" / "inverse" / "seed77-epoch1.npy").is_file()


def test_batch_docs_cli_matches_the_scan(data, capsys):
    dataset = open_dataset(data)
    doc_of, ids = _stream_documents(dataset)
    batch = dataset.num_samples // B  # straddles the end of epoch 0 when N % B != 0
    argv = ["batch", str(batch), "--data", str(data), "--global-batch", str(B), "--docs"]
    argv += ["--dp-size", "2", "--micro-batch", "2", "--grad-accum", "2", "--dp-rank", "1"]
    assert cli.main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  row ")]
    layout = BatchLayout(B, 2, 2, 2)
    positions = rank_rows(layout, batch, 1).reshape(-1)
    assert len(lines) == len(positions)
    for line, position in zip(lines, positions.tolist(), strict=True):
        sample = int(dataset.sample_ids(np.array([position]))[0])
        head, docs = line.split(": ", 1)
        assert head.split()[1] == str(position - batch * B) and head.endswith(f"sample {sample}")
        expected = [f"row[{lo}:{hi}] {ids[d]}" for d, lo, hi in _row_documents(doc_of, sample, 16)]
        assert [part.rsplit("[", 1)[0] for part in docs.split(" | ")] == expected


def test_seen_cli_json_and_first_checkpoint(data, capsys):
    index = open_index(open_dataset(data), build=False)
    doc_id = index.document_id(7)
    argv = ["seen", doc_id, "--data", str(data), "--global-batch", str(B), "--dp-size", "2"]
    argv += ["--train-steps", str(STEPS), "--checkpoint-every", "5", "--log-until", "4"]
    argv += ["--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    first_batch = min(o["batch"] for o in result["occurrences"])
    steps = CheckpointSchedule(log_until=4, every=5, total_steps=STEPS).steps()  # 0 1 2 4 5 10 ...
    assert result["first_checkpoint"] == min(s for s in steps if s > first_batch)
    assert first_checkpoint([first_batch], steps) == result["first_checkpoint"]
    assert first_checkpoint([], steps) is None
    assert {o["dp_rank"] for o in result["occurrences"]} <= {0, 1}


def test_seen_takes_layout_seed_and_steps_from_a_run_directory(data, tmp_path, capsys):
    dataset = open_dataset(data).reordered(77)
    layout = LAYOUTS[3]
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    identity = {
        "data_fingerprint": dataset.fingerprint, "train_steps": STEPS, "data_seed": 77,
        "layout": {"tp": 1, "dp": layout.dp_size, "micro_batch": layout.micro_batch,
                   "grad_accum": layout.grad_accum, "global_batch": B},
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps({"status": "complete", "identity": identity}))
    doc_id = open_index(dataset, build=False).document_id(4)
    assert cli.main(["seen", doc_id, "--data", str(data), "--run", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["occurrences"]
    expected = document_occurrences(open_index(dataset), doc_id, B, STEPS * B, layout)
    assert got == [dataclasses.asdict(o) for o in expected] and got
    assert cli.main(["seen", doc_id, "--data", str(data), "--run", str(run), "--dp-size", "2"]) == 2
    assert "--dp-size=2: run" in capsys.readouterr().err
    assert cli.main(["seen", doc_id, "--data", str(data), "--run", str(tmp_path)]) == 2
    assert "--run=" in capsys.readouterr().err


def test_text_search_matches_a_scan(data, capsys):
    dataset = open_dataset(data)
    index = open_index(dataset, build=False)
    stream = np.asarray(dataset.train.tokens(0, dataset.train.num_tokens), dtype=np.int64)
    start, stop = index.document_span(3)
    query = stream[start + 1 : stop - 1]  # the inside of a document, without its EOS
    brute = [i for i in range(len(stream) - len(query) + 1)
             if np.array_equal(stream[i : i + len(query)], query)]  # fmt: skip
    assert index.find_tokens(query).tolist() == brute and start + 1 in brute
    # The CLI encodes the text with the dataset's tokenizer: a whole document is found.
    text = (Path(dataset.path).parent.parent / "corpus" / "doc05.txt").read_text()
    argv = ["seen", "--text", text, "--data", str(data), "--global-batch", str(B), "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    (doc,) = index.lookup("doc05.txt")
    doc_start, doc_stop = index.document_span(doc)
    assert [doc_start, doc_stop - 1] in result["spans"]  # the document minus its EOS
    brute_positions = {
        o.position for o in index.occurrences([(doc_start, doc_stop - 1)], B, dataset.num_samples)
    }
    assert {o["position"] for o in result["occurrences"]} >= brute_positions


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-doc.txt"], "document='no-such-doc.txt': no document of"),
        (["--text", "qqqq zzzz xxxx"], "--text='qqqq zzzz xxxx': its"),
        (["doc01.txt", "--text", "alpha"], "exactly one of them"),
        (["doc01.txt", "--train-steps", "999999"], "--train-steps=999999"),
    ],
)
def test_seen_errors_are_one_line(data, capsys, argv, message):
    assert cli.main(["seen", *argv, "--data", str(data), "--global-batch", str(B)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_deduplicated_document_points_to_the_report(data, capsys):
    deduped = data.parent / "prov-deduped"
    assert cli.main(["seen", "dup.txt", "--data", str(deduped), "--global-batch", str(B)]) == 2
    assert "dedup_report.csv if it was removed as a duplicate" in capsys.readouterr().err
    assert (
        cli.main(["seen", "dup.txt", "--data", str(data), "--global-batch", str(B)]) == 0
    )  # kept in the standard one


def test_held_out_document_says_so(data, capsys):
    listing = (data / "documents.jsonl").read_text().splitlines()
    held = next(r["id"] for r in map(json.loads, listing) if r["split"] == "eval")
    assert cli.main(["seen", held, "--data", str(data), "--global-batch", str(B)]) == 2
    assert "is held out" in capsys.readouterr().err


def test_missing_or_stale_index_is_built_on_demand_saying_so(data, tmp_path, capsys):
    copy = tmp_path / "prov"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "provenance")
    with pytest.raises(DataError, match="has no provenance index; build it with"):
        open_index(open_dataset(copy), build=False)
    assert cli.main(["seen", "doc01.txt", "--data", str(copy), "--global-batch", str(B)]) == 0
    assert "building the provenance index once" in capsys.readouterr().err
    manifest = copy / "provenance" / "provenance.json"
    assert json.loads(manifest.read_text()) == json.loads(
        (data / "provenance" / "provenance.json").read_text()
    )  # the same index prepare built
    stale = json.loads(manifest.read_text())
    stale["built_from"]["train.idx"] = "0" * 64
    manifest.write_text(json.dumps(stale))
    assert cli.main(["batch", "0", "--data", str(copy), "--global-batch", str(B), "--docs"]) == 0
    assert "built from other files" in capsys.readouterr().err
    open_index(open_dataset(copy), build=False)  # rebuilt: usable again


def test_the_build_streams_the_listing_in_chunks(data, monkeypatch):
    from data_order import provenance

    monkeypatch.setattr(provenance, "LISTING_CHUNK", 7)  # 55 lines: 8 chunks
    chunked = provenance.build_index(data)
    stored = provenance._load(data / "provenance")
    assert chunked.keys() == stored.keys()
    for name, array in chunked.items():
        assert np.array_equal(array, stored[name]), name


def test_seen_never_imports_torch(data):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "suite.cli", "seen", "doc01.txt",
         "--data", str(data), "--train-steps", "3", "--global-batch", str(B)],
        capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in result.stderr.splitlines() if line.startswith("import time:")}  # fmt: skip
    assert "data_order" in imported and not imported & {"torch", "transformers", "deepspeed"}
    assert "first checkpoint" in result.stdout


def test_preshuffled_data_has_no_provenance(data, tmp_path, capsys):
    from data_order import write_preshuffled

    write_preshuffled(open_dataset(data), tmp_path / "shuffled", 2 * B)
    assert (
        cli.main(
            ["seen", "doc01.txt", "--data", str(tmp_path / "shuffled"), "--global-batch", str(B)]
        )
        == 2
    )
    assert "is a pre-shuffled file" in capsys.readouterr().err


def test_a_corpus_id_field_names_the_documents(tmp_path, capsys):
    """`id_field`: JSONL and Parquet documents are named by their own ids (what `--docs`
    prints and `seen` looks up), not FILE:LINE; the fingerprint changes only when it is set;
    a file without the field is one line naming `id_field`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(20)]
    records = [{"id": f"pile-{i:04d}", "text": t} for i, t in enumerate(texts[:12])]
    (corpus / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    table = pa.table({"text": texts[12:], "id": [1000 + i for i in range(8)]})
    pq.write_table(table, corpus / "b.parquet")
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json", corpus, vocab_size=300)
    config = PrepareConfig(
        inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=16, seed=5, workers=1,
        out_dir=str(tmp_path / "out"), name="ids", progress=False, eval_fraction=0.0,
        eval_min_docs=0, id_field="id",
    )  # fmt: skip
    (path,) = prepare(config)
    listing = [json.loads(line) for line in (path / "documents.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in listing) == sorted(
        [f"pile-{i:04d}" for i in range(12)] + [str(1000 + i) for i in range(8)]
    )
    (plain,) = prepare(dataclasses.replace(config, id_field=None, name="plain"))
    assert open_dataset(path).fingerprint != open_dataset(plain).fingerprint

    assert cli.main(["seen", "pile-0003", "--data", str(path), "--global-batch", str(B)]) == 0
    assert "document pile-0003:" in capsys.readouterr().out
    assert cli.main(["seen", "1005", "--data", str(path), "--global-batch", str(B)]) == 0

    (corpus / "c.jsonl").write_text(json.dumps({"text": "no id here"}) + "\n")
    with pytest.raises(DataError, match=r"id_field='id': .*c\.jsonl:1 has no such field"):
        prepare(dataclasses.replace(config, name="broken"))
