import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_unet.core.metrics import (
    DEFAULT_AP_THRESHOLDS,
    average_precision,
    dice,
    iou,
    iou_matrix,
    matching,
    mean_average_precision,
    pixel_error,
    rand_error,
)


def test_binary_scores_hand_computed():
    pred = np.array([[1, 1, 0, 0]])
    gt = np.array([[0, 2, 2, 0]])  # any id > 0 is foreground
    assert iou(pred, gt) == pytest.approx(1 / 3)
    assert dice(pred, gt) == pytest.approx(2 * 1 / 4)
    assert pixel_error(pred, gt) == pytest.approx(2 / 4)


def test_empty_images_are_perfect_without_nan():
    z = np.zeros((5, 5), int)
    assert iou(z, z) == 1.0 and dice(z, z) == 1.0 and pixel_error(z, z) == 0.0
    m = matching(z, z)
    assert m == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "accuracy": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "mean_matched_iou": 1.0,
    }
    assert mean_average_precision(z, z) == 1.0
    assert rand_error(z, z) == 0.0 and rand_error(z, z, foreground_restricted=True) == 0.0


def test_one_side_empty():
    z = np.zeros((4, 4), int)
    obj = z.copy()
    obj[:2, :2] = 1
    m = matching(obj, z)  # one false positive
    assert (m["tp"], m["fp"], m["fn"]) == (0, 1, 0)
    assert m["accuracy"] == 0.0 and m["precision"] == 0.0 and m["recall"] == 1.0
    assert m["f1"] == 0.0 and m["mean_matched_iou"] == 0.0
    m = matching(z, obj)  # one false negative
    assert (m["tp"], m["fp"], m["fn"]) == (0, 0, 1) and m["recall"] == 0.0
    assert iou(obj, z) == 0.0 and dice(obj, z) == 0.0


def _two_object_case():
    gt = np.zeros((10, 10), int)
    gt[0:4, 0:4] = 1  # 16 px
    gt[6:10, 6:10] = 2  # 16 px
    pred = np.zeros((10, 10), int)
    pred[0:4, 0:3] = 7  # 12 px inside gt 1: IoU 12/16 = 0.75
    pred[6:10, 8:10] = 3  # 8 px inside gt 2: IoU 8/16 = 0.5
    pred[0:2, 8:10] = 9  # 4 px false positive
    return pred, gt


def test_iou_matrix_and_matching_hand_computed():
    pred, gt = _two_object_case()
    np.testing.assert_allclose(iou_matrix(pred, gt), [[0, 0.75, 0], [0.5, 0, 0]])
    m = matching(pred, gt, threshold=0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 0)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(4 / 5)
    assert m["mean_matched_iou"] == pytest.approx(0.625)
    m = matching(pred, gt, threshold=0.6)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)
    assert m["accuracy"] == pytest.approx(1 / 4)


def test_average_precision_thresholds():
    pred, gt = _two_object_case()
    assert DEFAULT_AP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
    ap = average_precision(pred, gt)
    assert list(ap) == list(DEFAULT_AP_THRESHOLDS)
    expected = {
        0.5: 2 / 3,
        0.55: 1 / 4,
        0.6: 1 / 4,
        0.65: 1 / 4,
        0.7: 1 / 4,
        0.75: 1 / 4,
        0.8: 0.0,
        0.85: 0.0,
        0.9: 0.0,
    }
    for t, v in expected.items():
        assert ap[t] == pytest.approx(v), t
    assert mean_average_precision(pred, gt) == pytest.approx((2 / 3 + 5 / 4) / 9)


def test_matching_is_optimal_not_greedy():
    # gt A overlaps pred X strongly and pred Y weakly; gt B overlaps only pred X.
    # At threshold 0.1 greedy (A-X) gives 1 match; the optimal assignment gives 2 (A-Y, B-X).
    gt = np.zeros((1, 20), int)
    gt[0, 0:10] = 1
    gt[0, 10:14] = 2
    pred = np.zeros((1, 20), int)
    pred[0, 2:14] = 5  # IoU with A: 8/14, with B: 4/12
    pred[0, 0:2] = 6  # IoU with A: 2/10
    m = matching(pred, gt, threshold=0.1)
    assert m["tp"] == 2
    assert m["mean_matched_iou"] == pytest.approx((2 / 10 + 4 / 12) / 2)


def test_rand_error_hand_computed():
    gt = np.array([[1, 1, 2, 2]])
    pred = np.array([[5, 5, 5, 5]])  # merge: 6 pairs, agree on the 2 same-same pairs
    assert rand_error(pred, gt) == pytest.approx(1 - 2 / 6)
    assert rand_error(np.array([[3, 3, 0, 0]]), gt) == 0.0  # same partition, other ids
    # foreground restricted (ISBI / skimage adapted Rand): counts ordered pairs of distinct pixels
    # n_ij = [[2], [2]] -> sum n(n-1) = 4; gt sizes 2, 2 -> 4; pred size 4 -> 12
    assert rand_error(pred, gt, foreground_restricted=True) == pytest.approx(1 - 2 * 4 / (4 + 12))


def test_rand_error_matches_skimage_adapted_rand():
    from skimage.metrics import adapted_rand_error

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (20, 20))
    pred = rng.integers(0, 5, (20, 20))
    ours = rand_error(pred, gt, foreground_restricted=True)
    assert ours == pytest.approx(adapted_rand_error(gt, pred)[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6))
def test_properties_random_labels(seed, n):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, n + 1, (12, 12))
    perm = np.concatenate([[0], rng.permutation(np.arange(1, n + 1)) + 10])
    relabeled = perm[gt]
    m = matching(relabeled, gt)
    assert m["accuracy"] == 1.0 and m["mean_matched_iou"] == pytest.approx(1.0)
    assert rand_error(relabeled, gt) == pytest.approx(0.0, abs=1e-12)
    pred = rng.integers(0, n + 1, (12, 12))
    m = matching(pred, gt)
    assert m["tp"] + m["fn"] == len(np.unique(gt[gt > 0]))
    assert m["tp"] + m["fp"] == len(np.unique(pred[pred > 0]))
    for k in ("accuracy", "precision", "recall", "f1"):
        assert 0.0 <= m[k] <= 1.0 and not math.isnan(m[k])
    assert 0.0 <= rand_error(pred, gt) <= 1.0
    assert m["accuracy"] <= m["f1"] + 1e-12


@pytest.mark.parametrize(
    "pred,gt",
    [
        (np.zeros((3, 3)), np.zeros((3, 4))),
        (np.full((2, 2), np.nan), np.zeros((2, 2))),
    ],
)
def test_bad_input_raises(pred, gt):
    with pytest.raises(ValueError):
        iou(pred, gt)
    with pytest.raises(ValueError):
        matching(pred, gt)


def test_bad_labels_and_thresholds_raise():
    z = np.zeros((3, 3), int)
    with pytest.raises(ValueError):
        matching(z - 1, z)
    with pytest.raises(ValueError):
        matching(z + 0.5, z)
    with pytest.raises(ValueError):
        matching(z, z, threshold=1.5)
    with pytest.raises(ValueError):
        mean_average_precision(z, z, thresholds=())
