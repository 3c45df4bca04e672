"""Every head against a per-sample reference written from the papers' formulas (math module, float64 loops)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from Heads import get_head, list_heads

D, C, N = 16, 11, 9


def _ref_cos(emb, weight, k=1):
    """cos(theta) per sample and class with explicit loops; sub-centres: max over the class's K centres."""
    out = torch.empty(emb.shape[0], weight.shape[0] // k, dtype=torch.float64)
    for i in range(emb.shape[0]):
        x = emb[i].double()
        x = x / math.sqrt(float((x * x).sum()))
        for j in range(out.shape[1]):
            best = -2.0
            for c in range(k):
                w = weight[j * k + c].double()
                best = max(best, float((x * w).sum()) / math.sqrt(float((w * w).sum())))
            out[i, j] = min(1.0, max(-1.0, best))
    return out


def ref_arcface(cos, labels, s, m, easy=False):
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        c = float(cos[i, y])
        theta = math.acos(c)
        if easy:
            out[i, y] = math.cos(theta + m) if c > 0 else c
        else:
            out[i, y] = math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)
    return s * out


def ref_cosface(cos, labels, s, m):
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        out[i, y] = cos[i, y] - m
    return s * out


def ref_combined(cos, labels, s, m1, m2, m3):
    out = cos.clone()
    theta_t = (math.pi - m2) / m1
    for i, y in enumerate(labels.tolist()):
        theta = math.acos(float(cos[i, y]))
        if m1 * theta + m2 < math.pi:
            out[i, y] = math.cos(m1 * theta + m2) - m3
        else:
            out[i, y] = float(cos[i, y]) - math.cos(theta_t) - 1 - m3
    return s * out


def ref_sphereface(cos, labels, s, m, lam):
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        theta = math.acos(float(cos[i, y]))
        k = math.floor(m * theta / math.pi)
        psi = (-1) ** k * math.cos(m * theta) - 2 * k
        out[i, y] = (lam * float(cos[i, y]) + psi) / (1 + lam)
    return s * out


def ref_curricular(cos, labels, s, m, t_prev, alpha=0.01):
    n = cos.shape[0]
    t = (1 - alpha) * t_prev + alpha * sum(float(cos[i, y]) for i, y in enumerate(labels.tolist())) / n
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        c_y = float(cos[i, y])
        theta = math.acos(c_y)
        c_m = math.cos(theta + m)
        for j in range(cos.shape[1]):
            if j == y:
                out[i, j] = c_m if theta + m <= math.pi else c_y - m * math.sin(m)
            elif float(cos[i, j]) > c_m:
                out[i, j] = float(cos[i, j]) * (t + float(cos[i, j]))
    return s * out, t


def ref_adaface(cos, labels, norms, s, m, h, mean0=20.0, std0=100.0, alpha=0.01):
    norms = [min(100.0, max(0.001, v)) for v in norms]
    n = len(norms)
    mu = sum(norms) / n
    sd = math.sqrt(sum((v - mu) ** 2 for v in norms) / (n - 1))
    mean = (1 - alpha) * mean0 + alpha * mu
    std = (1 - alpha) * std0 + alpha * sd
    eps = 1e-3
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        z = max(-1.0, min(1.0, (norms[i] - mean) / (std + eps) * h))
        for j in range(cos.shape[1]):
            theta = math.acos(max(-1 + eps, min(1 - eps, float(cos[i, j]))))
            if j == y:
                out[i, j] = math.cos(max(eps, min(math.pi - eps, theta - m * z))) - (m + m * z)
            else:
                out[i, j] = math.cos(max(eps, min(math.pi - eps, theta)))
    return s * out


def _inputs(seed=0, n=N, d=D, c=C):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g) * 3
    labels = torch.randint(0, c, (n,), generator=g)
    return emb, labels


def _oppose(head, emb, labels, k=1):
    """Point the target centres of the first 3 samples away from them: cosines near -1, where margin fallbacks act."""
    with torch.no_grad():
        for i in range(3):
            for c in range(k):
                head.weight[labels[i] * k + c] = -emb[i] + 0.05 * c
    return head


def _assert_logits(got, want, scale, tol=1e-5):
    # compared in cosine units (logit / s): the float32 cosine itself carries ~1e-7 error
    torch.testing.assert_close(got.double() / scale, want.double() / scale, atol=tol, rtol=0)


