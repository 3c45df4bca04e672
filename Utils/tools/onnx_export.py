"""Export a trained backbone to ONNX (dynamic batch) and check it against PyTorch with onnxruntime.

    python -m Utils.tools.onnx_export --checkpoint=runs/x/best.pt --out=model.onnx

The graph takes float32 (N, 3, H, W) named "input" - the checkpoint's colour order, normalised (x - 127.5) / 128 -
and returns the (N, D) embedding named "embedding". The checkpoint's metadata (backbone, input size, colour order,
normalisation) is written into the ONNX file's metadata_props so a deployment reads it instead of guessing.
The parity check runs both on the same random batches of sizes other than the export's, so the dynamic batch axis
is exercised too. It compares in the units a face embedding is used in: after L2 normalisation (cosine scores),
because a trained backbone's raw embeddings can have norms of ~3e4, where float32 rounding alone differs by ~1e-3.
The file is written under a temporary name and renamed only once it has passed: a failed export leaves nothing.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import load_backbone
from ..evaluation.cli import add_trust_flag

__all__ = ["export_onnx", "Parity", "onnx_parity", "main"]

DEFAULT_OPSET = 17  # opset 17 runs on onnxruntime >= 1.13 and TensorRT 8.6+


def export_onnx(model: nn.Module, input_hw: Sequence[int], path: str | Path, meta: dict[str, Any] | None = None,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` (eval mode, CPU, float32) as ONNX with a dynamic batch axis; returns the path."""
    import onnx  # deferred: the ONNX packages load only when exporting

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu", torch.float32).eval()
    example = torch.randn(2, 3, int(input_hw[0]), int(input_hw[1]))
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter is chatty on stdout
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    if meta:
        onnx.helper.set_model_props(graph, {str(k): str(v) for k, v in meta.items()})
        onnx.save(graph, str(path))
    return path


class Parity(NamedTuple):
    """How far the ONNX embeddings are from PyTorch's."""
    max_abs: float  # largest |ONNX - PyTorch| on the raw embeddings (grows with their norm)
    max_normalized: float  # the same after L2-normalising both: the units cosine scores are made of
    min_cosine: float  # smallest cosine between an ONNX embedding and its PyTorch twin


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def onnx_parity(model: nn.Module, path: str | Path, input_hw: Sequence[int], batch_sizes: Sequence[int] = (1, 5),
                seed: int = 0) -> Parity:
    """Differences between onnxruntime and PyTorch over the embeddings of random batches of the given sizes."""
    import onnxruntime as ort  # deferred: the ONNX packages load only when checking

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = model.to("cpu", torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    worst_abs, worst_norm, worst_cos = 0.0, 0.0, 1.0
    for n in batch_sizes:
        # inputs in the range normalised pixels take, (0..255 - 127.5) / 128
        x = torch.rand(n, 3, int(input_hw[0]), int(input_hw[1]), generator=gen) * 2 - 1
        with torch.no_grad():
            ref = model(x).numpy().astype(np.float64)
        (got,) = session.run(["embedding"], {"input": x.numpy()})
        if got.shape != ref.shape:
            raise ValueError(f"{path}: ONNX output shape {got.shape} for batch {n}, PyTorch gives {ref.shape}")
        got = got.astype(np.float64)
        worst_abs = max(worst_abs, float(np.abs(got - ref).max()))
        worst_norm = max(worst_norm, float(np.abs(_l2n(got) - _l2n(ref)).max()))
        worst_cos = min(worst_cos, float((_l2n(got) * _l2n(ref)).sum(axis=1).min()))
    return Parity(worst_abs, worst_norm, worst_cos)


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m Utils.tools.onnx_export",
                                description="Export a checkpoint's backbone to ONNX and check parity with PyTorch.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a project checkpoint (training or Utils.tools.model_import)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest allowed |ONNX - PyTorch| on the L2-normalised embeddings (float32 kernels differ "
                        "~1e-6 there)")
    add_trust_flag(p)
    args = p.parse_args(argv)
    out = Path(args.out)
    # the graph is written beside its destination under a temporary name, and renamed only once it has passed
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.onnx")
    try:
        model, meta = load_backbone(args.checkpoint, "cpu", trust=args.trust_checkpoint)
        hw = tuple(meta["input_size"])
        export_onnx(model, hw, tmp, meta={k: meta[k] for k in ("backbone", "embedding_size", "input_size",
                                                              "color_order", "normalization")}, opset=args.opset)
        parity = onnx_parity(model, tmp, hw)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2  # bad input; 1 is kept for a failed parity check
    print(f"parity with PyTorch (batches 1 and 5): max abs diff {parity.max_normalized:.3g} on the L2-normalised "
          f"embeddings (tolerance {args.atol:g}), min cosine {parity.min_cosine:.6f}, raw max abs diff "
          f"{parity.max_abs:.3g}")
    if not parity.max_normalized <= args.atol:
        tmp.unlink(missing_ok=True)
        print(f"error: ONNX output differs from PyTorch by {parity.max_normalized:.3g} > {args.atol:g} on the "
              f"L2-normalised embeddings; {out} not written", file=sys.stderr)
        return 1
    os.replace(tmp, out)
    print(f"wrote {out}: input (N, 3, {hw[0]}, {hw[1]}) {meta['color_order']} {meta['normalization']}, "
          f"output (N, {meta['embedding_size']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
