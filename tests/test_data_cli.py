"""`suite batch` / `suite prepare` commands, the no-torch start-up, and the stdlib corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_corpus

from data_order import BatchLayout, PrepareConfig, open_dataset, prepare
from data_order.corpus import stdlib_files
from suite.commands import batch as batch_cmd
from suite.commands import prepare as prepare_cmd

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "deepspeed")


def _tiny_prepare_argv(corpus: Path, out: Path) -> list[str]:
    """`suite prepare` flags of the tiny test dataset (`out/tiny`)."""
    return [
        *("--input", str(corpus), "--vocab-size", "300", "--seq-len", "16", "--workers", "1"),
        *("--out", str(out), "--name", "tiny", "--no-progress"),
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    corpus = make_corpus(tmp / "docs")
    out = tmp / "data"
    assert prepare_cmd.main([*_tiny_prepare_argv(corpus, out), "--global-batch", "8"]) == 0
    return out / "tiny"


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "suite.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _imported(stderr: str) -> set[str]:
    # -X importtime lines: "import time: self | cumulative | package.module"
    return {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }


def test_suite_batch_never_imports_torch(dataset):
    result = _run(
        "batch", "2", "--data", str(dataset), "--dp-rank", "1", "--dp-size", "2", "--decode"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = _imported(result.stderr)
    assert "data_order" in imported and "numpy" in imported  # the probe does see imports
    assert not imported & set(HEAVY), imported & set(HEAVY)
    assert "batch 2 dp_rank 1: shape [1, 4, 17]" in result.stdout


def test_suite_prepare_never_imports_torch(dataset):
    # Cached dataset: exercises argument parsing, input hashing and opening.
    corpus = dataset.parent.parent / "docs"
    result = _run("prepare", *_tiny_prepare_argv(corpus, dataset.parent))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not _imported(result.stderr) & set(HEAVY)
    assert "fingerprint=" in result.stdout


def test_batch_help():
    with pytest.raises(SystemExit) as exit_:
        batch_cmd.main(["--help"])
    assert exit_.value.code == 0


def test_batch_npy_matches_the_api(dataset, tmp_path, capsys):
    ds = open_dataset(dataset)
    out = tmp_path / "b.npy"
    assert (
        batch_cmd.main(["3", "--to", "4", "--data", str(dataset), "--out", str(out)]) == 0
    )  # --to is inclusive
    saved = np.load(out)
    assert saved.shape == (2, 8, 17) and np.array_equal(saved[1], ds.batch(4, 8))
    out1 = tmp_path / "r.npy"
    args = [
        "5",
        "--data",
        str(dataset),
        "--dp-rank",
        "1",
        "--dp-size",
        "2",
        "--grad-accum",
        "2",
        "--out",
        str(out1),
    ]
    assert batch_cmd.main(args) == 0
    assert np.array_equal(np.load(out1), ds.rank_batch(BatchLayout(8, 2, 2, 2), 5, 1))
    out2 = tmp_path / "m.npy"
    assert batch_cmd.main([*args[:-1], str(out2), "--micro-step", "1"]) == 0
    assert np.array_equal(np.load(out2), np.load(out1)[1])
    assert "hash" in capsys.readouterr().out


def test_batch_jsonl_with_decoded_text(dataset, tmp_path):
    from tokenizers import Tokenizer

    out = tmp_path / "b.jsonl"
    assert (
        batch_cmd.main(
            ["0", "--data", str(dataset), "--global-batch", "4", "--decode", "--out", str(out)]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ds = open_dataset(dataset)
    assert [r["position"] for r in rows] == [0, 1, 2, 3]
    assert [r["sample"] for r in rows] == ds.global_rows(0, 4).tolist()
    tok = Tokenizer.from_file(str(ds.tokenizer_path))
    assert rows[2]["text"] == tok.decode(rows[2]["tokens"], skip_special_tokens=False)
    assert rows[2]["tokens"] == ds.batch(0, 4)[2].tolist()
    assert rows[2]["documents"] == ds.sample_documents(rows[2]["sample"]) and rows[2]["documents"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["999999", "--global-batch", "8"], "batch_index=999999: .* has batches 0.."),
        (
            ["0", "--global-batch", "8", "--micro-batch", "3", "--dp-size", "2"],
            "global_batch=8: must equal",
        ),
        (["0", "--micro-step", "0"], "--micro-step=0: needs --dp-rank"),
        (["0", "--to", "-1"], "--to=-1"),
        (["0", "--out", "x.csv"], "--out='x.csv'"),
        (["0", "--expect-fingerprint", "abc"], "differs from the expected abc"),
    ],
)
def test_batch_errors_are_one_clear_line(dataset, capsys, argv, message):
    import re

    assert batch_cmd.main([*argv, "--data", str(dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_batch_on_missing_data_is_an_error(tmp_path, capsys):
    assert batch_cmd.main(["0", "--data", str(tmp_path / "nope")]) == 2
    assert "data=" in capsys.readouterr().err


def test_prepare_cli_shard_flow_and_bad_flags(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "docs", n_docs=12)
    common = [
        "--input",
        str(corpus),
        "--vocab-size",
        "280",
        "--seq-len",
        "8",
        "--workers",
        "1",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    assert prepare_cmd.main([*common, "--tokenizer-only"]) == 0
    for i in range(2):
        assert prepare_cmd.main([*common, "--shard", f"{i}/2"]) == 0
    assert prepare_cmd.main([*common, "--shards", "2", "--dedup", "exact"]) == 0
    out = capsys.readouterr().out
    assert "corpus-deduped" in out and "1 removed" in out
    assert prepare_cmd.main([*common, "--shard", "x/2"]) == 2
    assert prepare_cmd.main([*common, "--seq-len", "0"]) == 2
    assert "seq_len=0" in capsys.readouterr().err


def test_stdlib_corpus_is_sorted_and_excludes_tests():
    files = stdlib_files()
    names = [f.name for f in files]
    assert names == sorted(names) and len(names) == len(set(names)) > 500
    assert all(n.startswith("stdlib/") and n.endswith(".py") for n in names)
    parts = {p for n in names for p in n.split("/")[:-1]}
    assert not parts & {"test", "tests", "idle_test", "site-packages"}
    assert "stdlib/encodings/cp1252.py" in names and "stdlib/os.py" in names


def test_stdlib_codecs_are_real_near_duplicates(tmp_path):
    # A slice of the embedded corpus: generated single-byte codec modules (DOS code pages).
    encodings = Path(sysconfig.get_paths()["stdlib"]) / "encodings"
    cfg = PrepareConfig(
        inputs=[str(encodings / "cp437.py"), str(encodings / "cp8*.py")],
        vocab_size=512,
        seq_len=64,
        dedup="minhash",
        workers=1,
        eval_min_docs=0,
        eval_fraction=0.0,
        out_dir=str(tmp_path),
        name="cp",
        progress=False,
    )
    standard, deduped = prepare(cfg)
    report = (deduped / "dedup_report.csv").read_text().splitlines()[1:]
    assert len(report) >= 4, report  # e.g. cp860/cp861/cp863/cp865 are near copies of cp437
    for line in report:
        removed, kept, similarity, method = line.split(",")
        assert (
            removed.startswith("cp8")
            and kept.startswith(("cp8", "cp437"))
            and float(similarity) >= 0.87
        )
    assert open_dataset(deduped).num_samples < open_dataset(standard).num_samples


def test_batch_on_a_preshuffled_prefix_prints_the_same_hash(dataset, tmp_path, capsys):
    from data_order import write_preshuffled

    ds = open_dataset(dataset)
    write_preshuffled(ds, tmp_path / "document", 32, shard_bytes=500)
    (tmp_path / "document.json").unlink()  # like Pythia's files: no sidecar
    for data in (str(dataset), str(tmp_path / "document")):
        argv = ["2", "--data", data, "--global-batch", "8", "--decode"]
        assert batch_cmd.main([*argv, "--tokenizer", str(ds.tokenizer_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("batch 2")]
    assert len(lines) == 2 and lines[0].split("hash")[1] == lines[1].split("hash")[1]
    # Without a tokenizer a foreign pre-shuffled file cannot be decoded: say so.
    assert batch_cmd.main(["2", "--data", str(tmp_path / "document"), "--decode"]) == 2
    assert "--tokenizer" in capsys.readouterr().err
