"""Verification pair lists: LFW `pairs.txt`, the original project's two-path lists, and the CFP-FP Protocol/Split
layout.

- LFW: a header `folds<TAB>n` then, per fold, n matched lines `name i j` and n mismatched lines
  `name1 i name2 j`; images `name/name_%04d.jpg`; the fold of pair k is k // (2n). A one-number header `n`
  (View 1 files) means n matched + n mismatched pairs, split into 10 contiguous folds.
- Two-path (Face_Pytorch / the original project, for LFW, AgeDB-30, CFP-FP): `left right flag` with flag 1 (same)
  or -1/0 (different), optionally with a fold column first or last; without one, 10 contiguous folds.
- CFP-FP: `Protocol/Split/FP/01..10/{same,diff}.txt` hold `i,j` lines indexing `Protocol/Pair_list_F.txt`
  (frontal) and `Pair_list_P.txt` (profile); FF pairs index the frontal list twice. Image paths in the pair lists
  are relative to the Protocol folder (`../Data/Images/...`).
- CALFW / CPLFW (`pairs_CALFW.txt`, `pairs_CPLFW.txt`): two consecutive lines per pair, `image_name label`. The
  rule applied: a pair whose two labels are nonzero is a matched pair, two zeros a mismatched one; a pair whose two
  labels differ is an error (it means the lines are out of step). 10 contiguous folds (600 pairs each for 6,000), as
  in their .bin. Images are looked up in the `aligned images` folder next to the list when there is one.
Every parse error names the file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["PairList", "contiguous_folds", "read_lfw_pairs", "read_path_pairs", "read_cfp_protocol", "read_pairs",
           "is_cfp_protocol", "read_calfw_pairs", "is_calfw_pairs", "write_lfw_pairs", "write_path_pairs"]


@dataclass
class PairList:
    """Pairs of image paths (relative to `base`, or absolute), with same/different flags and fold ids."""
    left: list[str]
    right: list[str]
    issame: np.ndarray
    folds: np.ndarray
    base: str = ""
    lines: list[str] = field(default_factory=list)  # "file:line" of each pair, for messages

    def __len__(self) -> int:
        return len(self.left)


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


def contiguous_folds(n: int, k: int = 10) -> np.ndarray:
    """Fold id per pair in k contiguous blocks sized as sklearn's KFold(n_splits=k) (insightface's split): the
    first n % k folds hold one pair more. (k * i) // n, used before, puts the larger folds elsewhere when n % k."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k, dtype=np.int64), sizes)


def _header_ints(line: str) -> list[int] | None:
    parts = line.split()
    if not 1 <= len(parts) <= 2:
        return None
    try:
        return [int(p) for p in parts]
    except ValueError:
        return None


def read_lfw_pairs(path: str | os.PathLike, ext: str = "jpg") -> PairList:
    """The original LFW pairs.txt layout (see the module docstring); paths use extension `ext`."""
    path = str(path)
    lines = [(n, ln) for n, ln in enumerate(_read_lines(path), 1) if ln.strip()]
    if not lines:
        raise DataFormatError(f"{path}: empty pairs file")
    header = _header_ints(lines[0][1])
    if header is None or min(header) <= 0:
        raise DataFormatError(f"{path}:{lines[0][0]}: expected a header 'folds<TAB>pairs_per_half_fold', "
                              f"got '{lines[0][1][:60]}'")
    body = lines[1:]
    expected = header[0] * 2 * header[1] if len(header) == 2 else 2 * header[0]
    if len(body) != expected:
        raise DataFormatError(f"{path}: header '{lines[0][1].strip()}' announces {expected} pairs, "
                              f"the file holds {len(body)}")
    left, right, same, where = [], [], [], []
    for n, ln in body:
        p = ln.split()
        try:
            if len(p) == 3:
                a, b, s = (p[0], int(p[1])), (p[0], int(p[2])), True
            elif len(p) == 4:
                a, b, s = (p[0], int(p[1])), (p[2], int(p[3])), False
            else:
                raise ValueError
            if a[1] < 0 or b[1] < 0 or a[1] > 9999_9999 or b[1] > 9999_9999:
                raise ValueError
        except ValueError:
            raise DataFormatError(f"{path}:{n}: expected 'name i j' or 'name1 i name2 j', got '{ln[:80]}'") from None
        left.append(f"{a[0]}/{a[0]}_{a[1]:04d}.{ext}")
        right.append(f"{b[0]}/{b[0]}_{b[1]:04d}.{ext}")
        same.append(s)
        where.append(f"{path}:{n}")
    if len(header) == 2:
        folds = np.arange(len(body), dtype=np.int64) // (2 * header[1])
    else:
        folds = contiguous_folds(len(body))
    return PairList(left, right, np.array(same, dtype=np.bool_), folds, lines=where)


