"""10-fold face verification metrics, pure numpy: the two published protocols, TAR@FAR, ROC AUC and EER.

Embeddings come as two (2N, D) arrays, the images and their horizontal flips; pair k is rows 2k and 2k+1.
`issame` is a bool (N,) array and `folds` an int (N,) array of fold ids (LFW, AgeDB-30, CFP-FP: 10 contiguous
blocks, see `kfold_ids`).

Two protocols, each giving the decisions of its reference implementation on the same embeddings:

"face_pytorch" -- Face_Pytorch's eval_lfw.py / evaluation_10_fold, the protocol of the original project's table
    feature = [emb(image), emb(flip)] concatenated. For each held-out fold: mu = mean of the left and right features
    of all pairs in the other folds; features minus mu, L2-normalised; score = cosine. Thresholds are the 20,001
    values k/10000, k = -10000..10000. A pair counts as correct when (same and score > t) or (different and
    score < t): a score equal to t is wrong either way, as in the reference. The fold's threshold is the MEAN of all
    thresholds reaching the best accuracy on the training folds; accuracy is measured on the held-out fold.
    Scores are computed in float64 (the reference does float32 arithmetic whose last bits depend on the memory
    order scipy.io.loadmat returns); every comparison, tie rule and the averaging of thresholds is the reference's.

"insightface" -- insightface's eval/verification.py (evaluate, calculate_roc, calculate_val)
    embedding = emb(image) + emb(flip), L2-normalised in float64 (as the reference's float64 buffers), distance =
    squared euclidean. Prediction "same" when dist < t, t in np.arange(0, 4, 0.01); the FIRST threshold reaching the
    best training accuracy (argmax) is applied to the held-out fold. VAL@FAR=1e-3: on the training folds FAR(t) for
    t in np.arange(0, 4, 0.001), the threshold for the target FAR interpolated as the reference's interp1d('slinear')
    did (see `_slinear_at`), then VAL and FAR on the held-out fold.

Both threshold searches are vectorised: the scores of each side are sorted once and np.searchsorted gives, for all
thresholds at once, the counts the reference obtains with one pass over the data per threshold (bench/
bench_verification.py measures the difference; tests/test_verification_protocols.py checks equality against a loop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as _roc

__all__ = [
    "PROTOCOLS", "FAR_TARGETS", "FACE_PYTORCH_THRESHOLDS", "INSIGHTFACE_THRESHOLDS", "INSIGHTFACE_VAL_THRESHOLDS",
    "PROTOCOL_ALIASES", "ProtocolResult", "kfold_ids", "check_pairs", "canonical_protocol",
    "face_pytorch_fold_scores", "face_pytorch_best_threshold", "face_pytorch_accuracy", "face_pytorch_protocol",
    "insightface_distances", "insightface_best_threshold_index", "insightface_accuracy", "insightface_val_far",
    "insightface_val_threshold", "insightface_protocol", "run_protocol",
    "roc_curve", "tar_at_far", "roc_auc", "equal_error_rate",
]

PROTOCOLS = ("face_pytorch", "insightface")
PROTOCOL_ALIASES = {"seed": "face_pytorch"}  # an old name, still accepted
FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# The grids are built exactly as the references build them, so every threshold is the same float64 value.
FACE_PYTORCH_THRESHOLDS = _readonly(np.arange(-10000, 10001) * 1.0 / 10000)
INSIGHTFACE_THRESHOLDS = _readonly(np.arange(0, 4, 0.01))
INSIGHTFACE_VAL_THRESHOLDS = _readonly(np.arange(0, 4, 0.001))
_CHUNK_ROWS = 1024  # even (pairs never straddle a block); 1024 x 512 float64 = 4 MiB stays in cache


@dataclass
class ProtocolResult:
    """Per-fold outcome of one protocol.

    `scores` holds one similarity per pair (higher = more alike), each computed as in the pair's own held-out fold:
    the face_pytorch protocol's mean-subtracted cosine, or minus the squared distance for insightface. ROC, TAR@FAR,
    AUC and EER are computed from it.
    """

    protocol: str
    fold_ids: list[int]
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    scores: np.ndarray
    val: float | None = None  # insightface VAL at far_target (mean over folds)
    val_std: float | None = None
    far: float | None = None  # the FAR actually reached on the held-out folds (mean)
    far_target: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_accuracies))  # population std, as both references print


def kfold_ids(n_pairs: int, n_folds: int = 10) -> np.ndarray:
    """Fold id per pair for contiguous blocks, sized like sklearn's KFold(shuffle=False) (the first n % k folds
    get one more pair). For 6000 LFW pairs this is pair // 600, the pairs.txt layout."""
    if n_folds < 2 or n_pairs < n_folds:
        raise ValueError(f"cannot split {n_pairs} pairs into {n_folds} folds")
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    return np.repeat(np.arange(n_folds, dtype=np.int64), sizes)