@pytest.mark.parametrize("easy", [False, True])
@pytest.mark.parametrize("m", [0.5, 2.8])  # 2.8: theta + m > pi for most samples, exercising the fallback
def test_arcface_matches_reference(m, easy):
    emb, labels = _inputs()
    head = _oppose(get_head("ArcFace", D, C, scale=64.0, margin=m, easy_margin=easy).train(), emb, labels)
    out = head(emb, labels)
    cos = _ref_cos(emb, head.weight.detach())
    torch.testing.assert_close(out.cosine.double(), cos, atol=1e-6, rtol=0)
    _assert_logits(out.logits, ref_arcface(cos, labels, 64.0, m, easy), 64.0)


def test_subcenter_arcface_takes_closest_subcentre():
    emb, labels = _inputs(1)
    head = get_head("SubCenterArcFace", D, C, scale=32.0, margin=0.5, subcenters=3)
    assert head.weight.shape == (C * 3, D)
    out = head(emb, labels)
    cos = _ref_cos(emb, head.weight.detach(), k=3)
    _assert_logits(out.logits, ref_arcface(cos, labels, 32.0, 0.5), 32.0)


@pytest.mark.parametrize("m", [0.35, 0.2])
def test_cosface_matches_reference(m):
    emb, labels = _inputs(2)
    head = get_head("CosFace", D, C, scale=30.0, margin=m)
    out = head(emb, labels)
    _assert_logits(out.logits, ref_cosface(_ref_cos(emb, head.weight.detach()), labels, 30.0, m), 30.0)


@pytest.mark.parametrize("m1,m2,m3", [(1.0, 0.3, 0.2), (0.9, 0.4, 0.15), (1.2, 0.5, 0.0)])
def test_combined_margin_honours_all_three(m1, m2, m3):
    emb, labels = _inputs(3)
    head = _oppose(get_head("CombinedMargin", D, C, scale=64.0, m1=m1, m2=m2, m3=m3), emb, labels)
    out = head(emb, labels)
    _assert_logits(out.logits, ref_combined(_ref_cos(emb, head.weight.detach()), labels, 64.0, m1, m2, m3), 64.0)


def test_sphereface_matches_reference_and_anneals():
    emb, labels = _inputs(4)
    head = get_head("SphereFace", D, C, scale=16.0, m=4, lambda_base=1000.0, lambda_min=5.0, gamma=0.12,
                    power=1.0).train()
    _oppose(head, emb, labels)  # theta near pi: k = 3, the last branch of psi
    cos = _ref_cos(emb, head.weight.detach())
    for it in range(3):
        lam = max(5.0, 1000.0 * (1 + 0.12 * it) ** -1)
        out = head(emb, labels)
        _assert_logits(out.logits, ref_sphereface(cos, labels, 16.0, 4, lam), 16.0)
    head.iteration.fill_(10 ** 6)  # annealed to lambda_min
    _assert_logits(head(emb, labels).logits, ref_sphereface(cos, labels, 16.0, 4, 5.0), 16.0)


def test_curricularface_matches_reference_including_t_update():
    emb, labels = _inputs(5)
    head = get_head("CurricularFace", D, C, scale=64.0, margin=0.5).train()
    # align some classes with the samples so that hard negatives (cos_j > cos(theta_y + m)) occur
    with torch.no_grad():
        head.weight[: N] = emb[:N] + 0.5 * torch.randn(N, D)
    cos = _ref_cos(emb, head.weight.detach())
    t = 0.0
    for _ in range(2):
        want, t = ref_curricular(cos, labels, 64.0, 0.5, t)
        _assert_logits(head(emb, labels).logits, want, 64.0)
    assert abs(float(head.t) - t) < 1e-6


def test_adaface_matches_reference():
    emb, labels = _inputs(6)
    emb = emb * torch.linspace(0.2, 8.0, N)[:, None]  # a spread of norms: both low and high quality
    head = get_head("AdaFace", D, C, scale=64.0, margin=0.4, h=0.333, t_alpha=0.01).train()
    out = head(emb, labels)
    norms = [float(v) for v in emb.double().norm(dim=1)]
    want = ref_adaface(_ref_cos(emb, head.weight.detach()), labels, norms, 64.0, 0.4, 0.333)
    _assert_logits(out.logits, want, 64.0)


