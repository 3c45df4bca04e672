"""ResNet200-IR, the face ViTs and timm backbones against parameter counts computed here from the architectures'
definitions (checked on the published r50 / r100 counts first), and activation checkpointing against the plain
run: the same gradients and the same BatchNorm statistics."""
from __future__ import annotations

import copy

import pytest
import torch

from Backbones import get_backbone
from Backbones.__main__ import main as summary_main
from Backbones.registry import build_backbone
from Config import Config
from Config.cli import ConfigError, parse_config


def ir_params(stages, emb=512, hw=(112, 112), se=False):
    """Parameters of a ResNet-IR counted from its definition (ArcFace paper Fig. 7, "option E" output layer)."""
    n = 3 * 64 * 9 + 2 * 64 + 64  # stem conv, BN, PReLU
    cin = 64
    for units, cout in zip(stages, (64, 128, 256, 512)):
        for j in range(units):
            i = cin if j == 0 else cout
            n += 2 * i + 9 * i * cout + 2 * cout + cout + 9 * cout * cout + 2 * cout
            if se:
                n += 2 * cout * (cout // 16)
            if j == 0:  # stride 2 (and channel change): 1x1 projection + BN
                n += i * cout + 2 * cout
        cin = cout
    flat = 512 * (hw[0] // 16) * (hw[1] // 16)
    return n + 2 * 512 + flat * emb + emb + 2 * emb


def vit_params(dim, depth, emb=512, patches=144, patch=9, mlp=4):
    """Parameters of insightface's face ViT counted from its definition (no class token, bias-free QKV)."""
    block = 2 * 2 * dim + 3 * dim * dim + dim * dim + dim + dim * mlp * dim + mlp * dim + mlp * dim * dim + dim
    stem = 3 * patch * patch * dim + dim + patches * dim + dim  # patch conv, position embedding, mask token
    head = patches * dim * dim + 2 * dim + dim * emb + 2 * emb
    return stem + depth * block + 2 * dim + head


def _count(name, **kw):
    with torch.device("meta"):
        return sum(p.numel() for p in get_backbone(name, **kw).parameters())


def test_ir_formula_reproduces_published_counts_and_resnet200():
    # insightface's model zoo: r50 43.6M, r100 65.2M parameters
    assert round(ir_params([3, 4, 14, 3]) / 1e6, 1) == 43.6
    assert round(ir_params([3, 13, 30, 3]) / 1e6, 1) == 65.2
    assert _count("ResNet50_IR") == ir_params([3, 4, 14, 3])
    assert _count("ResNet200_IR") == ir_params([6, 26, 60, 6])  # insightface iresnet200's stage sizes


@pytest.mark.parametrize("name,dim,depth", [("vit_t", 256, 12), ("vit_s", 512, 12), ("vit_b", 512, 24)])
def test_vit_sizes_are_insightfaces(name, dim, depth):
    assert _count(name) == vit_params(dim, depth)
    with torch.device("meta"):
        model = get_backbone(name)
    assert len(model.blocks) == depth and model.blocks[0].heads == 8 and model.num_patches == 144
    assert model.patch_embed.kernel_size == (9, 9)


def test_vit_forward_train_masks_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = get_backbone("vit_t", input_size=(112, 112))
    x = torch.randn(2, 3, 112, 112)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (2, 512) and torch.equal(a, b)
    model.train()
    out = model(torch.randn(4, 3, 112, 112))
    out.square().sum().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0  # masked tokens were used


def test_timm_backbone_is_timms_features_under_the_face_head():
    timm = pytest.importorskip("timm")
    body = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    body_params = sum(p.numel() for p in body.parameters())
    c, h, w = 512, 4, 4  # resnet18 at 112x112: stride 32 -> 4x4 maps of 512 channels (ceil of 112 / 32)
    head = 2 * c + c * h * w * 512 + 512 + 2 * 512  # BN2d, FC, BN1d
    model = get_backbone("timm:resnet18")
    assert sum(p.numel() for p in model.parameters()) == body_params + head
    out = model.train()(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    cfg, _ = parse_config(["--backbone=timm:resnet18"])
    assert cfg.backbone == "timm:resnet18"
    with pytest.raises(ConfigError, match="did you mean 'timm:resnet18'"):
        parse_config(["--backbone=timm:resnt18"])
    with pytest.raises(ConfigError, match="^backbone: unknown backbone family 'tim'"):
        parse_config(["--backbone=tim:resnet18"])


def test_summary_lists_new_backbones_and_refuses_bad_names(capsys):
    assert summary_main(["--summary", "ResNet200_IR", "vit_t"]) == 0
    out = capsys.readouterr().out
    assert f"{ir_params([6, 26, 60, 6]):,}" in out and f"{vit_params(256, 12):,}" in out
    assert summary_main(["--summary", "vit_x"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1


def _step(model, x, seed):
    torch.manual_seed(seed)
    out = model(x)
    (out.square().mean() + out.sum()).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name,size", [("ResNet18_IR", (32, 32)), ("vit_t", (112, 112))])
def test_activation_checkpointing_gives_the_plain_gradients_and_statistics(name, size):
    torch.manual_seed(0)
    cfg = Config(backbone=name, input_size=list(size), dropout=0.2)
    plain = build_backbone(cfg).train()
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing = True
    x = torch.randn(4, 3, *size)
    out_p, grad_p = _step(plain, x, 1)
    out_c, grad_c = _step(ckpt, x, 1)
    torch.testing.assert_close(out_c, out_p, atol=0, rtol=0)
    for n in grad_p:
        torch.testing.assert_close(grad_c[n], grad_p[n], atol=1e-6, rtol=1e-5, msg=n)
    buffers_c = dict(ckpt.named_buffers())
    for n, b in plain.named_buffers():  # BN running statistics updated once, not twice
        torch.testing.assert_close(buffers_c[n], b, atol=0, rtol=0, msg=n)


def test_activation_checkpointing_config_and_unsupported_backbone():
    model = build_backbone(Config(backbone="ResNet18_IR", activation_checkpointing=True))
    assert model.activation_checkpointing
    for name in ("MobileFaceNet", "timm:resnet18"):  # timm's own checkpointing double-updates BN statistics
        with pytest.raises(ValueError, match=f"^activation_checkpointing: backbone '{name}'"):
            build_backbone(Config(backbone=name, activation_checkpointing=True))
        # and refused when the config is read, before any data is generated or read
        with pytest.raises(ConfigError, match=f"^activation_checkpointing: backbone '{name}'"):
            parse_config([f"--backbone={name}", "--activation_checkpointing=true"])
    assert parse_config(["--backbone=vit_s", "--activation_checkpointing=true"])[0].activation_checkpointing


@pytest.mark.parametrize("overrides", [dict(backbone="vit_t", head="MagFace", activation_checkpointing=True),
                                       dict(backbone="ResNet18_IR", head="ElasticArcFacePlus",
                                            activation_checkpointing=True),
                                       dict(backbone="timm:resnet18", head="CosFace")],
                         ids=["vit_t-MagFace-ckpt", "r18-ElasticArc+-ckpt", "timm-CosFace"])
def test_training_runs_with_the_new_backbones_and_heads(tmp_path, overrides):
    if overrides["backbone"].startswith("timm"):
        pytest.importorskip("timm")
    import Train

    from _train_fixtures import PatternFaces, tiny_config

    cfg = tiny_config(tmp_path, max_iterations=2, epochs=1, embedding_size=0, write_nothing=True, **overrides)
    result = Train.train(cfg, dataset=PatternFaces(classes=4, per_class=8))
    assert result.state.iteration == 2 and torch.isfinite(torch.tensor(result.state.last_loss))


@pytest.mark.slow  # one torch.compile of a small IR net: ~1 min on 2 busy cores
def test_activation_checkpointing_under_compile_keeps_statistics_and_gradients():
    torch.manual_seed(0)
    plain = build_backbone(Config(backbone="ResNet18_IR", input_size=[32, 32])).train()
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing = True
    x = torch.randn(4, 3, 32, 32)
    _, grad_p = _step(plain, x, 1)
    _, grad_c = _step(torch.compile(ckpt), x, 1)
    for n in grad_p:  # compiled kernels reorder float sums: agreement to ~1e-5, not bit for bit
        torch.testing.assert_close(grad_c[f"_orig_mod.{n}"] if f"_orig_mod.{n}" in grad_c else grad_c[n], grad_p[n],
                                   atol=1e-4, rtol=1e-3, msg=n)
    buffers_c = dict(ckpt.named_buffers())
    for n, b in plain.named_buffers():
        torch.testing.assert_close(buffers_c[n], b, atol=1e-6, rtol=1e-5, msg=n)
