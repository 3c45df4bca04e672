"""IJB-B / IJB-C as insightface distributes them: <root>/meta/ text lists and <root>/loose_crop/ images.

    meta/ijbc_face_tid_mid.txt          image_name template_id media_id              (one line per image)
    meta/ijbc_name_5pts_score.txt       image_name x1 y1 ... x5 y5 detector_score    (same order as tid_mid)
    meta/ijbc_template_pair_label.txt   template_id_1 template_id_2 label            (1:1, 1 = same person)
    meta/ijbc_1N_probe_mixed.csv, ijbc_1N_gallery_G1.csv, _G2.csv                    (1:N; IJB-B: _S1, _S2)

The 1:N csvs have a header line; column 1 is TEMPLATE_ID, column 2 SUBJECT_ID, one row per image (so a template
repeats). `IJBImages` decodes each loose crop and aligns it from its 5 landmarks (Datasets/align.py) to the network
input, then applies the usual normalisation and colour order (Datasets/transforms.py).

Every reader check fails with a DataFormatError naming the file and line: a benchmark scored on a silently
shrunken or misread list would not be comparable with published numbers.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .align import TEMPLATES, align_face
from .errors import DataFormatError, DataPathError
from .transforms import decode_image, normalize_image

__all__ = ["IJB_TARGETS", "IJBMeta", "IJBSearchSet", "IJBImages", "meta_file", "read_tid_mid", "read_landmarks",
           "read_template_pairs", "read_template_subjects", "load_ijb", "load_ijb_1n"]

IJB_TARGETS = ("IJBC", "IJBB")
# gallery names of the 1:N protocol per target (formats.md: IJB-B names its galleries S1/S2)
_GALLERIES = {"IJBC": ("G1", "G2"), "IJBB": ("S1", "S2")}


def meta_file(root: str | os.PathLike, target: str, name: str) -> Path:
    """<root>/meta/<ijbc|ijbb>_<name>, which must exist (else a DataPathError naming it)."""
    if target not in IJB_TARGETS:
        raise ValueError(f"target: '{target}' is not one of: {', '.join(IJB_TARGETS)}")
    path = Path(root) / "meta" / f"{target.lower()}_{name}"
    if not path.is_file():
        raise DataPathError(f"IJB meta file not found: {path}")
    return path


def _lines(path: Path):
    """(line number, fields) of every non-blank line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                yield n, fields