def test_softmax_is_inner_product():
    emb, labels = _inputs(7)
    head = get_head("Softmax", D, C)
    with torch.no_grad():
        head.bias.copy_(torch.randn(C))
    out = head(emb, labels)
    want = torch.empty(N, C, dtype=torch.float64)
    for i in range(N):
        for j in range(C):
            want[i, j] = float((emb[i].double() * head.weight[j].detach().double()).sum()) + float(head.bias[j].detach())
    torch.testing.assert_close(out.logits.double(), want, atol=1e-5, rtol=1e-6)


HEAD_KW = {"Softmax": {}, "SphereFace": {"scale": 16.0}}


@pytest.mark.parametrize("name", list_heads())
def test_bf16_autocast_close_to_fp32_and_float32_logits(name):
    emb, labels = _inputs(8, n=32)
    head = get_head(name, D, C, **HEAD_KW.get(name, {})).eval()
    ref = head(emb, labels).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(emb.bfloat16(), labels).logits
    assert out.dtype == torch.float32  # margin math runs in float32 even under autocast
    scale = getattr(head, "scale", 1.0)
    keep = torch.ones_like(ref, dtype=torch.bool)
    if name == "CurricularFace":
        # a negative within bf16's rounding of the hard-negative step cos > cos(theta_y + m) may land on either
        # side of it, and the step there is a jump, not an error: compare the others (computed here in float64)
        cos = F.normalize(emb.double(), dim=1) @ F.normalize(head.weight.double(), dim=1).T
        step = torch.cos(torch.acos(cos.gather(1, labels[:, None]).clamp(-1, 1)) + head.m)
        keep = (cos - step).abs() > 2e-2
        keep.scatter_(1, labels[:, None], True)
        assert keep.float().mean() > 0.9
    # bf16 keeps 8 bits of mantissa in the cosine matmul: ~1e-2 in cosine units
    torch.testing.assert_close(out[keep] / scale, ref[keep] / scale, atol=3e-2, rtol=0)


@pytest.mark.parametrize("name", list_heads())
@pytest.mark.parametrize("amp", [False, True])
def test_finite_outputs_and_gradients_at_cosine_extremes(name, amp):
    # embeddings exactly on a class centre (cos = 1), opposite (cos = -1) and orthogonal (cos = 0)
    head = get_head(name, 4, 3, **HEAD_KW.get(name, {})).train()
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, 0] = 1.0
        head.weight[1, 1] = 1.0
        head.weight[2, 2] = 1.0
        if name == "SubCenterArcFace":
            head.weight[:] = torch.eye(4)[[0, 0, 0, 1, 1, 1, 2, 2, 2]]
    emb = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 2.0, 0, 0], [0, 0, -3.0, 0]],
                       requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = head(emb, labels)
        loss = F.cross_entropy(out.logits, labels)
    loss.backward()
    assert torch.isfinite(out.logits).all()
    assert torch.isfinite(emb.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


@pytest.mark.parametrize("name", list_heads())
def test_label_validation(name):
    head = get_head(name, D, C, **HEAD_KW.get(name, {}))
    emb = torch.randn(2, D)
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        head(emb, torch.tensor([0, C]))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        head(emb, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="int64"):
        head(emb, torch.tensor([0, 1], dtype=torch.int32))


def test_unknown_head_lists_choices():
    with pytest.raises(ValueError, match="ArcFace") as exc:
        get_head("ArcFac", D, C)
    assert "did you mean 'ArcFace'" in str(exc.value)


@pytest.mark.parametrize("name", list_heads())
def test_margin_heads_learn_a_separable_problem(name):
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(C, D), dim=1) * 4
    labels = torch.arange(C).repeat(8)
    emb = centres[labels] + 0.3 * torch.randn(len(labels), D)
    head = get_head(name, D, C, **HEAD_KW.get(name, {})).train()
    opt = torch.optim.SGD(head.parameters(), lr=0.5 if name == "Softmax" else 5.0)
    first = None
    for _ in range(60):
        out = head(emb, labels)
        loss = F.cross_entropy(out.logits, labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    assert float((out.cosine.argmax(1) == labels).float().mean()) > 0.9
