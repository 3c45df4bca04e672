"""The extraction fast path (Utils/evaluation/fast_inference.py): folded BatchNorm and channels_last give the
model's own fp32 embeddings (the reference: the unmodified eager model, one image at a time), padding the last
batch for a compiled graph changes nothing, and the command-line default is the fast path while --exact is fp32
eager."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, as a trained model has (fresh ones are 0/1: folding them
    would be a no-op and prove nothing)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def mobilefacenet():
    from Backbones import get_backbone

    torch.manual_seed(0)
    return _trained_looking(get_backbone("MobileFaceNet", 128, (112, 112)))


def test_folded_model_gives_the_models_embeddings(mobilefacenet):
    from Utils.evaluation.fast_inference import fold_batchnorm

    folded, ok = fold_batchnorm(mobilefacenet)
    assert ok
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert n_bn < sum(isinstance(m, torch.nn.BatchNorm2d) for m in mobilefacenet.modules())  # really folded
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = torch.cat([mobilefacenet(x[i:i + 1]) for i in range(3)])  # the untouched model, one image at a time
        got = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4), (got - ref).abs().max()
    assert mobilefacenet.training is False and any(isinstance(m, torch.nn.BatchNorm2d)
                                                   for m in mobilefacenet.modules())  # the caller's model unchanged


class _Recorder(torch.nn.Module):
    """A per-sample model (the batch sizes it is called with are recorded by a hook in the test)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(x.mean(dim=(2, 3)))


def test_padded_batches_give_the_unpadded_embeddings():
    from Utils.evaluation.fast_inference import FastModel
    from Utils.evaluation.features import extract_embeddings

    torch.manual_seed(0)
    rec = _Recorder()
    images = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    dataset = torch.utils.data.TensorDataset(images)
    fast = FastModel.prepare(rec, torch.device("cpu"), None, compile=False)
    fast.compiled = True  # exercise the padding a compiled graph gets, without paying for a compile
    shapes: list[int] = []
    fast.inner.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape[0]))
    emb, flip = extract_embeddings(fast, dataset, batch_size=4, progress=False)
    assert shapes == [8, 8, 8]  # 2 x 4, then the last 2 images + flips padded to 8
    with torch.no_grad():
        ref = rec.lin(images.mean(dim=(2, 3))).numpy()
        ref_flip = rec.lin(torch.flip(images, dims=[3]).mean(dim=(2, 3))).numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(flip, ref_flip, rtol=1e-6, atol=1e-6)


def test_fast_extraction_matches_exact_in_fp32(mobilefacenet):
    from Utils.evaluation.features import extract_embeddings

    images = torch.randn(6, 3, 112, 112, generator=torch.Generator().manual_seed(4))
    dataset = torch.utils.data.TensorDataset(images)
    exact = extract_embeddings(mobilefacenet, dataset, batch_size=4, progress=False)
    fast = extract_embeddings(mobilefacenet, dataset, batch_size=0, progress=False, fast=True)  # fp32: amp None
    for a, b in zip(exact, fast):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_compile_is_opt_in_and_a_prepared_model_is_reused():
    from Utils.evaluation.fast_inference import FastModel

    fast = FastModel.prepare(_Recorder(), torch.device("cpu"), None, n_images=100_000)
    assert not fast.compiled  # measured no faster than the folded eager model here (BENCHMARKS.md)
    assert FastModel.prepare(fast, torch.device("cpu")) is fast  # prepared once, reused


def test_cli_default_is_fast_and_exact_is_fp32_eager(tmp_path, mobilefacenet):
    from Utils.checkpoint import backbone_meta, save_checkpoint
    from Utils.device import fast_low_precision
    from Utils.evaluation.cli import EvalParser, add_model_flags, load_model

    save_checkpoint({"backbone": mobilefacenet.state_dict(), "meta": backbone_meta("MobileFaceNet", 128, (112, 112),
                                                                                  "RGB"), "config": {}},
                    tmp_path / "m.pt")
    p = EvalParser("x", "")
    add_model_flags(p)
    default = load_model(p.parse_args([f"--checkpoint={tmp_path / 'm.pt'}", "--device=cpu"]))
    assert default.fast and default.amp_dtype == fast_low_precision(torch.device("cpu"))
    args = p.parse_args([f"--checkpoint={tmp_path / 'm.pt'}", "--device=cpu", "--exact", "--amp=bf16"])
    exact = load_model(args)
    # --batch_size=0 (the default) resolves to the device's batch: 16 on a CPU (fast_inference.default_batch_size)
    assert not exact.fast and exact.amp_dtype is None and exact.amp == "none" and args.batch_size == 16
