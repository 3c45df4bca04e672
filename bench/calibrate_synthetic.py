"""Calibrate the synthetic face set: verification accuracy of an untrained network, then after a short training.

A deliberately small, self-contained loop (plain SGD, MobileFaceNet + ArcFace by default, CPU) so the difficulty
of the generator can be tuned independently of Train.py. Accuracy: cosine similarity of embeddings (image + flip
summed), best threshold chosen on 9 folds and applied to the 10th, mean over folds.

    python bench/calibrate_synthetic.py --seconds=120 --difficulty=0.6
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Backbones import get_backbone  # noqa: E402
from Config import Config  # noqa: E402
from Datasets import build_train_dataset, ensure_synthetic, load_verification_set  # noqa: E402
from Heads import get_head  # noqa: E402


def embed(model: torch.nn.Module, dataset, batch: int = 128, flip: bool = True) -> np.ndarray:
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=2)
    out = []
    with torch.no_grad():
        for x in loader:
            e = model(x) + model(torch.flip(x, dims=[3])) if flip else model(x)
            out.append(torch.nn.functional.normalize(e, dim=1).numpy())
    return np.concatenate(out)


def pair_subset(vset, max_pairs: int):
    """Every k-th pair (all folds kept), to bound evaluation time on a slow CPU."""
    step = max(1, -(-len(vset.issame) // max_pairs)) if max_pairs > 0 else 1
    keep = np.arange(0, len(vset.issame), step)
    items = vset.pairs()[keep].ravel().tolist()
    return torch.utils.data.Subset(vset.images, items), vset.issame[keep], vset.folds[keep]


def tenfold_accuracy(emb: np.ndarray, issame: np.ndarray, folds: np.ndarray) -> float:
    sims = (emb[0::2] * emb[1::2]).sum(1)
    accs = []
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        cands = np.unique(sims[tr])
        best = max(cands, key=lambda t: ((sims[tr] > t) == issame[tr]).mean())
        accs.append(((sims[te] > best) == issame[te]).mean())
    return float(np.mean(accs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120, help="training wall time")
    ap.add_argument("--difficulty", type=float, default=None)
    ap.add_argument("--identities", type=int, default=None)
    ap.add_argument("--images", type=int, default=None, help="images per identity")
    ap.add_argument("--data_root", default="./data")
    ap.add_argument("--backbone", default="MobileFaceNet")
    ap.add_argument("--head", default="ArcFace")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval_pairs", type=int, default=0, help="evaluate on about this many pairs (0 = all)")
    ap.add_argument("--no_flip", action="store_true", help="embed images only, not image + mirror")
    ap.add_argument("--eval_at", default="", help="also evaluate after these training seconds, e.g. 120,240")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = Config(data_root=args.data_root)
    if args.difficulty is not None:
        cfg.synthetic_difficulty = args.difficulty
    if args.identities is not None:
        cfg.synthetic_identities = args.identities
    if args.images is not None:
        cfg.synthetic_images_per_identity = args.images
    t0 = time.perf_counter()
    ensure_synthetic(cfg)
    print(f"synthetic set ready in {time.perf_counter() - t0:.1f} s")
    train = build_train_dataset(cfg)
    vset = load_verification_set("synthetic", cfg)
    model = get_backbone(args.backbone)
    head = get_head(args.head, 128 if args.backbone == "MobileFaceNet" else 512, train.num_classes, scale=cfg.scale,
                    margin=cfg.margin) if args.head != "Softmax" else get_head(args.head, 128, train.num_classes)
    images, issame, folds = pair_subset(vset, args.eval_pairs)
    print(f"evaluating on {len(issame)} pairs")
    before = tenfold_accuracy(embed(model, images, flip=not args.no_flip), issame, folds)
    print(f"untrained: {before:.4f}")
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=args.lr, momentum=0.9,
                          weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True)
    checkpoints = sorted(float(v) for v in args.eval_at.split(",") if v)
    curve = []
    start, seen, step = time.perf_counter(), 0, 0
    done = False
    while not done:
        model.train()
        for x, y, _ in loader:
            out = head(model(x), y)
            loss = torch.nn.functional.cross_entropy(out.logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            step += 1
            if step % 20 == 0:
                acc = (out.cosine.argmax(1) == y).float().mean().item()
                print(f"step {step} images {seen} loss {loss.item():.3f} train-acc {acc:.3f} "
                      f"{seen / (time.perf_counter() - start):.1f} img/s", flush=True)
            elapsed = time.perf_counter() - start
            if checkpoints and elapsed >= checkpoints[0]:
                checkpoints.pop(0)
                acc = tenfold_accuracy(embed(model, images, flip=not args.no_flip), issame, folds)
                curve.append((elapsed, seen, acc))
                print(f"after {elapsed:.0f} s ({seen} images): {acc:.4f}", flush=True)
                model.train()
                start += time.perf_counter() - start - elapsed
            if time.perf_counter() - start > args.seconds:
                done = True
                break
    after = tenfold_accuracy(embed(model, images, flip=not args.no_flip), issame, folds)
    curve.append((args.seconds, seen, after))
    print("| difficulty | training s | images | epochs | 10-fold accuracy |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {cfg.synthetic_difficulty} | 0 | 0 | 0 | {before:.4f} |")
    for sec, n, acc in curve:
        print(f"| {cfg.synthetic_difficulty} | {sec:.0f} | {n} | {n / len(train):.2f} | {acc:.4f} |")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
