"""Data faults and pre-flight checks (issue 18), through the real `suite` CLI.

Damaged token ids (`suite batch`, training, `suite verify --data`), damaged compressed and
Parquet inputs, a prepare killed mid-way then re-run (the same bytes), a full disk (a real
tmpfs), the standard/deduplicated pair, past the end of the data in `plan`/`sweep
--dry-run`, and the seed's range. Every command: the exit code, one line on stderr, no
traceback, and nothing on disk that looks whole but is not.
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from data_helpers import dir_bytes, make_corpus, write_tokenizer
from dist_helpers import run_train, train_env

from data_order import PrepareConfig, open_dataset, prepare

#: The tiny dataset's run (tests/conftest.py::tiny_data), as tests/test_bad_input.py runs it.
TRAIN = (
    "size=160k", "dataset=stdlib", "publish.store=none", "seq_len=32", "padded_vocab=512",
    "global_batch=8", "default_resources.micro_batch=8",
)  # fmt: skip
#: The same settings for `plan` and `sweep`, which size the vocabulary from the config.
PLAN = (*TRAIN[2:], "data.vocab_size=300")


def suite(*argv: object, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *map(str, argv)],
        env=train_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(result: subprocess.CompletedProcess, code: int, *expected: str) -> str:
    """The command failed with `code` and said so in one line containing `expected`."""
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def looks_whole(out: Path) -> list[str]:
    """Visible entries of a prepare's out folder, each checked to be a complete dataset, and
    no temporary file or folder anywhere below it (a refused prepare may not create it)."""
    if not out.exists():
        return []
    leftovers = [p for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert not leftovers, leftovers
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    for name in visible:
        open_dataset(out / name)  # raises if it is not a finished dataset
    return visible


# --- token ids beyond the vocabulary --------------------------------------------------------


@pytest.fixture
def damaged(tiny_data, tmp_path) -> tuple[Path, int, int]:
    """A copy of the tiny dataset with id 65535 (vocabulary 300) written into one sample,
    the 4th of batch 1 at global batch 8; returns (folder, that sample, 1)."""
    copy = tmp_path / "damaged"
    shutil.copytree(tiny_data, copy)
    ds = open_dataset(copy)
    sample = int(ds.sample_ids(np.array([8 + 3]))[0])
    tokens = np.memmap(copy / "train.bin", dtype="<u2", mode="r+")
    tokens[sample * ds.seq_len + 5] = 65535  # inside this sample only (not a boundary token)
    tokens.flush()
    del tokens
    return copy, sample, 1


def test_batch_refuses_ids_beyond_the_vocabulary(damaged, tmp_path):
    folder, sample, batch = damaged
    result = suite("batch", batch, "--data", folder, "--global-batch", 8, "--decode", cwd=tmp_path)
    one_line(
        result,
        2,
        f"{folder}: batch {batch}, sample {sample}: token id 65535 is outside the vocabulary [0, 300)",
        f"suite verify --data {folder}",
    )
    # Per rank too (the trainer's read): position 8 + 3 is DP rank 0's of 2, not rank 1's.
    rank = [
        suite("batch", batch, "--data", folder, "--global-batch", 8, "--dp-size", 2,
              "--dp-rank", r, cwd=tmp_path)
        for r in (0, 1)
    ]  # fmt: skip
    one_line(rank[0], 2, f"batch {batch}, sample {sample}: token id 65535")
    assert rank[1].returncode == 0, rank[1].stderr
    other = suite("batch", 0, "--to", 0, "--data", folder, "--global-batch", 8, cwd=tmp_path)
    assert other.returncode == 0, other.stderr


def test_verify_data_reports_every_problem(tiny_data, damaged, tmp_path):
    intact = suite("verify", "--data", tiny_data, cwd=tmp_path)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert f"data {tiny_data}: intact" in intact.stdout
    folder, _, _ = damaged
    (folder / "documents.jsonl").write_text("changed but the same length\n".ljust(30))
    result = suite("verify", "--data", folder, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("DAMAGED")]
    assert len(problems) == 3, result.stdout
    assert any("train.bin: content differs from the sha256 recorded" in p for p in problems)
    assert any("documents.jsonl: " in p for p in problems)  # size or content
    assert any(
        "train.bin: 1 token id(s) outside the vocabulary [0, 300) (e.g. 65535)" in p
        for p in problems
    )
    assert "Traceback" not in result.stderr
    one_line(suite("verify", "--data", tmp_path / "nowhere", cwd=tmp_path), 2, "--data=")


def test_verify_data_without_recorded_digests(tiny_data, tmp_path):
    """A dataset prepared before digests were recorded: sizes and token range only, said so."""
    old = tmp_path / "old"
    shutil.copytree(tiny_data, old)
    meta = json.loads((old / "metadata.json").read_text())
    del meta["sha256"]
    (old / "metadata.json").write_text(json.dumps(meta))
    result = suite("verify", "--data", old, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "file sizes only (no sha256 recorded" in result.stdout


def test_verify_data_on_a_preshuffled_file(tiny_data, tmp_path):
    from data_order import write_preshuffled

    prefix = tmp_path / "shuffled"
    write_preshuffled(open_dataset(tiny_data), prefix, 64)
    intact = suite("verify", "--data", prefix, cwd=tmp_path)
    assert intact.returncode == 0 and "intact" in intact.stdout, intact.stdout + intact.stderr
    tokens = np.memmap(f"{prefix}.bin", dtype="<u2", mode="r+")
    tokens[33 * 20 + 7] = 300  # sample 20 of 33 tokens; the vocabulary is [0, 300)
    tokens.flush()
    del tokens
    result = suite("verify", "--data", f"{prefix}.idx", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "1 token id(s) outside the vocabulary [0, 300) (e.g. 300), the first at token 667 (sample 20)"
        in result.stdout
    )
    batch = suite("batch", 2, "--data", prefix, "--global-batch", 8, cwd=tmp_path)
    one_line(batch, 2, "batch 2, sample 20: token id 300 is outside the vocabulary [0, 300)")


def test_leftovers_of_a_killed_writer_are_told_from_other_names(tmp_path):
    from data_order.atomic import remove_leftovers, temp_sibling

    ours = [temp_sibling(tmp_path / "corpus"), temp_sibling(tmp_path / "corpus", "old")]
    theirs = [temp_sibling(tmp_path / "corpus.v2"), temp_sibling(tmp_path / "corpus-deduped")]
    for path in [*ours, *theirs]:
        path.mkdir()
    assert sorted(remove_leftovers(tmp_path / "corpus")) == sorted(ours)
    assert sorted(tmp_path.iterdir()) == sorted(theirs)


def test_training_stops_at_the_damaged_batch(damaged, tmp_path):
    folder, sample, batch = damaged
    steps = batch + 1  # the second update reads the damaged batch
    result = run_train(
        [*TRAIN, f"datasets.stdlib.path={folder}", f"root={tmp_path / 'root'}",
         f"train_steps={steps}", "eval.every=0"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"suite train: {folder}: batch {batch}, sample {sample}: token id 65535")
    (record,) = (tmp_path / "root").rglob("run.json")
    assert json.loads(record.read_text())["status"] == "failed"


# --- damaged compressed and Parquet inputs --------------------------------------------------


def _jsonl(n: int = 300) -> bytes:
    return "".join(
        json.dumps({"text": f"line {i} " + "word " * 40}) + "\n" for i in range(n)
    ).encode()


def _corrupt_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name → (a damaged input file, what the message says about it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir()
    gz, zst = gzip.compress(_jsonl()), zstandard.ZstdCompressor().compress(_jsonl())
    pq.write_table(
        pa.table({"text": [f"row {i} " * 30 for i in range(200)]}), folder / "ok.parquet"
    )
    parquet = (folder / "ok.parquet").read_bytes()
    files = {
        "gz-truncated": ("a.jsonl.gz", gz[: len(gz) // 2], "unreadable gzip file"),
        "gz-not-gzip": ("b.jsonl.gz", b"plain text, not gzip\n" * 20, "Not a gzipped file"),
        "gz-bad-json": ("c.jsonl.gz", gzip.compress(b'{"text": "ok"}\n{oops\n'), ":2: not a JSON object"),
        "zst-truncated": ("d.jsonl.zst", zst[: len(zst) // 2], "ends inside a zstd frame"),
        "zst-garbage": ("e.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\xff" * 300, "unreadable zstd file"),
        "parquet-truncated": ("f.parquet", parquet[: len(parquet) // 2], "unreadable Parquet file"),
        "parquet-not-text": ("g.parquet", None, "not a string"),
    }  # fmt: skip
    pq.write_table(pa.table({"text": list(range(5))}), folder / "g.parquet")
    out = {}
    for key, (name, data, says) in files.items():
        if data is not None:
            (folder / name).write_bytes(data)
        out[key] = (folder / name, says)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, dict[str, tuple[Path, str]]]:
    root = tmp_path_factory.mktemp("inputs")
    corpus = make_corpus(root / "good", n_docs=20, near_dups=0)
    tokenizer = write_tokenizer(root / "tokenizer.json", corpus, vocab_size=300)
    return corpus, tokenizer, _corrupt_inputs(root / "bad")


CORRUPT = ["gz-truncated", "gz-not-gzip", "gz-bad-json", "zst-truncated", "zst-garbage",
           "parquet-truncated", "parquet-not-text"]  # fmt: skip


@pytest.mark.parametrize("case", CORRUPT)
def test_prepare_names_a_damaged_input(case, inputs, tmp_path):
    corpus, tokenizer, bad = inputs
    path, says = bad[case]
    out = tmp_path / "out"
    result = suite("prepare", "--input", corpus, "--input", path, "--tokenizer", tokenizer,
                   "--seq-len", 16, "--out", out, "--workers", 1, "--no-progress", cwd=tmp_path)  # fmt: skip
    one_line(result, 2, f"suite prepare: {path}", says)
    assert looks_whole(out) == []


def test_prepare_names_a_damaged_input_while_training_the_tokenizer(inputs, tmp_path):
    corpus, _, bad = inputs
    path, says = bad["zst-truncated"]
    out = tmp_path / "out"
    result = suite("prepare", "--input", corpus, "--input", path, "--vocab-size", 300,
                   "--seq-len", 16, "--out", out, "--no-progress", cwd=tmp_path)  # fmt: skip
    one_line(result, 2, f"suite prepare: {path}", says)
    assert looks_whole(out) == []


def test_a_multi_frame_zst_reads_whole(tmp_path):
    import zstandard

    from data_order.corpus import expand_inputs, read_documents

    lines = _jsonl(10)
    half = lines.index(b"\n", len(lines) // 2) + 1
    frames = b"".join(zstandard.ZstdCompressor().compress(p) for p in (lines[:half], lines[half:]))
    (tmp_path / "two.jsonl.zst").write_bytes(frames)
    docs = list(read_documents(expand_inputs([str(tmp_path / "two.jsonl.zst")]), "text"))
    assert [d.id for d in docs] == [f"two.jsonl.zst:{i}" for i in range(1, 11)]


# --- killed mid-way, then again: the same bytes; a full disk --------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A corpus whose prepare takes a few seconds (1,500 documents, MinHash), its tokenizer,
    and the out folder of an uninterrupted prepare."""
    root = tmp_path_factory.mktemp("big")
    corpus = make_corpus(root / "corpus", n_docs=1500, near_dups=3)
    tokenizer = write_tokenizer(root / "tokenizer.json", corpus, vocab_size=300)
    reference = root / "reference"
    result = suite(*_prepare_argv(corpus, tokenizer, reference), cwd=root)
    assert result.returncode == 0, result.stderr
    return corpus, tokenizer, reference


