"""Segmentation metrics: pixel overlap (IoU, Dice, pixel error), instance matching (AP), Rand error.

All overlaps come from one sparse contingency table of (gt id, pred id) pixel counts (only the
pairs that overlap, from ``np.unique``), never from per-object loops over the image nor from a
dense ``n_gt x n_pred`` matrix: memory grows with the pixels and the overlapping pairs, so tens
of thousands of objects are fine. Matching is a sparse minimum-cost assignment. Degenerate cases
never give NaN: a ratio 0/0 (nothing to find and nothing found) counts as perfect (1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

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


@dataclass(frozen=True)
class _Overlaps:
    """The non-zero cells of the (gt id, pred id) pixel-count table, as a sparse table.

    ``rows``/``cols`` index the sorted ids (0 = id 0, always present even with no pixel),
    ``counts`` the pixels of each pair; memory grows with the overlapping pairs, not with
    ``n_gt x n_pred``.
    """

    rows: np.ndarray
    cols: np.ndarray
    counts: np.ndarray
    n_rows: int
    n_cols: int

    def row_sums(self) -> np.ndarray:
        return np.bincount(self.rows, weights=self.counts, minlength=self.n_rows)

    def col_sums(self) -> np.ndarray:
        return np.bincount(self.cols, weights=self.counts, minlength=self.n_cols)


def _overlaps(gt: np.ndarray, pred: np.ndarray) -> _Overlaps:
    """Count the pixels of every (gt id, pred id) pair that occurs (ids compacted, 0 first)."""
    g_ids, g_inv = np.unique(np.concatenate([[0], gt.ravel()]), return_inverse=True)
    p_ids, p_inv = np.unique(np.concatenate([[0], pred.ravel()]), return_inverse=True)
    ng, npd = len(g_ids), len(p_ids)
    codes, counts = np.unique(g_inv[1:].astype(np.int64) * npd + p_inv[1:], return_counts=True)
    return _Overlaps(codes // npd, codes % npd, counts.astype(np.float64), ng, npd)


@dataclass(frozen=True)
class _IouPairs:
    """IoU of every overlapping (gt object, pred object) pair; objects numbered from 0."""

    gt: np.ndarray
    pred: np.ndarray
    iou: np.ndarray
    n_gt: int
    n_pred: int


def _iou_pairs(pred_labels: ArrayLike, gt_labels: ArrayLike) -> _IouPairs:
    p, g = _pair(pred_labels, gt_labels)
    table = _overlaps(_labels(g, "gt"), _labels(p, "pred"))
    area_g, area_p = table.row_sums(), table.col_sums()
    both = (table.rows > 0) & (table.cols > 0)
    r, c, inter = table.rows[both], table.cols[both], table.counts[both]
    iou = inter / np.maximum(area_g[r] + area_p[c] - inter, 1.0)
    return _IouPairs(r - 1, c - 1, iou, table.n_rows - 1, table.n_cols - 1)


def iou_matrix(pred_labels: ArrayLike, gt_labels: ArrayLike) -> np.ndarray:
    """IoU of every (gt object, pred object) pair, shape ``(n_gt, n_pred)`` (ids > 0, sorted).

    Dense, so only for a few thousand objects; the scores below never build it.
    """
    pairs = _iou_pairs(pred_labels, gt_labels)
    out = np.zeros((pairs.n_gt, pairs.n_pred))
    out[pairs.gt, pairs.pred] = pairs.iou
    return out


def _min_cost_matching(gt: np.ndarray, pred: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the pairs ``(gt[k], pred[k])`` in a one-to-one matching of least total cost.

    All costs are < 0 and every object may stay unmatched (a dummy partner of cost 0), which
    equals the dense rectangular assignment where the pairs not listed cost 0.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    if gt.size == 0:
        return np.zeros(0, dtype=np.int64)
    g_ids, g = np.unique(gt, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    n, m = len(g_ids), len(p_ids)
    shift = 1.0 - float(cost.min())  # all weights > 0: explicit zeros would vanish
    rows = np.concatenate([g, np.arange(n)])
    cols = np.concatenate([p, m + np.arange(n)])
    weights = np.concatenate([cost + shift, np.full(n, shift)])
    graph = csr_matrix((weights, (rows, cols)), shape=(n, m + n))
    row_of, col_of = min_weight_full_bipartite_matching(graph)
    real = col_of < m
    code = g.astype(np.int64) * m + p
    wanted = row_of[real].astype(np.int64) * m + col_of[real]
    order = np.argsort(code)
    return order[np.searchsorted(code, wanted, sorter=order)]


def _contested(pairs: _IouPairs, ok: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Indices of the free pairs in connected groups of objects that hold a hit (``ok``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    idx = np.flatnonzero(free)
    if not ok[idx].any():
        return np.zeros(0, dtype=np.int64)
    n = pairs.n_gt + pairs.n_pred
    a, b = pairs.gt[idx], pairs.n_gt + pairs.pred[idx]
    graph = coo_matrix((np.ones(idx.size, np.int8), (a, b)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    has_hit = np.zeros(n, dtype=bool)
    has_hit[group[a[ok[idx]]]] = True
    return idx[has_hit[group[a]]]


def _match_counts(pairs: _IouPairs, threshold: float) -> tuple[int, float]:
    """Optimal one-to-one matching: (number of pairs with IoU >= threshold, sum of their IoU).

    Maximises first the number of matches, then the total IoU of all matched pairs (StarDist's
    cost function on the dense IoU matrix), solved sparsely: a hit (IoU >= threshold) that
    competes with no other hit is in every optimal matching; the rest is an assignment over
    the groups of overlapping objects that still hold a hit. With threshold 0 every pair
    matches, overlapping or not.
    """
    n_gt, n_pred = pairs.n_gt, pairs.n_pred
    if n_gt == 0 or n_pred == 0:
        return 0, 0.0
    m = min(n_gt, n_pred)
    if threshold <= 0:
        chosen = _min_cost_matching(pairs.gt, pairs.pred, -pairs.iou)
        return m, float(pairs.iou[chosen].sum())
    ok = pairs.iou >= threshold
    if not ok.any():
        return 0, 0.0
    hits_g = np.bincount(pairs.gt[ok], minlength=n_gt)
    hits_p = np.bincount(pairs.pred[ok], minlength=n_pred)
    forced = ok & (hits_g[pairs.gt] == 1) & (hits_p[pairs.pred] == 1)
    used_g = np.zeros(n_gt, dtype=bool)
    used_p = np.zeros(n_pred, dtype=bool)
    used_g[pairs.gt[forced]] = True
    used_p[pairs.pred[forced]] = True
    rest = _contested(pairs, ok, ~used_g[pairs.gt] & ~used_p[pairs.pred])
    cost = -ok[rest].astype(np.float64) - pairs.iou[rest] / (2.0 * m)
    chosen = rest[_min_cost_matching(pairs.gt[rest], pairs.pred[rest], cost)]
    hit = np.concatenate([np.flatnonzero(forced), chosen[ok[chosen]]])
    return int(hit.size), float(pairs.iou[hit].sum())


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
    pairs = _iou_pairs(pred_labels, gt_labels)
    tp, s = _match_counts(pairs, t)
    return _scores(pairs.n_gt, pairs.n_pred, tp, s)


def average_precision(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    thresholds: tuple[float, ...] | list[float] = DEFAULT_AP_THRESHOLDS,
) -> dict[float, float]:
    """``{threshold: TP / (TP + FP + FN)}`` (the DSB 2018 / StarDist "AP"); IoUs computed once."""
    ts = [_check_threshold(t) for t in thresholds]
    pairs = _iou_pairs(pred_labels, gt_labels)
    out = {}
    for t in ts:
        tp, s = _match_counts(pairs, t)
        out[t] = _scores(pairs.n_gt, pairs.n_pred, tp, s)["accuracy"]
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
        c = _overlaps(g[keep], p[keep])
        m = float(c.counts.sum())
        sum_ij = float((c.counts * c.counts).sum()) - m
        sum_a = float((c.row_sums() ** 2).sum()) - m
        sum_b = float((c.col_sums() ** 2).sum()) - m
        return float(1.0 - _ratio(2.0 * sum_ij, sum_a + sum_b))
    n = p.size
    if n < 2:
        return 0.0
    c = _overlaps(g, p)
    total = n * (n - 1) / 2.0
    same_both = _pairs(c.counts).sum()
    same_g = _pairs(c.row_sums()).sum()
    same_p = _pairs(c.col_sums()).sum()
    agree = total + 2.0 * same_both - same_g - same_p
    return float(1.0 - agree / total)
