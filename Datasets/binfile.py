"""insightface verification `.bin` files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...): a pickle of (bins, issame).

`bins` holds 2N encoded images (pair i = bins[2i], bins[2i + 1]), `issame` N booleans. The files were written by
Python 2, so they load with encoding='bytes'. Unpickling runs code named in the file, so the unpickler here only
resolves builtin containers and scalars, `_codecs.encode` (how Python 3 pickles bytes at protocol 2) and numpy
arrays of plain dtypes; anything else in a file is refused as a `DataFormatError`, never executed.
"""
from __future__ import annotations

import builtins
import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["load_bin", "save_bin", "RestrictedUnpickler"]

def _safe_dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:  # object arrays would unpickle arbitrary objects element by element
        raise pickle.UnpicklingError("refusing a numpy object array")
    return dt


def _safe_reconstruct(subtype, shape, dtype):
    # numpy pickles an empty (0,) array and fills it by __setstate__, which checks the data length against the
    # shape; a larger shape here would allocate memory the file never paid for
    if subtype is not np.ndarray or int(np.prod(shape)) != 0:
        raise pickle.UnpicklingError("unexpected numpy array reconstruction")
    return np.ndarray(shape, dtype=_safe_dtype(dtype))


_NUMPY = {"_reconstruct": _safe_reconstruct, "scalar": None, "ndarray": np.ndarray, "dtype": _safe_dtype}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
_BUILTINS = {"bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset", "bool", "int", "float", "str",
             "complex", "long"}


class RestrictedUnpickler(pickle._Unpickler):
    """Resolves only plain data types; everything else raises UnpicklingError.

    The pure-Python unpickler on purpose: the C one allocates the length a BINBYTES opcode claims before reading
    it, so a damaged 100-byte file can ask for gigabytes; this one reads (bounded by the file) first.
    """

    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return int if name == "long" else getattr(builtins, name)
        if module == "_codecs" and name == "encode":  # Python 3 bytes pickled at protocol <= 2
            return codecs.encode
        if module in _NUMPY_MODULES and name in _NUMPY:
            return _NUMPY[name] or super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (only plain data is allowed)")


def _as_bytes(x) -> bytes | None:
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        return x.tobytes()
    return None


def load_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """(encoded images, issame bool array) of a .bin file; any damage raises `DataFormatError` naming the file."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can raise almost anything: report it as a format error
        raise DataFormatError(f"{path}: not a readable verification .bin ({type(exc).__name__}: {exc})"[:300]) from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataFormatError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}")
    raw_bins, raw_same = obj
    if not isinstance(raw_bins, (list, tuple)):
        raise DataFormatError(f"{path}: bins is a {type(raw_bins).__name__}, expected a list of encoded images")
    bins = []
    for i, b in enumerate(raw_bins):
        bb = _as_bytes(b)
        if bb is None:
            raise DataFormatError(f"{path}: image {i} is a {type(b).__name__}, expected encoded bytes")
        bins.append(bb)
    try:
        issame = np.asarray(raw_same)
        if issame.ndim != 1 or issame.dtype.kind not in "biu":
            raise ValueError
        issame = issame.astype(np.bool_)
    except (ValueError, TypeError):
        raise DataFormatError(f"{path}: issame_list is not a list of booleans") from None
    if len(bins) != 2 * len(issame) or len(issame) == 0:
        raise DataFormatError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected 2 per pair)")
    return bins, issame


def save_bin(path: str | os.PathLike, bins: list[bytes], issame) -> None:
    """Write (bins, issame_list), the layout insightface's .bin files hold, as a pickle of protocol 4.

    Protocol 4 is what Python 3.4+ loaders read (insightface's `pickle.load(f, encoding='bytes')`, this module's
    load_bin); Python 2 cannot read it. Protocol 2 would be, but it stores each bytes object as latin-1 text
    re-encoded by `_codecs.encode`, which makes a JPEG .bin about 1.5x larger.
    """
    issame = [bool(s) for s in issame]
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{len(bins)} images for {len(issame)} pairs")
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(([bytes(b) for b in bins], issame), f, protocol=4)
    os.replace(tmp, path)
