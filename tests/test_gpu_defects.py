"""The seven defects of the CUDA / multi-GPU paths, each reproduced on a CPU-only machine.

No GPU is needed: each test recreates the mechanism behind its defect with torch's own CPU-side pieces
(replicate() with the CUDA broadcast replaced by clones, autocast's per-thread dtype, two gloo ranks) or by
patching the torch.cuda calls the code makes, and checks the behaviour against an independent expectation.
"""
from __future__ import annotations

import importlib
import os
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from _train_fixtures import PatternFaces, free_port, tiny_config

from Backbones import get_backbone
from Heads import get_head, list_heads
from Utils.training.distributed import DistContext, wrap_backbone

_replicate_mod = importlib.import_module("torch.nn.parallel.replicate")


def _clone_broadcast(tensors, devices, detach=False):
    """replicate()'s CUDA broadcast, done by clones on the CPU: one copy of every tensor per 'device'."""
    return [[t.detach().clone() if detach else t.clone() for t in tensors] for _ in devices]


# --------------------------------------------------------------------------- 1. DataParallel over compile
def test_1_data_parallel_backbone_is_not_compiled_and_its_replicas_run(monkeypatch):
    from Utils.training.build import training_backbone

    net = get_backbone("MobileFaceNet", input_size=(32, 32), embedding_size=16).eval()
    cfg = tiny_config(Path("."), compile=True)
    ctx = DistContext(device=torch.device("cpu"), data_parallel_gpus=(0, 1))
    with pytest.warns(UserWarning, match="compile: DataParallel") as caught:
        wrapped = training_backbone(net, cfg, ctx, None)
    assert sum("compile" in str(w.message) for w in caught) == 1
    # without an accelerator DataParallel holds the module and does not replicate: do what it does on 2 GPUs
    monkeypatch.setattr(_replicate_mod, "_broadcast_coalesced_reshape", _clone_broadcast)
    monkeypatch.setattr(_replicate_mod, "_get_device_index", lambda d, optional=False: d)
    replicas = _replicate_mod.replicate(wrapped.module, [0, 1])
    x = torch.randn(2, 3, 32, 32)
    for replica in replicas:  # a compiled module's replicas have lost their layers: AttributeError 'blocks'
        assert torch.allclose(replica(x), net(x), atol=1e-6)


# --------------------------------------------------------------------------- 2. DataParallel + bf16
class _DtypeProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_autocast_dtype("cuda"))
        return x


