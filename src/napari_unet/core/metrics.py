"""Segmentation metrics: pixel overlap (IoU, Dice, pixel error), instance matching (AP), Rand error.

All overlaps come from one contingency table of (gt id, pred id) pixel counts built with
``np.bincount``, never from per-object loops over the image. Degenerate cases never give NaN:
a ratio 0/0 (nothing to find and nothing found) counts as perfect (1.0).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

__all__ = [
    "DEFAULT_AP_THRESHOLDS",
    "average_precision",
    "dice",
    "iou",
    "iou_matrix",
    "matching",
    "mean_average_precision",
    "pixel_error",
    "rand_error",
]

DEFAULT_AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))


def _pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} does not match gt shape {g.shape}")
    for name, a in (("pred", p), ("gt", g)):
        if not (a.dtype == bool or np.issubdtype(a.dtype, np.number)) or np.iscomplexobj(a):
            raise ValueError(f"{name} must be a real numeric or boolean array, got {a.dtype}")
        if np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
            raise ValueError(f"{name} contains NaN")
    return p, g


def _labels(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == bool:
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} labels must be integer ids")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} labels must be >= 0")
    return a.astype(np.int64, copy=False)


def _ratio(num: float, den: float) -> float:
    return 1.0 if den == 0 else float(num) / float(den)


def iou(pred: ArrayLike, gt: ArrayLike) -> float:
    """Intersection over union of the binary foregrounds (> 0); 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    p, g = p > 0, g > 0
    return _ratio(np.count_nonzero(p & g), np.count_nonzero(p | g))


def dice(pred: ArrayLike, gt: ArrayLike) -> float:
    """Dice coefficient 2|P & G| / (|P| + |G|) of the binary foregrounds; 1.0 when both empty."""
    p, g = _pair(pred, gt)
    p, g = p > 0, g > 0
    return _ratio(2 * np.count_nonzero(p & g), np.count_nonzero(p) + np.count_nonzero(g))


def pixel_error(pred: ArrayLike, gt: ArrayLike) -> float:
    """Fraction of pixels whose binary foreground (> 0) differs; 0.0 for empty arrays."""
    p, g = _pair(pred, gt)
    if p.size == 0:
        return 0.0
    return float(np.count_nonzero((p > 0) != (g > 0))) / p.size


