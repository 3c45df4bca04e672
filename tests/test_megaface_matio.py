"""Devkit matio feature files (Utils/matio.py) against a struct-based writer and reader written here."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from Utils.evaluation.matio import read_feature_files, read_matio, write_feature_files, write_matio


def _struct_write(path, rows, cols, values, cv_type=5, fmt="f", stride=None, pad=b""):
    stride = cols * struct.calcsize(fmt) if stride is None else stride
    with open(path, "wb") as f:
        f.write(struct.pack("<4i", rows, cols, stride, cv_type))
        for r in range(rows):
            f.write(struct.pack(f"<{cols}{fmt}", *values[r * cols:(r + 1) * cols]))
            f.write(pad)


def _struct_read(path):
    with open(path, "rb") as f:
        rows, cols, stride, cv_type = struct.unpack("<4i", f.read(16))
        values = struct.unpack(f"<{rows * cols}f", f.read(rows * cols * 4))
        rest = f.read()
    return rows, cols, stride, cv_type, values, rest


def test_written_feature_reads_back_with_struct(tmp_path):
    feat = np.random.default_rng(0).normal(size=512).astype(np.float32)
    write_matio(tmp_path / "a.bin", feat)
    rows, cols, stride, cv_type, values, rest = _struct_read(tmp_path / "a.bin")
    assert (rows, cols, stride, cv_type) == (512, 1, 4, 5)  # a column, as the devkit's feature files
    assert rest == b""
    np.testing.assert_array_equal(np.array(values, np.float32), feat)


def test_struct_written_matrix_reads(tmp_path):
    values = [float(v) / 8 for v in range(12)]
    _struct_write(tmp_path / "m.bin", 3, 4, values)
    mat = read_matio(tmp_path / "m.bin")
    assert mat.dtype == np.float32 and mat.shape == (3, 4)
    np.testing.assert_array_equal(mat.ravel(), np.array(values, np.float32))


def test_padded_rows_and_float64(tmp_path):
    values = [1.5, -2.25, 3.0, 4.125]
    _struct_write(tmp_path / "p.bin", 2, 2, values, cv_type=6, fmt="d", stride=24, pad=b"\0" * 8)
    mat = read_matio(tmp_path / "p.bin")
    assert mat.dtype == np.float64
    np.testing.assert_array_equal(mat, np.array(values).reshape(2, 2))


def test_matrix_round_trip_int32(tmp_path):
    arr = np.arange(-6, 6, dtype=np.int32).reshape(4, 3)
    write_matio(tmp_path / "i.bin", arr)
    with open(tmp_path / "i.bin", "rb") as f:
        assert struct.unpack("<4i", f.read(16)) == (4, 3, 12, 4)
    np.testing.assert_array_equal(read_matio(tmp_path / "i.bin"), arr)


@pytest.mark.parametrize("content, message", [
    (b"\x01\x00", "shorter than its 16-byte header"),
    (struct.pack("<4i", 4, 1, 4, 9), "unsupported matio type 9"),
    (struct.pack("<4i", 4, 1, 4, 5) + b"\0" * 8, "truncated"),
    (struct.pack("<4i", 4, 2, 4, 5) + b"\0" * 32, "bad matio header"),
])
def test_malformed_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        read_matio(path)
    assert "bad.bin" in str(err.value)


def test_feature_tree_uses_devkit_names(tmp_path):
    paths = ["Adam_Brody/Adam_Brody_241.png", "375/37531198@N00/4174611825_0.jpg"]
    feats = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    assert write_feature_files(tmp_path, paths, feats, "_r50.bin", progress=False) == 2
    for rel, feat in zip(paths, feats):
        rows, cols, _, cv_type, values, _ = _struct_read(tmp_path / (rel + "_r50.bin"))
        assert (rows, cols, cv_type) == (8, 1, 5)
        np.testing.assert_array_equal(np.array(values, np.float32), feat)
    # files written by the struct writer (as the devkit or insightface would) read back in list order
    _struct_write(tmp_path / (paths[0] + "_x.bin"), 3, 1, [1.0, 2.0, 3.0])
    _struct_write(tmp_path / (paths[1] + "_x.bin"), 3, 1, [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(read_feature_files(tmp_path, paths, "_x.bin", progress=False),
                                  [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(FileNotFoundError, match="missing.png_x.bin"):
        read_feature_files(tmp_path, ["missing.png"], "_x.bin", progress=False)
