"""The global order as a memory-mapped artifact (`data_order/order_store.py`).

Equality is exact (sample ids are integers): the artifact must hold the recomputed order
(`order.positions_to_samples`, the definition) for every seed and epoch it serves.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import data_order.order_cli as order_cli
import data_order.order_store as order_store
from data_order import DataFormatError, PackedDataset
from data_order.order import positions_to_samples
from data_order.verify import verify_dataset
from suite.commands import verify as verify_cmd
from suite.data_seed import build_orders

SEEDS = (1234, 7, 99)  # the dataset's own seed (tiny_data: 1234) and two data seeds
EPOCHS = 3


@pytest.fixture(scope="module")
def built(tiny_data, tmp_path_factory) -> Path:
    """A writable copy of `tiny_data` with the artifacts of SEEDS x EPOCHS built by reading."""
    path = tmp_path_factory.mktemp("order") / "tiny"
    # Without the artifacts other tests' runs built in the shared fixture (seeds, epochs).
    shutil.copytree(tiny_data, path, ignore=shutil.ignore_patterns("orders"))
    data = PackedDataset(path)
    for seed in SEEDS:
        data.reordered(seed).global_rows(0, EPOCHS * data.num_samples)
    return path


def _copy(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "copy")
    return tmp_path / "copy"


def _recomputed(data: PackedDataset, seed: int, stop: int) -> np.ndarray:
    return positions_to_samples(np.arange(stop), data.num_samples, seed)


def test_artifact_equals_recomputation_across_seeds_and_epochs(built):
    data = PackedDataset(built)
    n = data.num_samples
    for seed in SEEDS:
        view = data.reordered(seed)
        # Batches that straddle epoch boundaries read two artifacts at once.
        assert np.array_equal(view.global_rows(0, EPOCHS * n), _recomputed(data, seed, EPOCHS * n))
        assert np.array_equal(view.global_rows(n - 3, n + 5), _recomputed(data, seed, n + 5)[-8:])
        for epoch in range(EPOCHS):
            key = data.orders.key(seed, epoch)
            path, record = data.orders.path(key), data.orders.record(key)
            assert isinstance(data.orders.permutation(seed, epoch, view.fingerprint), np.memmap)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
            if path.name != "order.npy":
                assert record["fingerprint"] == view.fingerprint
    # Epoch 0 of the dataset's own seed is prepare's order.npy, recorded in metadata.json.
    meta = json.loads((built / "metadata.json").read_text())
    assert data.orders.path(data.orders.key(1234, 0)) == built / "order.npy"
    assert data.orders.record(data.orders.key(1234, 0))["sha256"] == meta["sha256"]["order.npy"]
    assert len(data.orders.artifacts()) == len(SEEDS) * EPOCHS


def test_opening_does_not_recompute(built, monkeypatch):
    data = PackedDataset(built)
    n = data.num_samples
    expected = {seed: _recomputed(data, seed, EPOCHS * n) for seed in SEEDS}

    def recompute(*args):
        raise AssertionError("the order was recomputed")

    # The store's only ways to the recomputation: building and the read-only fallback.
    monkeypatch.setattr(order_store, "compute_permutation", recompute)
    monkeypatch.setattr(order_store, "epoch_permutation", recompute)
    data = PackedDataset(built)
    for seed in SEEDS:
        assert np.array_equal(data.reordered(seed).global_rows(0, EPOCHS * n), expected[seed])
    assert data.orders.built == []


def _one_line_error(err: pytest.ExceptionInfo, folder: Path, path: Path, key: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert f"python -m data_order.order_cli {folder} {key} --rebuild" in message


def test_truncated_artifact_is_refused_with_the_fix(built, tmp_path):
    folder = _copy(built, tmp_path)
    artifact = folder / "orders" / "seed-7" / "epoch-00001.npy"
    artifact.write_bytes(artifact.read_bytes()[:-16])
    data = PackedDataset(folder).reordered(7)
    n = data.num_samples
    assert np.array_equal(data.global_rows(0, n), _recomputed(data, 7, n))  # epoch 0: intact
    with pytest.raises(DataFormatError) as err:
        data.global_rows(n, n + 1)
    _one_line_error(err, folder, artifact, "--seed 7 --epochs 2")
    # The fix it names works.
    assert order_cli.main([str(folder), "--seed", "7", "--epochs", "2", "--rebuild"]) == 0
    data = PackedDataset(folder).reordered(7)
    assert np.array_equal(data.global_rows(0, 2 * n), _recomputed(data, 7, 2 * n))
    assert verify_dataset(folder).ok


def test_corrupted_artifact_is_detected(built, tmp_path, capsys):
    folder = _copy(built, tmp_path)
    data = PackedDataset(folder)
    n = data.num_samples
    offset = (folder / "order.npy").stat().st_size - 8 * n  # .npy header, then int64 ids
    with open(folder / "order.npy", "r+b") as handle:  # a flipped high byte: id out of range
        handle.seek(offset + 8 * 5 + 6)
        handle.write(b"\x01")
    swapped = folder / "orders" / "seed-99" / "epoch-00002.npy"
    ids = np.load(swapped)
    ids[[0, 1]] = ids[[1, 0]]  # still a permutation: only the digest and recomputation see it
    with open(swapped, "r+b") as handle:
        handle.seek(offset)
        handle.write(ids.astype("<i8").tobytes())
    with pytest.raises(DataFormatError) as err:
        PackedDataset(folder).global_rows(0, n)
    _one_line_error(err, folder, folder / "order.npy", "--seed 1234 --epochs 1")
    assert "outside [0, " in str(err.value)

    assert verify_cmd.main(["--data", str(folder)]) == 1
    out = capsys.readouterr().out
    damaged = [line for line in out.splitlines() if line.startswith("DAMAGED")]
    assert len(damaged) == 2, out
    assert any(str(folder / "order.npy") in line for line in damaged)
    assert any(str(swapped) in line and "--seed 99 --epochs 3" in line for line in damaged)


def test_suite_verify_data_checks_the_artifacts(built, capsys):
    assert verify_cmd.main(["--data", str(built)]) == 0
    out = capsys.readouterr().out
    assert f"{len(SEEDS) * EPOCHS} order artifact(s) equal their recomputation" in out


def _race(folder: str, barrier) -> int:
    data = PackedDataset(Path(folder)).reordered(5)
    barrier.wait()  # every process asks for the missing artifacts at once
    data.build_order(2)
    return len(data.orders.built)


def test_racing_builders_produce_one_good_artifact(built, tmp_path):
    folder = _copy(built, tmp_path)
    context = multiprocessing.get_context("fork")
    processes = 3
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        builds = pool.starmap(_race, [(str(folder), barrier)] * processes)
    assert sum(builds) == 2  # each of the two epochs built by exactly one process
    leftovers = [p.name for p in (folder / "orders" / "seed-5").iterdir()]
    assert sorted(leftovers) == [f"epoch-0000{e}.{x}" for e in (0, 1) for x in ("json", "npy")]
    data = PackedDataset(folder).reordered(5)
    n = data.num_samples
    assert np.array_equal(data.global_rows(0, 2 * n), _recomputed(data, 5, 2 * n))
    assert verify_dataset(folder).ok


def test_dataset_without_artifacts_still_loads(tiny_data, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "old"
    shutil.copytree(tiny_data, folder, ignore=shutil.ignore_patterns("order.npy", "orders"))
    recorded = json.loads((folder / "metadata.json").read_text())["sha256"]["order.npy"]
    data = PackedDataset(folder)
    n = data.num_samples
    assert np.array_equal(data.global_rows(0, n), _recomputed(data, 1234, n))
    # Built on demand: the same bytes prepare wrote, so its recorded sha256 holds again.
    assert hashlib.sha256((folder / "order.npy").read_bytes()).hexdigest() == recorded

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(order_store.OrderStore, "build", read_only)
    view = PackedDataset(folder).reordered(8)
    assert np.array_equal(view.global_rows(0, 3 * n), _recomputed(data, 8, 3 * n))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "recomputing the order" in warnings[0]
    assert not (folder / "orders" / "seed-8").exists()


def test_build_orders_covers_the_suite(built, tmp_path):
    folder = _copy(built, tmp_path)
    n = PackedDataset(folder).num_samples
    cfg = SimpleNamespace(
        train_steps=3, global_batch=n // 2 + 1, reference_seed=1, run_seeds=lambda: [1, 2, 3]
    )
    cfg.data_seed_of = lambda seed: seed
    paths = build_orders(cfg, [folder])
    # 3 x (n//2 + 1) samples reach epoch 1; the reference seed reads the dataset's own order.
    expected = {(seed, epoch) for seed in (1234, 2, 3) for epoch in (0, 1)}
    data = PackedDataset(folder)
    assert {(k.seed, k.epoch) for k in data.orders.artifacts()} >= expected
    assert len(paths) == len(expected)
