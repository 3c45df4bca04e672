"""Write the list file of an image folder: one `identity/image.jpg label` line per image (the original project's
tool).

Labels number the identity sub-folders in sorted order from 0; images are listed sorted within each identity.

    python -m Utils.tools.generate_dataset_list /data/casia-112x112       # -> /data/casia-112x112/train_list.txt
    python -m Utils.tools.generate_dataset_list /data/casia-112x112 --output=casia.list --absolute
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from Datasets.folder import write_list_file
from Datasets.images import scan_identity_folders

__all__ = ["generate_dataset_list", "main"]


def generate_dataset_list(root: str | os.PathLike, output: str | os.PathLike | None = None,
                          absolute: bool = False) -> tuple[Path, int, int]:
    """Write the list for `root`; returns (list path, images, identities)."""
    root = Path(root)
    folder = scan_identity_folders(root)
    names = [str((root / n).resolve()) for n in folder.paths] if absolute else folder.paths
    out = Path(output) if output else root / "train_list.txt"
    write_list_file(out, names, folder.labels)
    return out, len(names), len(folder.names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m Utils.tools.generate_dataset_list",
                                 description="Write 'relative/path label' lines for root/<identity>/<image> folders.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("root", help="image folder with one sub-folder per identity")
    ap.add_argument("--output", default="", help="list file to write ('': <root>/train_list.txt)")
    ap.add_argument("--absolute", action="store_true", help="write absolute paths instead of paths relative to root")
    args = ap.parse_args(argv)
    try:
        out, n, c = generate_dataset_list(args.root, args.output or None, args.absolute)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # bad input, as every command line of the project
    print(f"wrote {out}: {n} images, {c} identities (use --train_format=folder --train_root={args.root}"
          f"{'' if not args.output else ' --train_list=' + str(out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
