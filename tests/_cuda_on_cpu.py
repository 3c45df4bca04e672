"""Run the CUDA code paths on a CPU-only machine with "cuda" fake tensors (torch's FakeTensorMode).

A fake tensor carries shape, dtype and device but no data; every op computes only its output's metadata, on any
machine, and the mode checks devices as a GPU would: mixing a fake "cuda:0" tensor with a CPU one raises
FakeTensorDeviceMismatchError, reading a value (.item(), int(), .tolist(), `if tensor:`) raises
DataDependentOutputException, .numpy() raises. `allow_non_fake_inputs=False` makes a real tensor reaching an op (one
created outside the mode and captured, e.g. a module attribute) an error too.

    with cuda_on_cpu() as mode:
        net = fake_cuda_module(get_backbone("ResNet50_IR"), mode)
        out = net(torch.randn(2, 3, 112, 112, device="cuda"))

`cuda_on_cpu` also answers the torch.cuda queries the code makes (device_count, bf16 support, set_device), so that
the code takes its GPU branches; pass devices explicitly (torch.cuda.is_available() stays False: patched to True,
torch itself would initialise CUDA and fail). Under the mode autocast("cuda") records its dtype but stays disabled
on a machine without CUDA, so the bf16 paths are run for their devices, not their dtypes.
"""
from __future__ import annotations

import contextlib
from unittest import mock

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode

__all__ = ["cuda_on_cpu", "fake_cuda_module", "fake_cuda_tensor"]


@contextlib.contextmanager
def cuda_on_cpu(gpus: int = 1, native_bf16: bool = True):
    """A FakeTensorMode in which "cuda" tensors exist, with torch.cuda answering as `gpus` GPUs would."""
    mode = FakeTensorMode(allow_non_fake_inputs=False)
    with contextlib.ExitStack() as stack:
        # not torch.cuda.is_available: answering True there makes torch itself initialise CUDA (and fail)
        stack.enter_context(mock.patch.object(torch.cuda, "device_count", lambda: gpus))
        stack.enter_context(mock.patch.object(torch.cuda, "is_bf16_supported",
                                              lambda including_emulation=True: native_bf16))
        stack.enter_context(mock.patch.object(torch.cuda, "set_device", lambda device: None))
        stack.enter_context(mode)
        yield mode


def fake_cuda_tensor(tensor: torch.Tensor, mode: FakeTensorMode, device: str = "cuda",
                     channels_last: bool = False) -> torch.Tensor:
    """A real (CPU) tensor as a fake tensor on `device`, as a host batch is after .to(device)."""
    fake = mode.from_tensor(tensor)
    with mode:
        fake = fake.to(device)
        return fake.contiguous(memory_format=torch.channels_last) if channels_last and fake.dim() == 4 else fake


def fake_cuda_module(module: nn.Module, mode: FakeTensorMode, device: str = "cuda",
                     channels_last: bool = False) -> nn.Module:
    """`module` with every parameter and buffer replaced by a fake tensor on `device` (in place; returned), 4-D
    weights in NHWC with `channels_last`. Module.to() cannot do it: it swaps tensors, which fake tensors refuse."""
    for sub in module.modules():
        for key, param in list(sub._parameters.items()):
            if param is not None:
                sub._parameters[key] = nn.Parameter(fake_cuda_tensor(param.detach(), mode, device, channels_last),
                                                    requires_grad=param.requires_grad)
        for key, buf in list(sub._buffers.items()):
            if buf is not None:
                sub._buffers[key] = fake_cuda_tensor(buf, mode, device)
    return module
