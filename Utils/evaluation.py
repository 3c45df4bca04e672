"""Verification of a model on a pair set: embeddings -> protocol -> report (dict, text table, JSON, ROC PNG/CSV).

`verify` is what training calls for each validation set; the evaluation scripts use the same pieces through
Utils/verification_cli.py. The metric math lives in Utils/verification.py (pure numpy).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .features import extract_embeddings
from .verification import FAR_TARGETS, ProtocolResult, equal_error_rate, roc_auc, roc_curve, run_protocol, tar_at_far

__all__ = ["VerificationReport", "evaluate_embeddings", "verify", "verify_report", "format_report", "save_report",
           "far_key"]

_SCORE_NAMES = {"seed": "cosine of [emb, flip] features minus the training folds' mean",
                "insightface": "minus the squared L2 distance of normalised (emb + flip)"}


def far_key(far: float) -> str:
    """JSON key of a FAR target: 1e-3 -> "1e-03"."""
    return f"{far:.0e}"


@dataclass
class VerificationReport:
    """`summary` is plain JSON data (what `verify` returns); the ROC arrays are kept apart for the CSV and plot."""

    summary: dict[str, Any]
    fpr: np.ndarray
    tpr: np.ndarray
    roc_thresholds: np.ndarray
    result: ProtocolResult


def evaluate_embeddings(emb: np.ndarray, emb_flip: np.ndarray | None, issame: np.ndarray, folds: np.ndarray,
                        protocol: str = "seed", name: str = "",
                        far_targets: Sequence[float] = FAR_TARGETS) -> VerificationReport:
    """Run `protocol` on precomputed embeddings and add the threshold-free metrics (TAR@FAR, AUC, EER)."""
    issame = np.asarray(issame, dtype=bool)
    result = run_protocol(protocol, emb, emb_flip, issame, np.asarray(folds))
    fpr, tpr, thr = roc_curve(issame, result.scores)
    n_diff = int((~issame).sum())
    tars = {far_key(far): tar for far, tar in tar_at_far(issame, result.scores, far_targets).items()}
    summary: dict[str, Any] = {
        "name": name,
        "protocol": protocol,
        "n_pairs": int(issame.size),
        "n_same": int(issame.sum()),
        "n_different": n_diff,
        "accuracy": result.accuracy,
        "std": result.std,
        "fold_accuracies": [float(a) for a in result.fold_accuracies],
        "fold_thresholds": [float(t) for t in result.fold_thresholds],
        "threshold": float(np.mean(result.fold_thresholds)),
        "score": _SCORE_NAMES[protocol],
        "tar_at_far": tars,
        "far_floor": 1.0 / n_diff if n_diff else None,  # targets below it are met only with no false accept
        "auc": roc_auc(issame, result.scores),
        "eer": equal_error_rate(issame, result.scores),
    }
    if result.val is not None:
        summary.update({"val": result.val, "val_std": result.val_std, "far": result.far,
                        "far_target": result.far_target})
    summary.update(result.extra)
    return VerificationReport(summary, fpr, tpr, thr, result)


def verify(model: torch.nn.Module, vset, protocol: str = "seed", batch_size: int = 128,
           device: str | torch.device = "cpu", amp_dtype: str | torch.dtype | None = None,
           num_workers: int = 0, progress: bool = True) -> dict[str, Any]:
    """10-fold verification of `model` on a Datasets.VerificationSet; returns the JSON-ready summary dict
    ("name", "accuracy" in [0, 1], "std", "fold_accuracies", "threshold", TAR@FAR, AUC, EER, ...)."""
    return verify_report(model, vset, protocol, batch_size, device, amp_dtype, num_workers, progress).summary


def verify_report(model: torch.nn.Module, vset, protocol: str = "seed", batch_size: int = 128,
                  device: str | torch.device = "cpu", amp_dtype: str | torch.dtype | None = None,
                  num_workers: int = 0, progress: bool = True) -> VerificationReport:
    """`verify` with the ROC arrays (for the scripts' CSV and PNG)."""
    emb, emb_flip = extract_embeddings(model, vset.images, batch_size=batch_size, device=device,
                                       amp_dtype=amp_dtype, num_workers=num_workers,
                                       desc=f"embeddings {vset.name}", progress=progress)
    index = vset.pairs().ravel()  # images shared by several pairs were embedded once
    return evaluate_embeddings(emb[index], emb_flip[index], vset.issame, vset.folds, protocol=protocol,
                               name=vset.name)


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
    from .plots import save_roc_png, write_csv

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
