"""Every registered backbone: output shape, finite output, every parameter gets a gradient; published sizes."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from Backbones import get_backbone, list_backbones
from Backbones.__main__ import state_dict_bytes
from tests.conftest import REPO

# fp32 state_dict sizes of the original project's table (MB = 1e6 bytes), checked within 5%
PUBLISHED_MB = {"MobileFaceNet": 4.0, "ResNet50_IR": 170.0, "SEResNet50_IR": 171.0, "ResNet100_IR": 256.0}


@pytest.mark.parametrize("name", list_backbones())
def test_forward_backward(name):
    torch.manual_seed(0)
    # small inputs keep the big IR nets fast; the FC / GDC adapt to (H/16, W/16)
    model = get_backbone(name, input_size=(32, 32)).train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, model.embedding_size)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"


@pytest.mark.parametrize("name,size", [("MobileFaceNet", (112, 112)), ("MobileFaceNet", (112, 96)),
                                       ("ResNet18_IR", (112, 112)), ("ResNet18_IR", (112, 96))])
def test_real_input_sizes(name, size):
    model = get_backbone(name, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, model.embedding_size)


def test_mobilefacenet_gdc_kernel_follows_input_width():
    assert get_backbone("MobileFaceNet", input_size=(112, 96)).gdc.conv.kernel_size == (7, 6)
    assert get_backbone("MobileFaceNet").gdc.conv.kernel_size == (7, 7)


def test_embedding_size_selectable():
    assert get_backbone("MobileFaceNet").embedding_size == 128
    assert get_backbone("MobileFaceNet", embedding_size=512).embedding_size == 512
    assert get_backbone("ResNet18_IR").embedding_size == 512


@pytest.mark.parametrize("name,mb", PUBLISHED_MB.items())
def test_state_dict_size_matches_published_table(name, mb):
    with torch.device("meta"):
        model = get_backbone(name)
    size = state_dict_bytes(model) / 1e6
    assert abs(size - mb) / mb < 0.05, f"{name}: {size:.1f} MB vs published {mb} MB"


def test_se_is_an_option_of_the_same_network():
    with torch.device("meta"):
        plain, se = get_backbone("ResNet50_IR"), get_backbone("SEResNet50_IR")
    extra = {k for k in se.state_dict()} - {k for k in plain.state_dict()}
    assert extra and all(".se." in k for k in extra)
    assert {k for k in plain.state_dict()} <= {k for k in se.state_dict()}


def test_ir_block_order_is_bn_conv_bn_prelu_conv_bn():
    block = get_backbone("ResNet18_IR").layer1[0]
    names = [n for n, _ in block.named_children()]
    assert names[:6] == ["bn1", "conv1", "bn2", "prelu", "conv2", "bn3"]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)  # stride in the second conv


def test_unknown_backbone_names_choices():
    with pytest.raises(ValueError, match="ResNet50_IR") as exc:
        get_backbone("ResNet50IR")
    assert "did you mean" in str(exc.value)


def test_summary_command_prints_sizes():
    out = subprocess.run([sys.executable, "-m", "Backbones", "--summary"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "ResNet100_IR" in out and "MobileFaceNet" in out
    line = next(l for l in out.splitlines() if l.startswith("ResNet50_IR"))
    assert "43,590,848" in line
