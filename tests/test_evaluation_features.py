"""Embedding extraction and `verify` against per-image loops: order, flips, eval mode, precision, plumbing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from Utils.evaluation import verification as V
from Utils.evaluation.reports import format_report
from Utils.evaluation.verify import evaluate_embeddings, verify
from Utils.device import autocast_dtype, resolve_device
from Utils.evaluation.features import extract_embeddings


class TinyNet(nn.Module):
    """Conv + BN + dropout + linear: eval mode matters (BN statistics, dropout) and the output is not flip-invariant."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 6, dim)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(nn.functional.adaptive_avg_pool2d(x, (8, 6)).flatten(1)))


class Images(Dataset):
    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 3, 16, 12, generator=g) * 2 - 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def _net():
    torch.manual_seed(0)
    net = TinyNet()
    net.bn.running_mean.uniform_(-0.2, 0.2)
    net.bn.running_var.uniform_(0.5, 1.5)
    return net


def per_image(net, data):
    """One image at a time, flipped by reversing the width index by hand."""
    net.eval()
    rows, flips = [], []
    with torch.no_grad():
        for i in range(len(data)):
            x = data[i]
            rows.append(net(x[None])[0].numpy())
            flips.append(net(x[:, :, list(range(x.shape[2] - 1, -1, -1))][None])[0].numpy())
    return np.stack(rows), np.stack(flips)


def test_extract_matches_per_image_loop_and_restores_mode():
    net, data = _net(), Images(37)
    net.train()
    emb, flip = extract_embeddings(net, data, batch_size=8, progress=False)
    assert net.training  # the caller's mode is given back
    ref, ref_flip = per_image(net, data)
    assert emb.dtype == np.float32 and emb.shape == (37, 8)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    np.testing.assert_allclose(flip, ref_flip, atol=1e-5)
    assert not np.allclose(emb, flip)  # the flip really is a different view


def test_bf16_autocast_runs_on_cpu():
    net, data = _net(), Images(10)
    emb, _ = extract_embeddings(net, data, batch_size=4, amp_dtype="bf16", progress=False)
    ref, _ = per_image(net, data)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref, atol=0.1, rtol=0.05)  # bf16 keeps ~3 significant digits


def test_bad_arguments():
    with pytest.raises(ValueError, match="amp"):
        autocast_dtype("fp8", torch.device("cpu"))
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="empty"):
        extract_embeddings(_net(), Images(0), progress=False)


def test_verify_pairs_images_and_flips_as_the_protocol_says():
    from Datasets.verification import VerificationSet

    data = Images(80, seed=3)
    issame = np.tile([True, False], 20)
    vset = VerificationSet("tiny", data, issame, V.kfold_ids(40))
    net = _net()
    ref, ref_flip = per_image(net, data)
    summary_of = {}
    for protocol in ("face_pytorch", "insightface"):
        summary = summary_of[protocol] = verify(net, vset, protocol=protocol, batch_size=16, progress=False)
        expected = V.run_protocol(protocol, ref, ref_flip, issame, vset.folds)
        assert summary["name"] == "tiny" and summary["protocol"] == protocol
        assert summary["fold_accuracies"] == pytest.approx(list(expected.fold_accuracies), abs=0)
        assert summary["accuracy"] == pytest.approx(expected.accuracy, abs=1e-12)
        assert 0.0 <= summary["std"] and set(summary["tar_at_far"]) == {"1e-01", "1e-02", "1e-03", "1e-04"}
        assert summary["threshold"] == pytest.approx(float(np.mean(expected.fold_thresholds)))
        assert "+-" in format_report(summary)
    # the protocol's old name is still accepted and means the same protocol
    old = verify(net, vset, protocol="seed", batch_size=16, progress=False)
    assert old["protocol"] == "face_pytorch"
    assert old["fold_accuracies"] == summary_of["face_pytorch"]["fold_accuracies"]
    assert "val" in summary and "xnorm" in summary


def test_report_json_is_plain_data(tmp_path):
    import json

    from Utils.evaluation.reports import save_report

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((200, 6)).astype(np.float32)
    report = evaluate_embeddings(emb, emb, np.tile([True, False], 50), V.kfold_ids(100), "insightface", "x")
    paths = save_report(report, tmp_path, "x_insightface", {"checkpoint": "c.pt"})
    data = json.loads(paths["json"].read_text())
    assert data["checkpoint"] == "c.pt" and len(data["fold_accuracies"]) == 10
    assert paths["roc_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [l for l in paths["roc_csv"].read_text().splitlines() if not l.startswith("#")]
    assert lines[0] == "far,tar,score_threshold" and len(lines) == len(report.fpr) + 1


def test_verify_follows_the_pair_index_of_shared_images():
    from Datasets.verification import VerificationSet

    data = Images(30, seed=4)  # 40 pairs drawn from 30 images: most images serve several pairs
    rng = np.random.default_rng(0)
    index = rng.integers(0, 30, size=(40, 2))
    issame = np.tile([True, False], 20)
    vset = VerificationSet("shared", data, issame, V.kfold_ids(40), index)
    net = _net()
    ref, ref_flip = per_image(net, data)
    summary = verify(net, vset, protocol="face_pytorch", batch_size=16, progress=False)
    flat = index.ravel()
    expected = V.run_protocol("face_pytorch", ref[flat], ref_flip[flat], issame, vset.folds)
    assert summary["fold_accuracies"] == pytest.approx(list(expected.fold_accuracies), abs=0)
    assert summary["threshold"] == pytest.approx(float(np.mean(expected.fold_thresholds)))