def test_2_data_parallel_replicas_autocast_with_the_configured_dtype():
    probe = _DtypeProbe()
    ctx = DistContext(device=torch.device("cuda", 0), data_parallel_gpus=(0, 1))
    wrapped = wrap_backbone(probe, ctx, amp_dtype=torch.bfloat16)

    def replica_thread():  # what DataParallel's parallel_apply worker does around each replica
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "CUDA is not available": autocast still records its dtype
            with torch.amp.autocast("cuda", enabled=True):
                wrapped.module(torch.zeros(1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autocast("cuda", dtype=torch.bfloat16):  # the step's own autocast, main thread
            t = threading.Thread(target=replica_thread)
            t.start()
            t.join()
    assert probe.seen == [torch.bfloat16]  # float16, the per-thread default, without the fix


# --------------------------------------------------------------------------- 3. DDP + Partial-FC + grad_clip
def _pfc_worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from Utils.training import build_components
    from Utils.training.distributed import cleanup_distributed
    from Utils.training.grads import ShardedGradScaler
    from Utils.training.loop import train_step

    try:
        cfg = tiny_config(Path(tmp), backbone="TinyTestNet", partial_fc=True, grad_clip=0.05, batch_size=16,
                          sync_bn=True, momentum=0.9)
        comp = build_components(cfg, dataset=PatternFaces(classes=9, per_class=16))
        batches = iter(comp.loader)
        finite = [train_step(comp, [next(batches)]).finite for _ in range(4)]
        after4 = {k: v.clone() for k, v in comp.backbone.state_dict().items()}
        if rank == 1:  # an overflow in this rank's class-centre shard only
            comp.head.head.weight.register_hook(lambda g: g.index_fill(0, torch.tensor([0]), float("inf")))
        finite.append(train_step(comp, [next(batches)]).finite)
        # fp16's scaler: the inf found on rank 1 must be found on rank 0 too
        p = nn.Parameter(torch.ones(3))
        opt = torch.optim.SGD([p], lr=1.0)
        scaler = ShardedGradScaler("cpu", init_scale=1.0)
        scaler.scale(torch.ones(()))  # the scale tensor is created lazily by the first scale()
        p.grad = torch.full((3,), float("inf") if rank == 1 else 1.0)
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
        torch.save({"after4": after4, "after5": comp.backbone.state_dict(), "finite": finite,
                    "scaler_p": p.detach().clone(), "scale": scaler.get_scale()}, Path(tmp) / f"rank{rank}.pt")
    finally:
        cleanup_distributed()


@pytest.mark.slow  # two spawned interpreters importing torch: ~20-40 s on 2 busy cores
def test_3_partial_fc_ranks_clip_and_skip_alike(tmp_path):
    mp.spawn(_pfc_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for k in r0["after4"]:  # bitwise: the clip factor is the same global one on both ranks
        assert torch.equal(r0["after4"][k], r1["after4"][k]), k
        assert torch.equal(r0["after5"][k], r1["after5"][k]), k
    assert r0["finite"] == r1["finite"] == [True, True, True, True, False]
    assert torch.equal(r0["scaler_p"], torch.ones(3)) and torch.equal(r1["scaler_p"], torch.ones(3))
    assert r0["scale"] == r1["scale"] == 0.5  # both backed off


# --------------------------------------------------------------------------- 4. emulated bf16
def test_4_emulated_bf16_is_not_taken_for_native(monkeypatch):
    from Utils.device import autocast_dtype, fast_low_precision
    from Utils.evaluation.search_precision import resolve_precision

    # a V100: bf16 only by emulation (torch's default, including_emulation=True, says yes)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    gpu = torch.device("cuda", 0)
    assert fast_low_precision(gpu) is torch.float16
    assert autocast_dtype("auto", gpu) is torch.float16
    with pytest.raises(ValueError, match="no bfloat16"):
        autocast_dtype("bf16", gpu)
    assert resolve_precision("auto", gpu) == "fp16"


# --------------------------------------------------------------------------- 5. host syncs in the step
_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__")


@pytest.mark.parametrize("head", ["ArcFace", "SphereFace"])
def test_5_one_host_read_per_step(tmp_path, monkeypatch, head):
    from Utils.training import build_components
    from Utils.training.loop import train_step

    cfg = tiny_config(tmp_path, backbone="TinyTestNet", head=head, grad_clip=1.0, grad_accum_steps=2,
                      batch_size=8)
    comp = build_components(cfg, dataset=PatternFaces(classes=8))
    it = iter(comp.loader)
    steps = [[next(it), next(it)] for _ in range(3)]
    train_step(comp, steps[0])  # first step: lazy state (SGD momentum buffers) is allocated
    reads = []
    for name in _READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            reads.append(_name)
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    for batches in steps[1:]:
        result = train_step(comp, batches)
        assert result.finite
    monkeypatch.undo()
    assert reads == ["tolist", "tolist"], reads  # one transfer per step


# --------------------------------------------------------------------------- 6. cudnn, set_device, one-hot
@pytest.mark.parametrize("overrides", [dict(device="cuda:1"), dict(device="cuda", use_multi_gpus=True,
                                                                      gpus=[1, 0])], ids=["cuda:1", "dp_1_0"])
def test_6_gpu_is_made_current_and_cudnn_benchmarks(tmp_path, monkeypatch, overrides):
    from Utils.training.distributed import setup_distributed

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(torch.device(d)))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup_distributed(tiny_config(tmp_path, **overrides))
    assert ctx.device == torch.device("cuda", 1)
    assert calls == [torch.device("cuda", 1)]
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize("name", [h for h in list_heads() if h != "Softmax"])
def test_6_margin_heads_build_a_bool_mask_without_one_hot(monkeypatch, name):
    from Heads.base import target_mask

    def no_one_hot(*a, **k):
        raise AssertionError("an int64 N x C one-hot was built")
    monkeypatch.setattr(F, "one_hot", no_one_hot)
    torch.manual_seed(0)
    emb, labels = torch.randn(6, 8), torch.tensor([0, 3, 3, 9, 1, 5])
    head = get_head(name, 8, 10).train()
    out = head(emb, labels)
    assert out.logits.shape == (6, 10)
    mask = target_mask(out.cosine, labels)
    expected = torch.zeros(6, 10, dtype=torch.bool)
    for i, y in enumerate(labels.tolist()):
        expected[i, y] = True
    assert mask.dtype is torch.bool and torch.equal(mask, expected)


# --------------------------------------------------------------------------- 7. bench timing on the device
def test_7_bench_syncs_the_timed_device_and_keeps_batches_there(monkeypatch):
    import Utils.training
    import Utils.training.loop
    from bench import bench_train
    from bench.common import device_sync

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    device_sync("cuda:1")
    assert synced == [torch.device("cuda", 1)]  # synchronize() would wait on cuda:0 only
    synced.clear()
    bench_train.time_steps(lambda b: None, [0], torch.device("cuda", 1), steps=2, warmup=2, batch=4)
    assert synced == [torch.device("cuda", 1)] * 3

    # measure(): the batches the timed steps see are on the run's device (here the meta device, which, like a
    # GPU, is not where torch creates tensors)
    seen = []
    comp = SimpleNamespace(ctx=SimpleNamespace(device=torch.device("meta")))
    monkeypatch.setattr(Utils.training, "build_components", lambda cfg, dataset=None: comp)
    monkeypatch.setattr(Utils.training.loop, "train_step", lambda c, mbs: seen.append({t.device for t in mbs[0]}))
    bench_train.measure("MobileFaceNet", "fp32", batch=2, classes=3, steps=2, warmup=1, input_hw=(112, 112))
    assert seen and all(s == {torch.device("meta")} for s in seen)
