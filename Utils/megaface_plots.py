"""PNG plots of MegaFace results: CMC per distractor count, rank-1 vs distractor count, ROC (log FAR).

matplotlib is imported when a plot is drawn (Agg backend: no display needed).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["plot_cmc", "plot_rank1_curve", "plot_roc"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def plot_cmc(results: dict[int, dict], path: str | os.PathLike, title: str = "MegaFace identification") -> Path:
    """CMC curves (rank 1..K) for every distractor count in `results` ({size: evaluate_megaface() dict})."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for size, res in sorted(results.items()):
        cmc = res["identification"]["cmc"]
        ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], marker="o", ms=3, label=f"{size:,} distractors")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_rank1_curve(results: dict[int, dict], path: str | os.PathLike,
                     title: str = "MegaFace rank-1 vs distractors") -> Path:
    """Rank-1 identification rate against the number of distractors (log axis), the devkit's summary curve."""
    plt = _pyplot()
    sizes = sorted(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.semilogx(sizes, [100 * results[s]["identification"]["rank1"] for s in sizes], marker="o")
    ax.set_xlabel("# distractors (log scale)")
    ax.set_ylabel("rank-1 identification rate (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_roc(results: dict[int, dict], path: str | os.PathLike, title: str = "MegaFace verification") -> Path:
    """ROC (TAR vs FAR, log FAR axis) for every distractor count."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
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
    return _save(fig, path)
