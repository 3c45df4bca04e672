"""The chunked, cached .idx parser (Datasets/rec_index.py) and the float32 header boundaries of large .rec sets.

References are independent: a per-line Python reading of the index written in this file, and sets whose true image
and class counts are known by construction.
"""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from _datasets_fixtures import MAGIC, jpeg_bytes, write_rec

import Datasets.rec_index as rec_index
import Datasets.train_sets.rec as rec_mod
from Datasets import DataFormatError, RecordIOReader
from Datasets.train_sets import RecordIOTrainDataset


def _reference(text: str) -> dict[int, int]:
    """key -> offset of its first line, read line by line."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        if line.strip():
            k, o = line.split()
            out.setdefault(int(k), int(o))
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(rec_index, "_CHUNK", 64)  # many chunk boundaries inside a small file
    monkeypatch.setattr(rec_index, "CACHE_MIN_BYTES", 0)  # every index goes through the cache file


@pytest.mark.parametrize("cached", [False, True])
def test_parse_matches_line_by_line_reading(tmp_path, monkeypatch, cached):
    monkeypatch.setattr(rec_index, "_CHUNK", 64)
    monkeypatch.setattr(rec_index, "CACHE_MIN_BYTES", 0 if cached else 1 << 40)
    rng = np.random.default_rng(0)
    keys = rng.permutation(300)[:250].tolist() + [7, 7]  # out of order, gaps, a key listed twice
    lines = [f"{k}\t{int(rng.integers(0, 10_000))}" for k in keys]
    lines.insert(40, "")  # a blank line
    text = "\n".join(lines)  # and no final newline
    (tmp_path / "train.idx").write_text(text)
    (tmp_path / "train.rec").write_bytes(b"\0" * 10_008)
    idx = rec_index.RecIndex(tmp_path / "train.idx", tmp_path / "train.rec", 10_008)
    ref = _reference(text)
    assert np.asarray(idx.keys).tolist() == sorted(ref)
    assert np.asarray(idx.offsets).tolist() == [ref[k] for k in sorted(ref)]
    for k in range(-2, 302):
        row = idx.row_of(k)
        assert (row >= 0) == (k in ref) and (row < 0 or int(idx.offsets[row]) == ref[k])
    assert idx.count_in(10, 50) == sum(10 <= k < 50 for k in ref)
    assert (idx.cache_path is not None) == cached


def test_cache_is_reused_and_replaced_when_the_index_changes(tmp_path, small_chunks, monkeypatch):
    write_rec(tmp_path, [(i, i % 3, jpeg_bytes(i, (16, 16))) for i in range(20)])
    first = RecordIOReader(tmp_path / "train.rec")
    cache = first.index.cache_path
    assert cache and os.path.dirname(cache) == str(tmp_path) and os.path.basename(cache).startswith("train.idx.")
    parsed = []
    real = rec_index._ChunkParser.parse
    monkeypatch.setattr(rec_index._ChunkParser, "parse", lambda self, t: parsed.append(1) or real(self, t))
    again = RecordIOReader(tmp_path / "train.rec")
    assert again.index.cache_path == cache and not parsed  # mapped, not parsed again
    assert again.read(5) == first.read(5)
    text = (tmp_path / "train.idx").read_text().splitlines()
    (tmp_path / "train.idx").write_text("\n".join(text[:10]) + "\n")  # the index is rewritten: a new parse
    os.utime(tmp_path / "train.idx", ns=(1, 1))
    third = RecordIOReader(tmp_path / "train.rec")
    assert parsed and len(third) == 10 and third.index.cache_path != cache
    assert sorted(p.name for p in tmp_path.glob("train.idx.*.npy")) == [os.path.basename(third.index.cache_path)]


def test_bad_line_in_a_later_chunk_is_named_by_its_line(tmp_path, small_chunks):
    lines = [f"{i}\t{8 * i}" for i in range(40)]
    lines[33] = "33\t26x"
    (tmp_path / "train.idx").write_text("\n".join(lines) + "\n")
    (tmp_path / "train.rec").write_bytes(b"\0" * 1000)
    with pytest.raises(DataFormatError, match=r"train\.idx:34: expected 'key<TAB>offset', got '33\t26x'"):
        RecordIOReader(tmp_path / "train.rec")
    assert not list(tmp_path.glob("*.npy*"))  # nothing half-written left behind


def test_pickled_dataset_carries_no_index_arrays(tmp_path, small_chunks):
    n = 3000
    imgs = [jpeg_bytes(i % 7, (16, 16)) for i in range(7)]
    write_rec(tmp_path, [(i + 1, i % 50, imgs[i % 7]) for i in range(n)], header=[n + 1.0, n + 51.0])
    ds = RecordIOTrainDataset(tmp_path, input_hw=(16, 16), random_flip=False)
    blob = pickle.dumps(ds)
    assert len(blob) < 4096, len(blob)  # 3000 records would be > 48 KB as int64 arrays
    clone = pickle.loads(blob)
    assert len(clone) == n and clone.num_classes == 50
    for i in (0, 1234, n - 1):
        a, b = ds[i], clone[i]
        assert a[1] == b[1] == i % 50 and np.array_equal(a[0].numpy(), b[0].numpy())


# ----------------------------------------------------------------- float32 header boundaries above 2^24
_SLOT = 64  # bytes per record in the sparse test .rec: record k starts at k * _SLOT


class _VirtualIndex:
    """Keys 0..n-1 at k * _SLOT, without a table (a 44 M-line .idx would take a minute to write in a test)."""

    def __init__(self, n):
        self.n = n
        self.offsets = self

    def __getitem__(self, row):
        return row * _SLOT

    def __len__(self):
        return self.n

    def row_of(self, key):
        return key if 0 <= key < self.n else -1

    def count_in(self, lo, hi):
        return max(0, min(hi, self.n) - max(lo, 0))


def _record(flag, labels, image=b""):
    payload = struct.pack("<IfQQ", flag, 0.0 if flag else labels[0], 0, 0)
    payload += b"".join(struct.pack("<f", v) for v in labels) if flag else b""
    payload += image
    rec = struct.pack("<II", MAGIC, len(payload)) + payload
    assert len(rec) <= _SLOT
    return rec


def _sparse_set(tmp_path, n_images, n_classes):
    """The real layout (header, images 1..N, identity records N+1..N+C) written only near record 0 and the two
    boundaries; the rest of the file is a hole."""
    total = n_images + n_classes + 1
    path = tmp_path / "train.rec"
    with open(path, "wb") as f:
        f.truncate(total * _SLOT)
        f.write(_record(2, [float(n_images + 1), float(total)]))  # float32: rounded as the real writer does
        for k in list(range(n_images - 12, n_images + 13)) + list(range(total - 12, total)):
            f.seek(k * _SLOT)
            if k <= n_images:
                f.write(_record(0, [float(k % n_classes)], b"\xff\xd8jpeg"))
            else:
                c = k - n_images - 1
                f.write(_record(2, [float(c), float(c + 1)]))
    (tmp_path / "train.idx").write_text("0\t0\n")
    return total


@pytest.mark.parametrize("n_images,n_classes", [
    (42_000_000, 2_000_000),  # 42,000,001 is stored as 42,000,000 and 44,000,001 as 44,000,000: rounded down
    (42_000_002, 2_000_000),  # 42,000,003 -> 42,000,004 and 44,000,003 -> 44,000,004: rounded up
    (41_999_999, 2_000_004),  # both exact in float32 (multiples of 4): read as stored, nothing to say
])
def test_header_boundaries_rounded_by_float32_are_taken_from_the_records(tmp_path, monkeypatch, n_images,
                                                                         n_classes):
    total = _sparse_set(tmp_path, n_images, n_classes)

    class SparseReader(RecordIOReader):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.index = _VirtualIndex(total)

    monkeypatch.setattr(rec_mod, "RecordIOReader", SparseReader)
    stored = int(np.float32(n_images + 1))
    if stored != n_images + 1:
        with pytest.warns(UserWarning, match=rf"float32 {stored}, which cannot be exact.* put it at {n_images + 1}"):
            ds = RecordIOTrainDataset(tmp_path)
    else:
        ds = RecordIOTrainDataset(tmp_path)
        assert ds.notes == []
    assert len(ds) == n_images and ds.num_classes == n_classes
    assert ds._key(n_images - 1) == n_images  # the last image is the record before the first identity record
    assert ds._load(n_images - 1)[1] == n_images % n_classes


def test_is_label_only_tells_records_apart(tmp_path):
    write_rec(tmp_path, [(1, 0, jpeg_bytes(1, (16, 16))), (2, [1.0, 5.0], jpeg_bytes(2, (16, 16)))],
              header=[3.0, 4.0])
    r = RecordIOReader(tmp_path / "train.rec")
    assert [r.is_label_only(k) for k in (0, 1, 2, 3)] == [True, False, False, None]


def test_read_only_folder_falls_back_to_the_cache_folder_then_to_memory(tmp_path, small_chunks, monkeypatch):
    write_rec(tmp_path, [(i, i % 3, jpeg_bytes(i, (16, 16))) for i in range(20)])
    (tmp_path / "a_file").write_text("")  # a folder that cannot be created: beside-the-index is not writable
    blocked, spare = tmp_path / "a_file" / "x.npy", tmp_path / "cache" / "x.npy"
    monkeypatch.setattr(rec_index, "_cache_candidates", lambda idx, fp: [blocked, spare])
    r = RecordIOReader(tmp_path / "train.rec")
    assert r.index.cache_path == str(spare) and spare.is_file()
    spare.unlink()
    monkeypatch.setattr(rec_index, "_cache_candidates", lambda idx, fp: [blocked])
    r = RecordIOReader(tmp_path / "train.rec")
    assert r.index.cache_path is None and len(r) == 20 and r.read(3) == RecordIOReader(tmp_path / "train.rec").read(3)
