"""The parsed `.idx` of a RecordIO pair, at web scale: one (N, 2) int64 table of (key, offset), sorted by key.

WebFace42M's index has 42 M lines (~0.9 GB of text). Parsing it with Python objects took minutes and ~10 GB, and
every DataLoader worker received the arrays by pickle (1.7 GB each). Here the text is parsed in 64 MB chunks by
numpy's C text parser and written straight to a cache file beside the index (`train.idx.<fingerprint>.npy`, or
under ~/.cache/face_pytorch/rec_index when that folder is read-only); later opens memory-map it, and a pickled
index carries only the cache path, so workers share the page cache instead of private copies. The fingerprint is
the size and mtime of both files: a rewritten .idx or .rec gets a new parse. Small indexes (< CACHE_MIN_BYTES)
are parsed in memory and not cached: they parse in milliseconds, and a cache would only be files to go stale.

A key listed twice keeps its first offset (what an argsort-and-search over the file order gave before).
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["RecIndex", "CACHE_MIN_BYTES"]

log = logging.getLogger(__name__)

CACHE_MIN_BYTES = 8 << 20  # ~400 k records: below this a parse takes < 0.1 s and caching is not worth a file
_CHUNK = 64 << 20  # text per parse step: large enough for numpy's speed, small enough for a flat memory profile
_VERSION = 1  # bump when the cache layout changes: old caches then simply miss
_HEADER_BYTES = 128  # fixed .npy header, so it can be written before the record count is known


def _npy_header(n: int) -> bytes:
    text = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d, 2), }" % n
    body = text + " " * (_HEADER_BYTES - 10 - 1 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def _fingerprint(idx_path: str, rec_path: str) -> str:
    parts = [_VERSION]
    for p in (idx_path, rec_path):
        st = os.stat(p)
        parts += [st.st_size, st.st_mtime_ns]
    return "-".join(f"{v:x}" for v in parts)


class _ChunkParser:
    """Turns successive text chunks into validated (n, 2) int64 arrays, counting lines for error messages."""

    def __init__(self, idx_path: str, rec_size: int | None):
        self.idx_path, self.rec_size = idx_path, rec_size
        self.line = 0  # lines consumed so far
        self.last_key: int | None = None
        self.sorted = True  # keys strictly increasing in file order (then no sort and no duplicate handling)

    def parse(self, text: bytes) -> np.ndarray:
        n_lines = text.count(b"\n")
        values = None
        with warnings.catch_warnings():  # numpy warns (not raises) when it meets a token that is not an integer
            warnings.simplefilter("error", DeprecationWarning)
            try:
                values = np.fromstring(text, dtype=np.int64, sep=" ")
            except (ValueError, DeprecationWarning):
                values = None
        if values is None or values.size != 2 * n_lines:  # blank lines, odd tokens: the exact per-line reading
            values = self._parse_slowly(text)
        table = values.reshape(-1, 2)
        self._check(table)
        self.line += n_lines
        return table

    def _parse_slowly(self, text: bytes) -> np.ndarray:
        out: list[int] = []
        for n, ln in enumerate(text.split(b"\n"), self.line + 1):
            parts = ln.split()
            if not parts:
                continue
            try:
                if len(parts) != 2:
                    raise ValueError
                k, o = int(parts[0]), int(parts[1])
                if not (-(1 << 63) <= k < (1 << 63) and -(1 << 63) <= o < (1 << 63)):
                    raise ValueError
            except ValueError:
                shown = ln[:60].decode("utf-8", "replace")
                raise DataFormatError(f"{self.idx_path}:{n}: expected 'key<TAB>offset', got '{shown}'") from None
            out += (k, o)
        return np.array(out, dtype=np.int64)

    def _check(self, table: np.ndarray) -> None:
        if not len(table):
            return
        keys, offs = table[:, 0], table[:, 1]
        if self.rec_size is not None:
            bad = np.flatnonzero((offs < 0) | (offs > self.rec_size - 8))
            if len(bad):
                i = int(bad[0])
                raise DataFormatError(f"{self.idx_path}: record {int(keys[i])} at offset {int(offs[i])} lies past "
                                      f"the end of the .rec file ({self.rec_size} bytes)")
        if self.sorted and ((self.last_key is not None and keys[0] <= self.last_key)
                            or (len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])))):
            self.sorted = False
        self.last_key = int(keys[-1])


def _chunks(idx_path: str):
    """The index text in pieces that end at a line break."""
    try:
        fh = open(idx_path, "rb")
    except OSError as exc:
        raise DataFormatError(f"{idx_path}: cannot read index file ({exc.strerror or exc})") from None
    with fh:
        rest = b""
        left = os.fstat(fh.fileno()).st_size
        while True:
            block = fh.read(max(1, min(_CHUNK, left)))  # read(n) allocates n bytes up front
            left -= len(block)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut]
        if rest.strip():
            yield rest + b"\n"


def _sorted_unique(table: np.ndarray) -> np.ndarray:
    """Sorted by key; of a repeated key the first line's offset (stable sort keeps file order among equals)."""
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    keep = np.ones(len(table), dtype=bool)
    keep[1:] = table[1:, 0] != table[:-1, 0]
    return np.ascontiguousarray(table[keep])


