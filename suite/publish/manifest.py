"""The run's manifest: every published revision with its step, tokens and file hashes.

Committed to `main` as JSON (complete, machine-readable) and CSV (one row per revision, for
people and spreadsheets). `suite verify` checks the store against it. Read and written
with `read_manifest(store, repo)` / `write_manifest(store, repo, manifest)`, on any `Store`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from suite.errors import SuiteError
from suite.publish.base import MANIFEST_CSV, MANIFEST_JSON, RevisionNotFound, Store
from suite.publish.metadata import (
    METADATA_FILE,
    FileDigest,
    check_folder_against_metadata,
    digest_folder,
    step_of_revision,
)

MANIFEST_FORMAT = 1
CSV_COLUMNS = (
    "revision",
    "step",
    "tokens_seen",
    "weights_sha256",
    "metadata_sha256",
    "files",
    "bytes",
)


def weights_fingerprint(files: dict[str, FileDigest]) -> str:
    """sha256 over the (path, sha256) of every safetensors file: equal iff the weights are."""
    lines = sorted(f"{p}\0{d.sha256}" for p, d in files.items() if p.endswith(".safetensors"))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass
class ManifestEntry:
    """One published revision."""

    revision: str  #: `step{N}`
    step: int  #: optimizer updates done
    tokens_seen: int  #: tokens consumed by those updates
    weights_sha256: str  #: `weights_fingerprint` of the revision's files
    files: dict[str, FileDigest]  #: every file of the revision, metadata file included

    @classmethod
    def from_export(cls, folder: Path) -> ManifestEntry:
        files = digest_folder(folder)  # hashed once: checked here, reused by the upload
        meta = check_folder_against_metadata(folder, files)
        return cls(
            meta["revision"], meta["step"], meta["tokens_seen"], weights_fingerprint(files), files
        )

    def to_json(self) -> dict:
        return {**asdict(self), "files": {p: asdict(d) for p, d in sorted(self.files.items())}}

    @classmethod
    def from_json(cls, data: dict) -> ManifestEntry:
        files = {p: FileDigest(**d) for p, d in data["files"].items()}
        return cls(
            data["revision"], data["step"], data["tokens_seen"], data["weights_sha256"], files
        )


@dataclass
class Manifest:
    repo: str  #: the repo this manifest describes
    entries: dict[str, ManifestEntry] = field(default_factory=dict)  #: revision -> entry
    final_revision: str | None = None  #: the revision `main` holds, once the run finished
    #: The store's head of `main` this manifest was read from or written as (not saved):
    #: the next write fails instead of overwriting a manifest someone else wrote since.
    base_commit: str | None = field(default=None, compare=False)

    def add(self, entry: ManifestEntry) -> None:
        self.entries[entry.revision] = entry

    def sorted_entries(self) -> list[ManifestEntry]:
        return sorted(self.entries.values(), key=lambda e: e.step)

    def to_json_bytes(self) -> bytes:
        data = {
            "format": MANIFEST_FORMAT,
            "repo": self.repo,
            "final_revision": self.final_revision,
            "revisions": [e.to_json() for e in self.sorted_entries()],
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    def to_csv_bytes(self) -> bytes:
        # The stdlib writer, not pandas: this runs in the trainer process, where importing
        # pandas would hold the GIL for ~0.5 s against the training loop.
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for e in self.sorted_entries():
            metadata = e.files.get(METADATA_FILE)
            writer.writerow(
                [
                    e.revision,
                    e.step,
                    e.tokens_seen,
                    e.weights_sha256,
                    metadata.sha256 if metadata else "",
                    len(e.files),
                    sum(d.size for d in e.files.values()),
                ]
            )
        return buffer.getvalue().encode()

    @classmethod
    def from_json_bytes(cls, data: bytes, origin: str) -> Manifest:
        try:
            doc = json.loads(data)
            entries = [ManifestEntry.from_json(e) for e in doc["revisions"]]
        except (ValueError, KeyError, TypeError) as err:
            raise SuiteError(f"{origin}: unreadable manifest ({err}); republish the run") from None
        for entry in entries:
            if step_of_revision(entry.revision) is None:
                raise SuiteError(f"{origin}: manifest lists a non-step revision {entry.revision!r}")
        return cls(doc["repo"], {e.revision: e for e in entries}, doc.get("final_revision"))


def read_manifest(store: Store, repo: str) -> Manifest | None:
    """The manifest on `main`, None when the repo has no manifest yet."""
    try:
        head = store.head(repo, "main")
    except RevisionNotFound:
        return None
    # Read at that commit (not "main"), so base_commit names exactly what was read.
    data = store.read_file(repo, head or "main", MANIFEST_JSON)
    if data is None:
        return None
    manifest = Manifest.from_json_bytes(data, f"{repo}@main/{MANIFEST_JSON}")
    manifest.base_commit = head
    return manifest


def write_manifest(store: Store, repo: str, manifest: Manifest) -> None:
    """Commit the manifest (JSON and CSV) to `main`.

    The write names the head the manifest was read from (`base_commit`), so it fails
    instead of overwriting a manifest someone else wrote since; on success `base_commit`
    becomes the new head.
    """
    manifest.base_commit = store.put_files(
        repo,
        "main",
        {MANIFEST_JSON: manifest.to_json_bytes(), MANIFEST_CSV: manifest.to_csv_bytes()},
        expected_head=manifest.base_commit,
    )
