"""Partial-FC against the full head it shards: at sample rate 1.0 identical logits, loss and gradients; below 1.0
every positive kept and the sampled columns equal to the full head's."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from Heads import get_head
from Heads.partial_fc import PartialFC, class_shard

HEADS = [("ArcFace", {}), ("CosFace", {}), ("SubCenterArcFace", {"subcenters": 3}), ("CurricularFace", {}),
         ("AdaFace", {}), ("CombinedMargin", {})]


def _pair(name, kw, D=16, C=40):
    torch.manual_seed(0)
    full = get_head(name, D, C, **kw)
    pfc = PartialFC(copy.deepcopy(full), C, sample_rate=1.0)
    return full, pfc


@pytest.mark.parametrize("name,kw", HEADS)
def test_rate_one_equals_full_head(name, kw):
    full, pfc = _pair(name, kw)
    torch.manual_seed(1)
    emb = torch.randn(12, 16)
    labels = torch.randint(0, 40, (12,))
    e1, e2 = emb.clone().requires_grad_(), emb.clone().requires_grad_()

    out = full(e1, labels)
    ref_loss = F.cross_entropy(out.logits, labels)
    ref_loss.backward()
    ref_correct = int((out.cosine.argmax(1) == labels).sum())

    loss, correct = pfc(e2, labels)
    loss.backward()
    assert torch.allclose(loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert int(correct) == ref_correct
    assert torch.allclose(e2.grad, e1.grad, atol=1e-6, rtol=1e-4)
    assert torch.allclose(pfc.weight.grad, full.weight.grad, atol=1e-6, rtol=1e-4)


def test_rate_one_logits_equal_full_head():
    full, pfc = _pair("ArcFace", {})
    emb, labels = torch.randn(8, 16), torch.randint(0, 40, (8,))
    index, target = pfc.sample(labels)
    assert torch.equal(index, torch.arange(40)) and torch.equal(target, labels)
    cos = F.linear(F.normalize(emb), F.normalize(pfc.weight)).clamp(-1, 1)
    logits = pfc._apply_margin(cos, target, emb.norm(dim=1, keepdim=True))
    assert torch.allclose(logits, full(emb, labels).logits, atol=1e-5)


def test_sampling_keeps_positives_and_scores_columns_like_full_head():
    full, pfc = _pair("CosFace", {}, C=100)
    pfc.sample_rate = 0.2
    torch.manual_seed(3)
    labels = torch.tensor([5, 5, 17, 63, 99, 0, 42, 17])
    index, target = pfc.sample(labels)
    assert index.numel() == 20 and torch.equal(index, index.sort().values)
    assert set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index[target], labels)  # each row's column is its own class
    # the sampled logits are the full head's logits restricted to the sampled classes
    emb = torch.randn(8, 16)
    ref = full(emb, labels).logits[:, index]
    w = pfc.weight[index]
    cos = F.linear(F.normalize(emb), F.normalize(w)).clamp(-1, 1)
    got = pfc._apply_margin(cos, target, emb.norm(dim=1, keepdim=True))
    assert torch.allclose(got, ref, atol=1e-5)


def test_more_positives_than_budget_keeps_them_all():
    _, pfc = _pair("ArcFace", {}, C=40)
    pfc.sample_rate = 0.05  # 2 columns budget, 6 distinct positives
    labels = torch.tensor([1, 7, 9, 20, 33, 39])
    index, target = pfc.sample(labels)
    assert index.tolist() == sorted(labels.tolist())
    assert torch.equal(index[target], labels)


def test_class_shards_cover_all_classes_once():
    for C, W in [(10, 3), (7, 7), (86000, 8), (5, 2)]:
        spans = [class_shard(C, r, W) for r in range(W)]
        assert spans[0][0] == 0 and spans[-1][1] == C
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        sizes = [e - s for s, e in spans]
        assert max(sizes) - min(sizes) <= 1


def test_softmax_head_is_rejected():
    with pytest.raises(ValueError, match="margin head"):
        PartialFC(get_head("Softmax", 16, 10), 10)
