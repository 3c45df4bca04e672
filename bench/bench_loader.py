"""Training-loader throughput: images/s through DataLoader for the image-folder and the .rec formats, 0/1/2 workers.

Makes its own data (synthetic faces, JPEG, 112x112) in a temporary folder, written both as folder + list and as
an insightface train.rec/train.idx with a header record, then times full passes (decode, flip, normalise,
collate) after one warm-up pass so the page cache is equally warm for both. Ratios are against the folder
format with 0 workers, measured in the same run.

    python bench/bench_loader.py                       # 2000 images, batch 64, workers 0 1 2
    python bench/bench_loader.py --images=20000 --workers=0,2,4,8 --passes=3
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Datasets.folder import write_list_file  # noqa: E402
from Datasets.recordio import IRHeader, RecordIOWriter, pack_record  # noqa: E402
from Datasets.synthetic_faces import make_identity, render_face_jpeg  # noqa: E402
from Datasets.train_sets import FolderTrainDataset, RecordIOTrainDataset  # noqa: E402


def make_data(root: Path, n: int, per_id: int = 20) -> None:
    (root / "folder").mkdir()
    (root / "rec").mkdir()
    names, labels = [], []
    n_ids = -(-n // per_id)
    with RecordIOWriter(root / "rec" / "train.rec") as rec:
        rec.write(0, pack_record(IRHeader(2, [n + 1, n + 1 + n_ids], 0, 0), b""))
        for i in range(n):
            ident, k = divmod(i, per_id)
            if k == 0:
                person = make_identity(7, 0, ident)
                (root / "folder" / f"{ident:05d}").mkdir()
            data = render_face_jpeg(7, 0, ident, k, 0.6, (112, 112), person)
            rel = f"{ident:05d}/{k:03d}.jpg"
            (root / "folder" / rel).write_bytes(data)
            names.append(rel)
            labels.append(ident)
            rec.write(i + 1, pack_record(IRHeader(0, float(ident), i + 1, 0), data))
    write_list_file(root / "folder" / "train_list.txt", names, labels)


def throughput(ds, workers: int, batch: int, passes: int) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=False,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up: page cache, worker start
        pass
    start = time.perf_counter()
    seen = 0
    for _ in range(passes):
        for x, y, _ in loader:
            seen += len(y)
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    ap.add_argument("--passes", type=int, default=1, help="timed passes after the warm-up pass")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    torch.set_num_threads(1)
    kw = dict(input_hw=(112, 112), color_order="RGB", random_flip=True, bad_image_policy="skip")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_data(root, args.images)
        print(f"made {args.images} images in {time.perf_counter() - t:.1f} s ({os.cpu_count()} CPUs)")
        sets = {"folder": FolderTrainDataset(root / "folder", root / "folder" / "train_list.txt", **kw),
                "rec": RecordIOTrainDataset(root / "rec", **kw)}
        rows = [(fmt, w, throughput(ds, w, args.batch, args.passes)) for fmt, ds in sets.items() for w in workers]
    base = rows[0][2]
    print(f"\n| format | workers | images/s | vs {rows[0][0]}/{rows[0][1]} workers |")
    print("|---|---:|---:|---:|")
    for fmt, w, ips in rows:
        print(f"| {fmt} | {w} | {ips:.0f} | {ips / base:.2f}x |")
    print("\ncommand: python " + " ".join([sys.argv[0]] + sys.argv[1:]))


if __name__ == "__main__":
    main()
