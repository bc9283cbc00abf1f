"""The global order as memory-mapped artifacts: built once, checked, opened by every rank.

Recomputing an epoch's order (`order.compute_permutation`) at the Pile's scale (146M
samples) costs ~40 s and ~3.5 GB per process, on every start of every rank. Instead each
(seed, epoch) order is an `.npy` file of int64 sample ids, opened with `mmap_mode="r"`: the
open reads a header, a batch reads only the pages it touches, and every rank of a node
shares them through the page cache.

Artifacts of a dataset folder:

* `order.npy` — epoch 0 in the dataset's own seed, written by `prepare` (as before this
  module: existing datasets already have it); its size and sha256 are in `metadata.json`.
* `orders/seed-<seed>/epoch-<e>.npy` — any other (seed, epoch), built on first use (a data
  seed's replicate, a later epoch) or ahead of time (`build_orders`, the command below),
  with a sidecar `epoch-<e>.json` recording its sha256, size, the fingerprint of the order
  it holds and how it was checked. The sidecar is written last: no sidecar, no artifact.

Every artifact is compared with the recomputation when built (read back from disk) and
written atomically under a per-artifact lock, so ranks racing to build it produce one file
and the losers open it. Opening checks the header and the size (a truncated file), every
read checks the ids it returns lie in [0, N) (most damage), `suite verify --data` hashes
each artifact and compares it with its recomputation. The digests sit beside the
fingerprint, not in it: the fingerprint names the order by its definition (inputs,
seq_len, seed), the artifact is a cache of that definition.

A folder the process cannot write (read-only storage) falls back to the recomputation, with
one warning. Rebuild or build ahead:
`python -m data_order.order_cli DATASET [--seed S ...] [--epochs E] [--rebuild]`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_order.atomic import file_lock, remove_leftovers, write_json, write_npy
from data_order.errors import DataError, DataFormatError
from data_order.order import compute_permutation, epoch_permutation

#: Epoch 0 in the dataset's own seed, written by `prepare`.
ORDER_FILE = "order.npy"
#: Folder of every other (seed, epoch) artifact.
ORDERS_DIR = "orders"
#: Elements compared per step when checking an artifact against its recomputation.
CHUNK = 1 << 22
#: errno values that stop a build but not a run: a folder this process may not write, a
#: filesystem without `flock` (some NFS mounts). The order is then recomputed, with a warning.
CANNOT_BUILD = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOLCK, errno.EOPNOTSUPP})


class _Damaged(Exception):
    """What is wrong with an artifact; turned into a `DataFormatError` naming file and fix."""


@dataclass(frozen=True)
class OrderKey:
    """One artifact: the order of `epoch` drawn with `seed` over `num_samples` samples."""

    num_samples: int
    seed: int
    epoch: int


def rebuild_command(root: Path, key: OrderKey) -> str:
    return (
        f"python -m data_order.order_cli {root} --seed {key.seed} --epochs {key.epoch + 1} "
        "--rebuild"
    )


def write_order(path: Path, key: OrderKey) -> str:
    """Recompute `key`'s order, write it to `path` atomically, read it back from disk and
    compare; returns the file's sha256. A mismatch removes the file and raises."""
    perm = compute_permutation(key.num_samples, key.seed, key.epoch)
    write_npy(path, perm)
    return check_written_order(path, perm)


def check_written_order(path: Path, order: np.ndarray) -> str:
    """The check of a freshly written artifact: read back from disk, equal to `order` (the
    recomputation); returns its sha256. A mismatch removes the file and raises."""
    try:
        return _check_against(path, order)
    except _Damaged as err:
        path.unlink(missing_ok=True)
        raise DataError(
            f"{path}: the order read back after writing it {err}; the disk or filesystem "
            "corrupted the write — check it and retry"
        ) from None


