"""The one way this project draws PNGs and writes the numbers behind them: matplotlib Figures on an Agg canvas.

No pyplot: a Figure with its own canvas has no global state, so plotting works headless, from any thread, and never
leaks figures. matplotlib is imported when a figure is made, so importing this module costs nothing.
Training curves (Utils/training/curves.py) and evaluation plots (Utils/evaluation/plots.py) draw on these.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["new_figure", "save_figure", "save_line_plot", "write_csv"]


def new_figure(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (6.4, 4.8)):
    """(figure, axes): one Axes for 1 x 1, else the (rows, cols) array matplotlib's subplots gives."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib only when drawing
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Lay out and write `fig` as a PNG (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi)
    return path


def save_line_plot(path: str | os.PathLike, curves: Sequence[tuple[Sequence[float], Sequence[float], str]],
                   xlabel: str, ylabel: str, title: str = "", logx: bool = False, logy: bool = False,
                   xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None) -> Path:
    """One PNG with a line per (x, y, label); returns the path written."""
    fig, ax = new_figure()
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
    return save_figure(fig, path)


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
