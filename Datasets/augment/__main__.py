"""`python -m Datasets.augment --preview [--out=PNG] [--augment=RECIPE] [--faces=4] [--views=7]`: a PNG grid of
synthetic faces (first column) and what the recipe makes of them in successive epochs (the other columns), to look
at before a multi-day run. Other settings as in Train.py (--augment, --input_size, --seed, --synthetic_difficulty)."""
from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image

from .pipeline import Augment

_FLAGS = ("preview", "out", "faces", "views")


def _int_flag(flags: dict, key: str, default: int) -> int:
    try:
        value = int(flags.get(key, default))
    except ValueError:
        raise ValueError(f"--{key}: expected an integer, got {flags[key]!r}") from None
    if not 1 <= value <= 32:
        raise ValueError(f"--{key}: must be in 1..32, got {value}")
    return value


def preview(cfg, out: str, faces: int = 4, views: int = 7) -> str:
    """Write the grid for `cfg.augment` to `out`; returns the path."""
    from Datasets.synthetic_faces import render_face
    from Utils.plotting import new_figure, save_figure

    hw = cfg.input_hw
    augment = Augment(cfg.augment, hw, cfg.seed)
    fig, axes = new_figure(faces, views + 1, figsize=(1.2 * (views + 1), 1.2 * faces * hw[0] / hw[1] + 0.4))
    axes = np.asarray(axes).reshape(faces, views + 1)
    for row in range(faces):
        img = render_face(cfg.synthetic_seed, 0, row, 0, cfg.synthetic_difficulty, hw)
        chw = torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())
        tiles = [chw] + [augment(chw, row, epoch) for epoch in range(views)]
        for col, tile in enumerate(tiles):
            ax = axes[row, col]
            ax.imshow(Image.fromarray(tile.permute(1, 2, 0).numpy()))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if col == 0 else f"epoch {col - 1}", fontsize=7)
    fig.suptitle("augment = " + ",".join(cfg.augment), fontsize=8)
    return str(save_figure(fig, out, dpi=80))


def _print_help() -> None:
    """--help: the preview's own flags with their defaults, then the ops a recipe can name."""
    import argparse

    from .ops import OP_HELP

    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Defaults shown; the docstring and the ops table kept as written."""

    p = argparse.ArgumentParser(prog="python -m Datasets.augment", description=__doc__, formatter_class=Formatter,
                                epilog="ops (name:probability[:strength]):\n"
                                       + "\n".join(f"  {name:8s} {text}" for name, text in OP_HELP.items()))
    p.add_argument("--preview", action="store_true", help="write the grid (without it: the usage above)")
    p.add_argument("--out", default="augment_preview.png", help="the PNG to write")
    p.add_argument("--faces", type=int, default=4, help="rows: synthetic faces, 1..32")
    p.add_argument("--views", type=int, default=7, help="augmented views per face, 1..32")
    p.add_argument("--augment", default="flip:0.5", help="the recipe, as Train.py's")
    p.print_help()


def main(argv: list[str] | None = None) -> int:
    from Config.cli import ConfigError, parse_config

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        _print_help()
        return 0
    try:
        cfg, rest = parse_config(argv, extra_flags=_FLAGS)
        flags = dict(a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), "") for a in rest)
        if "preview" not in flags:
            print(__doc__)
            return 0
        faces, views = _int_flag(flags, "faces", 4), _int_flag(flags, "views", 7)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = preview(cfg, flags.get("out") or "augment_preview.png", faces, views)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
