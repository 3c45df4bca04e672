"""Utils.tools.onnx_export: the exported graph, run by onnxruntime here, matches PyTorch at several batch sizes; the
parity gate fails the command above its tolerance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from Backbones import get_backbone
from Utils.checkpoint import backbone_meta, save_checkpoint
from Utils.tools.onnx_export import main


@pytest.mark.parametrize("backbone,hw", [("MobileFaceNet", (112, 96)), ("ResNet18_IR", (32, 32))])
def test_export_runs_in_onnxruntime_with_a_dynamic_batch(tmp_path, capsys, backbone, hw):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = get_backbone(backbone, 0, hw).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that a dropped BN would show
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    save_checkpoint({"backbone": model.state_dict(),
                     "meta": backbone_meta(backbone, model.embedding_size, hw, "BGR")}, tmp_path / "m.pt")
    out = tmp_path / "m.onnx"
    assert main([f"--checkpoint={tmp_path / 'm.pt'}", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["color_order"] == "BGR" and props["input_size"] == str(list(hw))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (3, 7):
        x = torch.randn(n, 3, *hw)
        with torch.no_grad():
            want = model(x).numpy()
        (got,) = session.run(None, {"input": x.numpy()})
        assert got.shape == (n, model.embedding_size)
        assert np.abs(got - want).max() < 1e-3


def test_parity_gate_fails_the_command_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    import Utils.tools.onnx_export as onnx_export

    model = get_backbone("MobileFaceNet", 0, (32, 32)).eval()
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 128, (32, 32), "RGB")},
                    tmp_path / "m.pt")
    # as if a kernel were wrong
    monkeypatch.setattr(onnx_export, "onnx_parity", lambda *a, **k: onnx_export.Parity(0.9, 0.5, 0.7))
    assert main([f"--checkpoint={tmp_path / 'm.pt'}", f"--out={tmp_path / 'm.onnx'}", "--atol=1e-3"]) == 1
    assert "error: ONNX output differs from PyTorch by 0.5 > 0.001" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # neither m.onnx nor its temporary file
    assert main([f"--checkpoint={tmp_path / 'missing.pt'}", f"--out={tmp_path / 'x.onnx'}"]) == 2
    assert "error: checkpoint not found" in capsys.readouterr().err


def test_parity_of_embeddings_with_a_huge_norm_is_judged_normalised(tmp_path, capsys):
    """A trained backbone's raw embeddings can have norms of ~3e4: float32 rounding alone then differs by ~1e-3 in
    raw units while every cosine is 1. The reference here is numpy's own normalisation of both outputs."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = get_backbone("MobileFaceNet", 0, (32, 32)).eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        model.embedding.bn.weight.mul_(3e4 / model(x).norm(dim=1).mean())
        want = model(x).numpy().astype(np.float64)
    assert np.linalg.norm(want, axis=1).min() > 1e4
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 128, (32, 32), "RGB")},
                    tmp_path / "m.pt")
    out = tmp_path / "m.onnx"
    assert main([f"--checkpoint={tmp_path / 'm.pt'}", f"--out={out}"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    got = got.astype(np.float64)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert np.abs(unit(got) - unit(want)).max() < 1e-4
