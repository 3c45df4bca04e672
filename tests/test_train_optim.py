"""Optimizer parameter groups, the per-iteration LR schedule and the resumable sampler, against explicit rules."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from Backbones import get_backbone
from Config import Config, apply_overrides
from Heads import get_head
from Utils.training.optim import LRFactor, build_optimizer, build_scheduler, param_groups
from Utils.training.sampler import ResumableSampler


def test_no_weight_decay_on_bn_prelu_and_bias():
    net = get_backbone("ResNet18_IR", input_size=(32, 32))
    head = get_head("ArcFace", 512, 10)
    groups = param_groups([net, head], 5e-4)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    nodecay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    expected_nodecay = set()
    for m in list(net.modules()) + [head]:
        for name, p in m.named_parameters(recurse=False):
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.PReLU)) or name == "bias":
                expected_nodecay.add(id(p))
    every = {id(p) for p in list(net.parameters()) + list(head.parameters())}
    assert nodecay == expected_nodecay
    assert decay == every - expected_nodecay
    assert id(head.weight) in decay


def test_sgd_and_adamw_options():
    net = nn.Linear(3, 2)
    cfg = apply_overrides(Config(), {"nesterov": True, "momentum": 0.9})
    opt = build_optimizer(cfg, [net])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    opt = build_optimizer(apply_overrides(Config(), {"optimizer": "adamw"}), [net])
    assert isinstance(opt, torch.optim.AdamW)


def test_warmup_then_multistep_per_iteration():
    cfg = apply_overrides(Config(), {"lr": 0.1, "warmup_epochs": 0.5, "milestones": [2, 3], "lr_gamma": 0.1,
                                     "epochs": 4})
    opt = build_optimizer(cfg, [nn.Linear(2, 2)])
    sched = build_scheduler(cfg, opt, iters_per_epoch=10)
    seen = []
    for _ in range(40):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.1 * (i + 1) / 5 for i in range(5)] + [0.1] * 15 + [0.01] * 10 + [0.001] * 10
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(seen, expected)), seen


def test_cosine_and_poly_shapes():
    cos = LRFactor("cosine", 10, 100, warmup_iters=10)
    assert math.isclose(cos(10), 1.0) and math.isclose(cos(55), 0.5, abs_tol=1e-12) and cos(100) < 1e-12
    poly = LRFactor("poly", 10, 100, warmup_iters=0, power=2.0)
    assert math.isclose(poly(0), 1.0) and math.isclose(poly(50), 0.25) and math.isclose(poly(100), 0.0)


def test_sampler_shards_form_the_single_process_order():
    single = ResumableSampler(37, seed=5).order()
    shards = [ResumableSampler(37, seed=5, rank=r, world_size=2).order() for r in range(2)]
    assert sorted(single) == list(range(37))
    # global batch of 8 in one process == local batches of 4 on each of 2 ranks
    for b in range(4):
        assert sorted(single[8 * b:8 * b + 8]) == sorted(shards[0][4 * b:4 * b + 4] + shards[1][4 * b:4 * b + 4])
    assert len(shards[0]) == len(shards[1]) == 19


def test_sampler_resume_skips_consumed_and_epochs_differ():
    s = ResumableSampler(20, seed=1)
    s.set_epoch(3)
    whole = list(s)
    s.set_epoch(3, 8)  # how a resumed run re-enters epoch 3 after 8 samples
    assert list(s) == whole[8:] and len(s) == 12
    s.set_epoch(4)
    assert list(s) != whole and sorted(s) == list(range(20))