def _prepare_argv(corpus: Path, tokenizer: Path, out: Path) -> list[object]:
    return ["prepare", "--input", corpus, "--tokenizer", tokenizer, "--seq-len", 32,
            "--dedup", "minhash", "--out", out, "--workers", 1, "--no-progress"]  # fmt: skip


def _tokenizing(out: Path) -> bool:
    return any(out.glob(".work-*/.shard-*.tmp"))


def _writing_standard(out: Path) -> bool:
    return any(out.glob(".corpus.*.tmp"))


def _deduplicating(out: Path) -> bool:
    return (out / "corpus" / "metadata.json").is_file()


@pytest.mark.parametrize("stage", [_tokenizing, _writing_standard, _deduplicating])
def test_prepare_killed_then_rerun_gives_the_same_bytes(stage, big, tmp_path):
    corpus, tokenizer, reference = big
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "suite.cli", *map(str, _prepare_argv(corpus, tokenizer, out))],
        env=train_env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None and not (out.is_dir() and stage(out)):
        time.sleep(0.001)
    if proc.poll() is not None:
        pytest.skip(f"prepare finished before {stage.__name__} was seen (a very fast machine)")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # What a kill leaves: complete datasets only (and hidden temporaries, removed below).
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    for name in visible:
        open_dataset(out / name)
    rerun = suite(*_prepare_argv(corpus, tokenizer, out), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert looks_whole(out) == ["corpus", "corpus-deduped"]
    for name in ("corpus", "corpus-deduped"):
        assert dir_bytes(out / name) == dir_bytes(reference / name), name
    # Nothing else either: the killed run's temporary folders and its shard cache are gone.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())


@pytest.fixture
def full_disk(tmp_path):
    """A 600 KB tmpfs: a real ENOSPC (needs root and mount permission, else skipped)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): no real full disk"
        )
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_prepare_on_a_full_disk(big, full_disk, tmp_path):
    corpus, tokenizer, _ = big
    out = full_disk / "data"
    result = suite(*_prepare_argv(corpus, tokenizer, out), cwd=tmp_path)
    one_line(
        result, 1, f"suite prepare: no space left on {out}: need ~", "free space or set out_dir"
    )
    looks_whole(out)  # whatever was finished is whole, nothing half-written


def _file_size_limit() -> None:
    """In the child: files stop at 200 KB (EFBIG, SIGXFSZ ignored as a batch system would)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_prepare_past_a_file_size_limit(big, tmp_path):
    """The other way a disk 'fills' (RLIMIT_FSIZE); runs where no tmpfs can be mounted."""
    corpus, tokenizer, _ = big
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli", *map(str, _prepare_argv(corpus, tokenizer, out))],
        env=train_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit,
    )
    one_line(result, 1, f"suite prepare: no space left on {out}: need ~")
    looks_whole(out)


