"""Which low-precision matmul a score search filters with, and the rounding model that makes its results exact.

The search (megaface_search.py) scores in bf16/fp16 only to pick candidates; this module says which precision is
fast on a device ("auto") and how far a low-precision score can be from the exact one, so that every candidate that
matters is rescored in float64.
"""
from __future__ import annotations

import time

import torch

from ..device import native_bf16

__all__ = ["PRECISIONS", "LOW_DTYPES", "UNIT_ROUNDOFF", "resolve_precision", "rounding_model"]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LOW_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# half the spacing at 1, from torch's own description of each type (bf16 keeps 8 significant bits: 2^-8; fp16
# 2^-11; fp32 2^-24), not typed by hand: a hand-typed 2^-9 for bf16 once let a better distractor go unopened
UNIT_ROUNDOFF = {name: torch.finfo(dtype).eps / 2 for name, dtype in LOW_DTYPES.items()}
_PRECISION_CACHE: dict[str, str] = {}


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"auto" -> the fastest matmul precision on `device`: bf16 on GPUs that have it (else fp16), and on CPUs
    whichever of bf16/fp32 is faster in a quick trial (bf16 is several times faster with AVX512-BF16 or AMX, and
    slower where it is emulated)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if native_bf16() else "fp16"
    if "cpu" not in _PRECISION_CACHE:
        a32, b32 = torch.randn(512, 512), torch.randn(2048, 512)
        times = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = a32.to(dtype), b32.to(dtype)
            a @ b.T  # warm-up: kernel selection
            t0 = time.perf_counter()
            for _ in range(3):
                a @ b.T
            times[name] = time.perf_counter() - t0
        _PRECISION_CACHE["cpu"] = "bf16" if times["bf16"] < 0.8 * times["fp32"] else "fp32"
    return _PRECISION_CACHE["cpu"]


def rounding_model(precision: str, device: torch.device) -> tuple[float | None, float]:
    """(u_in, u_out) of the low-precision matmul: the unit roundoff applied to its inputs inside the kernel when
    that is invisible to us (None when we round the inputs ourselves and measure the residual), and the roundoff of
    its output. fp32 is exact on input unless torch's matmul precision is relaxed (TF32 on GPUs, bf16 in oneDNN)."""
    if precision != "fp32":
        return None, UNIT_ROUNDOFF[precision]
    relaxed = torch.get_float32_matmul_precision() != "highest"
    if device.type == "cuda" and (relaxed or torch.backends.cuda.matmul.allow_tf32):
        return 2.0 ** -11, 2.0 ** -24
    if relaxed:
        return UNIT_ROUNDOFF["bf16"], 2.0 ** -24
    return 0.0, 2.0 ** -24
