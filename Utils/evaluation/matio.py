"""The MegaFace devkit's feature files ("matio": OpenCV matrices written raw), read and written without OpenCV.

Layout, little endian: int32 rows, int32 cols, int32 stride (bytes per row, = cols * element size), int32 type (the
OpenCV depth code: 5 = CV_32F), then rows * stride bytes of row-major data. A face feature is one file per image, a
column of D float32 values (rows = D, cols = 1), named after the image: `<relative image path><suffix>` where the
devkit's tools pass the suffix (`_<model>.bin` by insightface's convention). Writing these lets a user run the
official devkit on our features; reading them lets our evaluator score features produced elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

__all__ = ["CV_TYPES", "read_matio", "write_matio", "write_feature_files", "read_feature_files", "feature_file_path"]

# OpenCV depth code -> element dtype (little endian), the codes cv::Mat::type() returns for one channel.
CV_TYPES: dict[int, np.dtype] = {
    0: np.dtype("<u1"), 1: np.dtype("<i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"),
    4: np.dtype("<i4"), 5: np.dtype("<f4"), 6: np.dtype("<f8"),
}
_DTYPE_TO_CV = {dt.str: code for code, dt in CV_TYPES.items()}
_HEADER = np.dtype("<i4")


def read_matio(path: str | os.PathLike) -> np.ndarray:
    """Read one matio file as a (rows, cols) array of its stored type; a malformed file raises naming it."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 16:
        raise ValueError(f"{path}: matio file of {len(data)} bytes is shorter than its 16-byte header")
    rows, cols, stride, cv_type = (int(v) for v in np.frombuffer(data, _HEADER, count=4))
    if cv_type not in CV_TYPES:
        raise ValueError(f"{path}: unsupported matio type {cv_type} (expected an OpenCV depth code 0..6, 5 = CV_32F)")
    dtype = CV_TYPES[cv_type]
    if rows < 0 or cols < 0 or stride < cols * dtype.itemsize:
        raise ValueError(f"{path}: bad matio header rows={rows} cols={cols} stride={stride} type={cv_type}")
    need = 16 + rows * stride
    if len(data) < need:
        raise ValueError(f"{path}: matio file truncated: header promises {need} bytes, file has {len(data)}")
    # rows may be padded (stride > cols * itemsize, as cv::Mat allows); keep the first cols elements of each row
    body = np.frombuffer(data, np.uint8, count=rows * stride, offset=16).reshape(rows, stride)
    return body[:, :cols * dtype.itemsize].copy().view(dtype).reshape(rows, cols)


def write_matio(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as a matio file; a 1-D array is written as a column (D rows, 1 col), like the devkit's features."""
    arr = np.asarray(array)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{path}: matio holds 2-D matrices, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    code = _DTYPE_TO_CV.get(arr.dtype.str)
    if code is None:
        raise ValueError(f"{path}: dtype {arr.dtype} has no OpenCV type; use float32, float64, int32, int16, uint16, "
                         f"int8 or uint8")
    rows, cols = arr.shape
    header = np.array([rows, cols, cols * arr.dtype.itemsize, code], dtype=_HEADER)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(arr.tobytes())


def feature_file_path(root: str | os.PathLike, rel_path: str, suffix: str) -> Path:
    """The devkit's name for an image's feature file: the image's relative path with `suffix` appended."""
    return Path(root) / (rel_path + suffix)


def write_feature_files(root: str | os.PathLike, rel_paths: Sequence[str], features: np.ndarray, suffix: str,
                        progress: bool = True) -> int:
    """Write one float32 column file per image under `root`, mirroring the list's folders; returns the count."""
    features = np.asarray(features, dtype=np.float32)
    if len(rel_paths) != len(features):
        raise ValueError(f"{len(rel_paths)} image paths but {len(features)} features")
    made: set[Path] = set()
    for rel, feat in _progress(zip(rel_paths, features), len(rel_paths), progress, f"matio -> {root}"):
        path = feature_file_path(root, rel, suffix)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        write_matio(path, feat)
    return len(rel_paths)


def read_feature_files(root: str | os.PathLike, rel_paths: Sequence[str], suffix: str,
                       progress: bool = True) -> np.ndarray:
    """Read the feature file of every image in `rel_paths` into a float32 (N, D) array (a missing one raises)."""
    feats: list[np.ndarray] = []
    for rel in _progress(rel_paths, len(rel_paths), progress, f"matio <- {root}"):
        path = feature_file_path(root, rel, suffix)
        if not path.is_file():
            raise FileNotFoundError(f"feature file not found: {path} (image '{rel}', suffix '{suffix}')")
        mat = read_matio(path)
        if mat.size and min(mat.shape) != 1:
            raise ValueError(f"{path}: a feature file holds one vector, got a {mat.shape[0]}x{mat.shape[1]} matrix")
        feats.append(mat.reshape(-1).astype(np.float32, copy=False))
        if feats[-1].shape != feats[0].shape:
            raise ValueError(f"{path}: feature of length {feats[-1].size}, the first file had {feats[0].size}")
    if not feats:
        return np.zeros((0, 0), np.float32)
    return np.stack(feats)


def _progress(items: Iterable, total: int, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    return tqdm(items, total=total, desc=desc, unit="file", mininterval=1.0)
