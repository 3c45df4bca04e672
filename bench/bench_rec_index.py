"""Opening a web-scale RecordIO set: today's index reading against the chunked, cached one (Datasets/rec_index.py).

Builds a sparse train.rec (the file is truncated to its full size; only the header record and the records next to
the image/class boundaries hold bytes) and a real-layout train.idx (`key\\toffset` for every record), then opens the
set as RecordIOTrainDataset in fresh interpreters and reports open seconds, peak resident memory above the
interpreter's own, and the pickled size (what every spawned DataLoader worker receives), for:

    old        the code before this change (its Datasets/ package taken from git at --baseline-rev)
    new-first  the new code with no parse cache yet
    new-cached the new code mapping the cache the first open wrote

    python -m bench.bench_rec_index --records 42000000 --classes 2000000 [--old-records 5800000] [--dir /tmp/x]

--old-records runs the old code on a smaller set of the same layout when the full one would not fit in memory
(the old code peaks at ~10 GB for 42 M records); the new code is then also measured on that set for the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import command_line, package_at_revision, print_table  # noqa: E402

MAGIC = 0xCED7230A
SPACING = 6000  # bytes per record: a 112x112 face JPEG at quality 95 is 5-8 KB


def _record(flag: int, labels: list[float], image: bytes = b"") -> bytes:
    payload = struct.pack("<IfQQ", flag, 0.0 if flag else labels[0], 0, 0)
    payload += b"".join(struct.pack("<f", v) for v in labels) if flag else b""
    payload += image
    return struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def build(folder: Path, n_images: int, n_classes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    total = n_images + n_classes + 1
    if (folder / "done").is_file():
        return
    t = time.perf_counter()
    with open(folder / "train.rec", "wb") as f:
        f.truncate(total * SPACING)
        f.write(_record(2, [float(n_images + 1), float(total)]))  # float32, as insightface's writer stores it
        near = list(range(max(1, n_images - 16), min(total, n_images + 17))) + list(range(total - 16, total))
        for k in near:
            f.seek(k * SPACING)
            if k <= n_images:
                f.write(_record(0, [float(k % n_classes)], b"\xff\xd8 image bytes"))
            else:
                c = k - n_images - 1
                f.write(_record(2, [float(c), float(c + 1)]))
    with open(folder / "train.idx", "w") as f:
        step = 1_000_000
        for start in range(0, total, step):
            f.write("".join(f"{k}\t{k * SPACING}\n" for k in range(start, min(total, start + step))))
    (folder / "done").write_text(f"{n_images} {n_classes}\n")
    print(f"built {folder}: {total:,} records, idx {os.path.getsize(folder / 'train.idx') / 2**20:.0f} MiB, "
          f"in {time.perf_counter() - t:.0f} s", flush=True)


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _meminfo(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure(which: str, root: str, old_dir: str | None) -> dict:
    """In this (fresh) interpreter: open the set once; seconds, peak RSS above the start, pickled bytes."""
    if which == "old":
        sys.path.insert(0, old_dir)
        from Datasets_before.train_sets.rec import RecordIOTrainDataset
    else:
        from Datasets.train_sets.rec import RecordIOTrainDataset
    import warnings
    warnings.simplefilter("ignore")  # the float32 note: counted below through len()
    import resource
    base = _status("VmRSS")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    ds = RecordIOTrainDataset(root)
    seconds = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime  # what load on the machine does not inflate
    peak = _status("VmHWM") - base
    pickled = len(pickle.dumps(ds, protocol=pickle.HIGHEST_PROTOCOL))
    return dict(seconds=seconds, cpu_seconds=cpu, peak_bytes=peak, pickled_bytes=pickled, images=len(ds), classes=ds.num_classes)


def _run(which: str, root: Path, old_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", which, "--root", str(root), "--old-dir",
                          str(old_dir)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{which} on {root} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=42_000_000, help="images in the large set")
    ap.add_argument("--classes", type=int, default=2_000_000, help="identities in the large set")
    ap.add_argument("--old-records", type=int, default=0, help="run the old code on a set of this many images "
                                                              "instead (0: on the large set)")
    ap.add_argument("--dir", default="", help="where the sparse sets are built (kept for reuse; default a temp dir)")
    ap.add_argument("--baseline-rev", default="17ce14e", help="git revision holding today's code")
    ap.add_argument("--measure", default="", help=argparse.SUPPRESS)
    ap.add_argument("--root", default="", help=argparse.SUPPRESS)
    ap.add_argument("--old-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.root, args.old_dir)))
        return 0

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_rec_index_"))
    old_dir = work / "old_code"
    shutil.rmtree(old_dir, ignore_errors=True)
    package_at_revision(args.baseline_rev, "Datasets", old_dir)
    big = work / f"rec_{args.records}_{args.classes}"
    build(big, args.records, args.classes)
    sets = [(big, args.records, args.classes)]
    if args.old_records:
        small_classes = max(1, args.classes * args.old_records // args.records)
        small = work / f"rec_{args.old_records}_{small_classes}"
        build(small, args.old_records, small_classes)
        sets.append((small, args.old_records, small_classes))

    rows = []
    for root, n, c in sets:
        for cache in root.glob("train.idx.*.npy"):
            cache.unlink()
        runs = [("new-first", _run("new", root, old_dir)), ("new-cached", _run("new", root, old_dir))]
        if (args.old_records and root != big) or (not args.old_records):
            need = 260 * (n + c)  # bytes the old code peaks at per record (measured: +1.37 GiB for 6.1 M records)
            avail = _meminfo("MemAvailable")
            if avail < need + (4 << 30):
                print(f"old code on {root} skipped: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available",
                      flush=True)
            else:
                runs.append(("old", _run("old", root, old_dir)))
        for name, r in runs:
            rows.append([f"{n:,} img / {c:,} cls", name, f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}",
                         f"{r['peak_bytes'] / 2**30:+.2f}",
                         f"{r['pickled_bytes'] / 2**20:,.3f}", f"{r['images']:,}" + ("" if r["images"] == n else
                                                                                       " (WRONG)")])
            print(json.dumps({"set": str(root), "code": name, **r}), flush=True)
    print("\n" + command_line())
    print_table(["set", "code", "open s (wall)", "open s (CPU)", "peak RSS GiB", "pickled MiB", "images read"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
