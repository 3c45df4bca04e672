"""PNG plots of evaluation results: the verification ROC, and MegaFace's CMC, rank-1 curve and ROC.

All drawn with the project's one plot style (Utils/plotting.py); FAR axes are logarithmic, where face verification
is read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..plotting import new_figure, save_figure, save_line_plot

__all__ = ["save_roc_png", "save_rocs_png", "plot_cmc", "plot_rank1_curve", "plot_roc"]


def save_roc_png(path: str | os.PathLike, fpr: np.ndarray, tpr: np.ndarray, label: str = "",
                 title: str = "ROC") -> Path:
    """ROC with a logarithmic false-accept axis; FAR = 0 points cannot be drawn on it and are left out."""
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    keep = fpr > 0
    low = float(fpr[keep].min()) if keep.any() else 1e-4
    return save_line_plot(path, [(fpr[keep], tpr[keep], label)], "false accept rate (FAR)",
                          "true accept rate (TAR)", title, logx=True, xlim=(min(low, 1e-4), 1.0),
                          ylim=(max(0.0, float(tpr[keep].min()) - 0.02) if keep.any() else 0.0, 1.002))


def save_rocs_png(path: str | os.PathLike, curves: list[tuple[np.ndarray, np.ndarray, str]],
                  title: str = "ROC") -> Path:
    """Several ROCs (fpr, tpr, label) on one log-FAR plot; FAR = 0 points are left out as in `save_roc_png`."""
    kept = [(np.asarray(f, dtype=np.float64)[np.asarray(f) > 0], np.asarray(t, dtype=np.float64)[np.asarray(f) > 0],
             label) for f, t, label in curves]
    low = min([float(f.min()) for f, _, _ in kept if f.size] + [1e-4])
    return save_line_plot(path, kept, "false accept rate (FAR)", "true accept rate (TAR)", title, logx=True,
                          xlim=(low, 1.0), ylim=(0.0, 1.002))


def plot_cmc(results: dict[int, dict], path: str | os.PathLike, title: str = "MegaFace identification") -> Path:
    """CMC curves (rank 1..K) for every distractor count in `results` ({size: evaluate_megaface() dict})."""
    fig, ax = new_figure()
    for size, res in sorted(results.items()):
        cmc = res["identification"]["cmc"]
        ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], marker="o", ms=3, label=f"{size:,} distractors")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def plot_rank1_curve(results: dict[int, dict], path: str | os.PathLike,
                     title: str = "MegaFace rank-1 vs distractors") -> Path:
    """Rank-1 identification rate against the number of distractors (log axis), the devkit's summary curve."""
    sizes = sorted(results)
    fig, ax = new_figure()
    ax.semilogx(sizes, [100 * results[s]["identification"]["rank1"] for s in sizes], marker="o")
    ax.set_xlabel("# distractors (log scale)")
    ax.set_ylabel("rank-1 identification rate (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path, dpi=120)


def plot_roc(results: dict[int, dict], path: str | os.PathLike, title: str = "MegaFace verification") -> Path:
    """ROC (TAR vs FAR, log FAR axis) for every distractor count."""
    fig, ax = new_figure()
    for size, res in sorted(results.items()):
        roc = res["verification"]["roc"]
        pts = [(f, t) for f, t in zip(roc["far"], roc["tar"]) if f > 0]
        if pts:
            far, tar = zip(*sorted(pts))
            ax.semilogx(far, [100 * t for t in tar], label=f"{size:,} distractors")
    ax.set_xlabel("false accept rate (log scale)")
    ax.set_ylabel("true accept rate (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)
