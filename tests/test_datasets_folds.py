"""Fold assignment of .bin files and pair lists equals sklearn's KFold(n_splits=10) (insightface's split) for any
pair count, including n % 10 != 0; and save_bin writes what its docstring says (a plain pickle, protocol 4)."""
from __future__ import annotations

import io
import pickle
import pickletools

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import KFold

from Config import Config, apply_overrides
from Datasets import load_verification_set
from Datasets.binfile import save_bin
from Datasets.pairs import read_pairs

COUNTS = [10, 11, 15, 19, 20, 23, 37, 99, 101, 6000]


def _kfold(n: int) -> np.ndarray:
    """Fold id per pair from sklearn's own split (the reference: insightface's verification.py uses it)."""
    ids = np.full(n, -1)
    for k, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(np.arange(n))):
        ids[test] = k
    return ids


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("n", COUNTS)
def test_bin_folds_equal_sklearn_kfold(tmp_path, n):
    path = tmp_path / "x.bin"
    save_bin(path, [_png()] * (2 * n), [k % 2 == 0 for k in range(n)])
    vset = load_verification_set(str(path), apply_overrides(Config(), {"input_size": [32, 32]}))
    assert np.array_equal(np.asarray(vset.folds), _kfold(n))


@pytest.mark.parametrize("n", COUNTS)
def test_two_path_list_folds_equal_sklearn_kfold(tmp_path, n):
    path = tmp_path / "pairs.txt"
    path.write_text("".join(f"a/{k}.jpg b/{k}.jpg {1 if k % 2 else -1}\n" for k in range(n)))
    assert np.array_equal(read_pairs(path).folds, _kfold(n))


@pytest.mark.parametrize("half", [5, 7, 300])
def test_lfw_view1_header_folds_equal_sklearn_kfold(tmp_path, half):
    # a one-number header: `half` matched then `half` mismatched pairs, 10 contiguous folds
    path = tmp_path / "pairsDevTest.txt"
    lines = [f"{half}"] + [f"A {k + 1} {k + 2}" for k in range(half)] + [f"A {k + 1} B {k + 1}" for k in range(half)]
    path.write_text("\n".join(lines) + "\n")
    assert np.array_equal(read_pairs(path).folds, _kfold(2 * half))


def test_save_bin_writes_a_plain_protocol_4_pickle(tmp_path):
    path = tmp_path / "x.bin"
    bins = [_png(), b"\x00\xff raw"]
    save_bin(path, bins, [True])
    data = path.read_bytes()
    assert data[:2] == b"\x80\x04"  # PROTO 4, as the docstring says
    assert max(op.proto for op, _, _ in pickletools.genops(data)) <= 4
    with open(path, "rb") as f:
        assert pickle.load(f) == (bins, [True])  # any Python 3 pickle reader, no project code