def test_suite_prepare_on_a_full_disk_names_root(big, full_disk, tmp_path):
    corpus, tokenizer, _ = big
    result = suite("prepare", f"root={full_disk}", f"data.tokenizer={tokenizer}", "seq_len=32",
                   f"datasets={{stdlib:{{inputs:[{corpus}]}},stdlib-deduped:{{inputs:[{corpus}]}}}}",
                   cwd=tmp_path)  # fmt: skip
    one_line(result, 1, "no space left on", "free space or set root=")
    looks_whole(full_disk / "data" / "mini")


# --- the standard/deduplicated pair, past the end of the data, the seed ---------------------

OTHER_INPUTS = "datasets.stdlib-deduped.inputs=[/some/other/corpus]"


@pytest.mark.parametrize(
    "argv",
    [("plan", OTHER_INPUTS), ("sweep", "--dry-run", OTHER_INPUTS), ("prepare", OTHER_INPUTS),
     ("train", "size=160k", "dataset=stdlib", OTHER_INPUTS),
     ("plan", "datasets.stdlib.inputs=[/some/other/corpus]")],
    ids=["plan", "sweep", "prepare", "train", "standard-side"],
)  # fmt: skip
def test_a_pair_from_other_inputs_is_refused(argv, tmp_path):
    result = suite(*argv, f"root={tmp_path / 'root'}", cwd=tmp_path)
    one_line(result, 2, "inputs=", "differs from datasets.", "give both the same inputs")
    assert not (tmp_path / "root").exists()


