"""Convert insightface verification .bin files to an image folder + pair list, and back.

    python -m Utils.tools.convert_bin to-folder lfw.bin lfw_images/     # lfw_images/00001.jpg ... + pairs.txt
    python -m Utils.tools.convert_bin to-bin pairs.txt::images/ my_set.bin   # any supported pair layout -> .bin

The folder side uses the original project's layout: images numbered from 00001 in .bin order, and a two-path pair list
`00001.jpg 00002.jpg 1|-1` (with `--folds`, a fourth column holds the fold). Images are copied byte for byte (no
re-encoding), so a round trip reproduces the .bin's images exactly.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from Datasets.binfile import load_bin, save_bin
from Datasets.errors import DataFormatError, DataPathError
from Datasets.pairs import contiguous_folds, read_pairs, write_path_pairs

__all__ = ["bin_to_folder", "folder_to_bin", "main"]


def _ext(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    return "jpg"


def bin_to_folder(bin_path: str | os.PathLike, out_dir: str | os.PathLike, folds: bool = False) -> tuple[Path, int]:
    """Write the images of a .bin and a pair list `pairs.txt` into `out_dir`; returns (pair list, pairs)."""
    bins, issame = load_bin(bin_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, data in enumerate(tqdm(bins, desc="writing images", unit="img")):
        name = f"{i + 1:05d}.{_ext(data)}"
        (out / name).write_bytes(data)
        names.append(name)
    fold_ids = contiguous_folds(len(issame)).tolist() if folds else None
    pairs = out / "pairs.txt"
    write_path_pairs(pairs, names[0::2], names[1::2], issame, fold_ids)
    return pairs, len(issame)


def folder_to_bin(spec: str, out_bin: str | os.PathLike) -> int:
    """Pack the pairs of "pairs_file::image_root" (any supported layout) into an insightface .bin."""
    pairs_file, _, root = spec.partition("::")
    pl = read_pairs(pairs_file)
    root = root or pl.base or str(Path(pairs_file).parent)
    bins = []
    for k in tqdm(range(len(pl)), desc="reading pairs", unit="pair"):
        for rel in (pl.left[k], pl.right[k]):
            p = os.path.join(root, rel)
            if not os.path.isfile(p):
                raise DataPathError(f"{pl.lines[k]}: image {p} does not exist")
            bins.append(Path(p).read_bytes())
    save_bin(out_bin, bins, pl.issame)
    return len(pl)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m Utils.tools.convert_bin", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("to-folder", help=".bin -> numbered images + pairs.txt",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("bin", help="the insightface .bin file to unpack")
    a.add_argument("out_dir", help="folder for the images and pairs.txt")
    a.add_argument("--folds", action="store_true", help="add a fold column (10 contiguous folds) to pairs.txt")
    b = sub.add_parser("to-bin", help="pairs_file::image_root -> .bin",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("spec", help="pairs file (LFW pairs.txt, two-path list or CFP Protocol folder)::image root")
    b.add_argument("out_bin", help="the .bin file to write")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "to-folder":
            pairs, n = bin_to_folder(args.bin, args.out_dir, args.folds)
            print(f"wrote {2 * n} images and {pairs} ({n} pairs); evaluate with --val_sets={pairs}::{args.out_dir}")
        else:
            n = folder_to_bin(args.spec, args.out_bin)
            print(f"wrote {args.out_bin} ({n} pairs)")
    except (DataFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # bad input, as every command line of the project
    return 0


if __name__ == "__main__":
    sys.exit(main())