def _number(kind, text: str, path: Path, n: int, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise DataFormatError(f"{path}:{n}: {what} '{text}' is not a number") from None
    if kind is int and not -2 ** 63 <= value < 2 ** 63:  # ids are stored as int64
        raise DataFormatError(f"{path}:{n}: {what} '{text}' is out of range")
    return value


def _fast_table(path: Path, columns: int, convert, dtype=str):
    """numpy's C reader over a whitespace table of `columns` columns, `convert`ed; None when it refuses the file (the
    caller then reads it line by line, to name the line at fault). IJB-C's lists are 0.5M and 15.6M lines: a
    Python loop over them takes minutes on a busy machine."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file warns; it is refused below
            table = np.loadtxt(path, dtype=dtype, ndmin=2, comments=None, encoding="utf-8")
        if table.shape[0] == 0 or table.shape[1] != columns:
            return None
        return convert(table)
    except (ValueError, OverflowError, UnicodeDecodeError):
        return None


def read_tid_mid(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`image_name template_id media_id` lines -> (names, template ids int64, media ids int64)."""
    path = Path(path)
    fast = _fast_table(path, 3, lambda t: (t[:, 0].tolist(), t[:, 1].astype(np.int64), t[:, 2].astype(np.int64)))
    if fast is not None:
        return fast
    names, tids, mids = [], [], []
    for n, f in _lines(path):
        if len(f) != 3:
            raise DataFormatError(f"{path}:{n}: expected 'image_name template_id media_id', got {len(f)} fields")
        names.append(f[0])
        tids.append(_number(int, f[1], path, n, "template id"))
        mids.append(_number(int, f[2], path, n, "media id"))
    if not names:
        raise DataFormatError(f"{path}: no images listed")
    return names, np.asarray(tids, dtype=np.int64), np.asarray(mids, dtype=np.int64)


def read_landmarks(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`image_name x1 y1 ... x5 y5 score` lines -> (names, landmarks float32 (N, 5, 2), detector scores (N,))."""
    path = Path(path)
    fast = _fast_table(path, 12, lambda t: (t[:, 0].tolist(), t[:, 1:11].astype(np.float32),
                                            t[:, 11].astype(np.float32)))
    if fast is not None:
        names, values, scores = fast
    else:
        names, pts, scores = [], [], []
        for n, f in _lines(path):
            if len(f) != 12:
                raise DataFormatError(f"{path}:{n}: expected an image name, 10 landmark coordinates and a detector "
                                      f"score (12 fields), got {len(f)}")
            names.append(f[0])
            pts.append([_number(float, t, path, n, "landmark coordinate") for t in f[1:11]])
            scores.append(_number(float, f[11], path, n, "detector score"))
        if not names:
            raise DataFormatError(f"{path}: no images listed")
        values, scores = np.asarray(pts, dtype=np.float32), np.asarray(scores, dtype=np.float32)
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        raise DataFormatError(f"{path}: image {names[int(np.argmax(bad))]}: landmark coordinates are not finite")
    return names, values.reshape(-1, 5, 2), scores


def _read_pairs_by_line(path: Path) -> np.ndarray:
    """The slow reading, one line at a time: used only to name the line at fault when the fast one fails."""
    rows = []
    for n, f in _lines(path):
        if len(f) != 3:
            raise DataFormatError(f"{path}:{n}: expected 'template_id_1 template_id_2 label', got {len(f)} fields")
        rows.append((_number(int, f[0], path, n, "template id"), _number(int, f[1], path, n, "template id"),
                     _number(int, f[2], path, n, "label")))
    if not rows:
        raise DataFormatError(f"{path}: no template pairs listed")
    return np.asarray(rows, dtype=np.int64)


def read_template_pairs(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`t1 t2 label` lines -> (template ids 1, template ids 2, labels bool)."""
    path = Path(path)
    arr = _fast_table(path, 3, lambda t: t, dtype=np.int64)  # read as numbers directly: 8x faster
    if arr is None:
        arr = _read_pairs_by_line(path)
    bad = (arr[:, 2] != 0) & (arr[:, 2] != 1)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataFormatError(f"{path}:{_pair_line(path, k)}: label must be 0 or 1, got {arr[k, 2]}")
    return arr[:, 0], arr[:, 1], arr[:, 2].astype(bool)


def read_template_subjects(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 1:N csv (header line; TEMPLATE_ID, SUBJECT_ID first) -> (unique template ids, their subject ids, the line
    number of each template's first row). A template listed under two subjects is an error."""
    path = Path(path)
    seen: dict[int, tuple[int, int]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
        if "," not in header:
            raise DataFormatError(f"{path}:1: expected a comma-separated header (TEMPLATE_ID,SUBJECT_ID,...)")
        for n, line in enumerate(f, 2):
            if not line.strip():
                continue
            cells = line.split(",")
            if len(cells) < 2:
                raise DataFormatError(f"{path}:{n}: expected TEMPLATE_ID,SUBJECT_ID,..., got '{line.strip()}'")
            tid = _number(int, cells[0].strip(), path, n, "template id")
            sid = _number(int, cells[1].strip(), path, n, "subject id")
            if tid in seen and seen[tid][0] != sid:
                raise DataFormatError(f"{path}:{n}: template {tid} has subject {sid} here but {seen[tid][0]} on "
                                      f"line {seen[tid][1]}")
            seen.setdefault(tid, (sid, n))
    if not seen:
        raise DataFormatError(f"{path}: no templates listed")
    tids = np.fromiter(seen, dtype=np.int64, count=len(seen))
    sids = np.asarray([v[0] for v in seen.values()], dtype=np.int64)
    lines = np.asarray([v[1] for v in seen.values()], dtype=np.int64)
    return tids, sids, lines


def _first_missing(wanted: np.ndarray, known: np.ndarray) -> int | None:
    """Index of the first entry of `wanted` not in `known`, or None."""
    missing = ~np.isin(wanted, known)
    return int(np.argmax(missing)) if missing.any() else None


def _pair_line(path: Path, index: int) -> int:
    """Line number of the index-th pair (blank lines skipped, as the reader does)."""
    for k, (n, _) in enumerate(_lines(path)):
        if k == index:
            return n
    return -1


@dataclass
class IJBMeta:
    """The images of one IJB set and its 1:1 protocol."""
    root: str
    target: str
    names: list[str]            # image file names under loose_crop/
    templates: np.ndarray       # int64 (N,) template id of each image
    medias: np.ndarray          # int64 (N,) media id of each image
    landmarks: np.ndarray       # float32 (N, 5, 2) in loose-crop pixels
    scores: np.ndarray          # float32 (N,) detector score
    pair_t1: np.ndarray | None  # int64 (P,) the 1:1 template pairs (None when not asked for)
    pair_t2: np.ndarray | None
    pair_same: np.ndarray | None

    @property
    def image_root(self) -> str:
        return os.path.join(self.root, "loose_crop")


@dataclass
class IJBSearchSet:
    """The 1:N protocol: probe templates and the two galleries, each with subject ids."""
    probe_templates: np.ndarray
    probe_subjects: np.ndarray
    galleries: dict[str, tuple[np.ndarray, np.ndarray]]  # name ("G1") -> (template ids, subject ids)


def load_ijb(root: str | os.PathLike, target: str = "IJBC", pairs: bool = True) -> IJBMeta:
    """Read and cross-check the image list, the landmarks and (when `pairs`) the 1:1 template pairs."""
    if not Path(root).is_dir():
        raise DataPathError(f"IJB root not found: {root}")
    tid_path = meta_file(root, target, "face_tid_mid.txt")
    lmk_path = meta_file(root, target, "name_5pts_score.txt")
    pair_path = meta_file(root, target, "template_pair_label.txt") if pairs else None
    if not (Path(root) / "loose_crop").is_dir():
        raise DataPathError(f"IJB image folder not found: {Path(root) / 'loose_crop'}")
    names, tids, mids = read_tid_mid(tid_path)
    lnames, landmarks, scores = read_landmarks(lmk_path)
    if len(lnames) != len(names):
        raise DataFormatError(f"{lmk_path}: {len(lnames)} images but {tid_path} lists {len(names)}")
    for k, (a, b) in enumerate(zip(names, lnames)):
        if a != b:  # the two lists are read by position, so their order must agree
            raise DataFormatError(f"{lmk_path}:{k + 1}: image '{b}' where {tid_path} has '{a}'")
    t1 = t2 = same = None
    if pair_path is not None:
        t1, t2, same = read_template_pairs(pair_path)
        known = np.unique(tids)
        for side in (t1, t2):
            k = _first_missing(side, known)
            if k is not None:
                raise DataFormatError(f"{pair_path}:{_pair_line(pair_path, k)}: template {side[k]} has no images "
                                      f"in {tid_path.name}")
    return IJBMeta(str(root), target, names, tids, mids, landmarks, scores, t1, t2, same)


def load_ijb_1n(root: str | os.PathLike, target: str, known_templates: np.ndarray) -> IJBSearchSet:
    """Read the 1:N probe and gallery csvs; every template must have images in the tid_mid list."""
    known = np.unique(known_templates)
    tid_name = f"{target.lower()}_face_tid_mid.txt"
    parts = {}
    for part in ("probe_mixed", *_GALLERIES[target]):
        path = meta_file(root, target, f"1N_{part if part == 'probe_mixed' else 'gallery_' + part}.csv")
        tids, sids, lines = read_template_subjects(path)
        k = _first_missing(tids, known)
        if k is not None:
            raise DataFormatError(f"{path}:{lines[k]}: template {tids[k]} has no images in {tid_name}")
        parts[part] = (tids, sids)
    probe_t, probe_s = parts.pop("probe_mixed")
    return IJBSearchSet(probe_t, probe_s, parts)


class IJBImages(Dataset):
    """Item i = the aligned network input of image i of an IJBMeta.

    The crop is warped from its 5 landmarks onto the ArcFace 112x112 template (or the SphereFace 112x96 one for a
    112x96 input); any other input size is reached by resizing the 112x112 crop.
    """

    def __init__(self, meta: IJBMeta, input_hw: Sequence[int] = (112, 112), color_order: str = "RGB"):
        self.meta = meta
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.color_order = color_order
        self.template = "sphereface" if self.input_hw == TEMPLATES["sphereface"][1] else "arcface"

    def __len__(self) -> int:
        return len(self.meta.names)

    def path(self, i: int) -> str:
        return os.path.join(self.meta.image_root, self.meta.names[i])

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.path(i)
        if not os.path.isfile(path):
            raise DataFormatError(f"image not found: {path} (line {i + 1} of the image list)")
        try:
            img = decode_image(path)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad data
            raise DataFormatError(f"{path}: cannot be decoded ({type(exc).__name__}: {exc})") from None
        try:
            face = align_face(img, self.meta.landmarks[i], self.template)
        except ValueError as exc:  # degenerate landmarks (all at one point)
            raise DataFormatError(f"{path}: cannot be aligned ({exc})") from None
        return normalize_image(face, self.input_hw, self.color_order)
