"""MagFace and ElasticFace against per-sample references written from the papers (math module, float64 loops), in
fp32 and under bf16 autocast, with the MagFace gradient through the norm checked by finite differences."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from Config.cli import ConfigError, parse_config
from Heads import get_head

D, C, N = 16, 11, 12


def _inputs(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, D, generator=g)
    # norms from ~2 to ~200: below l_a, inside [l_a, u_a] and above u_a
    emb = emb / emb.norm(dim=1, keepdim=True) * torch.logspace(math.log10(2), math.log10(200), n)[:, None]
    labels = torch.randint(0, C, (n,), generator=g)
    return emb, labels


def _cos(emb, weight):
    out = torch.empty(emb.shape[0], weight.shape[0], dtype=torch.float64)
    for i in range(emb.shape[0]):
        x = emb[i].double()
        for j in range(weight.shape[0]):
            w = weight[j].double()
            out[i, j] = max(-1.0, min(1.0, float((x * w).sum()) / math.sqrt(float((x * x).sum()) *
                                                                             float((w * w).sum()))))
    return out


def ref_magface(emb, weight, labels, s=64.0, la=10.0, ua=110.0, lm=0.45, um=0.8, lam=35.0):
    """(logits, g-term, total loss) of MagFace, sample by sample (paper eq. 3-5, the authors' fallback)."""
    cos = _cos(emb, weight)
    logits = s * cos.clone()
    g_sum, ce_sum = 0.0, 0.0
    for i, y in enumerate(labels.tolist()):
        a = min(ua, max(la, math.sqrt(sum(float(v) ** 2 for v in emb[i].double()))))
        m = (um - lm) / (ua - la) * (a - la) + lm
        c = float(cos[i, y])
        theta = math.acos(c)
        logits[i, y] = s * (math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m))
        g_sum += 1.0 / a + a / ua ** 2
        row = [float(v) for v in logits[i]]
        top = max(row)
        ce_sum += math.log(sum(math.exp(v - top) for v in row)) + top - row[y]
    g = lam * g_sum / len(labels)
    return logits, g, ce_sum / len(labels) + g


def test_magface_logits_and_regulariser_match_reference():
    emb, labels = _inputs()
    head = get_head("MagFace", D, C).train()
    out = head(emb, labels)
    want, g, _ = ref_magface(emb, head.weight.detach(), labels)
    torch.testing.assert_close(out.logits.double() / 64, want / 64, atol=1e-5, rtol=0)
    assert abs(float(out.regulariser) - g) < 1e-4


def test_magface_gradient_through_the_norm_matches_finite_differences():
    emb, labels = _inputs(1)
    head = get_head("MagFace", D, C).train()
    x = emb.clone().requires_grad_(True)
    out = head(x, labels)
    (F.cross_entropy(out.logits, labels) + out.regulariser).backward()
    w = head.weight.detach()
    eps = 1e-3
    for i in (5, 7, 9):  # rows whose norm lies inside [l_a, u_a]: the margin and g(a) move with it
        direction = emb[i].double() / emb[i].double().norm()  # along the embedding: only the norm changes
        plus, minus = emb.double().clone(), emb.double().clone()
        plus[i] += eps * direction
        minus[i] -= eps * direction
        numeric = (ref_magface(plus, w, labels)[2] - ref_magface(minus, w, labels)[2]) / (2 * eps)
        analytic = float((x.grad[i].double() * direction).sum())
        assert abs(numeric) > 1e-4  # the norm does enter the loss
        assert abs(analytic - numeric) < 1e-3 * max(1.0, abs(numeric)), (i, analytic, numeric)


def _elastic_ref(cos, labels, margins, kind, s=64.0):
    out = s * cos.clone()
    for i, y in enumerate(labels.tolist()):
        c, m = float(cos[i, y]), float(margins[i])
        out[i, y] = s * (math.cos(math.acos(c) + m) if kind == "arc" else c - m)
    return out


