"""Where a model runs and in which precision: one rule for training and for every evaluation script.

    resolve_device("auto")                 -> cuda:0 where CUDA is present, else cpu
    autocast_dtype("auto", device)         -> bf16 where the device runs it natively, fp16 on older GPUs, else None
    with autocast(device, dtype): ...      -> torch.autocast, or nothing in full precision
"""
from __future__ import annotations

import contextlib
import logging

import torch

__all__ = ["AMP_NAMES", "resolve_device", "prepare_device", "native_bf16", "fast_low_precision", "autocast_dtype",
           "autocast", "hide_cuda_probe_message"]

# Every spelling a config or a command line may use for an autocast precision; "auto" picks the fast one.
AMP_NAMES: dict[str, torch.dtype | None | str] = {
    "none": None, "": None, "fp32": None, "float32": None,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "auto": "auto",
}


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local_rank> when CUDA is present, else cpu; "cuda" -> this process's GPU (torchrun sets
    local_rank); "cpu", "cuda:N" as written. A GPU that is not there is a one-line ValueError naming the device."""
    if isinstance(name, torch.device):
        return name
    text = str(name).strip().lower()
    if text in ("", "auto"):
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda":
        text = f"cuda:{local_rank}"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"device: cannot parse '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: '{name}' requested but CUDA is not available (use --device=cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device: '{name}' does not exist ({torch.cuda.device_count()} GPU(s) visible)")
    return device


def prepare_device(device: torch.device) -> None:
    """Make `device` this process's GPU and let cuDNN pick its fastest kernels (the inputs are fixed-size, so the
    search happens once). Without set_device, a run on cuda:N (N > 0) would still open a context on GPU 0, e.g. from
    the DataLoader's pin-memory thread. A no-op on CPU."""
    if device.type != "cuda":
        return
    if device.index is not None:
        torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True


def native_bf16() -> bool:
    """Whether the current GPU runs bfloat16 natively (Ampere and later). torch's default also counts emulation,
    which V100 / T4 offer for matmuls but for which cuDNN has no convolution kernels."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def fast_low_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype that is fast on `device`: bf16 where the hardware has it (Ampere+ GPUs; CPUs with
    AVX512-BF16 or AMX, where oneDNN runs bf16 convolutions natively), fp16 on older GPUs, none on other CPUs
    (emulated bf16 would be slower than float32)."""
    if device.type == "cuda":
        return torch.bfloat16 if native_bf16() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def autocast_dtype(name: str | torch.dtype | None, device: torch.device, key: str = "amp") -> torch.dtype | None:
    """The autocast dtype for a precision name (see AMP_NAMES) on `device`, or None for full precision.

    fp16 needs CUDA (on CPU it would run without the GradScaler's overflow protection and slowly), and bf16 on a
    GPU needs one that has it; either mistake is a ValueError naming `key`.
    """
    if name is None or isinstance(name, torch.dtype):
        dtype = name
    else:
        text = str(name).strip().lower()
        if text not in AMP_NAMES:
            raise ValueError(f"{key}: '{name}' is not one of: none, auto, bf16, fp16")
        dtype = AMP_NAMES[text]
    if dtype == "auto":
        return fast_low_precision(device)
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError(f"{key}: float16 autocast needs CUDA; use bfloat16 on CPU")
    if dtype is torch.bfloat16 and device.type == "cuda" and not native_bf16():
        raise ValueError(f"{key}: this GPU has no bfloat16; use float16")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype` on `device`'s type, or a no-op context in full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class _NoCudaProbeMessage(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


def hide_cuda_probe_message() -> None:
    """Drop the "No CUDA runtime is found, using CUDA_HOME=..." warning torch's C++-extension module logs when it is
    first imported (torch.compile imports it) on a machine with a CUDA toolkit folder but no GPU: on a CPU machine
    it is expected, and it reads like an error to a user. Other messages of that logger pass."""
    if torch.cuda.is_available():
        return
    log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaProbeMessage) for f in log.filters):
        log.addFilter(_NoCudaProbeMessage())
