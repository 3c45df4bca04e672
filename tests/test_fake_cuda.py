"""Device discipline of the GPU paths, checked on a CPU-only machine with "cuda" fake tensors (_cuda_on_cpu.py).

Every path below runs with its tensors on a fake "cuda" device: a tensor created without the right device (a CPU
tensor meeting a GPU one), a host read (.item(), int(), .tolist(), `if tensor:`) or a .numpy() inside the path
raises. Covered: every backbone forward (NCHW float32, and NHWC under autocast bf16), every head forward (training
mode, with its buffers' updates), Partial-FC's forward (one process), the training step's forward (loop.forward_loss
over FaceModel or Partial-FC, NHWC, autocast), the evaluation extraction's per-batch step fed
by a verification set's loader batch, and the MegaFace search's device state, low-precision filter and float64
rescoring.

What FakeTensorMode cannot follow here, so these paths are not covered:
  - backward: the autograd engine asks the CUDA driver for the device's context ("hasPrimaryContext"), which a
    CPU-only build refuses; gradients are checked on CPU by the head, loop and DDP tests;
  - autocast's cast rules: torch.cuda.is_available() is False, so autocast("cuda") is a no-op (dtype recorded only);
  - the optimizer step and the step's one host read (loss / correct / finite): a read of a fake value raises by
    design; the count of host reads per step is tested on CPU instead (test_gpu_defects.py, defect 5);
  - GradScaler (its inf check reads a value) and torch.compile / cudnn kernels (no real GPU code runs);
  - data-dependent shapes: the MegaFace candidate selection (nonzero), its histogram (bincount) and per-chunk error
    bound (a float() of the chunk's norms, one read per chunk by design), Partial-FC with sampling (torch.unique);
  - collectives (DDP, the all-reduces of Partial-FC on several ranks) and DataParallel's threads;
  - the identification / IJB search: numpy on the host (no device code to check).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import _disable_current_modes
import torch.nn.functional as F

from _cuda_on_cpu import cuda_on_cpu, fake_cuda_module, fake_cuda_tensor

from Backbones import get_backbone, list_backbones
from Heads import get_head, list_heads
from Heads.partial_fc import PartialFC

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# the four block types: the deeper IR nets repeat theirs, vit_s / vit_b are vit_t wider and deeper
BACKBONES = ["MobileFaceNet", "ResNet18_IR", "SEResNet50_IR", "vit_t"]
CUDA = torch.device("cuda", 0)


def _cuda(x, mode):
    return fake_cuda_tensor(x, mode)


def test_the_harness_catches_a_device_mix_and_a_host_read():
    from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorDeviceMismatchError

    with cuda_on_cpu():
        a = torch.ones(3, device="cuda")
        with pytest.raises(FakeTensorDeviceMismatchError):
            a + torch.ones(3)  # a tensor created without the device
        with pytest.raises(DataDependentOutputException):
            int(a.sum())


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_forward_on_cuda(name):
    # built outside the fake mode: trunc_normal_ (the ViT's init) reads values, which fake tensors have not
    real = get_backbone(name, input_size=(112, 112))
    with cuda_on_cpu() as mode:
        with _disable_current_modes():  # the real weights are converted from outside the mode, as from_tensor wants
            net = fake_cuda_module(copy.deepcopy(real), mode).train()
        x = torch.randn(2, 3, 112, 112, device="cuda")
        out = net(x)
        assert out.device == CUDA and out.shape == (2, net.embedding_size)
    with cuda_on_cpu() as mode:
        with _disable_current_modes():
            net = fake_cuda_module(copy.deepcopy(real), mode, channels_last=True).train()
        x = torch.randn(2, 3, 112, 112, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net(x)
        assert out.device == CUDA


def test_every_registered_backbone_is_covered_by_its_block_type():
    # the IR nets differ from the tested ones in depth only: a new family must be added to BACKBONES
    names = [n for n in list_backbones() if not n.startswith("TinyTestNet")]  # the tests' own, when registered
    families = {n.split("Net")[0].rstrip("0123456789") if "IR" in n else n.split("_")[0] if n.startswith("vit_")
                else n for n in names}
    assert families <= {"Res", "SERes", "MobileFaceNet", "vit"}, families


@pytest.mark.parametrize("name", list_heads())
def test_head_forward_on_cuda(name):
    with cuda_on_cpu() as mode:
        head = fake_cuda_module(get_head(name, 32, 50), mode).train()
        if hasattr(head, "_stamp"):  # SphereFace's step count: moving re-reads it once, from the real value 0
            head._iteration, head._seen = 0, head._stamp()
        emb = torch.randn(8, 32, device="cuda", requires_grad=True)
        labels = torch.randint(0, 50, (8,), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = head(emb, labels)
        loss = F.cross_entropy(out.logits, labels)
        assert out.logits.device == loss.device == CUDA and out.logits.dtype == torch.float32
        for buf in head.buffers():  # EMA statistics, SphereFace's step count
            assert buf.device == CUDA


def test_partial_fc_forward_on_cuda():
    with cuda_on_cpu() as mode:
        pfc = PartialFC(get_head("ArcFace", 32, 50), 50, sample_rate=1.0)
        fake_cuda_module(pfc, mode).train()
        emb = torch.randn(8, 32, device="cuda", requires_grad=True)
        loss, correct = pfc(emb, torch.randint(0, 50, (8,), device="cuda"))
        assert loss.device == correct.device == CUDA


def test_extraction_batch_from_a_verification_loader_on_cuda(tmp_path):
    from Config import Config, apply_overrides, validate
    from Datasets import load_verification_set
    from Utils.evaluation.features import embed_batch

    cfg = validate(apply_overrides(Config(), dict(data_root=str(tmp_path), synthetic_identities=4,
                                                  synthetic_images_per_identity=2, synthetic_val_pairs=20,
                                                  synthetic_probe_identities=2, synthetic_distractors=4),
                                   source="test"))
    vset = load_verification_set("synthetic", cfg)
    batch = next(iter(torch.utils.data.DataLoader(vset.images, batch_size=4)))  # a real host batch
    images = batch[0] if isinstance(batch, (list, tuple)) else batch
    with cuda_on_cpu() as mode:
        net = fake_cuda_module(get_backbone("MobileFaceNet", input_size=tuple(images.shape[2:])), mode).eval()
        host = mode.from_tensor(images)  # still on the CPU: embed_batch must move it
        with torch.no_grad():
            out = embed_batch(net, host, CUDA, torch.bfloat16)
        assert out.device == CUDA and out.shape == (8, net.embedding_size) and out.dtype == torch.float32


def test_megaface_search_device_state_filter_and_rescoring_on_cuda():
    from Utils.evaluation.megaface_search import _Searcher, exact_scores

    with cuda_on_cpu() as mode:
        probes = F.normalize(torch.randn(6, 16, device="cuda"), dim=1)
        searcher = _Searcher(probes, k=3, tail_size=5, precision="bf16", device=CUDA)
        for t in (searcher.top_v, searcher.top_i, searcher.tail_v, searcher.p_res, searcher.p_low_norm):
            assert t.device == CUDA
        g32 = F.normalize(torch.randn(10, 16, device="cuda"), dim=1)
        scores = searcher.low @ g32.to(searcher.low.dtype).T  # add_chunk's filter
        assert scores.device == CUDA
        rows = torch.tensor([0, 1], device="cuda")
        assert exact_scores(searcher.p64, g32, rows, rows).device == CUDA


@pytest.mark.parametrize("partial_fc", [False, True], ids=["face_model", "partial_fc"])
def test_training_forward_of_the_step_on_cuda(partial_fc):
    from types import SimpleNamespace

    from Utils.training.build import FaceModel
    from Utils.training.loop import forward_loss

    with cuda_on_cpu() as mode:
        backbone = fake_cuda_module(get_backbone("MobileFaceNet", input_size=(112, 112), embedding_size=32), mode,
                                    channels_last=True).train()
        head = get_head("CosFace", 32, 50)
        head = fake_cuda_module(PartialFC(head, 50) if partial_fc else head, mode).train()
        model = backbone if partial_fc else FaceModel(backbone, head)
        comp = SimpleNamespace(partial_fc=partial_fc, model=model, head=head, ctx=SimpleNamespace(world_size=1))
        images = torch.randn(4, 3, 112, 112, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, correct, n = forward_loss(comp, images, torch.randint(0, 50, (4,), device="cuda"))
        assert loss.device == correct.device == CUDA and n == 4
