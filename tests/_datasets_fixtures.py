"""Shared helpers of the dataset tests: small images and an independent RecordIO writer (struct.pack only)."""
from __future__ import annotations

import io
import struct

import numpy as np
import torch
from PIL import Image

__all__ = ["MAGIC", "jpeg_bytes", "expected_tensor", "write_rec"]

MAGIC = 0xCED7230A


def jpeg_bytes(seed: int, size=(112, 112), fmt="JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.kron(rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def expected_tensor(data: bytes, hw=(112, 112), bgr=False) -> torch.Tensor:
    """The input contract computed directly: decode, (x - 127.5) / 128, CHW."""
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((hw[1], hw[0]), Image.BILINEAR),
                     dtype=np.float32)
    if bgr:
        arr = arr[:, :, ::-1]
    return torch.tensor((arr - 127.5) / 128.0).permute(2, 0, 1)


def write_rec(folder, records, header=None, split_magic_key=None):
    """records: list of (key, label (float or list), payload image bytes). Written with struct.pack only."""
    rec, idx = bytearray(), []
    def add(key, flag, label, labels, img):
        payload = struct.pack("<IfQQ", flag, label, 0, 0) + b"".join(struct.pack("<f", v) for v in labels) + img
        idx.append(f"{key}\t{len(rec)}\n")
        if key == split_magic_key:
            # bytes after the JPEG end marker are ignored by decoders: hide a 4-byte-aligned magic there, which the
            # mxnet writer cuts out (first part flag 1, last part flag 3) and the reader must put back
            pad = -len(payload) % 4
            cut = len(payload) + pad
            first, rest = payload + b"\0" * pad, b"tail"
            rec.extend(struct.pack("<II", MAGIC, (1 << 29) | len(first)) + first)
            rec.extend(struct.pack("<II", MAGIC, (3 << 29) | len(rest)) + rest)
            assert cut % 4 == 0
            return
        rec.extend(struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4))
    if header is not None:
        add(0, 2, 0.0, header, b"")
    for key, label, img in records:
        if isinstance(label, list):
            add(key, len(label), 0.0, label, img)
        else:
            add(key, 0, float(label), [], img)
    (folder / "train.rec").write_bytes(bytes(rec))
    (folder / "train.idx").write_text("".join(idx))
