"""MMapIndexedDataset round trips against an independent reader/writer, and bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from data_helpers import spec_read, spec_write

from data_order.errors import DataFormatError
from data_order.indexed import IndexedReader, write_indexed

ITEMS = [[1, 2, 3], [65535, 0], [7] * 10, [42]]


def test_what_we_write_the_spec_reader_reads(tmp_path):
    write_indexed(tmp_path / "x", [np.array(i) for i in ITEMS], np.uint16)
    code, items, doc_idx = spec_read(tmp_path / "x")
    assert code == 8 and items == ITEMS and doc_idx == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "code,dtype", [(8, np.uint16), (4, np.int32), (5, np.int64), (1, np.uint8)]
)
def test_what_the_spec_writer_writes_we_read(tmp_path, code, dtype):
    items = [[v % 200 for v in item] for item in ITEMS]
    spec_write(tmp_path / "y", items, code)
    reader = IndexedReader(tmp_path / "y")
    assert reader.dtype == np.dtype(dtype) and len(reader) == len(items)
    assert [reader[i].tolist() for i in range(len(reader))] == items
    assert reader.num_tokens == sum(map(len, items))


def test_int32_round_trip_for_large_vocabularies(tmp_path):
    big = [[70000, 1, 2**31 - 1]]
    write_indexed(tmp_path / "z", [np.array(i) for i in big], np.int32)
    assert spec_read(tmp_path / "z")[:2] == (4, big)


def test_byte_concatenable_shards_read_as_one_bin(tmp_path):
    spec_write(tmp_path / "s", ITEMS)
    data = (tmp_path / "s.bin").read_bytes()
    cuts = [0, 3, 9, len(data)]  # odd cut: inside a token and inside an item
    shards = []
    for i in range(3):
        shard = tmp_path / f"part{i}.bin"
        shard.write_bytes(data[cuts[i] : cuts[i + 1]])
        shards.append(shard)
    reader = IndexedReader(tmp_path / "s", shards)
    assert [reader[i].tolist() for i in range(len(reader))] == ITEMS


def _corrupt(tmp_path, patch):
    spec_write(tmp_path / "c", ITEMS)
    raw = bytearray((tmp_path / "c.idx").read_bytes())
    patch(raw)
    (tmp_path / "c.idx").write_bytes(bytes(raw))
    return tmp_path / "c"


@pytest.mark.parametrize(
    "patch,message",
    [
        (lambda raw: raw.__setitem__(slice(0, 9), b"NOTMAGIC!"), "magic"),
        (lambda raw: raw.__setitem__(slice(9, 17), struct.pack("<Q", 2)), "version 2"),
        (lambda raw: raw.__setitem__(17, 9), "dtype code 9"),
        (lambda raw: raw.__setitem__(17, 6), "cannot hold token ids"),
        (lambda raw: raw.__setitem__(slice(18, 26), struct.pack("<Q", 5)), "truncated or corrupt"),
        (lambda raw: raw.__delitem__(slice(-8, None)), "truncated or corrupt"),
        (lambda raw: raw.__delitem__(slice(20, None)), "shorter than"),
        # sizes[0] = 4 instead of 3: the pointers no longer follow the sizes.
        (
            lambda raw: raw.__setitem__(slice(34, 38), struct.pack("<i", 4)),
            "does not belong|inconsistent|truncated",
        ),
    ],
)
def test_bad_index_is_a_clear_error(tmp_path, patch, message):
    with pytest.raises(DataFormatError, match=message):
        IndexedReader(_corrupt(tmp_path, patch))


def test_truncated_bin_is_a_clear_error(tmp_path):
    spec_write(tmp_path / "t", ITEMS)
    data = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[:-2])
    with pytest.raises(DataFormatError, match="truncated"):
        IndexedReader(tmp_path / "t")
    (tmp_path / "t.bin").write_bytes(data + b"\0\0")
    with pytest.raises(DataFormatError, match="do not belong together"):
        IndexedReader(tmp_path / "t")


def test_missing_files_are_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match="missing"):
        IndexedReader(tmp_path / "nothing")


def test_writer_rejects_ids_that_do_not_fit(tmp_path):
    with pytest.raises(DataFormatError, match="out of range"):
        write_indexed(tmp_path / "o", [np.array([70000])], np.uint16)
    assert not list(tmp_path.iterdir())  # no half-written .bin left behind


def test_large_index_checks_only_its_ends(tmp_path, monkeypatch):
    # Above FULL_CHECK_MAX_ITEMS (Pythia: 146M items) opening must not read the whole index.
    import data_order.indexed as indexed

    monkeypatch.setattr(indexed, "FULL_CHECK_MAX_ITEMS", 0)
    spec_write(tmp_path / "big", ITEMS)
    assert [IndexedReader(tmp_path / "big")[i].tolist() for i in range(len(ITEMS))] == ITEMS
    raw = bytearray((tmp_path / "big.idx").read_bytes())
    pointers_at = 34 + 4 * len(ITEMS)
    raw[pointers_at : pointers_at + 8] = struct.pack("<q", 2)
    (tmp_path / "big.idx").write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="first pointer is 2"):
        IndexedReader(tmp_path / "big")
