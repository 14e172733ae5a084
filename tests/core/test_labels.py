"""Tests for the sparse/dense label conventions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_unet.core.labels import (
    BACKGROUND_LABEL,
    UNLABELED,
    has_labels,
    next_cell_id,
    split_labels,
    summarize,
    validate_pair,
)


def test_constants():
    assert UNLABELED == 0
    assert BACKGROUND_LABEL == 1


def test_split_sparse_relabels_cells_and_masks_unlabeled():
    labels = np.array(
        [
            [0, 0, 1, 1],
            [0, 7, 7, 1],
            [3, 3, 0, 1],
            [3, 0, 0, 9],
        ]
    )
    inst, mask = split_labels(labels)
    assert inst.dtype == np.int32 and mask.dtype == bool
    expected = np.array(
        [
            [0, 0, 0, 0],
            [0, 2, 2, 0],
            [1, 1, 0, 0],
            [1, 0, 0, 3],
        ]
    )
    np.testing.assert_array_equal(inst, expected)
    np.testing.assert_array_equal(mask, labels != 0)
    assert mask.sum() == 10


def test_split_dense():
    labels = np.array([[0, 0, 5], [1, 1, 5], [0, 0, 0]], dtype=np.uint16)
    inst, mask = split_labels(labels, dense=True)
    np.testing.assert_array_equal(inst, [[0, 0, 2], [1, 1, 2], [0, 0, 0]])
    assert mask.all()


def test_split_accepts_integral_floats_and_bool():
    inst, mask = split_labels(np.array([[0.0, 1.0], [2.0, 2.0]]))
    np.testing.assert_array_equal(inst, [[0, 0], [1, 1]])
    np.testing.assert_array_equal(mask, [[False, True], [True, True]])
    inst, mask = split_labels(np.array([[True, False]]), dense=True)
    np.testing.assert_array_equal(inst, [[1, 0]])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[0, -1], [2, 1]]), "negative"),
        (np.array([[0.5, 1.0], [2.0, 1.0]]), "fractional"),
        (np.array([[np.nan, 1.0], [2.0, 1.0]]), "NaN"),
        (np.array([["a", "b"]]), "integer"),
    ],
)
def test_split_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        split_labels(labels)


def test_split_shape_check_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        split_labels(np.zeros((4, 5), int), image_shape=(4, 6))


def test_summarize():
    labels = np.array([[0, 1, 1], [2, 2, 0], [4, 1, 0]])
    assert summarize(labels) == {"n_cells": 2, "n_background_px": 3, "n_labeled_px": 6}
    assert summarize(labels, dense=True) == {
        "n_cells": 3,
        "n_background_px": 3,
        "n_labeled_px": 9,
    }


def _pair():
    image = np.random.default_rng(0).random((8, 9)).astype(np.float32)
    labels = np.zeros((8, 9), np.int32)
    labels[:2] = 1
    labels[4:6, 4:6] = 2
    return image, labels


def test_validate_pair_ok_returns_no_warnings():
    image, labels = _pair()
    assert validate_pair(image, labels, dense=False) == []


def test_validate_pair_shape_mismatch_message():
    image, labels = _pair()
    with pytest.raises(ValueError, match=r"image shape \(8, 10\).*labels shape \(8, 9\)"):
        validate_pair(np.zeros((8, 10)), labels, dense=False)


def test_validate_pair_channels():
    image, labels = _pair()
    multi = np.stack([image, image])
    assert validate_pair(multi, labels, dense=False, in_channels=2) == []
    assert validate_pair(np.moveaxis(multi, 0, -1), labels, dense=False, channel_axis=-1) == []
    with pytest.raises(ValueError, match="does not match"):
        validate_pair(np.moveaxis(multi, 0, -1), labels, dense=False, in_channels=2)


def test_validate_pair_stack():
    image, labels = _pair()
    assert validate_pair(np.stack([image] * 3), np.stack([labels] * 3), dense=False) == []


def test_validate_pair_nan_image():
    image, labels = _pair()
    image[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        validate_pair(image, labels, dense=False)


def test_validate_pair_no_labels():
    image, _ = _pair()
    empty = np.zeros(image.shape, np.int32)
    with pytest.raises(ValueError, match="no labels painted: paint at least one cell"):
        validate_pair(image, empty, dense=False)
    assert validate_pair(image, empty, dense=False, require_labels=False)


def test_validate_pair_all_cells_is_error_missing_background_is_warning():
    image, _ = _pair()
    with pytest.raises(ValueError, match="no background"):
        validate_pair(image, np.full(image.shape, 2), dense=False)
    labels = np.zeros(image.shape, int)
    labels[2:4, 2:4] = 3
    warnings = validate_pair(image, labels, dense=False)
    assert any("no background" in w for w in warnings)


def test_validate_pair_warnings_for_no_cells_and_constant_image():
    labels = np.ones((8, 9), int)
    warnings = validate_pair(np.ones((8, 9)), labels, dense=False)
    assert any("no cells" in w for w in warnings)
    assert any("constant" in w for w in warnings)
    assert any("no cells" in w for w in validate_pair(np.eye(9)[:8], np.zeros((8, 9)), dense=True))


@settings(max_examples=25, deadline=None)
@given(arrays(np.int32, (6, 7), elements=st.integers(0, 6)), st.booleans())
def test_split_properties(labels, dense):
    inst, mask = split_labels(labels, dense=dense)
    first = 1 if dense else 2
    # Cells keep their pixels, become consecutive ids 1..n, and keep the same partition.
    np.testing.assert_array_equal(inst > 0, labels >= first)
    n = len(np.unique(labels[labels >= first]))
    assert set(np.unique(inst[inst > 0])) == set(range(1, n + 1))
    for old in np.unique(labels[labels >= first]):
        assert len(np.unique(inst[labels == old])) == 1
    assert mask.all() if dense else np.array_equal(mask, labels != 0)
    info = summarize(labels, dense)
    assert info["n_cells"] == n
    assert info["n_labeled_px"] == mask.sum()


def test_only_default_label_is_0_and_1_both_present():
    from napari_unet.core.labels import only_default_label

    painted = np.zeros((8, 8), np.uint8)
    assert not only_default_label(painted)  # nothing painted
    painted[2:4, 2:4] = 1
    assert only_default_label(painted)
    assert not only_default_label(np.ones((8, 8), int))  # no unlabeled pixel
    painted[6, 6] = 2
    assert not only_default_label(painted)  # a cell id: the sparse convention is in use
    assert not only_default_label(np.zeros((0, 0), int))


def test_read_default_label_makes_one_cell_per_blob_with_a_background_ring():
    from napari_unet.core.labels import read_default_label, split_labels

    painted = np.zeros((30, 30), np.uint16)
    painted[5:9, 5:9] = 1
    painted[20:24, 18:22] = 1
    out, note = read_default_label(painted, ring=2)
    assert sorted(np.unique(out)) == [0, 1, 2, 3]
    assert np.array_equal(out >= 2, painted == 1)  # the strokes are the cells
    assert len(np.unique(out[5:9, 5:9])) == 1 and len(np.unique(out[20:24, 18:22])) == 1
    ring = out == 1
    assert ring[3, 5] and ring[4, 4] and not ring[2, 5]  # 2 px wide
    assert not ring[15, 15]  # far from the strokes stays unlabeled
    assert "2 cell(s)" in note and "napari" in note
    instances, mask = split_labels(out)
    assert instances.max() == 2 and mask.sum() == np.count_nonzero(out)
    # a stack: blobs are found per plane, not joined across planes
    stack = np.stack([painted, painted])
    out3, _ = read_default_label(stack)
    assert len(np.unique(out3[out3 >= 2])) == 4


def test_next_cell_id_is_the_first_unused_id_from_2():
    assert next_cell_id(np.zeros((3, 3), int)) == 2
    assert next_cell_id(np.ones((3, 3), int)) == 2
    assert next_cell_id(np.array([[0, 1, 7]])) == 8
    assert next_cell_id(np.zeros((0, 3), int)) == 2


def test_has_labels_is_true_for_any_id_above_0():
    assert not has_labels(np.zeros((4, 4), np.uint16))
    assert not has_labels(np.zeros((0, 4), np.uint16))
    assert has_labels(np.eye(3, dtype=np.int32))


def test_ids_above_moves_new_objects_past_the_existing_ones():
    from napari_unet.core.labels import ids_above

    existing = np.array([[0, 3], [5, 0]], np.uint16)
    new = np.array([[1, 0], [2, 2]], np.int64)
    out = ids_above(new, existing)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[7, 0], [8, 8]])
    np.testing.assert_array_equal(ids_above(np.zeros((2, 2), int), existing), 0)
