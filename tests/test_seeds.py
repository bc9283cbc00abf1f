"""Seed replicates (PolyPythias, issue 16): `seeds` as the sweep's third axis, with an
`init_seed` and a `data_seed` that can differ.

Fast part: names, validation, the plan, the Hydra grids, the data order of another seed
(its fingerprint is the one `suite prepare` gives that seed), legacy identities. Slow part:
real training — one `suite sweep` over 2 sizes × seeds [1234, 1] (4 runs), then two more
sweeps that add a replicate with a fixed data seed (`-weight-seed1`) and one with a fixed
init seed (`-data-seed1`), reusing the reference runs. Batch hashes come from each run's
metrics.jsonl, step0 from its exports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dist_helpers import REPO, check_ok, train_env

from suite.errors import ConfigError
from suite.settings import load_suite

STEPS = 3


def _names(overrides: list[str]) -> list[str]:
    from suite.config import resolve_all

    return [run.run_name for run in resolve_all(load_suite(overrides))]


def test_one_seed_keeps_every_name():
    plain = _names(["sizes=[160k,250k]"])
    assert plain == ["mini-160k", "mini-160k-deduped", "mini-250k", "mini-250k-deduped"]
    assert _names(["sizes=[160k,250k]", "seeds=[1234]"]) == plain
    assert _names(["sizes=[160k,250k]", "seeds=[7]"]) == plain


def test_replicates_are_named_as_polypythias_and_carry_their_seeds():
    from suite.config import resolve_all

    cfg = load_suite(["sizes=[160k,250k]", "seeds=[1234,1,2]"])
    runs = resolve_all(cfg)
    assert [r.run_name for r in runs[:3]] == ["mini-160k", "mini-160k-seed1", "mini-160k-seed2"]
    assert runs[4].run_name == "mini-160k-deduped-seed1"  # the seed last, after -deduped
    assert runs[1].repo_id == "local/mini-160k-seed1"
    assert [(r.seed, r.init_seed, r.data_seed) for r in runs[:3]] == [
        (1234, 1234, 1234),
        (1, 1, 1),
        (2, 2, 2),
    ]
    fixed_data = resolve_all(load_suite(["sizes=[160k]", "seeds=[1234,1]", "data_seed=1234"]))
    assert [(r.run_name, r.init_seed, r.data_seed) for r in fixed_data[:2]] == [
        ("mini-160k", 1234, 1234),
        ("mini-160k-weight-seed1", 1, 1234),
    ]
    fixed_init = resolve_all(load_suite(["sizes=[160k]", "seeds=[1234,1]", "init_seed=1234"]))
    assert [(r.run_name, r.init_seed, r.data_seed) for r in fixed_init[:2]] == [
        ("mini-160k", 1234, 1234),
        ("mini-160k-data-seed1", 1234, 1),
    ]


def test_plan_has_one_row_per_seed_and_the_total_counts_them():
    from suite.planning import plan_table

    one = plan_table(load_suite(["sizes=[160k,250k]"]))
    three = plan_table(load_suite(["sizes=[160k,250k]", "seeds=[1234,1,2]"]))
    assert len(one) - 1 == 4 and len(three) - 1 == 12
    total_one, total_three = one.iloc[-1], three.iloc[-1]
    assert total_three["gpu_hours"] == pytest.approx(3 * total_one["gpu_hours"])
    assert total_three["tokens"] == 3 * total_one["tokens"]
    assert len(set(three["run"])) == 13


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["seeds=[1234,-1]"], "seeds[1]"),
        (["seeds=[1234,1,1234]"], "seeds"),
        (["init_seed=-3"], "init_seed"),
        (["seeds=[1,2]", "init_seed=1", "data_seed=2"], "seeds"),
    ],
)
def test_bad_seeds_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        load_suite(overrides)
    assert err.value.field == field and "\n" not in str(err.value)


def test_a_run_outside_the_seed_axis_is_refused():
    from suite.config import resolve_run

    cfg = load_suite(["seeds=[1,2]"])  # seed stays 1234: `suite train` without seed=
    with pytest.raises(ConfigError, match="not one of seeds"):
        resolve_run(cfg, "160k", "stdlib")
    assert resolve_run(cfg, "160k", "stdlib", seed=2).run_name == "mini-160k-seed2"


def test_sweep_grids_and_hydra_overrides():
    from suite.config import RunKey
    from suite.sweep_app import axis_overrides, grids

    cfg = load_suite(["sizes=[160k,250k]", "seeds=[1234,1]"])
    runs = cfg.runs()
    assert len(runs) == 8 and grids(runs) == [runs]
    assert axis_overrides(runs, replicated=True) == [
        "size=160k,250k",
        "dataset=stdlib,stdlib-deduped",
        "seed=1234,1",
        "hydra.sweep.subdir=hydra/${size}-${dataset}-seed${seed}",
    ]
    pending = [r for r in runs if r != RunKey("160k", "stdlib", 1)]
    split = grids(pending)
    assert sorted(run for grid in split for run in grid) == sorted(pending)
    for grid in split:  # each a full grid: Hydra can expand it
        axes = [set(values) for values in zip(*grid, strict=True)]
        assert len(grid) == np.prod([len(a) for a in axes])


def test_dry_run_lists_every_replicate(tmp_path, capsys):
    from suite.commands.sweep import main as sweep_main

    assert sweep_main(["--dry-run", f"root={tmp_path}", "sizes=[160k]", "seeds=[1234,1]"]) == 0
    listed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [
        "mini-160k",
        "mini-160k-seed1",
        "mini-160k-deduped",
        "mini-160k-deduped-seed1",
    ]


def test_a_slurm_job_resolves_its_own_seed():
    from suite.launch.hydra_launcher import resources_from_config
    from suite.settings import compose_suite

    axis = ["seeds=[1234,1]", "size=160k", "dataset=stdlib"]
    assert resources_from_config(compose_suite([*axis, "seed=1"])) is not None
    with pytest.raises(ConfigError, match="not one of seeds"):
        resources_from_config(compose_suite([*axis, "seed=5"]))


def test_config_hash_of_the_reference_seed_is_unchanged_and_replicates_differ():
    from suite.config import resolve_run
    from suite.train.factory import config_hash

    plain = load_suite([])
    replicated = load_suite(["seeds=[1234,1]"])
    fixed = load_suite(["seeds=[1234,1]", "data_seed=1234"])
    reference = config_hash(plain, resolve_run(plain, "160k", "stdlib"))
    assert config_hash(replicated, resolve_run(replicated, "160k", "stdlib")) == reference
    hashes = {
        config_hash(replicated, resolve_run(replicated, "160k", "stdlib", seed=1)),
        config_hash(fixed, resolve_run(fixed, "160k", "stdlib", seed=1)),
    }
    assert len(hashes) == 2 and reference not in hashes


def test_an_identity_saved_before_the_split_still_resumes():
    from suite.config import resolve_run
    from suite.train.resume import check_identity
    from suite.train.run import run_identity, with_split_seeds

    cfg = load_suite([])
    identity = run_identity(cfg, resolve_run(cfg, "160k", "stdlib"), "fp", 0)
    assert (identity["init_seed"], identity["data_seed"]) == (1234, 1234)
    legacy = {k: v for k, v in identity.items() if k not in ("init_seed", "data_seed")}
    check_identity(with_split_seeds(legacy), identity, Path("run.json"))
    with pytest.raises(Exception, match="data_seed"):
        check_identity(with_split_seeds(legacy), identity | {"data_seed": 1}, Path("run.json"))


def _prepare(root: Path, corpus: Path, tokenizer: Path, seed: int) -> Path:
    from data_order import PrepareConfig, prepare

    (path,) = prepare(
        PrepareConfig(
            inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=32, seed=seed, workers=1,
            out_dir=str(root / f"out{seed}"), name="tiny", progress=False, eval_fraction=0.05,
        )
    )  # fmt: skip
    return path


def test_another_data_seed_reads_like_the_corpus_prepared_with_it(tmp_path):
    """The view of another seed equals a dataset prepared with that seed: fingerprint and
    batches (0.5 s: 30 documents, a given tokenizer)."""
    from data_helpers import make_corpus, write_tokenizer

    from data_order import open_dataset
    from suite.data_seed import with_data_seed

    corpus = make_corpus(tmp_path / "corpus", n_docs=30, near_dups=0)
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json", corpus, vocab_size=300)
    prepared = {
        seed: open_dataset(_prepare(tmp_path, corpus, tokenizer, seed)) for seed in (1234, 1)
    }
    view = with_data_seed(prepared[1234], 1, reference_seed=1234)
    assert view.fingerprint == prepared[1].fingerprint != prepared[1234].fingerprint
    for index in (0, 3):
        assert np.array_equal(view.batch(index, 4), prepared[1].batch(index, 4))
    assert not np.array_equal(view.batch(0, 4), prepared[1234].batch(0, 4))
    assert with_data_seed(prepared[1234], 1234, 1234) is prepared[1234]  # the same object
    # The reference runs read a dataset as made (a `path` prepared with another seed keeps
    # its order and fingerprint, as before the seed axis); `suite batch --seed` redraws.
    assert with_data_seed(prepared[1], 1234, reference_seed=1234) is prepared[1]
    redrawn = with_data_seed(prepared[1], 1234, reference_seed=None)
    assert redrawn.fingerprint == prepared[1234].fingerprint
    assert np.array_equal(redrawn.batch(2, 4), prepared[1234].batch(2, 4))


def test_a_pre_shuffled_dataset_serves_only_the_reference_seed(tiny_data, tmp_path, capsys):
    from data_order import open_dataset, write_preshuffled
    from suite.commands.sweep import main as sweep_main
    from suite.data_seed import with_data_seed

    prefix = tmp_path / "shuffled"
    write_preshuffled(open_dataset(tiny_data), prefix, 16)
    shuffled = open_dataset(prefix)
    assert with_data_seed(shuffled, 1234, reference_seed=1234) is shuffled
    with pytest.raises(ConfigError, match="pre-shuffled") as err:
        with_data_seed(shuffled, 1, reference_seed=1234)
    assert err.value.field == "data_seed" and "data_seed=1234" in err.value.fix
    # The sweep refuses before anything starts; a fixed data seed varies only the init.
    sweep = [
        "--dry-run", f"root={tmp_path}", "sizes=[160k]", "seeds=[1234,1]",
        f"datasets.stdlib.path={prefix}", "~datasets.stdlib-deduped", "train_steps=1",
    ]  # fmt: skip
    assert sweep_main(sweep) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("suite sweep: data_seed=1: run mini-160k-seed1 would reorder")
    assert sweep_main([*sweep, "data_seed=1234"]) == 0
    assert "mini-160k-weight-seed1" in capsys.readouterr().out


# ---- real training ------------------------------------------------------------------------


def _sweep(root: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    overrides = [
        f"root={root}", f"datasets.stdlib.path={data}", "~datasets.stdlib-deduped",
        "sizes=[160k,250k]", "seeds=[1234,1]", "seq_len=32", "global_batch=8",
        "default_resources.micro_batch=8", f"train_steps={STEPS}", "checkpoints.log_until=1",
        f"checkpoints.every={STEPS}", f"checkpoints.resume_every={STEPS}", "eval.every=0",
        "publish.keep_exports=true", *extra,
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", "sweep", "--no-report", "--no-eval", *overrides],
        env=train_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def replicates(tiny_data, tmp_path_factory) -> Path:
    """The runs dir after three sweeps: seeds [1234, 1] over 2 sizes (4 runs), then the
    160k replicate with data_seed=1234 (`-weight-seed1`) and with init_seed=1234
    (`-data-seed1`); the later sweeps find the reference runs complete."""
    root = tmp_path_factory.mktemp("seeds")
    check_ok(_sweep(root, tiny_data))
    for fixed in ("data_seed=1234", "init_seed=1234"):
        again = check_ok(_sweep(root, tiny_data, "sizes=[160k]", fixed))
        assert "1 runs complete, 1 to train" in again.stdout
    return root / "mini" / "runs"


def _hashes(run_dir: Path) -> list[str]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["batch_hash"] for line in lines if line.get("loss") is not None]


def _step0(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(run_dir / "exports" / "step0" / "model.safetensors")


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sweep_trains_every_size_and_seed_and_records_the_seeds(replicates):
    from suite.commands.status import collect_status

    names = sorted(p.name for p in replicates.iterdir())
    assert names == [
        "mini-160k", "mini-160k-data-seed1", "mini-160k-seed1", "mini-160k-weight-seed1",
        "mini-250k", "mini-250k-seed1",
    ]  # fmt: skip
    seeds = {}
    for name in names:
        info = json.loads((replicates / name / "run.json").read_text())
        assert info["status"] == "complete" and info["final_step"] == STEPS
        seeds[name] = (info["identity"]["init_seed"], info["identity"]["data_seed"])
    assert seeds == {
        "mini-160k": (1234, 1234), "mini-160k-seed1": (1, 1), "mini-250k": (1234, 1234),
        "mini-250k-seed1": (1, 1), "mini-160k-weight-seed1": (1, 1234),
        "mini-160k-data-seed1": (1234, 1),
    }  # fmt: skip
    sweep = replicates.parent
    expected = json.loads((sweep / "sweep.json").read_text())["runs"]
    assert {r["run_name"]: (r["seed"], r["init_seed"], r["data_seed"]) for r in expected} == {
        "mini-160k": (1234, 1234, 1234),
        "mini-160k-data-seed1": (1, 1234, 1),
    }  # the last sweep's runs
    assert (sweep / "hydra" / "160k-stdlib-seed1").is_dir()
    rows = {row["run"]: row for row in collect_status(sweep)}
    assert rows["mini-160k-data-seed1"]["logs"].endswith("hydra/160k-stdlib-seed1")


@pytest.mark.slow
def test_batches_follow_the_data_seed_and_step0_the_init_seed(replicates):
    runs = {name: replicates / name for name in ("mini-160k", "mini-250k", "mini-160k-seed1")}
    runs |= {n: replicates / n for n in ("mini-250k-seed1", "mini-160k-weight-seed1")}
    runs |= {"mini-160k-data-seed1": replicates / "mini-160k-data-seed1"}
    hashes = {name: _hashes(path) for name, path in runs.items()}
    assert all(len(h) == STEPS for h in hashes.values())
    # One data seed: the same batches for every size; another data seed: other batches.
    assert hashes["mini-160k"] == hashes["mini-250k"]
    assert hashes["mini-160k-seed1"] == hashes["mini-250k-seed1"]
    assert not set(hashes["mini-160k"]) & set(hashes["mini-160k-seed1"])
    # init seed varied, data seed fixed: same batches, another step0.
    assert hashes["mini-160k-weight-seed1"] == hashes["mini-160k"]
    assert not _same_weights(_step0(runs["mini-160k-weight-seed1"]), _step0(runs["mini-160k"]))
    assert _same_weights(_step0(runs["mini-160k-weight-seed1"]), _step0(runs["mini-160k-seed1"]))
    # data seed varied, init seed fixed: same step0, other batches (those of data seed 1).
    assert _same_weights(_step0(runs["mini-160k-data-seed1"]), _step0(runs["mini-160k"]))
    assert hashes["mini-160k-data-seed1"] == hashes["mini-160k-seed1"]


@pytest.mark.slow
def test_suite_batch_with_the_data_seed_reproduces_a_run(replicates, tiny_data, capsys):
    from suite.commands.batch import main as batch_main

    for name, seed in (("mini-160k-seed1", ["--seed", "1"]), ("mini-160k", [])):
        assert batch_main(["1", "--data", str(tiny_data), "--global-batch", "8", *seed]) == 0
        printed = capsys.readouterr().out
        assert f"hash {_hashes(replicates / name)[1]}" in printed  # update 2 = batch 1


@pytest.mark.slow
def test_verify_deep_recomputes_step0_of_another_init_seed(replicates, capsys):
    from suite.cli import main as suite_main

    run_dir = replicates / "mini-160k-weight-seed1"
    meta = json.loads((run_dir / "exports" / "step0" / "scaling_suite.json").read_text())
    assert meta["init_recipe"]["seed"] == 1
    assert suite_main(["verify", str(run_dir), "--deep", "--all"]) == 0
    assert "seed 1, pythia 160k" in capsys.readouterr().out