_FLAGS = {"1": True, "-1": False, "0": False, "true": True, "false": False, "same": True, "diff": False}


def read_path_pairs(path: str | os.PathLike) -> PairList:
    """Two-path pair lists: `left right flag`, `left right flag fold` or `fold left right flag`."""
    path = str(path)
    left, right, same, fold_col, where = [], [], [], [], []
    for n, ln in enumerate(_read_lines(path), 1):
        p = ln.split()
        if not p:
            continue
        try:
            if len(p) == 3 and p[2].lower() in _FLAGS:
                l, r, s, f = p[0], p[1], _FLAGS[p[2].lower()], None
            elif len(p) == 4 and p[2].lower() in _FLAGS:
                l, r, s, f = p[0], p[1], _FLAGS[p[2].lower()], int(p[3])
            elif len(p) == 4 and p[3].lower() in _FLAGS:
                l, r, s, f = p[1], p[2], _FLAGS[p[3].lower()], int(p[0])
            else:
                raise ValueError
            if f is not None and not 0 <= f < 1_000_000:
                raise ValueError
        except ValueError:
            raise DataFormatError(f"{path}:{n}: expected 'left right 1|-1' (optionally with a fold column), "
                                  f"got '{ln[:80]}'") from None
        if left and (f is not None) != bool(fold_col):
            raise DataFormatError(f"{path}:{n}: fold column present on some lines only")
        left.append(l)
        right.append(r)
        same.append(s)
        if f is not None:
            fold_col.append(f)
        where.append(f"{path}:{n}")
    if not left:
        raise DataFormatError(f"{path}: pairs file holds no pairs")
    if fold_col:
        _, folds = np.unique(np.asarray(fold_col, dtype=np.int64), return_inverse=True)
        folds = folds.astype(np.int64)
    else:
        folds = contiguous_folds(len(left))
    return PairList(left, right, np.array(same, dtype=np.bool_), folds, lines=where)


def is_cfp_protocol(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "Split").is_dir() or (p.name in ("FP", "FF") and p.parent.name == "Split"))


def _cfp_list(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for n, ln in enumerate(_read_lines(str(path)), 1):
        p = ln.split(None, 1)
        if not p:
            continue
        try:
            if len(p) != 2:
                raise ValueError
            out[int(p[0])] = p[1].strip()
        except ValueError:
            raise DataFormatError(f"{path}:{n}: expected 'index path', got '{ln[:80]}'") from None
    return out


def read_cfp_protocol(path: str | os.PathLike) -> PairList:
    """CFP-FP (or FF) original protocol from the `Protocol` folder or its `Split/FP` (`Split/FF`) folder."""
    p = Path(path)
    if (p / "Split").is_dir():
        protocol, split = p, "FP"
    elif p.name in ("FP", "FF") and p.parent.name == "Split":
        protocol, split = p.parent.parent, p.name
    else:
        raise DataFormatError(f"{p}: not a CFP Protocol folder (no Split/FP)")
    for name in ("Pair_list_F.txt", "Pair_list_P.txt"):
        if not (protocol / name).is_file():
            raise DataFormatError(f"{protocol}: missing {name}")
    frontal = _cfp_list(protocol / "Pair_list_F.txt")
    second = frontal if split == "FF" else _cfp_list(protocol / "Pair_list_P.txt")
    split_dir = protocol / "Split" / split
    fold_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir()) if split_dir.is_dir() else []
    if not fold_dirs:
        raise DataFormatError(f"{split_dir}: no fold folders (01..10)")
    left, right, same, folds, where = [], [], [], [], []
    for k, fd in enumerate(fold_dirs):
        for fname, flag in (("same.txt", True), ("diff.txt", False)):
            f = fd / fname
            if not f.is_file():
                raise DataFormatError(f"{fd}: missing {fname}")
            for n, ln in enumerate(_read_lines(str(f)), 1):
                if not ln.strip():
                    continue
                try:
                    a, b = (int(v) for v in ln.replace(",", " ").split())
                except ValueError:
                    raise DataFormatError(f"{f}:{n}: expected 'i,j', got '{ln[:80]}'") from None
                if a not in frontal or b not in second:
                    raise DataFormatError(f"{f}:{n}: index {a if a not in frontal else b} is not in the pair list")
                left.append(frontal[a])
                right.append(second[b])
                same.append(flag)
                folds.append(k)
                where.append(f"{f}:{n}")
    return PairList(left, right, np.array(same, dtype=np.bool_), np.array(folds, dtype=np.int64),
                    base=str(protocol), lines=where)


