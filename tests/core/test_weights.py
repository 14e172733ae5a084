import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_unet.core.weights import (
    CUTOFF_EPS,
    class_balance_weights,
    default_cutoff,
    describe_weights,
    labels_weight_map,
    weight_map,
)


def border_term_reference(labels: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """Brute force: one full-image distance transform per cell, sorted; background pixels only."""
    ids = [i for i in np.unique(labels) if i > 0]
    if len(ids) < 2:
        return np.zeros(labels.shape)
    dists = np.stack([ndi.distance_transform_edt(labels != i) for i in ids])
    dists.sort(axis=0)
    term = w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
    return np.where(labels > 0, 0.0, term)


def weight_map_reference(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Straightforward U-Net weight map (no cut-off), balanced class weights over all pixels."""
    fg = labels > 0
    n, n_fg = fg.size, int(fg.sum())
    n_bg = n - n_fg
    w_bg, w_fg = (1.0, 1.0) if 0 in (n_fg, n_bg) else (n / (2 * n_bg), n / (2 * n_fg))
    return np.where(fg, w_fg, w_bg) + border_term_reference(labels, w0, sigma)


@st.composite
def cell_layouts(draw):
    h = draw(st.integers(8, 48))
    w = draw(st.integers(8, 48))
    n = draw(st.integers(0, 8))
    labels = np.zeros((h, w), dtype=np.int32)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        cy, cx = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        r = draw(st.integers(1, 7))
        cell_id = draw(st.sampled_from([i + 1, 10 * (i + 1), 1000 + i]))
        if draw(st.booleans()):
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            r2 = draw(st.integers(1, 7))
            shape = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r2)
        labels[shape] = cell_id  # later cells overwrite: touching/overlapping cells happen
    return labels


@settings(max_examples=30, deadline=None)
@given(labels=cell_layouts(), w0=st.sampled_from([1.0, 10.0]), sigma=st.sampled_from([2.0, 5.0]))
def test_fast_map_equals_reference(labels, w0, sigma):
    fast = weight_map(labels, w0=w0, sigma=sigma)
    ref = weight_map_reference(labels, w0=w0, sigma=sigma)
    assert fast.dtype == np.float32 and fast.shape == labels.shape
    # exact (float32) wherever the border term matters, never off by more than the cut-off eps
    term = border_term_reference(labels, w0, sigma)
    big = term > CUTOFF_EPS * w0
    np.testing.assert_allclose(fast[big], ref[big], atol=1e-4, rtol=1e-5)
    assert np.all(np.abs(fast - ref) <= CUTOFF_EPS * w0 + 1e-4)


def test_hand_computed_two_single_pixel_cells():
    labels = np.array([[1, 0, 0, 0, 2]])
    w = weight_map(labels, w0=10.0, sigma=5.0)
    w_bg, w_fg = 5 / 6, 5 / 4  # N = 5, N_bg = 3, N_fg = 2
    border = 10.0 * math.exp(-(4.0**2) / 50.0)  # every gap pixel has d1 + d2 = 4
    np.testing.assert_allclose(
        w[0], [w_fg, w_bg + border, w_bg + border, w_bg + border, w_fg], rtol=1e-6
    )


def test_touching_cells_border_only_on_background_and_mean_balance():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 2:10] = 1
    labels[5:15, 10:18] = 2  # touching, no gap
    w = weight_map(labels, w0=10.0, sigma=5.0)
    w_bg, w_fg = class_balance_weights(labels)
    np.testing.assert_allclose(w[labels > 0], w_fg, rtol=1e-6)
    # background right above the contact line: d1 = 1 (pixel below), d2 = sqrt(2) (diagonal)
    s = 1 + math.sqrt(2)
    np.testing.assert_allclose(w[4, 9], w_bg + 10 * math.exp(-(s**2) / 50), rtol=1e-6)
    # class weights alone average to 1
    w_c = weight_map(labels, w0=0.0)
    assert abs(float(w_c.mean()) - 1.0) < 1e-6


def test_class_balance_weights_formula_and_mask():
    labels = np.zeros((10, 10), np.int32)
    labels[:2, :5] = 3  # 10 cell pixels of 100
    assert class_balance_weights(labels) == pytest.approx((100 / 180, 100 / 20))
    mask = np.zeros((10, 10), bool)
    mask[:4, :5] = True  # 20 counted: 10 cell, 10 background
    assert class_balance_weights(labels, mask) == pytest.approx((1.0, 1.0))
    assert class_balance_weights(np.zeros((4, 4), int)) == (1.0, 1.0)


def test_labeled_mask_zeroes_unlabeled_and_counts_only_labeled():
    labels = np.zeros((10, 10), np.int32)
    labels[:2, :5] = 1
    mask = np.zeros((10, 10), bool)
    mask[:4, :5] = True
    w = weight_map(labels, labeled_mask=mask)
    assert np.all(w[~mask] == 0)
    np.testing.assert_allclose(w[mask], 1.0)  # balanced 10 vs 10, single cell: no border term


def test_fewer_than_two_cells_no_border_term_and_explicit_class_weights():
    labels = np.zeros((12, 12), np.int32)
    labels[3:6, 3:6] = 4
    w = weight_map(labels, w0=10.0, class_weights=(0.5, 2.0))
    np.testing.assert_array_equal(np.unique(w), [0.5, 2.0])
    w = weight_map(labels, class_weights=None)
    np.testing.assert_array_equal(w, np.ones((12, 12), np.float32))


def test_cutoff_sets_far_border_term_to_zero():
    labels = np.zeros((1, 41), np.int32)
    labels[0, 0], labels[0, 40] = 1, 2  # every gap pixel: d1 + d2 = 40
    w = weight_map(labels, w0=10.0, sigma=20.0, class_weights=None)
    assert default_cutoff(20.0) > 40
    np.testing.assert_allclose(w[0, 20], 1 + 10 * math.exp(-1600 / 800), rtol=1e-6)
    w = weight_map(labels, w0=10.0, sigma=20.0, class_weights=None, cutoff=39.0)
    np.testing.assert_array_equal(w, np.ones_like(w))


def test_default_cutoff_value():
    sigma = 5.0
    r = default_cutoff(sigma)
    assert math.exp(-(r**2) / (2 * sigma**2)) == pytest.approx(CUTOFF_EPS)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([[0, 1.5], [0, 1]]),
        np.array([[0, np.nan], [0, 1]]),
        np.array([[0, -1], [0, 1]]),
        np.zeros((2, 3, 3), int),
        np.zeros(5, int),
        np.array([["a", "b"]]),
    ],
)
def test_bad_labels_raise(labels):
    with pytest.raises(ValueError):
        weight_map(labels)


def test_bad_parameters_raise():
    labels = np.zeros((4, 4), int)
    with pytest.raises(ValueError):
        weight_map(labels, sigma=0)
    with pytest.raises(ValueError):
        weight_map(labels, labeled_mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError):
        weight_map(labels, class_weights="inverse")


def test_float_integer_labels_accepted():
    labels = np.array([[1.0, 0, 0, 2.0]])
    np.testing.assert_array_equal(weight_map(labels), weight_map(labels.astype(int)))


def test_huge_ids_give_the_same_map():
    labels = np.zeros((16, 16), np.int64)
    labels[2:6, 2:6] = 1
    labels[8:12, 3:7] = 2
    big = np.where(labels > 0, labels * 10**12, 0)
    np.testing.assert_array_equal(weight_map(big), weight_map(labels))


def _painted():
    """Sparse labels: two touching cells (ids 2, 3), painted background (1), unlabeled (0)."""
    labels = np.zeros((24, 32), np.int32)
    labels[4:20, 2:30] = 1
    labels[6:18, 4:15] = 2
    labels[6:18, 16:28] = 3
    return labels


def test_labels_weight_map_follows_the_convention_and_stacks_per_slice():
    sparse = _painted()
    out = labels_weight_map(sparse, 8.0, 4.0, dense=False)
    instances = np.where(sparse >= 2, sparse - 1, 0)
    np.testing.assert_allclose(out, weight_map(instances, 8.0, 4.0, labeled_mask=sparse > 0))
    stack = labels_weight_map(np.stack([sparse, np.zeros_like(sparse), sparse[::-1]]), 8.0, 4.0,
                              dense=False)
    np.testing.assert_allclose(stack[0], out)
    assert np.all(stack[1] == 0)
    np.testing.assert_allclose(stack[2], out[::-1])
    with pytest.raises(ValueError, match="at least 2D"):
        labels_weight_map(np.zeros(5, np.int32), 8.0, 4.0, dense=True)


def test_describe_weights_names_cells_background_gaps_and_unlabeled():
    sparse = _painted()
    text = describe_weights(labels_weight_map(sparse, 10.0, 5.0, False), sparse, False)
    assert "cells ×" in text and "gaps between touching cells up to" in text
    assert "unlabeled ×0" in text
    dense = np.where(sparse >= 2, sparse - 1, 0)  # the same two cells, 0 = background
    text = describe_weights(labels_weight_map(dense, 10.0, 5.0, True), dense, True)
    assert "gaps between touching cells up to" in text and "unlabeled" not in text
    alone = np.where(sparse == 3, 1, sparse)  # sparse: one cell in painted background
    text = describe_weights(labels_weight_map(alone, 10.0, 5.0, False), alone, False)
    assert "no two labeled cells close enough" in text
    empty = np.zeros((8, 8), np.int32)
    assert "Nothing painted" in describe_weights(np.zeros((8, 8)), empty, False)
