"""MXNet RecordIO (`train.rec` + `train.idx`) in pure Python, as insightface ships its training sets.

Record framing (dmlc-core recordio): uint32 magic 0xCED7230A, uint32 lrecord (bits 29-31 continuation flag,
bits 0-28 length), payload, zero padding to 4 bytes. A payload holding the magic number at a 4-byte-aligned
position is split by the writer into parts (flag 1 = first, 2 = middle, 3 = last) with the magic dropped at each
cut; the reader puts it back. The payload of an image record is an IRHeader ('<IfQQ': flag, label, id, id2),
`flag` float32 label values when flag > 0, then the encoded image.

Every length is checked against the file size before anything is read or allocated, so a corrupt file gives a
`DataFormatError` naming the file and offset, never a huge allocation or an unrelated exception. The file
handle is opened lazily and reopened after a fork, so one reader object is safe in every DataLoader worker.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataFormatError
from .rec_index import RecIndex

__all__ = ["RECORDIO_MAGIC", "IRHeader", "RecordIOReader", "RecordIOWriter", "pack_record",
           "unpack_record"]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
_LEN_MASK = (1 << 29) - 1


@dataclass
class IRHeader:
    """The image-record header; `label` is a float or, when flag > 0, a float32 array of `flag` values."""
    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack_record(header: IRHeader, data: bytes) -> bytes:
    """IRHeader + payload bytes, as `mx.recordio.pack` writes them."""
    label = header.label
    if isinstance(label, (int, float, np.floating, np.integer)):
        return struct.pack(_IR_FORMAT, 0, float(label), header.id, header.id2) + data
    arr = np.asarray(label, dtype="<f4").ravel()
    return struct.pack(_IR_FORMAT, arr.size, 0.0, header.id, header.id2) + arr.tobytes() + data


def unpack_record(payload: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record payload into its IRHeader and the encoded image; `where` names the record in errors."""
    if len(payload) < _IR_SIZE:
        raise DataFormatError(f"{where}: payload of {len(payload)} bytes is shorter than the {_IR_SIZE}-byte IRHeader")
    flag, label, id1, id2 = struct.unpack_from(_IR_FORMAT, payload, 0)
    pos = _IR_SIZE
    if flag > 0:
        if flag * 4 > len(payload) - pos:
            raise DataFormatError(f"{where}: IRHeader announces {flag} label values but the payload holds "
                                  f"{(len(payload) - pos) // 4}")
        label = np.frombuffer(payload, dtype="<f4", count=flag, offset=pos).copy()
        pos += 4 * flag
    return IRHeader(flag, label, id1, id2), payload[pos:]