CALFW_IMAGE_FOLDERS = ("aligned images", "aligned_images")  # as CALFW / CPLFW ship, and without the space


def _name_label(line: str) -> tuple[str, int] | None:
    parts = line.split()
    if len(parts) != 2:
        return None
    try:
        return parts[0], int(parts[1])
    except ValueError:
        return None


def is_calfw_pairs(first_line: str) -> bool:
    """A CALFW / CPLFW list starts with `image_name label` (a name that is not a number)."""
    nl = _name_label(first_line)
    return nl is not None and _header_ints(first_line) is None


def read_calfw_pairs(path: str | os.PathLike) -> PairList:
    """CALFW / CPLFW native pair lists (see the module docstring for the label rule)."""
    path = str(path)
    rows = [(n, ln) for n, ln in enumerate(_read_lines(path), 1) if ln.strip()]
    if not rows:
        raise DataFormatError(f"{path}: empty pairs file")
    if len(rows) % 2:
        raise DataFormatError(f"{path}: {len(rows)} lines; a CALFW/CPLFW list has two lines per pair")
    parsed = []
    for n, ln in rows:
        nl = _name_label(ln)
        if nl is None or nl[1] < 0:
            raise DataFormatError(f"{path}:{n}: expected 'image_name label' (label >= 0), got '{ln[:80]}'")
        parsed.append(nl)
    left, right, same, where = [], [], [], []
    for k in range(0, len(parsed), 2):
        (a, la), (b, lb) = parsed[k], parsed[k + 1]
        if la != lb:
            raise DataFormatError(f"{path}:{rows[k + 1][0]}: label {lb} differs from the pair's first line "
                                  f"({path}:{rows[k][0]}, label {la}); the two lines of a pair carry one label")
        left.append(a)
        right.append(b)
        same.append(la != 0)
        where.append(f"{path}:{rows[k][0]}")
    base = next((str(Path(path).parent / d) for d in CALFW_IMAGE_FOLDERS if (Path(path).parent / d).is_dir()), "")
    return PairList(left, right, np.array(same, dtype=np.bool_), contiguous_folds(len(left)), base=base,
                    lines=where)


def read_pairs(path: str | os.PathLike) -> PairList:
    """Read any supported pair layout, chosen by what is on disk (a header line means LFW pairs.txt)."""
    path = str(path)
    if is_cfp_protocol(path):
        return read_cfp_protocol(path)
    if os.path.isdir(path):
        raise DataFormatError(f"{path}: a folder, but not a CFP Protocol folder; give a pairs file")
    for ln in _read_lines(path):
        if ln.strip():
            if _header_ints(ln) is not None:
                return read_lfw_pairs(path)
            return read_calfw_pairs(path) if is_calfw_pairs(ln) else read_path_pairs(path)
    raise DataFormatError(f"{path}: empty pairs file")


def write_lfw_pairs(path: str | os.PathLike, matched: list[list[tuple[str, int, int]]],
                    mismatched: list[list[tuple[str, int, str, int]]]) -> None:
    """Per fold, matched (name, i, j) and mismatched (name1, i, name2, j) pairs; equal counts in every fold."""
    n = len(matched[0])
    if any(len(m) != n for m in matched) or any(len(m) != n for m in mismatched):
        raise ValueError("every fold needs the same number of matched and mismatched pairs")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{len(matched)}\t{n}\n")
        for mf, nf in zip(matched, mismatched):
            for name, i, j in mf:
                f.write(f"{name}\t{i}\t{j}\n")
            for a, i, b, j in nf:
                f.write(f"{a}\t{i}\t{b}\t{j}\n")


def write_path_pairs(path: str | os.PathLike, left: list[str], right: list[str], issame, folds=None) -> None:
    """The original project's two-path layout: `left right 1|-1` (plus a fold column when `folds` is given)."""
    with open(path, "w", encoding="utf-8") as f:
        for k, (a, b, s) in enumerate(zip(left, right, issame)):
            tail = f" {int(folds[k])}" if folds is not None else ""
            f.write(f"{a} {b} {1 if s else -1}{tail}\n")
