"""Import weights published by other PyTorch face-recognition projects into this project's backbones.

The networks are the same, the key names are not. Each source format is a list of rename rules (a regex over the
foreign module path -> our module path; the parameter name is carried over) plus, where the foreign network is an
exact special case of ours, the tensors that make ours compute the same function (identity BatchNorms, identity 1x1
shortcuts). Anything that does not map - a foreign key with no rule or no counterpart, one of our keys left
unfilled, a shape that disagrees - is an `ImportMismatchError` naming every such key.

    python -m Utils.model_import --source=xiaoccer_mobilefacenet --weights=068.ckpt \
        --backbone=MobileFaceNet --input_size=112,96 --color_order=RGB --out=mfn.pt

The output is a project checkpoint (Utils.checkpoint): every evaluation script takes it via --checkpoint. The user
states the colour order and the normalisation the model was trained with. The colour order is recorded in the
checkpoint (evaluation feeds the channels in that order); a normalisation other than ours, (x - 127.5) / 128, is
folded into the first convolution so that the imported network expects our input exactly.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from .registry import Registry

__all__ = ["SourceFormat", "ImportMismatchError", "ImportReport", "register_source", "get_source", "list_sources",
           "read_foreign_weights", "map_state_dict", "fold_input_normalization", "import_backbone",
           "build_import_checkpoint", "main"]

# Our normalisation is (x - OUR_MEAN) / OUR_STD on 0..255 pixels (Datasets.transforms.normalize_image).
OUR_MEAN, OUR_STD = 127.5, 128.0
# Keys holding a checkpoint's weights in the wrappers other projects save ({'epoch', 'net_state_dict'}, ...).
WRAPPER_KEYS = ("state_dict", "net_state_dict", "model_state_dict", "backbone", "model", "net", "network")
# Prefixes added by DataParallel / DistributedDataParallel and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Our keys whose first dimension is the embedding size, to infer it from the checkpoint.
EMBEDDING_KEYS = ("embedding.conv.weight", "fc.weight")


# ------------------------------------------------------------------------------------------------ errors and report
class ImportMismatchError(ValueError):
    """The checkpoint does not map onto the backbone. Lists every offending key (first 12 of each kind in the
    message, all of them in the attributes)."""

    def __init__(self, where: str, unmatched: list[str], missing: list[str],
                 mis_shaped: list[tuple[str, tuple, str, tuple]], hint: str = ""):
        self.unmatched, self.missing, self.mis_shaped = unmatched, missing, mis_shaped
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} checkpoint keys match nothing: {_cut(unmatched)}")
        if missing:
            parts.append(f"{len(missing)} backbone keys get no value: {_cut(missing)}")
        if mis_shaped:
            parts.append(f"{len(mis_shaped)} shapes disagree: " + _cut(
                [f"{fk} {tuple(fs)} -> {ok} {tuple(os_)}" for fk, fs, ok, os_ in mis_shaped]))
        super().__init__(f"{where}: " + "; ".join(parts) + (f" ({hint})" if hint else ""))


def _cut(names: list[str], n: int = 12) -> str:
    return ", ".join(names[:n]) + (f", ... (+{len(names) - n} more)" if len(names) > n else "")


@dataclass
class ImportReport:
    """What the import did besides one-to-one copies, for the user to read."""
    source: str
    copied: int = 0  # tensors copied under a new name
    reshaped: list[str] = field(default_factory=list)  # our keys filled from a tensor of other shape, same values
    filled: dict[str, str] = field(default_factory=dict)  # our key -> why it was synthesised (exact equivalents)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"source format: {self.source}; {self.copied} tensors copied"]
        if self.reshaped:
            out.append(f"reshaped (same values): {_cut(self.reshaped)}")
        if self.filled:
            by_reason: dict[str, list[str]] = {}
            for key, why in self.filled.items():
                by_reason.setdefault(why, []).append(key)
            for why, keys in by_reason.items():
                out.append(f"filled {len(keys)} keys with {why}: {_cut(keys, 6)}")
        return out + self.notes


# ------------------------------------------------------------------------------------------------ source formats
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


# MobileFaceNet bottleneck body as a flat Sequential: conv/BN/PReLU x2 then conv/BN (Face_Pytorch, Xiaoccer, seed).
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
    "seed_mobilefacenet",
    "MobileFacenet of QuasarLight/Pytorch_Face_Recognition (conv3, dw_conv3, bottlenecks.N.conv.K, conv1, "
    "linear_GDConv7, linear_conv1)",
    r"MobileFaceNet",
    _mfn_seq_rules("conv3", "dw_conv3", "bottlenecks", "conv1", "linear_GDConv7", "linear_conv1"),
))

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

# Face_Pytorch / the seed: res_layer = BN, conv, BN, PReLU, conv(stride), BN [, SEModule]; shortcut_layer = conv, BN.
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
), "seed_cbamresnet")


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


# ------------------------------------------------------------------------------------------------ reading and mapping
def read_foreign_weights(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state_dict inside a foreign checkpoint file: bare, or under a wrapper key ('net_state_dict', ...);
    DataParallel's 'module.' and torch.compile's '_orig_mod.' prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        # weights_only refuses pickled code; a foreign file is untrusted unless the user says otherwise
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:
        advice = "" if trust_pickle else " (if it pickles objects besides tensors and you trust it: --trust_pickle)"
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}{advice}") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    state = obj
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        state = next((obj[k] for k in WRAPPER_KEYS if k in obj and _is_state_dict(obj[k])), None)
        if state is None:
            raise ValueError(f"{path}: no state_dict found; top-level keys: {', '.join(map(str, obj))} "
                             f"(looked for a dict of tensors, or one under {', '.join(WRAPPER_KEYS)})")
    if not isinstance(state, Mapping) or not _is_state_dict(state):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    out = {}
    for key, value in state.items():
        for prefix in STRIP_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _squeezed(shape) -> tuple[int, ...]:
    shape = list(shape)
    while shape and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


def _pairs(fmt: SourceFormat, foreign: Mapping[str, torch.Tensor], ctx: MapContext
           ) -> tuple[dict[str, str], list[str]]:
    """{our key: foreign key} and the foreign keys left unmatched (with the reason in brackets)."""
    pairs: dict[str, str] = {}
    unmatched: list[str] = []
    if fmt.ordered:
        # scalars are BN step counters, which old checkpoints lack: pair the tensors that compute, fill the counters
        template = ctx.model.state_dict()
        ours = [k for k in ctx.keys if template[k].dim() > 0]
        theirs = [k for k, v in foreign.items() if v.dim() > 0]
        pairs = dict(zip(ours, theirs))
        unmatched = [f"{k} [beyond the backbone's {len(ours)} tensors]" for k in theirs[len(ours):]]
        return pairs, unmatched
    known = set(ctx.keys)
    for key in foreign:
        ours = fmt.rename(key, ctx)
        if ours is None:
            unmatched.append(f"{key} [no rule]")
        elif ours not in known:
            unmatched.append(f"{key} [-> {ours}: not in the backbone]")
        elif ours in pairs:
            unmatched.append(f"{key} [-> {ours}: already filled from {pairs[ours]}]")
        else:
            pairs[ours] = key
    return pairs, unmatched


def map_state_dict(foreign: Mapping[str, torch.Tensor], model: nn.Module, source: str | SourceFormat,
                   where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], ImportReport]:
    """Map a foreign state_dict onto `model`'s keys. Returns (state_dict ready for load_state_dict(strict=True),
    report); raises ImportMismatchError listing unmatched foreign keys, unfilled keys and shape disagreements."""
    fmt = get_source(source) if isinstance(source, str) else source
    template = model.state_dict()
    ctx = MapContext(model, list(template))
    pairs, unmatched = _pairs(fmt, foreign, ctx)
    report = ImportReport(fmt.name)
    out: dict[str, torch.Tensor] = {}
    mis_shaped = []
    for ours, theirs in pairs.items():
        t, want = foreign[theirs], template[ours]
        if t.shape == want.shape:
            out[ours] = t.detach().to(want.dtype).clone()
        elif t.numel() == want.numel() and _squeezed(t.shape) == _squeezed(want.shape):
            out[ours] = t.detach().to(want.dtype).reshape(want.shape).clone()  # Linear (D, C) -> 1x1 conv
            report.reshaped.append(ours)
        else:
            mis_shaped.append((theirs, tuple(t.shape), ours, tuple(want.shape)))
    report.copied = len(out)
    if fmt.fill is not None:
        for key, (t, why) in fmt.fill(ctx, out, foreign).items():
            if key not in out:
                out[key] = t.to(template[key].dtype).reshape(template[key].shape)
                report.filled[key] = why
    for key in template:  # checkpoints of PyTorch < 0.4.1 have no BN step counters; they do not affect outputs
        if key.endswith("num_batches_tracked") and key not in out and key not in pairs:
            out[key] = torch.zeros_like(template[key])
            report.filled[key] = "zero (BN step counter absent from the checkpoint)"
    missing = [k for k in template if k not in out and not any(k == o for _, _, o, _ in mis_shaped)]
    if unmatched or missing or mis_shaped:
        raise ImportMismatchError(f"{where} -> {type(model).__name__} (source {fmt.name})", unmatched, missing,
                                  mis_shaped, _hint(foreign, mis_shaped, fmt))
    return out, report


def _hint(foreign: Mapping[str, torch.Tensor], mis_shaped: list, fmt: SourceFormat) -> str:
    """A likely cause, when the shapes say it: another input size, embedding size or depth."""
    from Backbones.iresnet import IRESNET_DEPTHS

    hints = []
    for _, fshape, ours, _ in mis_shaped:
        if ours == "gdc.conv.weight" and len(fshape) == 4:
            hints.append(f"the checkpoint's global depthwise kernel is {fshape[2]}x{fshape[3]}: "
                         f"--input_size={16 * fshape[2]},{16 * fshape[3]}")
        if ours == "fc.weight" and len(fshape) == 2 and fshape[1] % 512 == 0:
            hints.append(f"the checkpoint's fc sees 512 x {fshape[1] // 512} positions: an input_size with "
                         f"(H/16)*(W/16) = {fshape[1] // 512}")
    units = {m.group(1) for k in foreign for m in [re.match(r"(layer\d+\.\d+|body\.\d+)\.", k)] if m}
    if units and ("IR" in fmt.backbones or "ResNet" in fmt.backbones):
        stages = [sum(1 for u in units if u.startswith(f"layer{i}.")) for i in range(1, 5)]
        flat = sum(1 for u in units if u.startswith("body."))
        se = "SE" if any(re.search(r"\.(se|res_layer\.[56])\.fc1\.", k) for k in foreign) else ""
        for depth, sizes in IRESNET_DEPTHS.items():
            if stages == sizes or (flat and flat == sum(sizes)):
                hints.append(f"the checkpoint has the units of depth {depth}: --backbone={se}ResNet{depth}_IR")
    return "; ".join(dict.fromkeys(hints))


def fold_input_normalization(state: dict[str, torch.Tensor], first_conv: str, mean: list[float],
                             std: list[float]) -> str | None:
    """Make a network trained on (x - mean) / std accept our (x - 127.5) / 128, by scaling the first convolution's
    input channels by 128 / std. Returns a note, or None when nothing changed.

    Only the scale can be folded exactly: a different mean would need a bias, and the convolution's zero padding
    would then differ at the borders.
    """
    if any(abs(m - OUR_MEAN) > 1e-6 for m in mean):
        raise ValueError(f"input mean {mean} cannot be folded exactly (only the scale can: the first convolution's "
                         f"zero padding would differ at the borders); every model we know uses 127.5")
    scale = torch.tensor([OUR_STD / s for s in std], dtype=torch.float64)
    if torch.allclose(scale, torch.ones(3, dtype=torch.float64)):
        return None
    w = state[first_conv]
    state[first_conv] = (w.double() * scale.view(1, -1, 1, 1)).to(w.dtype)
    return f"input normalisation (x - 127.5) / {std} folded into {first_conv} (x {OUR_STD}/std per channel)"


def _first_conv(model: nn.Module) -> str:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return f"{name}.weight"
    raise ValueError(f"{type(model).__name__} has no convolution over 3 input channels")


def import_backbone(source: str, weights: str | Path, backbone: str, input_size: tuple[int, int],
                    color_order: str = "RGB", mean: list[float] | float = OUR_MEAN, std: list[float] | float = OUR_STD,
                    embedding_size: int = 0, to_rgb: bool = False, trust_pickle: bool = False
                    ) -> tuple[nn.Module, dict[str, Any], ImportReport]:
    """Load `weights` (a checkpoint of another project, layout `source`) into our `backbone`.

    Args:
        color_order: channel order the model was trained on ("RGB" or "BGR").
        mean, std: its input normalisation (x - mean) / std on 0..255 pixels, one value or one per channel in the
            model's channel order. Folded into the first convolution.
        embedding_size: 0 takes it from the checkpoint.
        to_rgb: for a BGR-trained model, reverse the first convolution's input channels so it takes RGB.
    Returns (model in eval mode with the weights loaded, meta for the checkpoint, report).
    """
    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta

    fmt = get_source(source)
    if not re.fullmatch(fmt.backbones, backbone):
        raise ValueError(f"source format '{source}' holds {fmt.description.split(' (')[0]}, which does not fit "
                         f"backbone '{backbone}'")
    if color_order not in ("RGB", "BGR"):
        raise ValueError(f"color_order must be RGB or BGR, got {color_order!r}")
    mean_c, std_c = _per_channel(mean, "mean"), _per_channel(std, "std")
    trained_color_order = color_order
    foreign = read_foreign_weights(weights, trust_pickle)
    model = get_backbone(backbone, embedding_size, tuple(input_size))
    if not embedding_size:  # the width of the embedding layer is the checkpoint's, whatever the default
        pairs, _ = _pairs(fmt, foreign, MapContext(model, list(model.state_dict())))
        for key in EMBEDDING_KEYS:
            if key in pairs and foreign[pairs[key]].dim() >= 2:
                d = int(foreign[pairs[key]].shape[0])
                if d != model.embedding_size:
                    model = get_backbone(backbone, d, tuple(input_size))
                break
    try:
        state, report = map_state_dict(foreign, model, fmt, where=str(weights))
    except ImportMismatchError as err:
        fits = _fitting_sources(foreign, model, backbone, exclude=fmt)
        if fits:
            err.args = (f"{err.args[0]} (every key of the file has a rule in: "
                        f"{', '.join('--source=' + n for n in fits)})",)
        raise
    note = fold_input_normalization(state, _first_conv(model), mean_c, std_c)
    if note:
        report.notes.append(note)
    if to_rgb and color_order == "BGR":
        key = _first_conv(model)
        state[key] = state[key].flip(1)
        report.notes.append(f"BGR model: input channels of {key} reversed, the checkpoint takes RGB")
        color_order = "RGB"
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = backbone_meta(backbone, model.embedding_size, input_size, color_order)
    meta["imported_from"] = {"source": fmt.name, "weights": str(weights), "trained_color_order": trained_color_order,
                             "trained_mean": mean_c, "trained_std": std_c}
    return model, meta, report


def _fitting_sources(foreign: Mapping[str, torch.Tensor], model: nn.Module, backbone: str,
                     exclude: SourceFormat) -> list[str]:
    """Other named layouts under which every foreign key maps onto the backbone (for the error message)."""
    ctx = MapContext(model, list(model.state_dict()))
    names: dict[int, str] = {}
    for name, fmt in _SOURCES.items():
        if fmt is not exclude and not fmt.ordered and re.fullmatch(fmt.backbones, backbone) and id(fmt) not in names:
            if not _pairs(fmt, foreign, ctx)[1]:
                names[id(fmt)] = name
    return list(names.values())


def _per_channel(value: list[float] | float, what: str) -> list[float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or any(not math.isfinite(v) for v in values) or (what == "std" and min(values) <= 0):
        raise ValueError(f"{what}: expected one value or three (per channel), got {value!r}")
    return values


def build_import_checkpoint(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """A project checkpoint holding the imported backbone (keys as Utils.checkpoint documents)."""
    from Config import Config

    cfg = Config(backbone=meta["backbone"], embedding_size=meta["embedding_size"],
                 input_size=list(meta["input_size"]), color_order=meta["color_order"])
    return {"backbone": model.state_dict(), "meta": meta, "config": cfg.to_dict()}


# ------------------------------------------------------------------------------------------------ command line
def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH (e.g. 112,96), got {text!r}") from None
    return h, w


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m Utils.model_import",
        description="Import another project's face-recognition weights as a checkpoint of this project.",
        epilog="source formats:\n" + "\n".join(f"  {n}: {get_source(n).description}" for n in list_sources()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="key layout of the weights (see below)")
    p.add_argument("--weights", required=True, help="the foreign checkpoint file")
    p.add_argument("--backbone", required=True, help="our backbone of the same architecture (MobileFaceNet, ...)")
    p.add_argument("--input_size", type=_size, default=(112, 112), help="HEIGHT,WIDTH the model was trained on")
    p.add_argument("--color_order", choices=("RGB", "BGR"), required=True, help="channel order it was trained on")
    p.add_argument("--mean", type=_floats, default=[OUR_MEAN], help="its input mean on 0..255 (one or 3 values)")
    p.add_argument("--std", type=_floats, default=[OUR_STD],
                   help="its input divisor on 0..255 (insightface arcface_torch, InsightFace_Pytorch: 127.5)")
    p.add_argument("--embedding_size", type=int, default=0, help="0 = from the checkpoint")
    p.add_argument("--to_rgb", type=_bool, default=False, help="reverse a BGR model's first conv to take RGB")
    p.add_argument("--trust_pickle", type=_bool, default=False,
                   help="load files that pickle objects besides tensors (runs their code: trusted files only)")
    p.add_argument("--out", required=True, help="the project checkpoint to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model, meta, report = import_backbone(args.source, args.weights, args.backbone, args.input_size,
                                              args.color_order, args.mean, args.std, args.embedding_size,
                                              args.to_rgb, args.trust_pickle)
        with torch.no_grad():  # a finite output on a random face-sized input: the BN statistics came through
            out = model(torch.randn(2, 3, *args.input_size))
        if not torch.isfinite(out).all():
            raise ValueError(f"{args.weights}: the imported network outputs non-finite values")
        from Utils.checkpoint import save_checkpoint

        save_checkpoint(build_import_checkpoint(model, meta), args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    print(f"wrote {args.out}: {meta['backbone']}, {meta['embedding_size']}-d, input {meta['input_size'][0]}x"
          f"{meta['input_size'][1]}, {meta['color_order']}, {meta['normalization']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