def test_a_deduplicated_dataset_needs_its_name():
    # A new dataset comes from a suite YAML (Hydra cannot add a key of a typed dict), so
    # this one is checked on the schema itself.
    from suite.config import DatasetConfig, SuiteConfig
    from suite.errors import ConfigError

    with pytest.raises(ConfigError, match=r"datasets.odd.deduplicate=True: .*'odd-deduped'"):
        SuiteConfig(sizes=["160k"], datasets={"odd": DatasetConfig(deduplicate=True)})
    with pytest.raises(ConfigError, match=r"datasets.a-deduped.inputs=\['x'\]: differs"):
        SuiteConfig(
            sizes=["160k"],
            datasets={"a": DatasetConfig(), "a-deduped": DatasetConfig(["x"], deduplicate=True)},
        )  # fmt: skip


def test_a_prepared_pair_from_other_inputs_is_refused(tiny_data, inputs, tmp_path):
    """A side given by `path`: the config cannot compare inputs; the prepared folders can."""
    corpus, tokenizer, _ = inputs
    other = make_corpus(tmp_path / "other", n_docs=20, seed=7, near_dups=1)
    (deduped,) = prepare(
        PrepareConfig(inputs=[str(other)], tokenizer=str(tokenizer), seq_len=32, workers=1,
                      dedup="exact", emit_standard=False, out_dir=str(tmp_path / "out"),
                      name="other", progress=False, eval_fraction=0.05)
    )  # fmt: skip
    argv = [
        *PLAN,
        f"datasets.stdlib.path={tiny_data}",
        f"datasets.stdlib-deduped.path={deduped}",
    ]
    for command in (("plan",), ("sweep", "--dry-run")):
        result = suite(*command, *argv, "train_steps=4", cwd=tmp_path)
        one_line(
            result,
            2,
            "datasets.stdlib-deduped=",
            "prepared from other inputs than its standard partner",
        )