def _sorted_by_difficulty(target_cos, drawn):
    """The k-th hardest sample (k-th lowest target cosine) gets the k-th largest margin."""
    hardest_first = sorted(range(len(target_cos)), key=lambda i: target_cos[i])
    largest_first = sorted(drawn, reverse=True)
    out = [0.0] * len(drawn)
    for rank, i in enumerate(hardest_first):
        out[i] = largest_first[rank]
    return out


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("name,kind,plus", [("ElasticArcFace", "arc", False), ("ElasticCosFace", "cos", False),
                                            ("ElasticArcFacePlus", "arc", True), ("ElasticCosFacePlus", "cos", True)])
def test_elasticface_matches_reference(name, kind, plus, amp):
    emb, labels = _inputs(2)
    m, sigma = (0.5 if kind == "arc" else 0.35), 0.1
    head = get_head(name, D, C, margin=m, sigma=sigma).train()
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = head(emb.bfloat16() if amp else emb, labels)
    assert out.logits.dtype == torch.float32
    torch.manual_seed(5)
    drawn = torch.normal(m, sigma, size=(N, 1)).flatten().tolist()  # the same draws the head made
    cos = out.cosine.double()  # the head's own cosines: under bf16 the matmul differs from a float64 one
    if not amp:
        torch.testing.assert_close(cos, _cos(emb, head.weight.detach()), atol=1e-6, rtol=0)
    margins = _sorted_by_difficulty([float(cos[i, y]) for i, y in enumerate(labels.tolist())], drawn) if plus \
        else drawn
    torch.testing.assert_close(out.logits.double() / 64, _elastic_ref(cos, labels, margins, kind) / 64,
                               atol=1e-5, rtol=0)


def test_elastic_margins_are_drawn_per_step_and_fixed_in_eval():
    emb, labels = _inputs(3, n=4000)
    labels = labels % C
    head = get_head("ElasticCosFace", D, C, margin=0.35, sigma=0.05).train()
    out = head(emb, labels)
    cos = out.cosine.gather(1, labels[:, None])
    m = (cos - out.logits.gather(1, labels[:, None]) / 64).detach()
    assert abs(float(m.mean()) - 0.35) < 0.005 and abs(float(m.std()) - 0.05) < 0.005
    assert not torch.equal(head(emb, labels).logits, out.logits)  # another step, other margins
    head.eval()
    m_eval = cos - head(emb, labels).logits.gather(1, labels[:, None]) / 64
    torch.testing.assert_close(m_eval, torch.full_like(m_eval, 0.35), atol=1e-5, rtol=0)


def test_config_builds_and_checks_the_new_heads():
    from Heads import build_head
    cfg, _ = parse_config(["--head=MagFace", "--magface_norm_range=[20,100]", "--magface_lambda_g=10"])
    head = build_head(cfg, D, C)
    assert (head.l_a, head.u_a, head.lambda_g) == (20.0, 100.0, 10.0)
    cfg, _ = parse_config(["--head=ElasticArcFacePlus", "--elastic_sigma=0.0175"])
    assert build_head(cfg, D, C).sigma == 0.0175
    with pytest.raises(ConfigError, match="^magface_norm_range"):
        parse_config(["--magface_norm_range=[100,10]"])
    with pytest.raises(ConfigError, match="^elastic_sigma"):
        parse_config(["--elastic_sigma=-1"])


def test_training_loss_adds_the_regulariser_plain_and_partial_fc():
    from types import SimpleNamespace

    from Heads.partial_fc import PartialFC
    from Utils.training.build import FaceModel
    from Utils.training.loop import forward_loss

    emb, labels = _inputs(4)
    head = get_head("MagFace", D, C).train()
    _, g, total = ref_magface(emb, head.weight.detach(), labels)
    comp = SimpleNamespace(partial_fc=False, model=FaceModel(torch.nn.Identity(), head),
                           ctx=SimpleNamespace(world_size=1))
    assert abs(float(forward_loss(comp, emb, labels)[0]) - total) < 1e-4
    pfc = PartialFC(head, C)
    comp = SimpleNamespace(partial_fc=True, model=torch.nn.Identity(), head=pfc, ctx=SimpleNamespace(world_size=1))
    assert abs(float(forward_loss(comp, emb, labels)[0]) - total) < 1e-4
