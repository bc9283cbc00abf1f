"""Check what a store holds against the run's manifest (and the exports' metadata).

Finds the failures Pythia's users met on the Hub: revisions that are missing, files whose
content differs from what was published, branches whose metadata names another step, and
different steps with byte-identical weights. `deep` also re-hashes the downloaded bytes and
recomputes step0 from the init recipe its metadata records (`recompute_step0`): the audit
Pythia's users did by hand (pythia#135), bitwise.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from suite.publish.base import (
    MANIFEST_FILES,
    RemoteFile,
    RevisionNotFound,
    Store,
    compare_files,
)
from suite.publish.manifest import ManifestEntry, read_manifest
from suite.publish.metadata import METADATA_FILE, digest_folder, step_of_revision
from suite.publish.publisher import pending_entries, read_target
from suite.publish.store import require_store


@dataclass(frozen=True)
class Finding:
    revision: str  #: which revision (`main` for repo-wide checks)
    check: str  #: short name of the check
    ok: bool  #: passed
    detail: str = ""  #: what is wrong, or what was checked


@dataclass
class VerifyReport:
    repo: str
    store: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, revision: str, check: str, ok: bool, detail: str = "") -> None:
        self.findings.append(Finding(revision, check, ok, detail))


def verify_repo(store: Store, repo: str, deep: bool = False) -> VerifyReport:
    """Every check on `repo`; `deep` also downloads each revision and re-hashes its bytes."""
    report = VerifyReport(repo, store.spec)
    revisions = store.list_revisions(repo)
    manifest = read_manifest(store, repo)
    if manifest is None:
        report.add("main", "manifest", False, "no manifest on main: nothing was published")
        return report
    report.add("main", "manifest", True, f"{len(manifest.entries)} revisions listed")
    weights: dict[tuple, list[str]] = defaultdict(list)
    for entry in manifest.sorted_entries():
        if entry.revision not in revisions:
            report.add(
                entry.revision, "present", False, "revision listed in the manifest is missing"
            )
            continue
        remote = store.list_files(repo, entry.revision)
        problems = compare_files(entry.files, remote)
        report.add(
            entry.revision, "files", not problems, "; ".join(problems) or f"{len(remote)} files"
        )
        _check_metadata(store, repo, entry, report)
        if deep:
            # Re-hash the downloaded bytes: catches storage rot the listed oids cannot show.
            folder = store.download(repo, entry.revision)
            downloaded = {
                p: RemoteFile(p, d.size, sha256=d.sha256)
                for p, d in digest_folder(folder).items()
                if p in entry.files
            }
            problems = compare_files(entry.files, downloaded)
            report.add(entry.revision, "bytes", not problems, "; ".join(problems) or "re-hashed")
            if step_of_revision(entry.revision) == 0:
                problem, detail = recompute_step0(folder)
                report.add(entry.revision, "step0 recomputed", problem is None, problem or detail)
        key = tuple(
            sorted((p, f.identity) for p, f in remote.items() if p.endswith(".safetensors"))
        )
        if key:
            weights[key].append(entry.revision)
    for group in weights.values():
        if len(group) > 1:
            for revision in group:
                others = ", ".join(r for r in group if r != revision)
                report.add(
                    revision, "distinct weights", False, f"weights byte-identical to {others}"
                )
    for revision in revisions:
        if step_of_revision(revision) is not None and revision not in manifest.entries:
            report.add(revision, "listed", False, "step branch not in the manifest")
    if manifest.final_revision is not None:
        final = manifest.entries.get(manifest.final_revision)
        if final is not None:
            problems = compare_files(
                final.files, store.list_files(repo, "main"), keep=MANIFEST_FILES
            )
            report.add(
                "main",
                "final",
                not problems,
                "; ".join(problems) or f"main = {manifest.final_revision}",
            )
    return report


def recompute_step0(folder: Path) -> tuple[str | None, str]:
    """Compare a downloaded step0 with the initialization recomputed from its recipe.

    Returns (problem, detail): `problem` is one line when the weights differ, None when every
    parameter equals the recomputed one bitwise (in the published dtype). The recipe is the
    `init_recipe` of its `scaling_suite.json` (family, ladder row with its init scheme,
    padded vocab, seq len, seed, training precision); a step0 exported before the recipe
    was recorded cannot be recomputed, and says so without failing. One tensor at a time
    (host memory: the largest parameter twice), generated on the host as the trainer does
    (`suite.train.init`), so the result does not depend on the machine.
    """
    from suite.publish.metadata import read_metadata

    meta = read_metadata(folder)
    recipe = meta.get("init_recipe")
    if not recipe:
        return None, "not recomputed: this export records no init_recipe (written before it)"
    import torch
    from safetensors import safe_open

    from model_zoo.families import get_family
    from model_zoo.ladder import SizeSpec
    from suite.train.init import full_tensor, init_plan
    from suite.train.model import PRECISION_DTYPES, build_model

    spec = SizeSpec(**recipe["size"])
    family = get_family(recipe["family"])
    config = family.to_hf_config(spec, recipe["padded_vocab"], recipe["seq_len"])
    # Placeholders only (no memory); the plan resolves each parameter's rule and std.
    model = build_model(config, recipe["seed"], materialize=False)
    plan = init_plan(model, family.init_rules_for(spec))
    # What the trainer's module held at step0 (cast to the training precision), then what
    # the export saved (cast to the published dtype).
    trained = getattr(torch, PRECISION_DTYPES[recipe["precision"]])
    saved = getattr(torch, meta["dtype"])
    published: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            published |= dict.fromkeys(handle.keys(), path)
    saved_as = _saved_names(model, list(plan))
    missing = sorted(name for name in plan if saved_as[name] not in published)
    differ = []
    for name, init in plan.items():
        if name in missing:
            continue
        with safe_open(str(published[saved_as[name]]), framework="pt") as handle:
            actual = handle.get_tensor(saved_as[name])
        expected = full_tensor(init, recipe["seed"]).to(trained).to(saved)
        if actual.dtype != expected.dtype or not torch.equal(actual, expected):
            differ.append(name)
    what = f"seed {recipe['seed']}, {family.name} {spec.name}, init {spec.init_scheme}"
    if missing or differ:
        first = (missing or differ)[0]
        return (
            f"step0 is not the init recomputed from its recipe ({what}): "
            f"{len(differ)} of {len(plan)} parameters differ, {len(missing)} missing "
            f"(first: {first})",
            "",
        )
    return None, f"{len(plan)} parameters equal the recomputed init ({what})"


def _saved_names(model, names: list[str]) -> dict[str, str]:
    """The key each parameter has in a saved file: `save_pretrained` reverts transformers'
    load-time renamings (GPT-NeoX's `lm_head` is saved as `embed_out`, the name of Pythia's
    checkpoints), so ask the same function, with empty stand-ins matched by identity."""
    import torch
    from transformers.core_model_loading import revert_weight_conversion

    probes = {name: torch.empty(0, device="meta") for name in names}
    saved = revert_weight_conversion(model, dict(probes))
    key_of = {id(tensor): key for key, tensor in saved.items()}
    return {name: key_of.get(id(probe), name) for name, probe in probes.items()}


def _check_metadata(store: Store, repo: str, entry: ManifestEntry, report: VerifyReport) -> None:
    try:
        raw = store.read_file(repo, entry.revision, METADATA_FILE)
    except RevisionNotFound:
        raw = None
    if raw is None:
        report.add(entry.revision, "metadata", False, f"no {METADATA_FILE}")
        return
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        report.add(entry.revision, "metadata", False, f"{METADATA_FILE} is not JSON")
        return
    branch_step = step_of_revision(entry.revision)
    ok = meta.get("step") == branch_step and meta.get("revision") == entry.revision
    detail = (
        f"step {meta.get('step')}"
        if ok
        else (f"metadata says step {meta.get('step')}, branch is {entry.revision}")
    )
    report.add(entry.revision, "metadata step", ok, detail)


def render(report: VerifyReport, show_ok: bool = False) -> str:
    """A table of the findings (problems only, unless show_ok)."""
    from rich.console import Console
    from rich.table import Table

    summary = (
        f"{report.repo}: all {len(report.findings)} checks passed ({report.store})"
        if report.ok
        else f"{report.repo}: {len(report.problems)} problem(s)"
    )
    rows = [
        f
        for f in sorted(report.findings, key=lambda f: (_order(f.revision), f.check))
        if show_ok or not f.ok
    ]
    if not rows:  # nothing to show: no empty table, just the verdict
        return summary
    table = Table(title=f"verify {report.repo} ({report.store})")
    for column in ("revision", "check", "status", "detail"):
        table.add_column(column)
    for f in rows:
        table.add_row(f.revision, f.check, "ok" if f.ok else "PROBLEM", f.detail)
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text() + summary


def _order(revision: str) -> tuple[int, int]:
    step = step_of_revision(revision)
    return (0, step) if step is not None else (1, 0)


def verify_run_dir(run_dir: Path, store: Store | None = None, deep: bool = False) -> VerifyReport:
    """Verify the repo a run dir publishes to, and flag checkpoints still queued locally."""
    target = read_target(run_dir)
    report = verify_repo(store or require_store(target["store"]), target["repo"], deep=deep)
    for entry in pending_entries(run_dir):
        report.add(
            entry.revision,
            "published",
            False,
            f"still queued in {run_dir}; run `suite publish {run_dir}`",
        )
    return report
