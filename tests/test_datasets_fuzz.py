"""Fuzz: thousands of randomly mutated .rec/.idx, .bin and pair files through the readers (seeded, time-bounded).

Only the project's own `DataFormatError` may escape; no read may hang; and the readers check lengths against
the file size before allocating, so the Python-heap peak stays small whatever a header claims.
"""
from __future__ import annotations

import pickle
import struct
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from Datasets import DataFormatError, RecordIOTrainDataset
from Datasets.binfile import load_bin
from Datasets.pairs import read_pairs
from Datasets.recordio import RecordIOReader, unpack_record
from Datasets.images import ImageList
from _datasets_fixtures import MAGIC, jpeg_bytes, write_rec

BUDGET_S = 3.0  # seconds per format
MAX_PEAK = 32 << 20  # bytes of Python heap one mutated file may cost


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(7))
        n = len(b)
        if n == 0:
            b += rng.bytes(8)
            continue
        pos = int(rng.integers(n))
        if op == 0:  # flip a byte
            b[pos] ^= int(rng.integers(1, 256))
        elif op == 1:  # truncate
            del b[pos:]
        elif op == 2:  # insert junk
            b[pos:pos] = rng.bytes(int(rng.integers(1, 16)))
        elif op == 3:  # an extreme 32-bit value (lengths, flags, counts)
            v = [0xFFFFFFFF, 0x7FFFFFFF, 0x1FFFFFFF, MAGIC, 0, 1 << 31, 0xE0000000 | 5][int(rng.integers(7))]
            b[pos:pos + 4] = struct.pack("<I", v)
        elif op == 4:  # delete a span
            del b[pos:pos + int(rng.integers(1, 64))]
        elif op == 5:  # duplicate a span
            b[pos:pos] = b[pos:pos + int(rng.integers(1, 64))]
        else:  # a huge decimal number (offsets, keys, header counts in text files)
            b[pos:pos] = str(int(rng.integers(1, 10)) * 10 ** int(rng.integers(5, 30))).encode()
    return bytes(b)


def run_fuzz(rng, budget, make_files, read, traced_every: int = 8):
    """Mutate and read until the budget is spent; returns (iterations, outcomes).

    Every `traced_every`-th iteration runs under tracemalloc (which slows numpy-heavy code several times over).
    """
    outcomes = {"ok": 0, "error": 0}
    deadline = time.perf_counter() + budget
    n = 0
    while time.perf_counter() < deadline:
        make_files(rng)
        t = time.perf_counter()
        traced = n % traced_every == 0
        if traced:
            tracemalloc.start()
        try:
            read()
            outcomes["ok"] += 1
        except DataFormatError as exc:
            assert str(exc) and "\n" not in str(exc), repr(exc)
            outcomes["error"] += 1
        finally:
            if traced:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert peak < MAX_PEAK, f"iteration {n} peaked at {peak} bytes"
        assert time.perf_counter() - t < 2.0, f"iteration {n} took too long"
        n += 1
    return n, outcomes


