"""PNG plots and CSV curve files (matplotlib's Agg canvas, imported only when a plot is drawn).

Small functions with one job each, shared by every script: a generic line plot, the ROC (log FAR axis) and a CSV
writer for the numbers behind a plot. No pyplot: a Figure on an Agg canvas has no global state, so plotting works
headless and from any thread.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["save_line_plot", "save_roc_png", "write_csv"]


def _figure(figsize: tuple[float, float] = (6.4, 4.8)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_line_plot(path: str | os.PathLike, curves: Sequence[tuple[Sequence[float], Sequence[float], str]],
                   xlabel: str, ylabel: str, title: str = "", logx: bool = False, logy: bool = False,
                   xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None) -> Path:
    """One PNG with a line per (x, y, label); returns the path written (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for x, y, label in curves:
        ax.plot(np.asarray(x), np.asarray(y), label=label or None, linewidth=1.5)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if xlim:
        ax.set_xlim(*xlim)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if any(label for _, _, label in curves):
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def save_roc_png(path: str | os.PathLike, fpr: np.ndarray, tpr: np.ndarray, label: str = "",
                 title: str = "ROC") -> Path:
    """ROC with a logarithmic false-accept axis (where face verification is read); FAR = 0 points cannot be drawn
    on it and are left out of the line."""
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    keep = fpr > 0
    low = float(fpr[keep].min()) if keep.any() else 1e-4
    return save_line_plot(path, [(fpr[keep], tpr[keep], label)], "false accept rate (FAR)",
                          "true accept rate (TAR)", title, logx=True, xlim=(min(low, 1e-4), 1.0),
                          ylim=(max(0.0, float(tpr[keep].min()) - 0.02) if keep.any() else 0.0, 1.002))


def write_csv(path: str | os.PathLike, columns: Mapping[str, Sequence[float]], comment: str = "") -> Path:
    """Columns of equal length as CSV with a header row; `comment` becomes leading '# ' lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    data = [np.asarray(columns[k]) for k in names]
    lengths = {len(d) for d in data}
    if len(lengths) > 1:
        raise ValueError(f"CSV columns differ in length: {dict(zip(names, map(len, data)))}")
    with open(path, "w", newline="") as f:
        for line in comment.splitlines():
            f.write(f"# {line}\n")
        writer = csv.writer(f)
        writer.writerow(names)
        for row in zip(*data):
            writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return path
