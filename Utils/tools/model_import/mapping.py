"""Read a foreign checkpoint, map its tensors onto one of our backbones by a layout (layouts.py), fold its input
normalisation into the first convolution, and build a project checkpoint of the result."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from Backbones import get_backbone
from Backbones.iresnet import IRESNET_DEPTHS
from Config import Config

from ...checkpoint import backbone_meta, read_torch_file
from .layouts import MapContext, SourceFormat, get_source, source_items

__all__ = ["OUR_MEAN", "OUR_STD", "ImportMismatchError", "ImportReport", "read_foreign_weights", "map_state_dict",
           "fold_input_normalization", "import_backbone", "build_import_checkpoint"]

# Our normalisation is (x - OUR_MEAN) / OUR_STD on 0..255 pixels (Datasets.transforms.normalize_image).
OUR_MEAN, OUR_STD = 127.5, 128.0
# Keys holding a checkpoint's weights in the wrappers other projects save ({'epoch', 'net_state_dict'}, ...).
WRAPPER_KEYS = ("state_dict", "net_state_dict", "model_state_dict", "backbone", "model", "net", "network")
# Prefixes added by DataParallel / DistributedDataParallel and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Our keys whose first dimension is the embedding size, to infer it from the checkpoint.
EMBEDDING_KEYS = ("embedding.conv.weight", "fc.weight")


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


def read_foreign_weights(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state_dict inside a foreign checkpoint file: bare, or under a wrapper key ('net_state_dict', ...);
    DataParallel's 'module.' and torch.compile's '_orig_mod.' prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    # weights_only refuses pickled code; a foreign file is untrusted unless the user says otherwise
    obj = read_torch_file(path, trust=trust_pickle, flag="--trust_pickle")
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
    for name, fmt in source_items():
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
    cfg = Config(backbone=meta["backbone"], embedding_size=meta["embedding_size"],
                 input_size=list(meta["input_size"]), color_order=meta["color_order"])
    return {"backbone": model.state_dict(), "meta": meta, "config": cfg.to_dict()}


