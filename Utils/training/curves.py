"""PNG of a run's curves (loss, train accuracy, learning rate, verification accuracy), drawn from its history."""
from __future__ import annotations

from pathlib import Path

from ..plotting import new_figure, save_figure

__all__ = ["plot_training_curves", "FEW_POINTS"]

FEW_POINTS = 30  # curves with at most this many points are drawn with markers


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Write a 2x2 figure of the logged curves to `path`; returns None when nothing was logged."""
    train = [r for r in history if r.get("kind") == "train"]
    evals = [r for r in history if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    fig, axes = new_figure(2, 2, figsize=(11, 7))
    its = [r["iteration"] for r in train]
    panels = [(axes[0, 0], "loss", "training loss"), (axes[0, 1], "accuracy", "training accuracy"),
              (axes[1, 0], "lr", "learning rate")]
    for ax, key, label in panels:
        # a short run logs few points: markers make one or two of them visible, where a line alone is not
        ax.plot(its, [r[key] for r in train], lw=1.2, marker="o" if len(its) <= FEW_POINTS else None, ms=4)
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    ax = axes[1, 1]
    names = sorted({k for r in evals for k in r.get("accuracies", {})})
    for name in names:
        pts = [(r["iteration"], r["accuracies"][name]) for r in evals if name in r.get("accuracies", {})]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_title("verification accuracy")
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)
    if names:
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=100)
