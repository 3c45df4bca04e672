"""The fast inference path of the evaluation scripts (their default; `--exact` keeps fp32 NCHW eager).

    fast = FastModel.prepare(model, device, amp_dtype, n_images)   # a copy: the caller's model is left as it is
    extract_embeddings(fast, dataset, ...)

What it does, each step one that leaves the embeddings equal up to float rounding (bf16 aside, whose effect on real
LFW is bounded by tests/test_real_lfw.py):
- BatchNorm folded into the preceding convolution (torch.fx's conv-BN fusion; eval-mode BN is an affine map), so
  the activations are not streamed through memory once more per layer. A model fx cannot trace runs unfused.
- channels_last (NHWC) memory: oneDNN's convolutions run on it without reordering.
- bf16 autocast where the hardware runs it natively (Utils.device.fast_low_precision: AMX / AVX512-BF16 CPUs,
  Ampere+ GPUs), chosen by the caller's amp dtype.
- torch.compile (inductor, weight freezing) only when asked (`compile=True`): measured on the shared 2-core CPU in
  one interleaved run (bench/bench_extract.py, BENCHMARKS.md) it was no faster than the folded eager model above
  and costs a warm-up of ~25 s and more; conv-BN folding is the measured winner. When compiled, batches are padded
  to one size so the graph is never rebuilt for the last, shorter batch.
"""
from __future__ import annotations

import copy

import torch

__all__ = ["default_batch_size", "fold_batchnorm", "FastModel"]


def default_batch_size(device: torch.device) -> int:
    """Images per forward (each also flipped): enough to fill a GPU; on a CPU small batches are the fast ones, since
    a batch's activations then stay in cache. Fast-path images/s on the 2-core CPU in one interleaved run
    (bench_extract.py, BENCHMARKS.md) at batch 8 / 16 / 32 / 64: MobileFaceNet 384 / 408 / 291 / 177, ResNet50_IR
    32 / 30 / 29 / 23."""
    return 256 if device.type == "cuda" else 16


def fold_batchnorm(model: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
    """An eval-mode copy of `model` with every Conv-BatchNorm pair folded into one convolution, and whether it
    could be folded (torch.fx must trace the model; one that it cannot is returned as an unfused copy)."""
    from torch.fx.experimental.optimization import fuse

    frozen = copy.deepcopy(model).eval()
    try:
        return fuse(frozen, inplace=True), True
    except Exception:  # noqa: BLE001 -- data-dependent control flow: fx cannot trace it; the eager copy is exact
        return frozen, False


class FastModel(torch.nn.Module):
    """A backbone prepared for inference: folded BN, channels_last, optionally compiled. Call it as the model."""

    def __init__(self, inner: torch.nn.Module, compiled: bool, folded: bool, amp_dtype: torch.dtype | None):
        super().__init__()
        self.inner = inner
        self.folded, self.compiled, self.amp_dtype = folded, compiled, amp_dtype
        # kept outside the module tree: the compiled wrapper shares `inner`'s parameters
        object.__setattr__(self, "_run", torch.compile(inner, options={"freezing": True}) if compiled else inner)

    @classmethod
    def prepare(cls, model: torch.nn.Module, device: torch.device, amp_dtype: torch.dtype | None = None,
                n_images: int = 0, compile: bool = False) -> "FastModel":
        """`n_images` is kept for callers that size the work; `compile`: torch.compile with frozen weights (see the
        module docstring for why it is off by default)."""
        if isinstance(model, FastModel):
            return model
        inner, folded = fold_batchnorm(model)
        inner = inner.to(device=device, memory_format=torch.channels_last)
        return cls(inner, bool(compile), folded, amp_dtype)

    def describe(self) -> str:
        dtype = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype is not None else "fp32"
        return (f"fast path: {dtype}, channels_last, BN {'folded' if self.folded else 'not folded (fx)'}"
                f"{', compiled' if self.compiled else ''}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x.contiguous(memory_format=torch.channels_last))
