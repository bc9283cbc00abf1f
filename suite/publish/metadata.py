"""The metadata file of an exported checkpoint (`scaling_suite.json`) and file hashing."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from suite.errors import ConfigError, SuiteError

#: Name of the metadata file inside every exported and published revision.
METADATA_FILE = "scaling_suite.json"
#: The revision's model card (`suite.publish.model_card`). Documentation derived from the
#: checkpoint, rewritten when evaluations arrive (`suite cards`): not among the files
#: `scaling_suite.json` fixes, but listed (and so verified) in the run's manifest.
CARD_FILE = "README.md"
#: Bumped when the layout of the metadata file changes incompatibly.
METADATA_FORMAT = 1
_REVISION = re.compile(r"^step(0|[1-9][0-9]*)$")
_CHUNK = 1 << 20


def revision_for_step(step: int) -> str:
    """Pythia's branch name for a checkpoint: `step{N}`."""
    return f"step{step}"


def step_of_revision(revision: str) -> int | None:
    """N for a `step{N}` revision name, None for anything else (e.g. `main`)."""
    match = _REVISION.match(revision)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class FileDigest:
    """Content identity of one file: sha256 and the git blob sha1 the Hub reports as `oid`."""

    sha256: str  #: hex sha256 of the bytes
    git_sha1: str  #: hex sha1 of "blob {size}\\0" + bytes (git's blob id)
    size: int  #: bytes


def digest_file(path: Path) -> FileDigest:
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git_sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            git_sha1.update(chunk)
    return FileDigest(sha256.hexdigest(), git_sha1.hexdigest(), size)


def digest_folder(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, FileDigest]:
    """Digests of every file under `folder`, keyed by POSIX path relative to it."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in exclude:
            out[rel] = digest_file(path)
    return out


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus `+g<commit>` when the code runs from a git checkout with commits."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        base = version("scaling-suite")
    except PackageNotFoundError:  # running from a source tree that is not pip-installed
        base = _version_from_pyproject() or "0+unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{base}+g{commit}" if commit else base


def _version_from_pyproject() -> str | None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        return None
    match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    return match.group(1) if match else None


@dataclass(frozen=True)
class CheckpointMeta:
    """What the trainer knows about a checkpoint when it exports it."""

    run_name: str
    """Name of the run (e.g. `pythia-70m-deduped`); also the default Hub repo name."""
    step: int
    """Optimizer updates done: the checkpoint has seen batches 0 … step-1 (Contract 1)."""
    tokens_seen: int
    """Tokens consumed by those updates (step × global batch × seq_len for Pythia)."""
    data_fingerprint: str
    """Fingerprint of the dataset and its order (from data_order)."""
    batches_hash: str
    """Running hash over the batches consumed so far, as computed by the trainer."""
    config_hash: str
    """Hash of the run's resolved config."""
    total_steps: int
    """Planned number of updates of the run: the checkpoint at this step becomes `main`."""
    code_version: str = field(default_factory=code_version)
    """Package version and git commit of the code that produced the checkpoint."""
    init_recipe: dict | None = None
    """What step0 is a pure function of, so `suite verify --deep` can recompute it:
    `family`, `size` (the ladder row as a dict, with its `init_scheme`), `padded_vocab`,
    `seq_len`, `seed` (the run's `init_seed`) and the training `precision`
    (`suite.train.factory.init_recipe`).
    None in files written before it was recorded: they stay readable, and `verify --deep`
    says it cannot recompute them."""

    def __post_init__(self) -> None:
        if not self.run_name or "/" in self.run_name:
            raise ConfigError("run_name", self.run_name, "use a non-empty name without '/'")
        if not isinstance(self.step, int) or self.step < 0:
            raise ConfigError("step", self.step, "use the number of updates done (>= 0)")
        if not isinstance(self.total_steps, int) or self.total_steps < self.step:
            raise ConfigError("total_steps", self.total_steps, f"use a value >= step ({self.step})")
        if not isinstance(self.tokens_seen, int) or self.tokens_seen < 0:
            raise ConfigError("tokens_seen", self.tokens_seen, "use a count >= 0")
        if self.step == 0 and self.tokens_seen != 0:
            raise ConfigError("tokens_seen", self.tokens_seen, "step 0 has seen no tokens: use 0")
        for name in ("data_fingerprint", "batches_hash", "config_hash"):
            if not getattr(self, name):
                raise ConfigError(name, getattr(self, name), "pass the value the trainer computed")

    @property
    def revision(self) -> str:
        return revision_for_step(self.step)

    @property
    def is_final(self) -> bool:
        return self.step == self.total_steps


def metadata_document(meta: CheckpointMeta, dtype: str, files: dict[str, FileDigest]) -> dict:
    """The JSON content of `scaling_suite.json`."""
    return {
        "format": METADATA_FORMAT,
        **asdict(meta),
        "revision": meta.revision,
        "dtype": dtype,
        "files": {path: asdict(d) for path, d in sorted(files.items())},
    }


def read_metadata(folder: Path) -> dict:
    path = folder / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(
            f"{path}: no {METADATA_FILE}; this is not a checkpoint exported by suite "
            "(export it with suite.publish.export_checkpoint)"
        ) from None
    except json.JSONDecodeError as err:
        raise SuiteError(f"{path}: unreadable metadata ({err}); re-export the checkpoint") from None


def check_folder_against_metadata(
    folder: Path, digests: dict[str, FileDigest] | None = None
) -> dict:
    """Read the metadata and check that every file it lists has its recorded sha256.

    `digests`: the folder's `digest_folder`, when the caller already hashed it.
    """
    meta = read_metadata(folder)
    if digests is None:
        digests = digest_folder(folder)
    actual = {path: d for path, d in digests.items() if path not in (METADATA_FILE, CARD_FILE)}
    expected = {path: FileDigest(**d) for path, d in meta["files"].items()}
    if actual != expected:
        bad = sorted(
            set(actual) ^ set(expected) | {p for p in actual if actual[p] != expected.get(p)}
        )
        raise SuiteError(
            f"{folder}: files differ from {METADATA_FILE} ({', '.join(bad)}); the export is "
            "damaged: re-export this step"
        )
    return meta