@pytest.mark.parametrize("command", [("plan",), ("sweep", "--dry-run")])
def test_past_the_end_of_the_data_before_anything_starts(command, tiny_data, tmp_path):
    data = f"datasets.stdlib.path={tiny_data}"
    result = suite(*command, *PLAN, data, "train_steps=100000", f"root={tmp_path / 'r'}",
                   cwd=tmp_path)  # fmt: skip
    one_line(result, 2, "train_steps=100000: needs 800,000 samples (100000 × global_batch 8) but",
             "use train_steps <= 4800")  # fmt: skip
    assert not (tmp_path / "r").exists()
    # Not prepared yet: nothing to count, nothing said (the sweep checks after preparing).
    fresh = suite(*command, *PLAN, "train_steps=100000", f"root={tmp_path / 'r'}", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr


@pytest.mark.parametrize(
    ("argv", "expect"),
    [(("plan", "seed=-5"), "seed=-5: use an integer in [0, 2**63 - 1]"),
     (("plan", "seed=9223372036854775808"), "use an integer in [0, 2**63 - 1]"),
     (("prepare", "--input", "stdlib", "--seed", "-5"), "seed=-5: must be an integer >= 0")],
    ids=["negative", "too-large", "prepare"],
)  # fmt: skip
def test_seed_range(argv, expect, tmp_path):
    one_line(suite(*argv, cwd=tmp_path), 2, expect)
    assert list(tmp_path.iterdir()) == []