def test_fuzz_recordio(tmp_path):
    rng = np.random.default_rng(1234)
    write_rec(tmp_path, [(i + 1, [float(i % 2), 0.0] if i % 3 == 0 else i % 2, jpeg_bytes(i, (16, 16)))
                         for i in range(5)], header=[6.0, 8.0])
    rec0, idx0 = (tmp_path / "train.rec").read_bytes(), (tmp_path / "train.idx").read_bytes()

    def make(rng):
        which = int(rng.integers(3))
        (tmp_path / "train.rec").write_bytes(mutate(rng, rec0) if which != 1 else rec0)
        (tmp_path / "train.idx").write_bytes(mutate(rng, idx0) if which != 0 else idx0)

    def read():
        reader = RecordIOReader(tmp_path / "train.rec")
        for k in reader.keys[:20]:
            header, img = unpack_record(reader.read(int(k)), f"record {k}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = RecordIOTrainDataset(tmp_path)
            for i in range(min(len(ds), 8)):
                ds[i]

    n, outcomes = run_fuzz(rng, BUDGET_S, make, read)
    assert n >= 150 and outcomes["error"] > 0 and outcomes["ok"] > 0, (n, outcomes)


def test_fuzz_bin(tmp_path):
    rng = np.random.default_rng(99)
    good = [pickle.dumps(([jpeg_bytes(i, (16, 16)) for i in range(4)], [True, False]), protocol=p) for p in (2, 4)]
    path = tmp_path / "v.bin"

    def make(rng):
        path.write_bytes(mutate(rng, good[int(rng.integers(2))]))

    def read():
        bins, issame = load_bin(path)
        images = ImageList(bins, source=str(path))
        for i in range(len(images)):
            images[i]

    n, outcomes = run_fuzz(rng, BUDGET_S, make, read)
    assert n >= 150 and outcomes["error"] > 0, (n, outcomes)


@pytest.mark.parametrize("kind", ["lfw", "two_path"])
def test_fuzz_pair_files(tmp_path, kind):
    rng = np.random.default_rng(7 if kind == "lfw" else 8)
    if kind == "lfw":
        lines = ["10\t2"] + [ln for f in range(10) for ln in
                             (f"A_{f}\t1\t2", f"B_{f}\t1\t3", f"A_{f}\t1\tB_{f}\t2", f"B_{f}\t2\tC\t1")]
    else:
        lines = [f"{2 * k:05d}.jpg {2 * k + 1:05d}.jpg {1 if k % 2 else -1} {k // 4}" for k in range(40)]
    good = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "pairs.txt"

    def make(rng):
        path.write_bytes(mutate(rng, good))

    def read():
        pl = read_pairs(path)
        assert len(pl.left) == len(pl.right) == len(pl.issame) == len(pl.folds)
        assert pl.folds.min() >= 0

    n, outcomes = run_fuzz(rng, BUDGET_S / 2, make, read)
    assert n >= 150 and outcomes["error"] > 0, (n, outcomes)


def test_fuzz_ijb_meta(tmp_path):
    from Datasets.ijb import load_ijb, load_ijb_1n

    rng = np.random.default_rng(11)
    (tmp_path / "meta").mkdir()
    (tmp_path / "loose_crop").mkdir()
    names = [f"{k}.jpg" for k in range(12)]
    good = {
        "ijbc_face_tid_mid.txt": "".join(f"{n} {1 + k // 3} {k // 2}\n" for k, n in enumerate(names)),
        "ijbc_name_5pts_score.txt": "".join(n + " " + " ".join(f"{40 + 3 * j + k:.3f}" for j in range(10))
                                            + " 0.9\n" for k, n in enumerate(names)),
        "ijbc_template_pair_label.txt": "".join(f"{a} {b} {int(a == b)}\n" for a in range(1, 5) for b in range(a, 5)),
        "ijbc_1N_probe_mixed.csv": "TEMPLATE_ID,SUBJECT_ID,FILENAME\n1,1,0.jpg\n2,2,3.jpg\n",
        "ijbc_1N_gallery_G1.csv": "TEMPLATE_ID,SUBJECT_ID,FILENAME\n3,1,6.jpg\n",
        "ijbc_1N_gallery_G2.csv": "TEMPLATE_ID,SUBJECT_ID,FILENAME\n4,2,9.jpg\n",
    }

    def make(rng):
        bad = list(good)[int(rng.integers(len(good)))]
        for name, text in good.items():
            data = mutate(rng, text.encode()) if name == bad else text.encode()
            (tmp_path / "meta" / name).write_bytes(data)

    def read():
        meta = load_ijb(tmp_path, "IJBC")
        load_ijb_1n(tmp_path, "IJBC", meta.templates)

    n, outcomes = run_fuzz(rng, BUDGET_S, make, read)
    assert n >= 60 and outcomes["error"] > 0 and outcomes["ok"] > 0, (n, outcomes)  # six files written a try


def _fuzz_text(tmp_path, seed, good: bytes, read, name: str):
    rng = np.random.default_rng(seed)
    path = tmp_path / name

    def make(rng):
        path.write_bytes(mutate(rng, good))

    n, outcomes = run_fuzz(rng, BUDGET_S / 2, make, lambda: read(path))
    assert n >= 150 and outcomes["error"] > 0 and outcomes["ok"] > 0, (n, outcomes)


def test_fuzz_landmark_files(tmp_path):
    from Utils.tools.align_faces import read_landmark_file

    good = "".join(f"id{k}/img {k}.jpg 30.3 51.7 65.5 51.5 48.0 71.7 33.5 92.4 62.7 92.2\n" for k in range(8))

    def read(path):
        for rel, coords in read_landmark_file(path):
            assert len(coords) == 10 and rel

    _fuzz_text(tmp_path, 21, ("# comment\n" + good).encode(), read, "landmarks.txt")


def test_fuzz_training_list_files(tmp_path):
    from Datasets.folder import read_list_file

    good = "".join(f"id{k // 3}/{k}.jpg {k // 3}\n" for k in range(24)).encode()

    def read(path):
        names, labels = read_list_file(path)
        assert len(names) == len(labels) and labels.min() >= 0

    _fuzz_text(tmp_path, 22, good, read, "train_list.txt")


@pytest.mark.parametrize("kind", ["probes", "distractors", "noises"])
def test_fuzz_megaface_lists(tmp_path, kind):
    import json

    from Datasets.megaface import read_distractor_list, read_noise_list, read_probe_list

    if kind == "probes":
        good = json.dumps({"path": [f"P{k}/P{k}_{j}.jpg" for k in range(4) for j in range(3)],
                           "id": [f"P{k}" for k in range(4) for j in range(3)]})
        read = read_probe_list
    elif kind == "distractors":
        good = json.dumps({"path": [f"{k:03d}/{k}.jpg" for k in range(12)]})
        read = read_distractor_list
    else:
        good = "#noises\n" + "".join(f"P{k}_{k}.jpg\n" for k in range(10))
        read = read_noise_list
    _fuzz_text(tmp_path, 23, good.encode(), read, f"{kind}.json")
