"""The verification report as the scripts show it (per-fold table, mean +- std, TAR@FAR, AUC, EER) and as files
(<stem>.json, <stem>_roc.csv, <stem>_roc.png)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..plotting import write_csv
from .plots import save_roc_png
from .verify import VerificationReport

__all__ = ["format_report", "save_report"]


def format_report(summary: dict[str, Any]) -> str:
    """The per-fold table, mean +- std and the threshold-free metrics, as printed by the scripts."""
    s = summary
    lines = [f"{s['name']}  protocol={s['protocol']}  pairs={s['n_pairs']} "
             f"({s['n_same']} same / {s['n_different']} different)",
             f"{'fold':>4}  {'accuracy':>9}  {'threshold':>10}"]
    for i, (acc, thr) in enumerate(zip(s["fold_accuracies"], s["fold_thresholds"]), 1):
        lines.append(f"{i:>4}  {100 * acc:>8.2f}%  {thr:>10.4f}")
    lines.append(f"{'mean':>4}  {100 * s['accuracy']:>8.2f}% +- {100 * s['std']:.2f}%   threshold {s['threshold']:.4f}")
    tars = "  ".join(f"{k}: {100 * v:.2f}%" for k, v in s["tar_at_far"].items())
    lines.append(f"TAR@FAR  {tars}")
    lines.append(f"ROC AUC {s['auc']:.5f}   EER {100 * s['eer']:.2f}%")
    if s.get("val") is not None:
        lines.append(f"VAL {100 * s['val']:.2f}% +- {100 * s['val_std']:.2f}% @ FAR={s['far']:.5f} "
                     f"(target {s['far_target']:g})   XNorm {s.get('xnorm', float('nan')):.3f}")
    if s.get("far_floor") and s["far_floor"] > min(float(k) for k in s["tar_at_far"]):
        lines.append(f"note: with {s['n_different']} different pairs, FAR below {s['far_floor']:.1e} means no "
                     f"false accept at all")
    return "\n".join(lines)


def save_report(report: VerificationReport, output_dir: str | os.PathLike, stem: str,
                extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write <stem>.json (summary + `extra`), <stem>_roc.csv and <stem>_roc.png; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = report.summary
    paths = {"json": out / f"{stem}.json", "roc_csv": out / f"{stem}_roc.csv", "roc_png": out / f"{stem}_roc.png"}
    with open(paths["json"], "w") as f:
        json.dump({**s, **(extra or {})}, f, indent=2)
        f.write("\n")
    write_csv(paths["roc_csv"], {"far": report.fpr, "tar": report.tpr, "score_threshold": report.roc_thresholds},
              comment=f"{s['name']} ROC, protocol {s['protocol']}; score = {s['score']}; same when score >= threshold")
    save_roc_png(paths["roc_png"], report.fpr, report.tpr,
                 label=f"{s['name']} ({s['protocol']}): acc {100 * s['accuracy']:.2f}%, AUC {s['auc']:.4f}",
                 title=f"{s['name']} ROC")
    return paths