def _contingency(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts ``C[i, j]`` of pixels with the i-th gt id and j-th pred id (row/col 0 = id 0).

    Ids are compacted with ``np.unique``; id 0 is always row/column 0 (possibly all zero).
    """
    g_ids, g_inv = np.unique(np.concatenate([[0], gt.ravel()]), return_inverse=True)
    p_ids, p_inv = np.unique(np.concatenate([[0], pred.ravel()]), return_inverse=True)
    ng, npd = len(g_ids), len(p_ids)
    flat = g_inv[1:].astype(np.int64) * npd + p_inv[1:]
    return np.bincount(flat, minlength=ng * npd).reshape(ng, npd)


def iou_matrix(pred_labels: ArrayLike, gt_labels: ArrayLike) -> np.ndarray:
    """IoU of every (gt object, pred object) pair, shape ``(n_gt, n_pred)`` (ids > 0, sorted)."""
    p, g = _pair(pred_labels, gt_labels)
    c = _contingency(_labels(g, "gt"), _labels(p, "pred"))
    inter = c[1:, 1:].astype(np.float64)
    area_g = c[1:, :].sum(axis=1, dtype=np.float64)
    area_p = c[:, 1:].sum(axis=0, dtype=np.float64)
    union = area_g[:, None] + area_p[None, :] - inter
    # objects with zero pixels cannot occur (ids come from the images), so union > 0
    return inter / np.maximum(union, 1.0)


def _match_counts(ious: np.ndarray, threshold: float) -> tuple[int, float]:
    """Optimal one-to-one matching: (number of pairs with IoU >= threshold, sum of their IoU).

    Maximises first the number of matches, then their total IoU (StarDist's cost function).
    """
    n_gt, n_pred = ious.shape
    if n_gt == 0 or n_pred == 0:
        return 0, 0.0
    ok = ious >= threshold
    if not ok.any():
        return 0, 0.0
    cost = -ok.astype(np.float64) - ious / (2.0 * min(n_gt, n_pred))
    rows, cols = linear_sum_assignment(cost)
    hit = ok[rows, cols]
    return int(hit.sum()), float(ious[rows, cols][hit].sum())


def _scores(n_gt: int, n_pred: int, tp: int, iou_sum: float) -> dict:
    fp, fn = n_pred - tp, n_gt - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "accuracy": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "mean_matched_iou": (iou_sum / tp) if tp else (1.0 if n_gt == n_pred == 0 else 0.0),
    }


def _check_threshold(t: float) -> float:
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"IoU thresholds must lie in [0, 1], got {t}")
    return t


def matching(pred_labels: ArrayLike, gt_labels: ArrayLike, threshold: float = 0.5) -> dict:
    """Match predicted to ground-truth objects one-to-one (Hungarian on the IoU matrix).

    A pair counts as a true positive when its IoU >= threshold. Returns a dict with tp, fp, fn,
    accuracy = TP / (TP + FP + FN), precision, recall, f1 and mean_matched_iou (over TP pairs).
    0/0 ratios are 1.0 (e.g. both images empty: all scores perfect); mean_matched_iou is 0.0
    when there are objects but no match.
    """
    t = _check_threshold(threshold)
    ious = iou_matrix(pred_labels, gt_labels)
    tp, s = _match_counts(ious, t)
    return _scores(ious.shape[0], ious.shape[1], tp, s)


def average_precision(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    thresholds: tuple[float, ...] | list[float] = DEFAULT_AP_THRESHOLDS,
) -> dict[float, float]:
    """``{threshold: TP / (TP + FP + FN)}`` (the DSB 2018 / StarDist "AP"); IoUs computed once."""
    ts = [_check_threshold(t) for t in thresholds]
    ious = iou_matrix(pred_labels, gt_labels)
    out = {}
    for t in ts:
        tp, s = _match_counts(ious, t)
        out[t] = _scores(ious.shape[0], ious.shape[1], tp, s)["accuracy"]
    return out


def mean_average_precision(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    thresholds: tuple[float, ...] | list[float] = DEFAULT_AP_THRESHOLDS,
) -> float:
    """Mean of :func:`average_precision` over the thresholds (0.5:0.05:0.9 by default)."""
    ap = average_precision(pred_labels, gt_labels, thresholds)
    if not ap:
        raise ValueError("thresholds must not be empty")
    return float(np.mean(list(ap.values())))


def _pairs(n: np.ndarray) -> np.ndarray:
    n = n.astype(np.float64)
    return n * (n - 1) / 2.0


def rand_error(
    pred_labels: ArrayLike, gt_labels: ArrayLike, *, foreground_restricted: bool = False
) -> float:
    """Rand error over pixel pairs, from the contingency table.

    Default: ``1 - Rand index``, where every pixel pair is counted and background (id 0) is one
    segment like any other in both images. 0.0 for identical partitions (ids may differ).

    ``foreground_restricted=True``: the ISBI 2012 challenge's foreground-restricted Rand score
    (as ``skimage.metrics.adapted_rand_error``): only pixels with gt id > 0 are counted, pred
    background is one segment; returns ``1 - F`` with F the harmonic mean of the Rand split and
    merge scores ``sum n_ij(n_ij-1) / sum b_j(b_j-1)`` and ``sum n_ij(n_ij-1) / sum a_i(a_i-1)``
    (pairs of distinct pixels). With no gt foreground: 0.0 if pred is empty too, else 1.0.
    """
    p, g = _pair(pred_labels, gt_labels)
    p, g = _labels(p, "pred"), _labels(g, "gt")
    if foreground_restricted:
        keep = g > 0
        if not keep.any():
            return 0.0 if not (p > 0).any() else 1.0
        c = _contingency(g[keep], p[keep]).astype(np.float64)
        m = float(c.sum())
        sum_ij = float((c * c).sum()) - m
        sum_a = float((c.sum(axis=1) ** 2).sum()) - m
        sum_b = float((c.sum(axis=0) ** 2).sum()) - m
        return float(1.0 - _ratio(2.0 * sum_ij, sum_a + sum_b))
    n = p.size
    if n < 2:
        return 0.0
    c = _contingency(g, p)
    total = n * (n - 1) / 2.0
    same_both = _pairs(c).sum()
    same_g = _pairs(c.sum(axis=1)).sum()
    same_p = _pairs(c.sum(axis=0)).sum()
    agree = total + 2.0 * same_both - same_g - same_p
    return float(1.0 - agree / total)
