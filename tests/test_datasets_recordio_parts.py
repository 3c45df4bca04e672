"""RecordIO records split into parts (cflag 1 = first, 2 = middle, 3 = last) where the payload holds the magic
number at a 4-byte-aligned position: read back against a writer written here from dmlc-core's recordio.cc
WriteRecord (not the project's RecordIOWriter), and the project's writer produces the same bytes."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from Datasets.recordio import IRHeader, RecordIOReader, RecordIOWriter, pack_record

MAGIC = 0xCED7230A
M = struct.pack("<I", MAGIC)


def dmlc_write_record(out: bytearray, payload: bytes) -> None:
    """dmlc::RecordIOWriter::WriteRecord: scan aligned words below len & ~3; at each magic emit the bytes since the
    last cut as a part (flag 1 for the first, 2 after), skip the magic; the rest goes out with flag 3 (0 when never
    cut); pad the record to a multiple of 4 from the payload length."""
    n = len(payload)
    lower_align, upper_align = (n >> 2) << 2, ((n + 3) >> 2) << 2
    dptr = 0
    for i in range(0, lower_align, 4):
        if struct.unpack_from("<I", payload, i)[0] == MAGIC:
            out += struct.pack("<II", MAGIC, ((1 if dptr == 0 else 2) << 29) | (i - dptr))
            out += payload[dptr:i]
            dptr = i + 4
    out += struct.pack("<II", MAGIC, ((3 if dptr else 0) << 29) | (n - dptr))
    out += payload[dptr:]
    out += b"\0" * (upper_align - n)


def _flags(data: bytes, offset: int) -> list[int]:
    """The continuation flags of the record starting at `offset`, read straight from the bytes."""
    flags = []
    while True:
        magic, lrec = struct.unpack_from("<II", data, offset)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        length = lrec & ((1 << 29) - 1)
        offset += 8 + ((length + 3) & ~3)
        if flags[-1] in (0, 3):
            return flags


PAYLOADS = {
    "plain": b"abcdefgh12345",
    "magic_first": M + b"rest of it",
    "magic_middle": b"abcd" + M + b"efghij",
    "magic_last": b"abcdefgh" + M,
    "two_magics_in_a_row": b"abcd" + M + M + b"xyz",
    "three_parts": b"ab" * 2 + M + b"cdef" + M + b"g",
    "unaligned_magic_is_not_cut": b"ab" + M + b"cdefg",
    "only_magic": M,
    "empty": b"",
}
EXPECTED_FLAGS = {"plain": [0], "magic_first": [1, 3], "magic_middle": [1, 3], "magic_last": [1, 3],
                  "two_magics_in_a_row": [1, 2, 3], "three_parts": [1, 2, 3], "unaligned_magic_is_not_cut": [0],
                  "only_magic": [1, 3], "empty": [0]}


def _write_pair(tmp_path, payloads: list[bytes]):
    data = bytearray()
    offsets = []
    for p in payloads:
        offsets.append(len(data))
        dmlc_write_record(data, p)
    (tmp_path / "t.rec").write_bytes(bytes(data))
    (tmp_path / "t.idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))
    return bytes(data), offsets


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_split_records_read_back_exactly(tmp_path, name):
    # the record under test sits between two others, so a wrong part length or padding shows in its neighbour
    payloads = [b"before!", PAYLOADS[name], b"after" + M + b"!"]
    data, offsets = _write_pair(tmp_path, payloads)
    assert _flags(data, offsets[1]) == EXPECTED_FLAGS[name]
    reader = RecordIOReader(tmp_path / "t.rec", tmp_path / "t.idx")
    assert [reader.read(k) for k in range(3)] == payloads


def test_project_writer_matches_the_dmlc_layout(tmp_path):
    payloads = list(PAYLOADS.values())
    data, _ = _write_pair(tmp_path, payloads)
    with RecordIOWriter(tmp_path / "ours.rec", tmp_path / "ours.idx") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    assert (tmp_path / "ours.rec").read_bytes() == data
    assert (tmp_path / "ours.idx").read_text() == (tmp_path / "t.idx").read_text()


def test_image_record_with_magic_in_label_and_image(tmp_path):
    # the magic inside the float32 label array (as bytes) and inside the encoded image, both 4-byte aligned
    label = np.frombuffer(M * 2, dtype="<f4")
    image = b"\xff\xd8" + b"xx" + M + b"jpeg-ish" + M
    payload = pack_record(IRHeader(2, label, 7, 0), image)
    assert payload.count(M) == 4
    data, offsets = _write_pair(tmp_path, [payload])
    assert _flags(data, 0) == [1, 2, 2, 2, 3]
    reader = RecordIOReader(tmp_path / "t.rec", tmp_path / "t.idx")
    header, img = reader.read_record(0)
    assert img == image and header.flag == 2 and header.id == 7
    assert header.label.tobytes() == label.tobytes()
    assert reader.read_header(0).label.tobytes() == label.tobytes()  # the label-scan path of split records
