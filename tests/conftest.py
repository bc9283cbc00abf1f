"""Shared fixtures. Helper modules (`data_helpers`, `dist_helpers`, `hub_server`,
`publish_helpers`, `slurm_cluster`) sit beside the tests: pytest puts this folder on
`sys.path` for the test modules, and no test module imports another."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny GPT-NeoX trained with plain torch, exported at steps 0–4 (publishing tests)."""
    from publish_helpers import SMALL_SCHEDULE, build_tiny_run

    return build_tiny_run(tmp_path_factory.mktemp("tiny-run"), SMALL_SCHEDULE)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A prepared dataset for trainer tests: 60 synthetic documents, a 300-token BPE,
    seq_len 32, 5% held out. Read-only: tests that need another dataset build their own."""
    from data_helpers import make_corpus, write_tokenizer

    from data_order import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("tiny-data")
    corpus = make_corpus(root / "corpus", n_docs=60, near_dups=0)
    tokenizer = write_tokenizer(root / "tokenizer.json", corpus, vocab_size=300)
    (path,) = prepare(
        PrepareConfig(
            inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=32, seed=1234, workers=1,
            out_dir=str(root / "out"), name="tiny", progress=False, eval_fraction=0.05,
        )
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def pythia_shape_data(tmp_path_factory) -> Path:
    """Pre-shuffled samples of Pythia's real shape (2049 token ids < 50,277, a 50,277-token
    stub tokenizer, EOS 0): the GPU check's data, written by `benchmarks/real_shape_data.py`.
    Run as a script (benchmarks/ is not a package on the tests' path). 8 samples; returns the
    prefix for `datasets.<name>.path=`. Read-only."""
    import subprocess
    import sys

    from dist_helpers import REPO, train_env

    prefix = tmp_path_factory.mktemp("pythia-shape") / "synthetic"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "real_shape_data.py"), str(prefix), "--samples", "8"],
        env=train_env(), check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return prefix