def _cache_candidates(idx_path: str, fp: str) -> list[Path]:
    p = Path(idx_path).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "face_pytorch" / "rec_index"
    tag = hashlib.sha1(str(p).encode()).hexdigest()[:12]
    return [p.with_name(f"{p.name}.{fp}.npy"), base / f"{tag}-{p.name}.{fp}.npy"]


class RecIndex:
    """Sorted (key, offset) table of an index file, memory-mapped from its cache when the index is large.

    Args:
        idx_path: the .idx text file.
        rec_path: its .rec (for the fingerprint and the offset bounds).
        rec_size: size of the .rec in bytes (offsets that leave no room for a record header are errors).
    """

    def __init__(self, idx_path: str, rec_path: str, rec_size: int | None = None):
        self.idx_path, self.rec_path, self.rec_size = str(idx_path), str(rec_path), rec_size
        self.cache_path: str | None = None
        self._table: np.ndarray | None = None
        try:
            big = os.path.getsize(self.idx_path) >= CACHE_MIN_BYTES
        except OSError as exc:
            raise DataFormatError(f"{self.idx_path}: cannot read index file ({exc.strerror or exc})") from None
        if big:
            self._open_cached()
        else:
            self._table = self._parse_in_memory()
        if not len(self.table):
            raise DataFormatError(f"{self.idx_path}: index file holds no records")
        self._describe()

    # -- building
    def _parse_in_memory(self) -> np.ndarray:
        parser = _ChunkParser(self.idx_path, self.rec_size)
        parts = [parser.parse(c) for c in _chunks(self.idx_path)]
        table = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
        return table if parser.sorted else _sorted_unique(table)

    def _open_cached(self) -> None:
        fp = _fingerprint(self.idx_path, self.rec_path)
        candidates = _cache_candidates(self.idx_path, fp)
        for path in candidates:
            if path.is_file():
                self.cache_path = str(path)
                return
        for path in candidates:
            try:
                self._write_cache(path)
            except OSError as exc:
                log.info("rec index: cannot write the parsed-index cache %s (%s)", path, exc.strerror or exc)
                continue
            self.cache_path = str(path)
            for stale in path.parent.glob(path.name.rsplit(".", 2)[0] + ".*.npy"):
                if stale != path:  # an earlier parse of a file that has since changed
                    try:
                        stale.unlink()
                    except OSError:
                        pass
            return
        log.warning("rec index: no writable cache folder for %s; the index stays in memory (pickled to each "
                    "DataLoader worker)", self.idx_path)
        self._table = self._parse_in_memory()

    def _write_cache(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        parser = _ChunkParser(self.idx_path, self.rec_size)
        n = 0
        try:
            with open(tmp, "wb") as out:
                out.write(_npy_header(0))
                for chunk in _chunks(self.idx_path):
                    table = parser.parse(chunk)
                    out.write(table.tobytes())  # written as parsed: the whole table is never held in memory
                    n += len(table)
                out.seek(0)
                out.write(_npy_header(n))
            if not parser.sorted:  # rare (insightface writes keys in order): sort once, in memory
                log.info("rec index: %s lists keys out of order; sorting the parsed copy", self.idx_path)
                table = _sorted_unique(np.load(tmp))
                with open(tmp, "wb") as out:
                    out.write(_npy_header(len(table)))
                    out.write(table.tobytes())
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise

    def _describe(self) -> None:
        keys = self.table[:, 0]
        self._n = len(keys)
        self._first = int(keys[0])
        self._last = int(keys[-1])
        # keys first..first+n-1 without gaps (insightface sets): a key's row is key - first, no search at all
        self._contiguous = self._last - self._first == self._n - 1

    # -- pickling: workers re-open the memory map instead of receiving the table
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.cache_path is not None:
            state["_table"] = None
        return state

    @property
    def table(self) -> np.ndarray:
        if self._table is None:
            try:
                self._table = np.load(self.cache_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataFormatError(f"{self.cache_path}: cannot map the parsed-index cache ({exc}); delete it "
                                      f"to parse {self.idx_path} again") from None
        return self._table

    @property
    def keys(self) -> np.ndarray:
        return self.table[:, 0]

    @property
    def offsets(self) -> np.ndarray:
        return self.table[:, 1]

    def __len__(self) -> int:
        return self._n

    def row_of(self, key: int) -> int:
        """Row of `key` in the table, or -1 when it is not indexed."""
        key = int(key)
        if self._contiguous:
            return key - self._first if self._first <= key <= self._last else -1
        keys = self.keys  # a strided view: bisect reads ~log2(N) entries where np.searchsorted would copy it
        i = bisect.bisect_left(keys, key)
        return i if i < self._n and int(keys[i]) == key else -1

    def count_in(self, lo: int, hi: int) -> int:
        """How many indexed keys lie in [lo, hi)."""
        if self._contiguous:
            return max(0, min(hi, self._last + 1) - max(lo, self._first))
        keys = self.keys
        return bisect.bisect_left(keys, hi) - bisect.bisect_left(keys, lo)