class RecordIOReader:
    """Random access to the records of an indexed RecordIO file pair.

    Args:
        rec_path: the .rec file.
        idx_path: its .idx file (default: the .rec path with the suffix .idx).
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = str(rec_path)
        self.idx_path = str(idx_path) if idx_path is not None else str(Path(rec_path).with_suffix(".idx"))
        try:
            self.size = os.path.getsize(self.rec_path)
        except OSError as exc:
            raise DataFormatError(f"{self.rec_path}: cannot read record file ({exc.strerror or exc})") from None
        # sorted (key, offset) table, memory-mapped from a parse cache for large indexes (Datasets/rec_index.py)
        self.index = RecIndex(self.idx_path, self.rec_path, self.size)
        self._fh = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.index)

    @property
    def keys(self) -> np.ndarray:
        """Indexed keys, sorted, each once."""
        return self.index.keys

    @property
    def offsets(self) -> np.ndarray:
        """Offsets of `keys`."""
        return self.index.offsets

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fh"], state["_pid"] = None, -1  # a worker opens its own handle
        return state

    def close(self) -> None:
        if self._fh is not None and self._pid == os.getpid():
            self._fh.close()
        self._fh, self._pid = None, -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _file(self):
        # A handle inherited through fork shares its file position with the parent and the other workers.
        if self._fh is None or self._pid != os.getpid():
            try:
                self._fh = open(self.rec_path, "rb")
            except OSError as exc:
                raise DataFormatError(f"{self.rec_path}: cannot open record file ({exc.strerror or exc})") from None
            self._pid = os.getpid()
        return self._fh

    def has_key(self, key: int) -> bool:
        return self.index.row_of(key) >= 0

    def offset_of(self, key: int) -> int:
        row = self.index.row_of(key)
        if row < 0:
            raise DataFormatError(f"{self.idx_path}: no record with key {key}")
        return int(self.index.offsets[row])

    def read_at(self, offset: int) -> bytes:
        """The payload of the record starting at byte `offset` (continuation parts joined)."""
        fh = self._file()
        size = self.size
        pos = int(offset)
        parts: list[bytes] = []
        while True:
            if pos < 0 or pos + 8 > size:
                raise DataFormatError(f"{self.rec_path}: offset {pos} is past the end of the file ({size} bytes)")
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                raise DataFormatError(f"{self.rec_path}: truncated record header at offset {pos}")
            magic, lrec = struct.unpack("<II", head)
            if magic != RECORDIO_MAGIC:
                raise DataFormatError(f"{self.rec_path}: bad magic number 0x{magic:08X} at offset {pos} "
                                      f"(expected 0x{RECORDIO_MAGIC:08X})")
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            if length > size - pos - 8:
                raise DataFormatError(f"{self.rec_path}: record at offset {pos} claims {length} bytes but only "
                                      f"{size - pos - 8} remain (truncated file?)")
            data = fh.read(length)
            if len(data) != length:
                raise DataFormatError(f"{self.rec_path}: truncated record at offset {pos}")
            if parts and cflag not in (2, 3):
                raise DataFormatError(f"{self.rec_path}: record part at offset {pos} has flag {cflag}, expected a "
                                      f"continuation (2 or 3)")
            if not parts and cflag not in (0, 1):
                raise DataFormatError(f"{self.rec_path}: record at offset {pos} starts with continuation flag {cflag}")
            parts.append(data)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)
            pos += 8 + ((length + 3) & ~3)

    def read_header(self, key: int) -> IRHeader:
        """The IRHeader of record `key`, reading only its first bytes (label scans over millions of records)."""
        off = self.offset_of(key)
        where = f"{self.rec_path}: record {key} (offset {off})"
        fh = self._file()
        if off + 8 + _IR_SIZE <= self.size:
            fh.seek(off)
            magic, lrec = struct.unpack("<II", fh.read(8))
            length = lrec & _LEN_MASK
            if magic == RECORDIO_MAGIC and lrec >> 29 == 0 and _IR_SIZE <= length <= self.size - off - 8:
                head = fh.read(_IR_SIZE)
                flag = struct.unpack_from("<I", head)[0]
                if 0 < flag and 4 * flag <= length - _IR_SIZE:
                    head += fh.read(4 * flag)
                return unpack_record(head, where)[0]
        return unpack_record(self.read_at(off), where)[0]  # split or damaged record: the full checks

    def is_label_only(self, key: int) -> bool | None:
        """Whether record `key` holds labels and no image (insightface's header and identity records); None when
        the key is not indexed. Reads the record's first bytes only."""
        if not self.has_key(key):
            return None
        off = self.offset_of(key)
        fh = self._file()
        if off + 8 + _IR_SIZE > self.size:
            return False
        fh.seek(off)
        magic, lrec = struct.unpack("<II", fh.read(8))
        if magic != RECORDIO_MAGIC or lrec >> 29 != 0:
            return False  # damaged or split (an image): reading it says what is wrong
        flag = struct.unpack("<I", fh.read(4))[0]
        return flag > 0 and (lrec & _LEN_MASK) == _IR_SIZE + 4 * flag

    def read(self, key: int) -> bytes:
        """The payload of the record with index key `key`."""
        return self.read_at(self.offset_of(key))

    def read_record(self, key: int) -> tuple[IRHeader, bytes]:
        """(IRHeader, encoded image bytes) of record `key`."""
        off = self.offset_of(key)
        return unpack_record(self.read_at(off), f"{self.rec_path}: record {key} (offset {off})")


class RecordIOWriter:
    """Writes an indexed RecordIO pair readable by mxnet and by `RecordIOReader` (splitting at magic numbers)."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = str(rec_path)
        self.idx_path = str(idx_path) if idx_path is not None else str(Path(rec_path).with_suffix(".idx"))
        self._rec = open(self.rec_path, "wb")
        self._idx = open(self.idx_path, "w")

    def write(self, key: int, payload: bytes) -> None:
        self._idx.write(f"{int(key)}\t{self._rec.tell()}\n")
        cuts = []
        for i in range(0, len(payload) - 3, 4):
            if payload[i:i + 4] == _MAGIC_BYTES:
                cuts.append(i)
        start = 0
        for n, cut in enumerate(cuts):
            chunk = payload[start:cut]
            self._rec.write(struct.pack("<II", RECORDIO_MAGIC, ((1 if n == 0 else 2) << 29) | len(chunk)) + chunk)
            start = cut + 4
        chunk = payload[start:]
        self._rec.write(struct.pack("<II", RECORDIO_MAGIC, ((3 if cuts else 0) << 29) | len(chunk)) + chunk)
        self._rec.write(b"\0" * ((4 - len(chunk) % 4) % 4))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> "RecordIOWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
