"""The IJB results as printed and as files: <stem>_1to1.json / _roc.csv / _roc.png and <stem>_1toN.json /
_cmc.png, in the conventions of the other evaluation reports (Utils/evaluation/reports.py, plots.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...plotting import new_figure, save_figure, write_csv
from ..plots import save_roc_png

__all__ = ["format_1to1", "format_1toN", "save_1to1", "save_1toN"]

_ROC_CSV_POINTS = 20_000  # a 15.6M-pair ROC has millions of points; a log-spaced subset draws the same curve


def _pct(v) -> str:
    return "   n/a" if v is None or v != v else f"{100 * v:6.2f}"


def format_1to1(s: dict[str, Any]) -> str:
    fars = list(s["tar_at_far"])
    lines = [f"{s['name']} 1:1  {s['n_pairs']:,} template pairs ({s['n_same']:,} same / {s['n_different']:,} "
             f"different)  pooling={s['pooling']} flip={s['flip']} score_weighting={s['score_weighting']}",
             "FAR          " + "  ".join(f"{f:>7}" for f in fars),
             "TAR (%)      " + "  ".join(f"{_pct(s['tar_at_far'][f]):>7}" for f in fars),
             "TAR<=FAR (%) " + "  ".join(f"{_pct(s['tar_at_far_le'][f]):>7}" for f in fars),
             f"ROC AUC {s['auc']:.5f}"]
    if s["far_floor"] > min(float(f) for f in fars):
        lines.append(f"note: with {s['n_different']:,} different pairs, FAR below {s['far_floor']:.1e} means no "
                     f"false accept at all")
    return "\n".join(lines)


def _open_row(name: str, r: dict) -> str:
    t = r["tpir_at_fpir"]
    return (f"{name:<6} {r['n_mated']:>7} {r['n_non_mated']:>8}  " + "  ".join(f"{_pct(v)}" for v in t.values())
            + f"   {_pct(r['rank_1'])} {_pct(r['rank_5'])} {_pct(r['rank_10'])}")


def format_1toN(res: dict[str, Any]) -> str:
    fpirs = list(next(iter(res["open_set"].values()))["tpir_at_fpir"])
    lines = [f"{res['name']} 1:N open set (each gallery searched apart; other gallery's subjects are non-mated)",
             f"{'set':<6} {'mated':>7} {'nonmated':>8}  " + "  ".join(f"TPIR@{f}" for f in fpirs)
             + "   rank-1 rank-5 rank-10"]
    lines += [_open_row(g, r) for g, r in res["open_set"].items()]
    m = res["open_set_mean"]
    lines.append(f"{'mean':<6} {'':>7} {'':>8}  " + "  ".join(f"{_pct(m['tpir_at_fpir'][f]):>10}" for f in fpirs)
                 + f"   {_pct(m['rank_1'])} {_pct(m['rank_5'])} {_pct(m['rank_10'])}")
    c = res.get("closed_set_insightface")
    if c:
        lines.append(f"closed set, insightface ijb_1n (galleries joined, {c['n_probes']} probes): "
                     + "  ".join(f"TPIR@FAR={f} {_pct(v).strip()}%" for f, v in c["tpir_at_far"].items())
                     + f"  rank-1 {_pct(c['rank_1']).strip()}% rank-5 {_pct(c['rank_5']).strip()}% "
                       f"rank-10 {_pct(c['rank_10']).strip()}%")
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def _thin(fpr: np.ndarray, *others: np.ndarray):
    if len(fpr) <= _ROC_CSV_POINTS:
        return (fpr, *others)
    grid = np.unique(np.searchsorted(fpr, np.geomspace(max(fpr[fpr > 0].min(), 1e-12), 1.0, _ROC_CSV_POINTS)))
    keep = np.unique(np.r_[0, np.minimum(grid, len(fpr) - 1), len(fpr) - 1])
    return (fpr[keep], *(o[keep] for o in others))


def save_1to1(summary: dict, roc: tuple, output_dir: str | os.PathLike, stem: str, plots: bool = True) -> list[Path]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}_1to1.json", out / f"{stem}_1to1_roc.csv"]
    _write_json(paths[0], summary)
    fpr, tpr, thr = _thin(*roc)
    write_csv(paths[1], {"far": fpr, "tar": tpr, "score_threshold": thr},
              comment=f"{summary['name']} 1:1 ROC (sklearn roc_curve, thinned to <= {_ROC_CSV_POINTS} points); "
                      f"score = cosine of pooled templates; same when score >= threshold")
    if plots:
        paths.append(save_roc_png(out / f"{stem}_1to1_roc.png", roc[0], roc[1], title=f"{summary['name']} 1:1 ROC",
                                  label=f"TAR@FAR=1e-4 {100 * summary['tar_at_far']['1e-04']:.2f}%, "
                                        f"AUC {summary['auc']:.4f}"))
    return paths


def save_1toN(res: dict, output_dir: str | os.PathLike, stem: str, plots: bool = True) -> list[Path]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}_1toN.json"]
    _write_json(paths[0], res)
    if plots:
        fig, ax = new_figure()
        curves = {f"{g} (open set)": r["cmc"] for g, r in res["open_set"].items()}
        if res.get("closed_set_insightface"):
            curves[f"{'+'.join(res['open_set'])} joined (closed set)"] = res["closed_set_insightface"]["cmc"]
        for label, cmc in curves.items():
            ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], marker="o", ms=3, label=label)
        ax.set_xlabel("rank")
        ax.set_ylabel("identification rate of mated searches (%)")
        ax.set_title(f"{res['name']} 1:N CMC")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / f"{stem}_1toN_cmc.png", dpi=120))
    return paths
