"""`suite verify --deep` recomputes step0 from the recipe its metadata records (issue 16).

A tiny run is trained with the real `suite train` (DeepSpeed on CPU) and published to a
local store; `verify --deep` must pass on it. Then step0 is re-published with the weights
of another seed's initialization — consistently (hashes, manifest and metadata agree with
the new bytes, so only the recomputation can tell) — and `verify --deep` must fail, with
one line naming the recipe, while a shallow `verify` still passes (it never imports torch).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dist_helpers import run_train

from suite.cli import main as suite_main

pytestmark = pytest.mark.slow

STEPS = 2


@pytest.fixture(scope="module")
def published(tiny_data, tmp_path_factory) -> Path:
    """A run dir whose 3 checkpoints (step0, 1, 2) are published to a local store."""
    root = tmp_path_factory.mktemp("verify-step0")
    result = run_train(
        [
            "size=160k",
            "dataset=stdlib",
            f"datasets.stdlib.path={tiny_data}",
            f"root={root}",
            f"publish.store=local:{root}/store",
            "publish.keep_exports=true",
            "seq_len=32",
            "global_batch=8",
            "default_resources.micro_batch=8",
            f"train_steps={STEPS}",
            "checkpoints.log_until=1",
            f"checkpoints.every={STEPS}",
            f"checkpoints.resume_every={STEPS}",
            "eval.every=0",
        ]  # fmt: skip
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root / "mini" / "runs" / "mini-160k"


def test_step0_records_its_init_recipe(published):
    meta = json.loads((published / "exports" / "step0" / "scaling_suite.json").read_text())
    recipe = meta["init_recipe"]
    assert recipe["family"] == "pythia" and recipe["seed"] == 1234
    assert recipe["size"]["name"] == "160k" and recipe["size"]["init_scheme"] == "small_wang"
    assert recipe["precision"] == "fp32" and recipe["seq_len"] == 32


def test_verify_deep_recomputes_step0_and_catches_another_seed(published, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from model_zoo.families import get_family
    from model_zoo.ladder import SizeSpec
    from suite.publish.manifest import ManifestEntry, read_manifest, write_manifest
    from suite.publish.metadata import CARD_FILE, METADATA_FILE, digest_folder
    from suite.publish.publisher import read_target
    from suite.publish.store import require_store
    from suite.publish.verify import verify_run_dir
    from suite.train.init import full_tensor, init_plan
    from suite.train.model import build_model

    assert suite_main(["verify", str(published), "--deep", "--all"]) == 0
    out = capsys.readouterr().out
    assert "step0 recomputed" in out and "equal the recomputed init" in out

    # step0 with the weights of seed 1 (everything else as published).
    folder = tmp_path / "step0"
    folder.mkdir()
    source = published / "exports" / "step0"
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    meta = json.loads((folder / METADATA_FILE).read_text())
    recipe = meta["init_recipe"]
    spec, family = SizeSpec(**recipe["size"]), get_family(recipe["family"])
    config = family.to_hf_config(spec, recipe["padded_vocab"], recipe["seq_len"])
    plan = init_plan(build_model(config, 1, materialize=False), family.init_rules_for(spec))
    weights = load_file(folder / "model.safetensors")
    other = {
        name: full_tensor(plan[name], 1).to(tensor.dtype) if name in plan else tensor
        for name, tensor in weights.items()
    }
    save_file(other, folder / "model.safetensors", metadata={"format": "pt"})
    # Re-publish it consistently: the metadata's file list, the revision and the manifest
    # all describe the new bytes, so every check but the recomputation passes.
    meta["files"] = {
        p: {"sha256": d.sha256, "git_sha1": d.git_sha1, "size": d.size}
        for p, d in digest_folder(folder, exclude=(METADATA_FILE, CARD_FILE)).items()
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    target = read_target(published)
    store = require_store(target["store"])
    entry = ManifestEntry.from_export(folder)
    store.publish_verified(target["repo"], "step0", folder, digests=entry.files)
    manifest = read_manifest(store, target["repo"])
    manifest.add(entry)
    write_manifest(store, target["repo"], manifest)

    assert suite_main(["verify", str(published)]) == 0  # shallow: no recomputation
    capsys.readouterr()
    assert suite_main(["verify", str(published), "--deep"]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if "PROBLEM" in line]
    assert len(problems) == 1, out
    assert "step0 recomputed" in problems[0]
    (problem,) = verify_run_dir(published, deep=True).problems  # the full line, unwrapped
    assert "\n" not in problem.detail
    assert problem.detail.startswith(
        "step0 is not the init recomputed from its recipe (seed 1234, pythia 160k, init small_wang)"
    )
    assert " parameters differ, 0 missing" in problem.detail