def _check_against(path: Path, expected: np.ndarray) -> str:
    """sha256 of `path` after checking that its ids equal `expected` (chunked: bounded memory)."""
    written = _load(path, OrderKey(len(expected), 0, 0), None)
    for start in range(0, len(expected), CHUNK):
        stop = start + CHUNK
        if not np.array_equal(written[start:stop], expected[start:stop]):
            raise _Damaged(f"differs from its recomputation (from position {start})")
    del written
    return _sha256(path)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _load(path: Path, key: OrderKey, size: int | None) -> np.ndarray:
    """Memory-map `path`; its shape, dtype and (when recorded) size checked. Reads the header
    only: the cost of an open does not grow with the number of samples."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        # A truncated file fails here ("mmap length is greater than file size").
        raise _Damaged(f"unreadable ({str(err).splitlines()[0]})") from None
    if array.ndim != 1 or array.dtype.kind not in "iu" or len(array) != key.num_samples:
        raise _Damaged(f"holds {array.dtype}{list(array.shape)}, expected int64[{key.num_samples}]")
    if size is not None and path.stat().st_size != size:
        raise _Damaged(f"{path.stat().st_size} bytes, its record says {size}")
    return array


class OrderStore:
    """The order artifacts of one prepared dataset folder (shared by its `reordered` views).

    `metadata` is the folder's `metadata.json`: its `seed` names the order `order.npy`
    holds, its `sha256`/`files` record that file's digest and size.
    """

    def __init__(self, root: Path, metadata: dict, num_samples: int):
        self.root = root
        self.metadata = metadata
        self.num_samples = num_samples
        self.seed = int(metadata["seed"])
        self._open: dict[OrderKey, np.ndarray] = {}
        self._warned = False
        #: Artifacts built by this process (the tests count them; a log would name them).
        self.built: list[Path] = []

    # --- where and what ---------------------------------------------------------------------

    def key(self, seed: int, epoch: int) -> OrderKey:
        return OrderKey(self.num_samples, int(seed), int(epoch))

    def path(self, key: OrderKey) -> Path:
        if key.seed == self.seed and key.epoch == 0:
            return self.root / ORDER_FILE
        return self.root / ORDERS_DIR / f"seed-{key.seed}" / f"epoch-{key.epoch:05d}.npy"

    def sidecar(self, key: OrderKey) -> Path | None:
        path = self.path(key)
        return None if path.name == ORDER_FILE else path.with_suffix(".json")

    def record(self, key: OrderKey) -> dict | None:
        """What the artifact was recorded as when built (sha256, bytes); None: not built.
        `order.npy`'s record is `metadata.json` (a folder from before digests: size only)."""
        sidecar = self.sidecar(key)
        if sidecar is None:
            if not self.path(key).is_file():
                return None
            size = (self.metadata.get("files") or {}).get(ORDER_FILE)
            return {"sha256": (self.metadata.get("sha256") or {}).get(ORDER_FILE), "bytes": size}
        try:
            record = json.loads(sidecar.read_text())
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise self._error(key, f"its record {sidecar.name} is not JSON ({err})") from None
        wanted = {"num_samples": key.num_samples, "seed": key.seed, "epoch": key.epoch}
        if {k: record.get(k) for k in wanted} != wanted:
            raise self._error(key, f"its record {sidecar.name} describes {record}, not {wanted}")
        return record

    def artifacts(self) -> list[OrderKey]:
        """Every artifact recorded in this folder (built ones; leftovers without a record not)."""
        found = [self.key(self.seed, 0)] if (self.root / ORDER_FILE).is_file() else []
        for sidecar in sorted((self.root / ORDERS_DIR).glob("seed-*/epoch-*.json")):
            seed = int(sidecar.parent.name.removeprefix("seed-"))
            found.append(self.key(seed, int(sidecar.stem.removeprefix("epoch-"))))
        return found

    def _error(self, key: OrderKey, why: str) -> DataFormatError:
        return DataFormatError(
            f"{self.path(key)}: {why}; the order artifact is damaged — rebuild it with "
            f"`{rebuild_command(self.root, key)}`"
        )

    # --- reading ----------------------------------------------------------------------------

    def permutation(self, seed: int, epoch: int, fingerprint: str) -> np.ndarray:
        """Sample ids of `epoch` in `seed`'s order: the memory-mapped artifact, built (and
        checked) first if absent. `fingerprint` names that order in the record."""
        key = self.key(seed, epoch)
        if key in self._open:
            return self._open[key]
        order = self._open_or_build(key, fingerprint)
        if isinstance(order, np.memmap):  # a recomputed fallback stays in epoch_permutation's
            self._open[key] = order  # bounded cache: many epochs must not pile up in memory
        return order

    def _open_or_build(self, key: OrderKey, fingerprint: str) -> np.ndarray:
        record = self.record(key)
        if record is None:
            try:
                record = self.build(key, fingerprint)
            except OSError as err:
                if err.errno not in CANNOT_BUILD:
                    raise
                return self._fallback(key, err)
        try:
            return _load(self.path(key), key, record.get("bytes"))
        except _Damaged as err:
            raise self._error(key, str(err)) from None

    def _fallback(self, key: OrderKey, err: OSError) -> np.ndarray:
        if not self._warned:
            self._warned = True
            print(
                f"data_order: warning: cannot build the order artifacts of {self.root} "
                f"({err.strerror}); recomputing the order in every process instead (slow at "
                f"scale) — build them where writable: `{rebuild_command(self.root, key)}`",
                file=sys.stderr,
            )
        return epoch_permutation(key.num_samples, key.seed, key.epoch)

    def check_ids(self, key: OrderKey, ids: np.ndarray) -> None:
        """Ids read from an artifact lie in [0, N): a flipped high byte shows here, in any
        batch, at the cost of one min/max over the batch's ids."""
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= key.num_samples):
            bad = int(ids.max()) if int(ids.max()) >= key.num_samples else int(ids.min())
            raise self._error(key, f"holds sample id {bad}, outside [0, {key.num_samples})")

    # --- building ---------------------------------------------------------------------------

    def build(self, key: OrderKey, fingerprint: str, rebuild: bool = False) -> dict:
        """Write `key`'s artifact once: under a lock per artifact, the first process builds,
        checks and records it; the others wait and find it built. Returns its record."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        (self.root / ORDERS_DIR).mkdir(exist_ok=True)  # the locks' folder
        with file_lock(self.root / ORDERS_DIR / f".lock-{key.seed}-{key.epoch}"):
            record = None if rebuild else self.record(key)
            if record is not None:
                return record  # another process built it while this one waited
            remove_leftovers(path)  # a killed builder's temporary file
            sidecar = self.sidecar(key)
            if sidecar is not None:
                sidecar.unlink(missing_ok=True)  # no record while the file changes
            digest = write_order(path, key)
            self.built.append(path)
            if sidecar is None:
                return self._check_prepared_digest(key, digest)
            record = {
                "kind": "order",
                "fingerprint": fingerprint,
                "num_samples": key.num_samples,
                "seed": key.seed,
                "epoch": key.epoch,
                "dtype": "<i8",
                "bytes": path.stat().st_size,
                "sha256": digest,
                "definition": self.metadata.get("order"),
                "checked": "read back from disk and compared with the recomputation",
            }
            write_json(sidecar, record)
            return record

    def _check_prepared_digest(self, key: OrderKey, digest: str) -> dict:
        """`order.npy` rebuilt: same bytes as `prepare` wrote, or `metadata.json` is stale."""
        record = self.record(key) or {}
        if record.get("sha256") not in (None, digest):
            raise DataError(
                f"{self.path(key)}: rebuilt with the recomputed order, but its sha256 differs "
                "from metadata.json's (another numpy wrote another .npy header?); re-run "
                "`suite prepare` with --overwrite to record it again"
            )
        return record

    def ensure(self, seeds: list[int], epochs: int, fingerprints: dict[int, str]) -> list[Path]:
        """Build (once) the artifacts of epochs `[0, epochs)` for each seed; returns them."""
        out = []
        for seed in seeds:
            for epoch in range(epochs):
                key = self.key(seed, epoch)
                if self.record(key) is None:
                    self.build(key, fingerprints[seed])
                out.append(self.path(key))
        return out

    # --- verification -----------------------------------------------------------------------

    def verify(self, key: OrderKey) -> str | None:
        """Problem with `key`'s artifact (None: intact): readable, its recorded size and
        sha256, and every id equal to the recomputation."""
        path = self.path(key)
        try:
            record = self.record(key)
            if record is None:
                return None
            _load(path, key, record.get("bytes"))
            if record.get("sha256") and _sha256(path) != record["sha256"]:
                raise _Damaged("content differs from the sha256 recorded when it was built")
            _check_against(path, compute_permutation(key.num_samples, key.seed, key.epoch))
        except _Damaged as err:
            return str(self._error(key, str(err)))
        except DataError as err:  # an unreadable record
            return str(err)
        return None