def check_pairs(emb: np.ndarray, emb_flip: np.ndarray | None, issame: np.ndarray, folds: np.ndarray) -> None:
    """Raise ValueError (one line) when the arrays do not describe the same pairs."""
    issame = np.asarray(issame)
    folds = np.asarray(folds)
    n = issame.shape[0]
    if emb.ndim != 2 or emb.shape[0] != 2 * n:
        raise ValueError(f"embeddings have shape {emb.shape}; expected (2 x {n} pairs, D)")
    if emb_flip is not None and emb_flip.shape != emb.shape:
        raise ValueError(f"flip embeddings have shape {emb_flip.shape}, images {emb.shape}")
    if folds.shape != (n,):
        raise ValueError(f"folds have shape {folds.shape}; expected ({n},)")
    if len(np.unique(folds)) < 2:
        raise ValueError("verification needs at least 2 folds")
    if not np.all(np.isfinite(emb)) or (emb_flip is not None and not np.all(np.isfinite(emb_flip))):
        raise ValueError("embeddings contain NaN or inf (a diverged model, or fp16 overflow: try --amp=bf16/none)")


def _fold_list(folds: np.ndarray) -> list[int]:
    return [int(f) for f in np.unique(folds)]


# -------------------------------------------------------------------------------------------- face_pytorch protocol
def face_pytorch_fold_scores(emb: np.ndarray, emb_flip: np.ndarray | None, folds: np.ndarray) -> np.ndarray:
    """Cosine scores of all pairs under each fold's training mean: array (n_folds, N), row i for the i-th fold id.

    The reference builds feature = [emb, emb_flip] and, for each fold, recomputes (f - mu) / |f - mu| on every
    feature. Expanding the dot products gives the same values (to float64 rounding, ~1e-15) from one matrix product
    per part (image, flip): (l-mu).(r-mu) = l.r - l.mu - r.mu + mu.mu and |l-mu|^2 = l.l - 2 l.mu + mu.mu.
    """
    ids = _fold_list(folds)
    fold_of_row = np.repeat(np.searchsorted(ids, folds), 2)  # fold index of every image row (2 per pair)
    count = (fold_of_row.size - np.bincount(fold_of_row, minlength=len(ids)))[:, None]  # training images per fold
    rows_of = [fold_of_row == k for k in range(len(ids))]
    n = folds.shape[0]
    sq = np.zeros(2 * n)
    proj = np.zeros((2 * n, len(ids)))
    cross = np.zeros(n)
    mm = np.zeros(len(ids))
    for part in (emb, emb_flip):  # the concatenated feature's dot products are sums over its parts
        if part is None:
            continue
        part = np.asarray(part)
        held_sums = np.stack([part[rows].sum(axis=0, dtype=np.float64) for rows in rows_of])
        mu = (held_sums.sum(axis=0)[None, :] - held_sums) / count  # mean over the other folds' left+right features
        mm += np.einsum("ij,ij->i", mu, mu)
        for start in range(0, 2 * n, _CHUNK_ROWS):  # float64 copies one cache-sized block at a time
            x = np.asarray(part[start:start + _CHUNK_ROWS], dtype=np.float64)
            sq[start:start + x.shape[0]] += np.einsum("ij,ij->i", x, x)
            proj[start:start + x.shape[0]] += x @ mu.T
            cross[start // 2:(start + x.shape[0]) // 2] += np.einsum("ij,ij->i", x[0::2], x[1::2])
    pl, pr = proj[0::2], proj[1::2]
    dot = cross[:, None] - pl - pr + mm
    norm_l = np.maximum(sq[0::2, None] - 2.0 * pl + mm, 0.0)
    norm_r = np.maximum(sq[1::2, None] - 2.0 * pr + mm, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = dot / np.sqrt(norm_l * norm_r)  # a feature equal to the mean gives NaN, as in the reference
    return scores.T


def face_pytorch_best_threshold(scores: np.ndarray, issame: np.ndarray,
                        thresholds: np.ndarray = FACE_PYTORCH_THRESHOLDS) -> float:
    """Mean of all thresholds with the best training accuracy (Face_Pytorch getThreshold).

    correct(t) = #{same: s > t} + #{different: s < t}; both counts for every t come from np.searchsorted on the
    sorted scores, the loop's strict comparisons being side="right" and side="left". A NaN score compares false
    both ways, so it is never correct: it is left out of the counts.
    """
    s = np.asarray(scores, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    valid = ~np.isnan(s)
    pos = np.sort(s[same & valid])
    neg = np.sort(s[~same & valid])
    correct = pos.size - np.searchsorted(pos, thresholds, side="right") + np.searchsorted(neg, thresholds, side="left")
    best = correct == correct.max()
    return float(np.mean(thresholds[best]))  # same mask, same np.mean as the reference: the same float


def face_pytorch_accuracy(scores: np.ndarray, issame: np.ndarray, threshold: float) -> float:
    """Face_Pytorch getAccuracy: (#{same: s > t} + #{different: s < t}) / N."""
    s = np.asarray(scores, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    correct = int(np.sum(s[same] > threshold)) + int(np.sum(s[~same] < threshold))
    return 1.0 * correct / s.size


def face_pytorch_protocol(emb: np.ndarray, emb_flip: np.ndarray | None, issame: np.ndarray,
                  folds: np.ndarray) -> ProtocolResult:
    """The Face_Pytorch 10-fold protocol (see the module docstring)."""
    issame = np.asarray(issame, dtype=bool)
    folds = np.asarray(folds)
    check_pairs(emb, emb_flip, issame, folds)
    all_scores = face_pytorch_fold_scores(emb, emb_flip, folds)
    ids = _fold_list(folds)
    accs, thrs = np.empty(len(ids)), np.empty(len(ids))
    held_scores = np.empty(issame.shape[0])
    for row, f in enumerate(ids):
        test = folds == f
        thrs[row] = face_pytorch_best_threshold(all_scores[row, ~test], issame[~test])
        accs[row] = face_pytorch_accuracy(all_scores[row, test], issame[test], thrs[row])
        held_scores[test] = all_scores[row, test]
    return ProtocolResult("face_pytorch", ids, accs, thrs, held_scores)


# ----------------------------------------------------------------------------------------------- insightface protocol
def insightface_distances(emb: np.ndarray, emb_flip: np.ndarray | None) -> np.ndarray:
    """Squared euclidean distance per pair of the L2-normalised (image + flip) embeddings, in float64.

    The same operations as the reference (float64 sum, sklearn.preprocessing.normalize, subtract, square, sum), so the
    distances are the same floats.
    """
    n = emb.shape[0] // 2
    dist = np.empty(n)
    for start in range(0, 2 * n, _CHUNK_ROWS):  # row-wise operations: block by block gives the same floats
        stop = min(start + _CHUNK_ROWS, 2 * n)
        if emb_flip is None:
            feat = np.array(emb[start:stop], dtype=np.float64)
        else:
            feat = np.add(emb[start:stop], emb_flip[start:stop], dtype=np.float64)
        # sklearn's normalize: einsum row norms, near-zero norms replaced by 1, in-place division
        norms = np.sqrt(np.einsum("ij,ij->i", feat, feat))
        norms[norms < 10 * np.finfo(np.float64).eps] = 1.0
        feat /= norms[:, None]
        dist[start // 2:stop // 2] = np.sum(np.square(np.subtract(feat[0::2], feat[1::2])), 1)
    return dist


def insightface_best_threshold_index(dist: np.ndarray, issame: np.ndarray,
                                     thresholds: np.ndarray = INSIGHTFACE_THRESHOLDS) -> int:
    """Index of the first threshold with the best accuracy, predicting "same" when dist < t (calculate_roc).

    tp(t) = #{same: d < t}, tn(t) = #{different: d >= t}; accuracy is (tp + tn) / N, a monotone function of the
    integer count, so argmax over counts picks the same first index as argmax over the reference's floats.
    """
    d = np.asarray(dist, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    pos = np.sort(d[same])
    neg = np.sort(d[~same])
    correct = np.searchsorted(pos, thresholds, side="left") + (neg.size - np.searchsorted(neg, thresholds, side="left"))
    return int(np.argmax(correct))


def insightface_accuracy(dist: np.ndarray, issame: np.ndarray, threshold: float) -> float:
    """calculate_accuracy: (tp + tn) / N with "same" predicted when dist < threshold."""
    d = np.asarray(dist, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    predict = np.less(d, threshold)
    return float(np.sum(predict & same) + np.sum(~predict & ~same)) / d.size


def insightface_val_far(dist: np.ndarray, issame: np.ndarray, threshold: float) -> tuple[float, float]:
    """calculate_val_far: (VAL = true accepts / #same, FAR = false accepts / #different); NaN for an empty side."""
    d = np.asarray(dist, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    predict = np.less(d, threshold)
    n_same, n_diff = int(same.sum()), int((~same).sum())
    val = float(np.sum(predict & same)) / float(n_same) if n_same else float("nan")
    far = float(np.sum(predict & ~same)) / float(n_diff) if n_diff else float("nan")
    return val, far


def _slinear_at(x: np.ndarray, y: np.ndarray, xval: float) -> float:
    """interp1d(x, y, kind="slinear")(xval) for non-decreasing x that may repeat values, as scipy evaluated it when
    insightface's numbers were published (scipy >= 1.9 refuses repeated x, which FAR curves always have).

    That version built a degree-1 B-spline on the knots [x0, x0, x1, ..., x_last, x_last] and, for xval, used the
    interval whose left knot is the LAST x <= xval; the de Boor weights are written out below in the same order of
    operations, so the result is the same float. A zero-length interval has zero weights (value 0.0), as there.
    """
    n = x.size
    if not x[0] <= xval <= x[-1]:
        raise ValueError(f"FAR target {xval} is outside the training FAR range [{x[0]}, {x[-1]}]")
    upper = min(max(int(np.searchsorted(x, xval, side="right")), 1), n - 1)  # first x > xval (at least 1, at most n-1)
    xa, xb = float(x[upper - 1]), float(x[upper])
    if xa == xb:
        return 0.0
    w = 1.0 / (xb - xa)
    return 0.0 + float(y[upper - 1]) * (w * (xb - xval)) + float(y[upper]) * (w * (xval - xa))


def insightface_val_threshold(dist: np.ndarray, issame: np.ndarray, far_target: float = 1e-3,
                              thresholds: np.ndarray = INSIGHTFACE_VAL_THRESHOLDS) -> float:
    """The distance threshold for `far_target` on training pairs (calculate_val).

    FAR(t) for every t at once from searchsorted counts; the division is the reference's float(fa) / float(n_diff),
    so the FAR curve is bit-identical to the loop's; it is non-decreasing in t, which is what the interpolation
    relies on. When no threshold reaches the target FAR the reference uses 0.0 (nothing accepted).
    """
    d = np.asarray(dist, dtype=np.float64)
    same = np.asarray(issame, dtype=bool)
    neg = np.sort(d[~same])
    if neg.size == 0:
        return 0.0
    far_train = np.searchsorted(neg, thresholds, side="left").astype(np.float64) / float(neg.size)
    if np.max(far_train) >= far_target:
        return _slinear_at(far_train, np.asarray(thresholds, dtype=np.float64), far_target)
    return 0.0


def insightface_protocol(emb: np.ndarray, emb_flip: np.ndarray | None, issame: np.ndarray, folds: np.ndarray,
                         far_target: float = 1e-3) -> ProtocolResult:
    """The insightface 10-fold protocol with VAL@FAR (see the module docstring)."""
    issame = np.asarray(issame, dtype=bool)
    folds = np.asarray(folds)
    check_pairs(emb, emb_flip, issame, folds)
    dist = insightface_distances(emb, emb_flip)
    ids = _fold_list(folds)
    accs, thrs, vals, fars = (np.empty(len(ids)) for _ in range(4))
    for row, f in enumerate(ids):
        test = folds == f
        best = insightface_best_threshold_index(dist[~test], issame[~test])
        thrs[row] = INSIGHTFACE_THRESHOLDS[best]
        accs[row] = insightface_accuracy(dist[test], issame[test], thrs[row])
        t_val = insightface_val_threshold(dist[~test], issame[~test], far_target)
        vals[row], fars[row] = insightface_val_far(dist[test], issame[test], t_val)
    # insightface's "XNorm", the mean L2 norm of the raw embeddings: a diagnostic, float32 sums are plenty
    norms = np.concatenate([np.sqrt(np.einsum("ij,ij->i", e, e)) for e in (emb, emb_flip) if e is not None])
    return ProtocolResult("insightface", ids, accs, thrs, -dist, val=float(np.mean(vals)),
                          val_std=float(np.std(vals)), far=float(np.mean(fars)), far_target=far_target,
                          extra={"xnorm": float(norms.astype(np.float64).mean()), "fold_val": vals.tolist(),
                                 "fold_far": fars.tolist()})


def canonical_protocol(name: str) -> str:
    """The protocol's name, old spellings ("seed") mapped to the current one."""
    return PROTOCOL_ALIASES.get(name, name)


def run_protocol(protocol: str, emb: np.ndarray, emb_flip: np.ndarray | None, issame: np.ndarray,
                 folds: np.ndarray) -> ProtocolResult:
    protocol = canonical_protocol(protocol)
    if protocol == "face_pytorch":
        return face_pytorch_protocol(emb, emb_flip, issame, folds)
    if protocol == "insightface":
        return insightface_protocol(emb, emb_flip, issame, folds)
    raise ValueError(f"protocol: '{protocol}' is not one of: {', '.join(PROTOCOLS)}")


# ------------------------------------------------------------------------------------------- threshold-free metrics
def roc_curve(issame: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with "same" predicted when score >= threshold; every distinct score is a point."""
    same = np.asarray(issame, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("a ROC needs both same and different pairs")
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():  # a direction-less feature is never accepted: rank it below every real score
        s = np.where(np.isnan(s), np.nanmin(s) - 1.0 if not np.isnan(s).all() else 0.0, s)
    fpr, tpr, thr = _roc(same, s, drop_intermediate=False)
    return fpr, tpr, thr


def tar_at_far(issame: np.ndarray, scores: np.ndarray,
               far_targets: Sequence[float] = FAR_TARGETS) -> dict[float, float]:
    """TAR at each FAR: the highest true-accept rate of any threshold whose false-accept rate is <= the target.

    With n different pairs, targets below 1/n can only be met with no false accept at all; the value is then the
    TAR at FAR = 0 (callers report n so the reader can judge).
    """
    fpr, tpr, _ = roc_curve(issame, scores)
    out = {}
    for far in far_targets:
        ok = fpr <= far
        out[float(far)] = float(tpr[ok].max()) if ok.any() else 0.0
    return out


def roc_auc(issame: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC (probability that a same pair outscores a different one, ties counting half)."""
    return float(roc_auc_score(np.asarray(issame, dtype=bool), np.asarray(scores, dtype=np.float64)))


def equal_error_rate(issame: np.ndarray, scores: np.ndarray) -> float:
    """Rate where false accepts equal false rejects, interpolated linearly between the two ROC points around it."""
    fpr, tpr, _ = roc_curve(issame, scores)
    fnr = 1.0 - tpr
    gap = fnr - fpr  # starts at 1 (nothing accepted), ends at -1 (everything accepted), never increases
    k = int(np.argmax(gap <= 0))  # first point where false accepts catch up with false rejects
    if k == 0 or gap[k] == 0:
        return float(fpr[k])
    g0, g1 = gap[k - 1], gap[k]
    w = g0 / (g0 - g1)
    return float(fpr[k - 1] + w * (fpr[k] - fpr[k - 1]))
