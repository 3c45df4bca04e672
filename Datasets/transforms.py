"""Image decoding and the network input contract: RGB, resized to (H, W), (x - 127.5) / 128, CHW float32.

`fit_image` first brings an image of another aspect ratio to the input's (stretch, centre-crop or pad), for sets
that are not aligned crops (ORL's 92x112 greyscale faces, say).
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["normalize_image", "decode_image", "fit_image", "FIT_MODES", "MAX_DECODE_PIXELS"]

# Face crops are small; a header claiming more pixels than this is a corrupt or hostile file, refused before
# the decoder allocates the frame (PIL's own bomb limit, ~179M pixels, is far too generous for face data).
MAX_DECODE_PIXELS = 4096 * 4096
FIT_MODES = ("stretch", "crop", "pad")


def decode_image(data: bytes | bytearray | memoryview | str, max_pixels: int = MAX_DECODE_PIXELS) -> Image.Image:
    """Decode encoded image bytes (or read a file path) to a fully loaded RGB PIL image.

    Raises whatever PIL raises for a corrupt or truncated file, and ValueError for an oversized one; the callers
    turn these into a skip (training) or a `DataFormatError` naming the file (evaluation).
    """
    src = data if isinstance(data, str) else io.BytesIO(bytes(data))
    with Image.open(src) as img:
        w, h = img.size
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise ValueError(f"image size {w}x{h} outside 1..{max_pixels} pixels")
        img.load()  # decode now, inside the caller's error handling
        return img.convert("RGB") if img.mode != "RGB" else img.copy()


def normalize_image(img: Image.Image | np.ndarray, input_hw: Sequence[int], color_order: str = "RGB") -> torch.Tensor:
    """PIL image or uint8 HWC RGB array -> float32 tensor (3, H, W) in the backbones' input convention.

    Resized (bilinear) only when its size differs from `input_hw`; channels reversed when `color_order == "BGR"`
    (for models trained on OpenCV-decoded images).
    """
    h, w = int(input_hw[0]), int(input_hw[1])
    if isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        elif arr.ndim == 3 and arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image array, got shape {tuple(img.shape)}")
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.shape[0] != h or arr.shape[1] != w:
            arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
    else:
        if img.mode != "RGB":
            img = img.convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(img)
    if color_order == "BGR":
        arr = arr[:, :, ::-1]
    elif color_order != "RGB":
        raise ValueError(f"color_order must be 'RGB' or 'BGR', got '{color_order}'")
    # numpy, not torch ops: a single-threaded pass over 37k values, with no intra-op thread pool to wake
    # (torch's costs milliseconds per image on a busy machine when the loader runs in the main process)
    out = np.empty((3, h, w), dtype=np.float32)
    np.subtract(arr.transpose(2, 0, 1), np.float32(127.5), out=out, dtype=np.float32)
    out *= np.float32(1.0 / 128.0)
    return torch.from_numpy(out)


def fit_image(img: Image.Image, input_hw: Sequence[int], mode: str = "stretch") -> Image.Image:
    """Bring a PIL image to the aspect ratio of `input_hw` (H, W): "stretch" leaves it (the resize to the input
    stretches it), "crop" cuts the centre, "pad" adds black borders. The final resize is normalize_image's."""
    if mode not in FIT_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(FIT_MODES)}, got {mode!r}")
    h, w = int(input_hw[0]), int(input_hw[1])
    iw, ih = img.size
    if mode == "stretch" or iw * h == ih * w:
        return img
    if mode == "crop":
        if iw * h > ih * w:  # too wide
            cw = round(ih * w / h)
            left = (iw - cw) // 2
            return img.crop((left, 0, left + cw, ih))
        ch = round(iw * h / w)
        top = (ih - ch) // 2
        return img.crop((0, top, iw, top + ch))
    if iw * h > ih * w:  # pad: too wide -> taller canvas
        canvas = Image.new(img.mode, (iw, round(iw * h / w)))
    else:
        canvas = Image.new(img.mode, (round(ih * w / h), ih))
    canvas.paste(img, ((canvas.size[0] - iw) // 2, (canvas.size[1] - ih) // 2))
    return canvas
