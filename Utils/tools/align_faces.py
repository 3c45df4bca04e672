"""Align face photos to the ArcFace 112x112 (or SphereFace 112x96) template from 5 landmarks.

One image:
    python -m Utils.tools.align_faces --image=photo.jpg --landmarks="x1,y1,x2,y2,x3,y3,x4,y4,x5,y5" --output=face.jpg
A folder, with a landmark file of lines `relative/path x1 y1 ... x5 y5` (left eye, right eye, nose tip, left and
right mouth corners, in pixels):
    python -m Utils.tools.align_faces --input_dir=raw/ --landmark_file=lm.txt --output_dir=aligned/ \
        [--template=sphereface]
The output folder mirrors the input's relative paths; write its training list with Utils.tools.generate_dataset_list.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from Datasets.align import align_face
from Datasets.errors import DataFormatError

__all__ = ["read_landmark_file", "align_folder", "main"]


def read_landmark_file(path: str | os.PathLike) -> list[tuple[str, list[float]]]:
    """(relative path, 10 coordinates) per line; a malformed line raises DataFormatError naming file and line."""
    out = []
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:  # say where: a list of millions of lines is otherwise hard to fix
        line = Path(path).read_bytes()[: exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        try:
            if len(parts) < 11:
                raise ValueError
            coords = [float(v) for v in parts[-10:]]
        except ValueError:
            raise DataFormatError(f"{path}:{n}: expected 'relative/path x1 y1 ... x5 y5', got '{line[:80]}'") from None
        out.append((" ".join(parts[:-10]), coords))
    if not out:
        raise DataFormatError(f"{path}: no landmark lines ('relative/path x1 y1 ... x5 y5')")
    return out


def align_folder(input_dir: str, landmark_file: str, output_dir: str, template: str = "arcface",
                 quality: int = 95) -> tuple[int, list[str]]:
    """Align every listed image; returns (written, failures as 'path: reason')."""
    entries = read_landmark_file(landmark_file)
    written, failed = 0, []
    for rel, coords in tqdm(entries, desc="aligning", unit="img"):
        src = Path(input_dir) / rel
        dst = (Path(output_dir) / rel).with_suffix(".jpg")
        try:
            with Image.open(src) as img:
                face = align_face(img, coords, template)
        except Exception as exc:  # one unreadable photo must not stop a batch of thousands
            failed.append(f"{src}: {type(exc).__name__}: {exc}")
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        face.save(dst, quality=quality)
        written += 1
    return written, failed


# the order of the template's points (Datasets/align.py), as MTCNN and RetinaFace return them
LANDMARK_ORDER = ("left eye, right eye, nose tip, left mouth corner, right mouth corner, in image coordinates "
                  "(the left eye is the one on the image's left)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m Utils.tools.align_faces",
                                 description="Warp faces onto the 5-point ArcFace/SphereFace template.",
                                 epilog=f"landmark order: {LANDMARK_ORDER}.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--template", default="arcface", choices=["arcface", "sphereface"],
                    help="arcface: 112x112; sphereface: 112x96")
    ap.add_argument("--image", help="one image to align")
    ap.add_argument("--landmarks", help=f"its 10 coordinates x1,y1,...,x5,y5: {LANDMARK_ORDER}")
    ap.add_argument("--output", help="where to write the aligned image")
    ap.add_argument("--input_dir", help="batch mode: root of the images named in the landmark file")
    ap.add_argument("--landmark_file", help="batch mode: lines 'relative/path x1 y1 ... x5 y5' (the same order)")
    ap.add_argument("--output_dir", help="batch mode: output root (mirrors the relative paths)")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the output")
    args = ap.parse_args(argv)
    try:
        if args.image:
            if not (args.landmarks and args.output):
                ap.error("--image needs --landmarks and --output")
            coords = [float(v) for v in args.landmarks.replace(",", " ").split()]
            if len(coords) != 10:
                ap.error("--landmarks needs 10 numbers")
            try:
                with Image.open(args.image) as img:
                    face = align_face(img, coords, args.template)
            except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for damaged files rarely name them
                raise DataFormatError(f"{args.image}: cannot read the image ({exc})") from None
            face.save(args.output, quality=args.quality)
            print(f"wrote {args.output}")
            return 0
        if not (args.input_dir and args.landmark_file and args.output_dir):
            ap.error("give --image/--landmarks/--output, or --input_dir/--landmark_file/--output_dir")
        n, failed = align_folder(args.input_dir, args.landmark_file, args.output_dir, args.template, args.quality)
    except (DataFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # bad input, as every command line of the project
    for f in failed[:20]:
        print(f"warning: skipped {f}", file=sys.stderr)
    print(f"wrote {n} aligned images to {args.output_dir}" + (f"; {len(failed)} skipped" if failed else ""))
    return 0 if n or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
