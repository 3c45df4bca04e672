"""Verification of a model on a pair set: embeddings -> protocol -> report (a JSON-ready summary + the ROC).

`verify` is what training calls for each validation set; the evaluation scripts use the same pieces through
Utils/evaluation/verification_cli.py. The metric math lives in verification.py (pure numpy), the text table and the
files in reports.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .features import extract_embeddings
from .verification import (FAR_TARGETS, ProtocolResult, canonical_protocol, equal_error_rate, roc_auc, roc_curve,
                           run_protocol, tar_at_far)

__all__ = ["VerificationReport", "evaluate_embeddings", "verify", "verify_report", "far_key"]

_SCORE_NAMES = {"face_pytorch": "cosine of [emb, flip] features minus the training folds' mean",
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
                        protocol: str = "face_pytorch", name: str = "",
                        far_targets: Sequence[float] = FAR_TARGETS) -> VerificationReport:
    """Run `protocol` on precomputed embeddings and add the threshold-free metrics (TAR@FAR, AUC, EER)."""
    issame = np.asarray(issame, dtype=bool)
    protocol = canonical_protocol(protocol)
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


def verify(model: torch.nn.Module, vset, protocol: str = "face_pytorch", batch_size: int = 128,
           device: str | torch.device = "cpu", amp_dtype: str | torch.dtype | None = None,
           num_workers: int = 0, progress: bool = True, fast: bool = False) -> dict[str, Any]:
    """10-fold verification of `model` on a Datasets.VerificationSet; returns the JSON-ready summary dict
    ("name", "accuracy" in [0, 1], "std", "fold_accuracies", "threshold", TAR@FAR, AUC, EER, ...)."""
    return verify_report(model, vset, protocol, batch_size, device, amp_dtype, num_workers, progress, fast).summary


def verify_report(model: torch.nn.Module, vset, protocol: str = "face_pytorch", batch_size: int = 128,
                  device: str | torch.device = "cpu", amp_dtype: str | torch.dtype | None = None,
                  num_workers: int = 0, progress: bool = True, fast: bool = False) -> VerificationReport:
    """`verify` with the ROC arrays (for the scripts' CSV and PNG). `fast`: extraction's fast path (features.py)."""
    emb, emb_flip = extract_embeddings(model, vset.images, batch_size=batch_size, device=device,
                                       amp_dtype=amp_dtype, num_workers=num_workers,
                                       desc=f"embeddings {vset.name}", progress=progress, fast=fast)
    index = vset.pairs().ravel()  # images shared by several pairs were embedded once
    return evaluate_embeddings(emb[index], emb_flip[index], vset.issame, vset.folds, protocol=protocol,
                               name=vset.name)
