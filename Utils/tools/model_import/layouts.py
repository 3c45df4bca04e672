"""The key layouts of other projects' face-recognition checkpoints, as `SourceFormat`s by name (--source).

Each layout is a list of rename rules (a regex over the foreign module path -> our module path; the parameter name
is carried over) plus, where the foreign network is an exact special case of ours, the tensors that make ours compute
the same function (identity BatchNorms, identity 1x1 shortcuts). mapping.py applies them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from ...registry import Registry

__all__ = ["Rule", "MapContext", "SourceFormat", "register_source", "list_sources", "get_source", "source_items"]


# A rule maps a foreign module path (regex, matched in full) to ours: a template for Match.expand, or a callable
# (match, context) -> our module path. The parameter name (weight, bias, running_mean, ...) is kept.
Rule = tuple[str, "str | Callable[[re.Match, MapContext], str]"]


@dataclass
class MapContext:
    """What rules and fillers may consult: our network and its state_dict keys."""
    model: nn.Module
    keys: list[str]

    @property
    def ir_units(self) -> list[str]:
        """Our IR units in network order ('layer1.0', 'layer1.1', ...) - for sources that number them flat."""
        seen: dict[str, None] = {}
        for key in self.keys:
            m = re.match(r"(layer\d+\.\d+)\.", key)
            if m:
                seen[m.group(1)] = None
        return list(seen)


@dataclass(frozen=True)
class SourceFormat:
    """One foreign key layout.

    Args:
        name: registry name (the --source value).
        description: the project and class the layout comes from.
        backbones: regex over our backbone names this layout can fill.
        rules: rename rules, tried in order (see `Rule`); unused when `ordered`.
        fill: (context, mapped state_dict, foreign state_dict) -> {our key: (tensor, reason)} for our keys the
            foreign network lacks because its function is an identity there.
        ordered: pair tensors in state_dict order instead of by name (same architecture, other names).
    """
    name: str
    description: str
    backbones: str
    rules: tuple[Rule, ...] = ()
    fill: Callable[[MapContext, dict, Mapping], dict[str, tuple[torch.Tensor, str]]] | None = None
    ordered: bool = False

    def rename(self, key: str, ctx: MapContext) -> str | None:
        module, _, param = key.rpartition(".")
        for pattern, target in _compiled(self.rules):
            m = pattern.fullmatch(module)
            if m:
                ours = target(m, ctx) if callable(target) else m.expand(target)
                return f"{ours}.{param}"
        return None


@lru_cache(maxsize=None)
def _compiled(rules: tuple[Rule, ...]) -> list[tuple[re.Pattern, Any]]:
    return [(re.compile(p), t) for p, t in rules]


_SOURCES: Registry[SourceFormat] = Registry("source format")


def register_source(fmt: SourceFormat, *aliases: str) -> SourceFormat:
    for name in (fmt.name, *aliases):
        _SOURCES.add(name, fmt)
    return fmt


def list_sources() -> list[str]:
    return _SOURCES.names()


def get_source(name: str) -> SourceFormat:
    return _SOURCES.get(name)


# MobileFaceNet bottleneck body as a flat Sequential: conv/BN/PReLU x2 then conv/BN (Face_Pytorch, Xiaoccer,
# Pytorch_Face_Recognition).
_MFN_SEQ_BLOCK = {"0": "expand.conv", "1": "expand.bn", "2": "expand.prelu", "3": "depthwise.conv",
                  "4": "depthwise.bn", "5": "depthwise.prelu", "6": "project.conv", "7": "project.bn"}


def _mfn_seq_rules(stem: str, dw: str, blocks: str, expand: str, gdc: str, emb: str) -> tuple[Rule, ...]:
    return ((rf"{stem}\.(conv|bn|prelu)", r"conv1.\1"),
            (rf"{dw}\.(conv|bn|prelu)", r"conv2_dw.\1"),
            (rf"{blocks}\.(\d+)\.conv\.([0-7])", lambda m, ctx: f"blocks.{m[1]}.{_MFN_SEQ_BLOCK[m[2]]}"),
            (rf"{expand}\.(conv|bn|prelu)", r"conv_expand.\1"),
            (rf"{gdc}\.(conv|bn)", r"gdc.\1"),
            (rf"{emb}\.(conv|bn)", r"embedding.\1"))


register_source(SourceFormat(
    "face_pytorch_mobilefacenet",
    "MobileFaceNet of wujiyang/Face_Pytorch and Xiaoccer/MobileFaceNet_Pytorch (conv1, dw_conv1, blocks.N.conv.K, "
    "conv2, linear7, linear1)",
    r"MobileFaceNet",
    _mfn_seq_rules("conv1", "dw_conv1", "blocks", "conv2", "linear7", "linear1"),
), "xiaoccer_mobilefacenet")

register_source(SourceFormat(
    "pytorch_face_recognition_mobilefacenet",
    "MobileFacenet of QuasarLight/Pytorch_Face_Recognition, the project this one re-creates (conv3, dw_conv3, "
    "bottlenecks.N.conv.K, conv1, linear_GDConv7, linear_conv1)",
    r"MobileFaceNet",
    _mfn_seq_rules("conv3", "dw_conv3", "bottlenecks", "conv1", "linear_GDConv7", "linear_conv1"),
), "seed_mobilefacenet")  # an old name, still accepted

# InsightFace_Pytorch numbers its 15 bottlenecks by stage: conv_23, conv_3.model.0-3, conv_34, conv_4.model.0-5,
# conv_45, conv_5.model.0-1 - our blocks 0..14 in the same order.
_TREBLEN_MFN_FIRST = {"conv_23": 0, "conv_3": 1, "conv_34": 5, "conv_4": 6, "conv_45": 12, "conv_5": 13}


def _treblen_mfn_block(m: re.Match, ctx: MapContext) -> str:
    index = _TREBLEN_MFN_FIRST[m["stage"]] + int(m["unit"] or 0)
    part = {"conv": "expand", "conv_dw": "depthwise", "project": "project"}[m["part"]]
    return f"blocks.{index}.{part}.{m['layer']}"


register_source(SourceFormat(
    "insightface_pytorch_mobilefacenet",
    "MobileFaceNet of TreB1eN/InsightFace_Pytorch (conv_23, conv_3.model.N, ..., conv_6_sep, conv_6_dw, linear, bn); "
    "its Linear(512, D) + BatchNorm1d equals our 1x1 conv + BatchNorm2d",
    r"MobileFaceNet",
    ((r"conv1\.(conv|bn|prelu)", r"conv1.\1"),
     (r"conv2_dw\.(conv|bn|prelu)", r"conv2_dw.\1"),
     (r"(?P<stage>conv_23|conv_34|conv_45|conv_3|conv_4|conv_5)(\.model\.(?P<unit>\d+))?"
      r"\.(?P<part>conv|conv_dw|project)\.(?P<layer>conv|bn|prelu)", _treblen_mfn_block),
     (r"conv_6_sep\.(conv|bn|prelu)", r"conv_expand.\1"),
     (r"conv_6_dw\.(conv|bn)", r"gdc.\1"),
     (r"linear", "embedding.conv"),
     (r"bn", "embedding.bn")),
))

register_source(SourceFormat(
    "insightface_iresnet",
    "iresnet of deepinsight/insightface arcface_torch (backbone.pth: conv1, bn1, prelu, layerL.N.{bn1,conv1,bn2,"
    "prelu,conv2,bn3,downsample.0/1}, bn2, fc, features) - the same names as ours",
    r"(SE)?ResNet\d+_IR",
    ((r"(conv1|bn1|prelu|bn2|fc|features)", r"\1"),
     (r"(layer\d+\.\d+)\.(bn1|conv1|bn2|prelu|conv2|bn3|downsample\.[01]|se\.fc[12])", r"\1.\2")),
))

# Face_Pytorch / Pytorch_Face_Recognition: res_layer = BN, conv, BN, PReLU, conv(stride), BN [, SEModule];
# shortcut_layer = conv, BN.
_FP_IR_RES = {"0": "bn1", "1": "conv1", "2": "bn2", "3": "prelu", "4": "conv2", "5": "bn3"}
_IR_IO_RULES: tuple[Rule, ...] = (
    (r"input_layer\.0", "conv1"), (r"input_layer\.1", "bn1"), (r"input_layer\.2", "prelu"),
    (r"output_layer\.0", "bn2"), (r"output_layer\.3", "fc"), (r"output_layer\.4", "features"))

register_source(SourceFormat(
    "face_pytorch_cbamresnet",
    "CBAMResNet of wujiyang/Face_Pytorch and QuasarLight/Pytorch_Face_Recognition, modes ir and ir_se/se_ir "
    "(input_layer, layerL.N.res_layer.K, shortcut_layer, output_layer); the CBAM/CAM/SAM attention modes have no "
    "counterpart here and are reported as unmatched",
    r"(SE)?ResNet\d+_IR",
    _IR_IO_RULES + (
        (r"(layer\d+\.\d+)\.res_layer\.([0-5])", lambda m, ctx: f"{m[1]}.{_FP_IR_RES[m[2]]}"),
        (r"(layer\d+\.\d+)\.res_layer\.6\.(fc[12])", r"\1.se.\2"),
        (r"(layer\d+\.\d+)\.shortcut_layer\.([01])", r"\1.downsample.\2")),
), "pytorch_face_recognition_cbamresnet", "seed_cbamresnet")  # the copy there; an old name, still accepted


# InsightFace_Pytorch: body.N (flat) with res_layer = BN, conv, PReLU, conv(stride), BN [, SEModule] - no BN between
# the first conv and the PReLU - and a MaxPool2d(1, stride) shortcut when the channel count does not change.
_TB_IR_RES = {"0": "bn1", "1": "conv1", "2": "prelu", "3": "conv2", "4": "bn3"}


def _treblen_unit(m: re.Match, ctx: MapContext) -> str:
    units, i = ctx.ir_units, int(m["unit"])
    return units[i] if i < len(units) else f"<unit {i}: the backbone has {len(units)}>"


def _identity_bn(bn: nn.Module) -> dict[str, torch.Tensor]:
    # running_var = 1 - eps makes x / sqrt(var + eps) exactly x: the BN computes the identity in eval mode.
    n = bn.num_features
    return {"weight": torch.ones(n), "bias": torch.zeros(n), "running_mean": torch.zeros(n),
            "running_var": torch.full((n,), 1.0 - bn.eps), "num_batches_tracked": torch.tensor(0)}


def _fill_treblen_ir(ctx: MapContext, mapped: dict, foreign: Mapping) -> dict[str, tuple[torch.Tensor, str]]:
    out: dict[str, tuple[torch.Tensor, str]] = {}
    for unit in ctx.ir_units:
        if f"{unit}.bn2.weight" not in mapped:
            why = "an identity BatchNorm (InsightFace_Pytorch's IR unit has no BN between conv1 and PReLU)"
            for name, t in _identity_bn(ctx.model.get_submodule(f"{unit}.bn2")).items():
                out[f"{unit}.bn2.{name}"] = (t, why)
        conv_key = f"{unit}.downsample.0.weight"
        if conv_key in ctx.keys and conv_key not in mapped:
            conv = ctx.model.get_submodule(f"{unit}.downsample.0")
            if conv.in_channels != conv.out_channels:
                continue  # a real projection is missing: leave it to the error
            why = "an identity strided 1x1 shortcut (InsightFace_Pytorch's MaxPool2d(1, stride) subsampling)"
            eye = torch.eye(conv.out_channels).reshape(conv.out_channels, conv.in_channels, 1, 1)
            out[conv_key] = (eye, why)
            for name, t in _identity_bn(ctx.model.get_submodule(f"{unit}.downsample.1")).items():
                out[f"{unit}.downsample.1.{name}"] = (t, why)
    return out


register_source(SourceFormat(
    "insightface_pytorch_ir",
    "Backbone of TreB1eN/InsightFace_Pytorch, modes ir and ir_se (input_layer, body.N.res_layer.K, "
    "body.N.shortcut_layer, output_layer); its missing BN and MaxPool shortcut become exact identities",
    r"(SE)?ResNet\d+_IR",
    _IR_IO_RULES + (
        (r"body\.(?P<unit>\d+)\.res_layer\.([0-4])", lambda m, ctx: f"{_treblen_unit(m, ctx)}.{_TB_IR_RES[m[2]]}"),
        (r"body\.(?P<unit>\d+)\.res_layer\.5\.(fc[12])", lambda m, ctx: f"{_treblen_unit(m, ctx)}.se.{m[2]}"),
        (r"body\.(?P<unit>\d+)\.shortcut_layer\.([01])",
         lambda m, ctx: f"{_treblen_unit(m, ctx)}.downsample.{m[2]}")),
    fill=_fill_treblen_ir,
))

register_source(SourceFormat(
    "ordered",
    "any layout of one of our architectures under other names: tensors paired in state_dict order, every shape "
    "must agree (a fork that renamed modules but kept their order)",
    r".*",
    ordered=True,
))


def source_items() -> list[tuple[str, SourceFormat]]:
    """(name, format) of every registered name, aliases included."""
    return _SOURCES.items()
