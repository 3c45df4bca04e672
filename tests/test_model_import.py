"""Utils.tools.model_import: foreign state_dicts written here by hand, under the key names of the projects they come from
(Face_Pytorch / Xiaoccer, Pytorch_Face_Recognition, InsightFace_Pytorch, insightface arcface_torch), mapped onto our backbones.

Correctness is checked against an explicit correspondence table or a functional forward pass of the foreign
network written in this file with torch.nn.functional - never against the importer's own output.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from Backbones import get_backbone
from Utils.checkpoint import load_backbone
from Utils.tools.model_import import (ImportMismatchError, import_backbone, list_sources, map_state_dict,
                                      read_foreign_weights)
from Utils.tools.model_import.cli import main

MFN_SETTING = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]
# The IR layouts are checked on 18-layer stage sizes: the rules are the same for every depth, the test is 4x lighter.
IR18_UNITS = [2, 2, 2, 2]


def _rand(gen, *shape):
    # weights at 1/sqrt(fan_in) keep activations O(1) through 50 random layers; vectors (BN, PReLU) at 0.1
    fan_in = torch.Size(shape[1:]).numel() if len(shape) > 1 else 100
    return torch.randn(*shape, generator=gen) / fan_in ** 0.5


def _bn(gen, prefix: str, n: int, counter: bool = True) -> dict[str, torch.Tensor]:
    d = {f"{prefix}.weight": 1 + _rand(gen, n), f"{prefix}.bias": _rand(gen, n),
         f"{prefix}.running_mean": _rand(gen, n), f"{prefix}.running_var": 0.5 + torch.rand(n, generator=gen)}
    if counter:
        d[f"{prefix}.num_batches_tracked"] = torch.tensor(7)
    return d


def _prelu(gen, prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": 0.25 + _rand(gen, n)}


def face_pytorch_mfn(gen, names=("conv1", "dw_conv1", "blocks", "conv2", "linear7", "linear1"), gdc=(7, 6), dim=128):
    """MobileFaceNet as Face_Pytorch / Xiaoccer name it (Pytorch_Face_Recognition uses other names for the same modules)."""
    stem, dw, blocks, expand, gdc_name, emb = names
    d = {f"{stem}.conv.weight": _rand(gen, 64, 3, 3, 3), **_bn(gen, f"{stem}.bn", 64), **_prelu(gen, f"{stem}.prelu", 64),
         f"{dw}.conv.weight": _rand(gen, 64, 1, 3, 3), **_bn(gen, f"{dw}.bn", 64), **_prelu(gen, f"{dw}.prelu", 64)}
    i, cin = 0, 64
    for t, c, n, _ in MFN_SETTING:
        for _ in range(n):
            h, p = cin * t, f"{blocks}.{i}.conv"
            d.update({f"{p}.0.weight": _rand(gen, h, cin, 1, 1), **_bn(gen, f"{p}.1", h), **_prelu(gen, f"{p}.2", h),
                      f"{p}.3.weight": _rand(gen, h, 1, 3, 3), **_bn(gen, f"{p}.4", h), **_prelu(gen, f"{p}.5", h),
                      f"{p}.6.weight": _rand(gen, c, h, 1, 1), **_bn(gen, f"{p}.7", c)})
            i, cin = i + 1, c
    d.update({f"{expand}.conv.weight": _rand(gen, 512, 128, 1, 1), **_bn(gen, f"{expand}.bn", 512),
              **_prelu(gen, f"{expand}.prelu", 512), f"{gdc_name}.conv.weight": _rand(gen, 512, 1, *gdc),
              **_bn(gen, f"{gdc_name}.bn", 512), f"{emb}.conv.weight": _rand(gen, dim, 512, 1, 1),
              **_bn(gen, f"{emb}.bn", dim)})
    return d


def mfn_table(names=("conv1", "dw_conv1", "blocks", "conv2", "linear7", "linear1")) -> dict[str, str]:
    """Our MobileFaceNet key -> the Face_Pytorch-layout key holding its value."""
    stem, dw, blocks, expand, gdc_name, emb = names
    table = {}
    for ours, theirs in (("conv1", stem), ("conv2_dw", dw), ("conv_expand", expand), ("gdc", gdc_name),
                         ("embedding", emb)):
        for leaf in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "prelu.weight"):
            table[f"{ours}.{leaf}"] = f"{theirs}.{leaf}"
    parts = [("expand.conv", 0), ("expand.bn", 1), ("expand.prelu", 2), ("depthwise.conv", 3), ("depthwise.bn", 4),
             ("depthwise.prelu", 5), ("project.conv", 6), ("project.bn", 7)]
    for i in range(15):
        for ours, k in parts:
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                table[f"blocks.{i}.{ours}.{leaf}"] = f"{blocks}.{i}.conv.{k}.{leaf}"
    return table


def _check_table(state: dict, foreign: dict, table: dict) -> int:
    checked = 0
    for ours, theirs in table.items():
        if ours in state:
            assert theirs in foreign, theirs
            assert torch.equal(state[ours], foreign[theirs].reshape(state[ours].shape)), (ours, theirs)
            checked += 1
    return checked


def _se_resnet18(input_size):
    """ResNet18_IR with SE units (the registry's SE variants start at 50 layers; the layout rules do not care)."""
    from Backbones.iresnet import IResNet
    return IResNet(18, use_se=True, embedding_size=512, input_size=input_size)


def test_registry_lists_the_promised_formats():
    for name in ("xiaoccer_mobilefacenet", "face_pytorch_mobilefacenet", "pytorch_face_recognition_mobilefacenet",
                 "seed_mobilefacenet", "insightface_pytorch_mobilefacenet", "insightface_pytorch_ir",
                 "insightface_iresnet", "face_pytorch_cbamresnet", "pytorch_face_recognition_cbamresnet",
                 "seed_cbamresnet", "ordered"):
        assert name in list_sources()
    with pytest.raises(ValueError, match="did you mean 'insightface_iresnet'"):
        map_state_dict({}, get_backbone("ResNet18_IR"), "insightface_iresnt")


def test_xiaoccer_checkpoint_wrapper_and_module_prefix(tmp_path):
    gen = torch.Generator().manual_seed(0)
    foreign = face_pytorch_mfn(gen)
    path = tmp_path / "068.ckpt"
    torch.save({"epoch": 68, "net_state_dict": {f"module.{k}": v for k, v in foreign.items()}}, path)
    model, meta, report = import_backbone("xiaoccer_mobilefacenet", path, "MobileFaceNet", (112, 96), "RGB")
    state = model.state_dict()
    assert _check_table(state, foreign, mfn_table()) == len([k for k in state if "num_batches" not in k])
    assert meta["input_size"] == [112, 96] and meta["embedding_size"] == 128 and meta["color_order"] == "RGB"
    assert report.copied == len(foreign) and not report.filled


def test_pytorch_face_recognition_mobilefacenet_names_and_embedding_size_from_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(1)
    names = ("conv3", "dw_conv3", "bottlenecks", "conv1", "linear_GDConv7", "linear_conv1")
    foreign = face_pytorch_mfn(gen, names, gdc=(7, 7), dim=256)
    torch.save(foreign, tmp_path / "Iter_1000_net.pth")
    model, meta, _ = import_backbone("pytorch_face_recognition_mobilefacenet", tmp_path / "Iter_1000_net.pth",
                                     "MobileFaceNet", (112, 112), "RGB")
    assert meta["embedding_size"] == 256
    assert _check_table(model.state_dict(), foreign, mfn_table(names)) == 283  # every tensor but the BN counters
    # Pytorch_Face_Recognition's "conv1" is the 1x1 expansion to 512, not the stem: a name clash the rules must not confuse
    assert torch.equal(model.state_dict()["conv_expand.conv.weight"], foreign["conv1.conv.weight"])
    # the same file under the Face_Pytorch names: its "conv1" lands on our stem and the shapes say so; the message
    # names the layout that fits
    with pytest.raises(ImportMismatchError,
                       match=r"every key of the file has a rule in: --source=pytorch_face_recognition_mobilefacenet"):
        import_backbone("face_pytorch_mobilefacenet", tmp_path / "Iter_1000_net.pth", "MobileFaceNet", (112, 112), "RGB")


def test_insightface_pytorch_mobilefacenet_stage_numbering_and_linear_to_conv(tmp_path):
    gen = torch.Generator().manual_seed(2)
    d = {"conv1.conv.weight": _rand(gen, 64, 3, 3, 3), **_bn(gen, "conv1.bn", 64), **_prelu(gen, "conv1.prelu", 64),
         "conv2_dw.conv.weight": _rand(gen, 64, 1, 3, 3), **_bn(gen, "conv2_dw.bn", 64),
         **_prelu(gen, "conv2_dw.prelu", 64)}
    # (stage name, block prefixes, in, out, hidden) in InsightFace_Pytorch's layout
    stages = [("conv_23", ["conv_23"], 64, 64, 128), ("conv_3", [f"conv_3.model.{i}" for i in range(4)], 64, 64, 128),
              ("conv_34", ["conv_34"], 64, 128, 256), ("conv_4", [f"conv_4.model.{i}" for i in range(6)], 128, 128, 256),
              ("conv_45", ["conv_45"], 128, 128, 512), ("conv_5", [f"conv_5.model.{i}" for i in range(2)], 128, 128, 256)]
    order = []
    for _, prefixes, cin, cout, h in stages:
        for p in prefixes:
            d.update({f"{p}.conv.conv.weight": _rand(gen, h, cin, 1, 1), **_bn(gen, f"{p}.conv.bn", h),
                      **_prelu(gen, f"{p}.conv.prelu", h), f"{p}.conv_dw.conv.weight": _rand(gen, h, 1, 3, 3),
                      **_bn(gen, f"{p}.conv_dw.bn", h), **_prelu(gen, f"{p}.conv_dw.prelu", h),
                      f"{p}.project.conv.weight": _rand(gen, cout, h, 1, 1), **_bn(gen, f"{p}.project.bn", cout)})
            order.append(p)
    d.update({"conv_6_sep.conv.weight": _rand(gen, 512, 128, 1, 1), **_bn(gen, "conv_6_sep.bn", 512),
              **_prelu(gen, "conv_6_sep.prelu", 512), "conv_6_dw.conv.weight": _rand(gen, 512, 1, 7, 7),
              **_bn(gen, "conv_6_dw.bn", 512), "linear.weight": _rand(gen, 512, 512), **_bn(gen, "bn", 512)})
    torch.save(d, tmp_path / "model_mobilefacenet.pth")
    model, meta, report = import_backbone("insightface_pytorch_mobilefacenet", tmp_path / "model_mobilefacenet.pth",
                                          "MobileFaceNet", (112, 112), "BGR", std=127.5)
    state = model.state_dict()
    assert len(order) == 15 and meta["embedding_size"] == 512 and meta["color_order"] == "BGR"
    for i, p in enumerate(order):
        assert torch.equal(state[f"blocks.{i}.expand.conv.weight"], d[f"{p}.conv.conv.weight"])
        assert torch.equal(state[f"blocks.{i}.depthwise.bn.running_var"], d[f"{p}.conv_dw.bn.running_var"])
        assert torch.equal(state[f"blocks.{i}.project.conv.weight"], d[f"{p}.project.conv.weight"])
    assert torch.equal(state["embedding.conv.weight"], d["linear.weight"].reshape(512, 512, 1, 1))
    assert torch.equal(state["embedding.bn.running_mean"], d["bn.running_mean"])
    assert report.reshaped == ["embedding.conv.weight"]
    # trained on (x - 127.5) / 127.5: the stem sees our (x - 127.5) / 128 scaled back by 128 / 127.5
    assert torch.allclose(state["conv1.conv.weight"], d["conv1.conv.weight"] * (128 / 127.5), rtol=1e-6, atol=0)


def treblen_ir_se(gen, units: list[int], fc_positions: int) -> dict[str, torch.Tensor]:
    """InsightFace_Pytorch Backbone(mode='ir_se') with the given stage sizes: body.N units; no BN after the first conv; a MaxPool2d(1, s)
    shortcut (no parameters) when in == out channels."""
    d = {"input_layer.0.weight": _rand(gen, 64, 3, 3, 3), **_bn(gen, "input_layer.1", 64),
         **_prelu(gen, "input_layer.2", 64)}
    n, cin = 0, 64
    for count, cout in zip(units, (64, 128, 256, 512)):
        for j in range(count):
            c_in = cin if j == 0 else cout
            p = f"body.{n}"
            d.update({**_bn(gen, f"{p}.res_layer.0", c_in), f"{p}.res_layer.1.weight": _rand(gen, cout, c_in, 3, 3),
                      **_prelu(gen, f"{p}.res_layer.2", cout), f"{p}.res_layer.3.weight": _rand(gen, cout, cout, 3, 3),
                      **_bn(gen, f"{p}.res_layer.4", cout),
                      f"{p}.res_layer.5.fc1.weight": _rand(gen, cout // 16, cout, 1, 1),
                      f"{p}.res_layer.5.fc2.weight": _rand(gen, cout, cout // 16, 1, 1)})
            if c_in != cout:
                d.update({f"{p}.shortcut_layer.0.weight": _rand(gen, cout, c_in, 1, 1),
                          **_bn(gen, f"{p}.shortcut_layer.1", cout)})
            n += 1
        cin = cout
    d.update({**_bn(gen, "output_layer.0", 512), "output_layer.3.weight": _rand(gen, 512, 512 * fc_positions),
              "output_layer.3.bias": _rand(gen, 512), **_bn(gen, "output_layer.4", 512)})
    return d


def treblen_forward(d: dict, x: torch.Tensor, units: list[int]) -> torch.Tensor:
    """InsightFace_Pytorch's IR-SE forward, in functional form over its own keys (eval mode, before l2_norm)."""
    def bn(p, t):
        return F.batch_norm(t, d[f"{p}.running_mean"], d[f"{p}.running_var"], d[f"{p}.weight"], d[f"{p}.bias"],
                            False, 0.0, 1e-5)
    x = F.prelu(bn("input_layer.1", F.conv2d(x, d["input_layer.0.weight"], padding=1)), d["input_layer.2.weight"])
    n = 0
    for count in units:
        for j in range(count):
            p, stride = f"body.{n}", 2 if j == 0 else 1
            r = F.conv2d(bn(f"{p}.res_layer.0", x), d[f"{p}.res_layer.1.weight"], padding=1)
            r = F.conv2d(F.prelu(r, d[f"{p}.res_layer.2.weight"]), d[f"{p}.res_layer.3.weight"], stride=stride,
                         padding=1)
            r = bn(f"{p}.res_layer.4", r)
            g = F.adaptive_avg_pool2d(r, 1)
            g = torch.sigmoid(F.conv2d(F.relu(F.conv2d(g, d[f"{p}.res_layer.5.fc1.weight"])),
                                       d[f"{p}.res_layer.5.fc2.weight"]))
            if f"{p}.shortcut_layer.0.weight" in d:
                s = bn(f"{p}.shortcut_layer.1", F.conv2d(x, d[f"{p}.shortcut_layer.0.weight"], stride=stride))
            else:
                s = F.max_pool2d(x, 1, stride)
            x = r * g + s
            n += 1
    x = bn("output_layer.0", x).flatten(1)
    x = F.linear(x, d["output_layer.3.weight"], d["output_layer.3.bias"])
    return F.batch_norm(x, d["output_layer.4.running_mean"], d["output_layer.4.running_var"],
                        d["output_layer.4.weight"], d["output_layer.4.bias"], False, 0.0, 1e-5)


def test_insightface_pytorch_ir_se_computes_the_same_function(tmp_path):
    gen = torch.Generator().manual_seed(3)
    d = treblen_ir_se(gen, IR18_UNITS, fc_positions=4)  # 32x32 input: a 2x2 map before the fc
    model = _se_resnet18((32, 32))
    state, report = map_state_dict(d, model, "insightface_pytorch_ir")
    model.load_state_dict(state)
    # the missing BN of every unit and layer1.0's MaxPool shortcut were filled, and said so
    assert sum(k.endswith(".bn2.weight") for k in report.filled) == sum(IR18_UNITS)
    assert "layer1.0.downsample.0.weight" in report.filled and "layer2.0.downsample.0.weight" not in report.filled
    x = torch.randn(3, 3, 32, 32, generator=gen)
    with torch.no_grad():
        ours, ref = model.eval()(x), treblen_forward(d, x, IR18_UNITS)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4), (ours - ref).abs().max()


def test_insightface_pytorch_ir_wrong_depth_names_the_keys_and_suggests_the_depth():
    gen = torch.Generator().manual_seed(4)
    d = treblen_ir_se(gen, [3, 4, 14, 3], fc_positions=1)  # the published IR-SE-50 layout, 16x16 input
    with pytest.raises(ImportMismatchError) as info:
        map_state_dict(d, get_backbone("ResNet34_IR", 512, (16, 16)), "insightface_pytorch_ir", where="ir_se50.pth")
    msg = str(info.value)
    assert msg.startswith("ir_se50.pth -> IResNet") and "--backbone=SEResNet50_IR" in msg
    # units are numbered flat (body.N): body.7 opens stage 3 in the file but lands in stage 2 of ResNet34 (3+4+6+3
    # units: body.3-6 fill stage 2 and body.7-12 stage 3, so only from body.13 on do shapes disagree)
    assert ("body.13.res_layer.1.weight", (256, 256, 3, 3), "layer4.0.conv1.weight", (512, 256, 3, 3)) \
        in info.value.mis_shaped
    assert "body.0.res_layer.5.fc1.weight [-> layer1.0.se.fc1.weight: not in the backbone]" in info.value.unmatched
    assert "body.16.res_layer.0.weight [-> <unit 16: the backbone has 16>.bn1.weight: not in the backbone]" \
        in info.value.unmatched


def insightface_iresnet(gen, units, fc_positions, dim=512) -> dict[str, torch.Tensor]:
    """arcface_torch iresnet keys (the same names as ours), written out independently."""
    d = {"conv1.weight": _rand(gen, 64, 3, 3, 3), **_bn(gen, "bn1", 64), **_prelu(gen, "prelu", 64)}
    cin = 64
    for i, (n, cout) in enumerate(zip(units, (64, 128, 256, 512)), start=1):
        for j in range(n):
            p, c_in = f"layer{i}.{j}", cin if j == 0 else cout
            d.update({**_bn(gen, f"{p}.bn1", c_in), f"{p}.conv1.weight": _rand(gen, cout, c_in, 3, 3),
                      **_bn(gen, f"{p}.bn2", cout), **_prelu(gen, f"{p}.prelu", cout),
                      f"{p}.conv2.weight": _rand(gen, cout, cout, 3, 3), **_bn(gen, f"{p}.bn3", cout)})
            if j == 0:
                d.update({f"{p}.downsample.0.weight": _rand(gen, cout, c_in, 1, 1), **_bn(gen, f"{p}.downsample.1", cout)})
        cin = cout
    d.update({**_bn(gen, "bn2", 512), "fc.weight": _rand(gen, dim, 512 * fc_positions), "fc.bias": _rand(gen, dim),
              **_bn(gen, "features", dim)})
    return d


def test_insightface_iresnet_normalisation_fold_is_exact(tmp_path):
    gen = torch.Generator().manual_seed(5)
    d = insightface_iresnet(gen, [2, 2, 2, 2], fc_positions=4)
    torch.save(d, tmp_path / "backbone.pth")
    model, meta, _ = import_backbone("insightface_iresnet", tmp_path / "backbone.pth", "ResNet18_IR", (32, 32),
                                     "RGB", std=127.5)
    state = model.state_dict()
    assert torch.equal(state["layer3.1.bn2.running_var"], d["layer3.1.bn2.running_var"])
    assert torch.equal(state["features.weight"], d["features.weight"])
    # reference: the network as trained, fed the pixels its own way, (p - 127.5) / 127.5
    reference = get_backbone("ResNet18_IR", 512, (32, 32)).eval()
    reference.load_state_dict(d)
    pixels = torch.randint(0, 256, (2, 3, 32, 32), generator=gen).float()
    with torch.no_grad():
        want = reference((pixels - 127.5) / 127.5)
        got = model((pixels - 127.5) / 128)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)
    assert meta["imported_from"]["trained_std"] == [127.5] * 3


def face_pytorch_cbam(gen, mode: str, units: list[int]) -> dict[str, torch.Tensor]:
    """Face_Pytorch CBAMResNet(mode): res_layer = BN, conv, BN, PReLU, conv, BN, [attention]."""
    d = {"input_layer.0.weight": _rand(gen, 64, 3, 3, 3), **_bn(gen, "input_layer.1", 64),
         **_prelu(gen, "input_layer.2", 64)}
    cin = 64
    for i, (n, cout) in enumerate(zip(units, (64, 128, 256, 512)), start=1):
        for j in range(n):
            p, c_in = f"layer{i}.{j}.res_layer", cin if j == 0 else cout
            d.update({**_bn(gen, f"{p}.0", c_in), f"{p}.1.weight": _rand(gen, cout, c_in, 3, 3),
                      **_bn(gen, f"{p}.2", cout), **_prelu(gen, f"{p}.3", cout),
                      f"{p}.4.weight": _rand(gen, cout, cout, 3, 3), **_bn(gen, f"{p}.5", cout)})
            if mode == "ir_se":
                d.update({f"{p}.6.fc1.weight": _rand(gen, cout // 16, cout, 1, 1),
                          f"{p}.6.fc2.weight": _rand(gen, cout, cout // 16, 1, 1)})
            if mode == "ir_cbam":
                d.update({f"{p}.6.shared_mlp.0.weight": _rand(gen, cout // 16, cout, 1, 1),
                          f"{p}.6.shared_mlp.2.weight": _rand(gen, cout, cout // 16, 1, 1),
                          f"{p}.7.conv.weight": _rand(gen, 1, 2, 3, 3)})
            if j == 0:
                d.update({f"layer{i}.{j}.shortcut_layer.0.weight": _rand(gen, cout, c_in, 1, 1),
                          **_bn(gen, f"layer{i}.{j}.shortcut_layer.1", cout)})
        cin = cout
    d.update({**_bn(gen, "output_layer.0", 512), "output_layer.3.weight": _rand(gen, 512, 512 * 4),
              "output_layer.3.bias": _rand(gen, 512), **_bn(gen, "output_layer.4", 512)})
    return d


def test_face_pytorch_cbamresnet_ir_se_maps_and_cbam_is_reported(tmp_path):
    gen = torch.Generator().manual_seed(6)
    d = face_pytorch_cbam(gen, "ir_se", IR18_UNITS)
    model = _se_resnet18((32, 32))
    state, report = map_state_dict(d, model, "seed_cbamresnet")
    table = {"conv1.weight": "input_layer.0.weight", "bn1.running_var": "input_layer.1.running_var",
             "layer3.1.bn1.weight": "layer3.1.res_layer.0.weight", "layer3.1.conv1.weight": "layer3.1.res_layer.1.weight",
             "layer3.1.bn2.bias": "layer3.1.res_layer.2.bias", "layer3.1.prelu.weight": "layer3.1.res_layer.3.weight",
             "layer3.1.conv2.weight": "layer3.1.res_layer.4.weight", "layer3.1.bn3.running_mean":
             "layer3.1.res_layer.5.running_mean", "layer3.1.se.fc2.weight": "layer3.1.res_layer.6.fc2.weight",
             "layer2.0.downsample.0.weight": "layer2.0.shortcut_layer.0.weight", "bn2.weight": "output_layer.0.weight",
             "fc.bias": "output_layer.3.bias", "features.running_var": "output_layer.4.running_var"}
    assert _check_table(state, d, table) == len(table)
    assert report.copied == len(d)

    cbam = face_pytorch_cbam(gen, "ir_cbam", IR18_UNITS)
    with pytest.raises(ImportMismatchError) as info:
        map_state_dict(cbam, model, "face_pytorch_cbamresnet", where="cbam.pth")
    assert "layer1.0.res_layer.6.shared_mlp.0.weight [no rule]" in info.value.unmatched
    assert "layer4.1.res_layer.7.conv.weight [no rule]" in info.value.unmatched
    assert "layer1.0.se.fc1.weight" in info.value.missing
    assert str(info.value).startswith("cbam.pth -> IResNet (source face_pytorch_cbamresnet): 24 checkpoint keys")  # 8 units x 3


def test_mismatches_are_listed_by_name(tmp_path):
    gen = torch.Generator().manual_seed(7)
    d = face_pytorch_mfn(gen)
    del d["blocks.3.conv.4.running_mean"]
    d["blocks.3.conv.9.weight"] = torch.zeros(3)  # a layer our network does not have
    d["linear1.conv.weight"] = _rand(gen, 128, 256, 1, 1)  # a wrong width
    with pytest.raises(ImportMismatchError) as info:
        map_state_dict(d, get_backbone("MobileFaceNet", 128, (112, 96)), "xiaoccer_mobilefacenet")
    err = info.value
    assert err.unmatched == ["blocks.3.conv.9.weight [no rule]"]
    assert err.missing == ["blocks.3.depthwise.bn.running_mean"]
    assert err.mis_shaped == [("linear1.conv.weight", (128, 256, 1, 1), "embedding.conv.weight", (128, 512, 1, 1))]

    d = face_pytorch_mfn(gen, gdc=(7, 6))
    with pytest.raises(ImportMismatchError, match=r"--input_size=112,96"):
        map_state_dict(d, get_backbone("MobileFaceNet", 128, (112, 112)), "xiaoccer_mobilefacenet")


def test_ordered_source_pairs_renamed_tensors_and_rejects_a_shape_change():
    gen = torch.Generator().manual_seed(8)
    d = face_pytorch_mfn(gen)
    renamed = {f"net.{i:03d}": v for i, v in enumerate(d.values()) if v.dim() > 0}  # an old file: no BN counters
    state, report = map_state_dict(renamed, get_backbone("MobileFaceNet", 128, (112, 96)), "ordered")
    assert _check_table(state, d, mfn_table()) == 283
    assert len(report.filled) == 50 and all(k.endswith("num_batches_tracked") for k in report.filled)
    keys = list(renamed)
    renamed[keys[6]] = renamed[keys[6]][:, :, :, :2]  # dw_conv1's kernel cut to 3x2
    with pytest.raises(ImportMismatchError) as info:
        map_state_dict(renamed, get_backbone("MobileFaceNet", 128, (112, 96)), "ordered")
    assert info.value.mis_shaped == [("net.007", (64, 1, 3, 2), "conv2_dw.conv.weight", (64, 1, 3, 3))]


def test_cli_writes_a_checkpoint_the_evaluation_scripts_load(tmp_path, capsys):
    gen = torch.Generator().manual_seed(9)
    d = face_pytorch_mfn(gen)
    torch.save({"epoch": 1, "net_state_dict": d}, tmp_path / "bgr.ckpt")
    out = tmp_path / "mfn.pt"
    argv = ["--source=xiaoccer_mobilefacenet", f"--weights={tmp_path / 'bgr.ckpt'}", "--backbone=MobileFaceNet",
            "--input_size=112,96", "--color_order=BGR", f"--out={out}"]
    assert main(argv) == 0
    model, meta = load_backbone(out)
    assert meta["color_order"] == "BGR" and meta["input_size"] == [112, 96]
    assert torch.equal(model.state_dict()["conv1.conv.weight"], d["conv1.conv.weight"])

    assert main(argv[:-1] + ["--to_rgb=true", f"--out={tmp_path / 'rgb.pt'}"]) == 0
    rgb, meta = load_backbone(tmp_path / "rgb.pt")
    assert meta["color_order"] == "RGB" and meta["imported_from"]["trained_color_order"] == "BGR"
    x = torch.randn(2, 3, 112, 96, generator=gen)
    with torch.no_grad():
        assert torch.allclose(rgb(x), model(x.flip(1)), atol=1e-5)  # RGB input to one == BGR input to the other

    capsys.readouterr()
    assert main(argv[:3] + ["--input_size=112,112", "--color_order=RGB", f"--out={tmp_path / 'x.pt'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "linear7.conv.weight (512, 1, 7, 6) -> gdc.conv.weight" in err
    assert not (tmp_path / "x.pt").exists()


def test_foreign_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_foreign_weights(tmp_path / "nope.pth")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "no_weights.pth")
    with pytest.raises(ValueError, match="no state_dict found; top-level keys: epoch, optimizer"):
        read_foreign_weights(tmp_path / "no_weights.pth")
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "pickled_module.pth")
    with pytest.raises(ValueError, match="--trust_pickle"):
        read_foreign_weights(tmp_path / "pickled_module.pth")
    assert list(read_foreign_weights(tmp_path / "pickled_module.pth", trust_pickle=True)) == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="does not fit backbone 'ResNet50_IR'"):
        import_backbone("xiaoccer_mobilefacenet", tmp_path / "no_weights.pth", "ResNet50_IR", (112, 112), "RGB")
