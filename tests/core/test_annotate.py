"""Tests for the click-to-annotate helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from napari_unet.core.annotate import (
    accept_object,
    add_cell,
    background_ring,
    labels_from_prediction,
    remove_object,
    stack_indices,
)
from napari_unet.core.labels import BACKGROUND_LABEL


def test_add_cell_ids_and_no_overwrite():
    labels = np.zeros((6, 6), np.int32)
    labels[0, :] = BACKGROUND_LABEL
    labels[5, 5] = 4
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:3] = True
    mask[5, 5] = True
    new, new_id, indices = add_cell(labels, mask, return_indices=True)
    assert new_id == 5
    assert new[5, 5] == 4  # the existing cell is untouched
    assert (new[0:2, 0:3] == 5).all()  # unlabeled and background pixels are written
    changed = np.zeros((6, 6), bool)
    changed[indices] = True
    np.testing.assert_array_equal(changed, new != labels)
    assert labels.max() == 4 and (labels[0:2, 0:3] != 5).all()  # input not modified
    # first id is 2 in the sparse convention, 1 in dense
    assert add_cell(np.zeros((3, 3), int), np.eye(3, dtype=bool))[1] == 2
    assert add_cell(np.zeros((3, 3), int), np.eye(3, dtype=bool), dense=True)[1] == 1
    # nothing writable -> id 0, unchanged
    new, new_id = add_cell(labels, labels == 4)
    assert new_id == 0 and np.array_equal(new, labels)


def test_add_cell_upcasts_full_dtype():
    labels = np.array([[255, 0]], dtype=np.uint8)
    new, new_id = add_cell(labels, np.array([[False, True]]))
    assert new_id == 256 and new[0, 1] == 256 and new[0, 0] == 255


def test_remove_object_from_labels_and_predictions():
    labels = np.zeros((5, 6), np.int32)
    labels[1:3, 1:3] = 3
    labels[4, :] = BACKGROUND_LABEL
    new, indices = remove_object(labels, (1, 2), return_indices=True)
    assert (new[1:3, 1:3] == BACKGROUND_LABEL).all()
    assert len(indices[0]) == 4
    dense_new = remove_object(labels, (1, 1), dense=True)
    assert (dense_new[1:3, 1:3] == 0).all()
    # Empty there: the predicted object becomes background, except labeled cells.
    predicted = np.zeros((5, 6), np.int32)
    predicted[0:4, 2:5] = 7
    new = remove_object(labels, (0, 4), predicted)
    assert (new[0:4, 3:5] == BACKGROUND_LABEL).all()
    assert (new[0, 2] == BACKGROUND_LABEL) and (new[1:3, 2] == 3).all()
    assert new[3, 2] == BACKGROUND_LABEL and new[3, 1] == 0
    # Nothing under the point: unchanged, no indices.
    new, indices = remove_object(labels, (0, 0), predicted, return_indices=True)
    assert np.array_equal(new, labels) and indices[0].size == 0


def test_accept_object():
    labels = np.zeros((5, 6), np.int32)
    labels[0, 0] = 2
    labels[4, 4] = BACKGROUND_LABEL
    predicted = np.zeros((5, 6), np.int32)
    predicted[0:2, 0:2] = 1
    predicted[3:5, 3:6] = 2
    new, new_id, indices = accept_object(labels, predicted, (4, 5), return_indices=True)
    assert new_id == 3
    assert (new[3:5, 3:6] == 3).all()  # background pixel (4, 4) included
    assert len(indices[0]) == 6
    # Over predicted object 1 the existing cell pixel (0, 0) is kept.
    new, new_id = accept_object(labels, predicted, (1, 1))
    assert new_id == 3 and new[0, 0] == 2 and (new[1, :2] == 3).all()
    # No prediction there, or already a cell: nothing happens.
    assert accept_object(labels, predicted, (2, 2))[1] == 0
    assert accept_object(labels, predicted, (0, 0))[1] == 0
    with pytest.raises(ValueError, match="does not match"):
        accept_object(labels, predicted[:4], (0, 0))


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.int32, (5, 7), elements=st.integers(0, 5)),
    arrays(bool, (5, 7)),
    st.booleans(),
)
def test_add_cell_only_writes_free_pixels(labels, mask, dense):
    new, new_id, indices = add_cell(labels, mask, dense=dense, return_indices=True)
    first = 1 if dense else 2
    free = labels < first
    changed = new != labels
    np.testing.assert_array_equal(changed, mask & free)
    if changed.any():
        assert new_id > labels.max() and new_id >= first
        assert (new[changed] == new_id).all()
        assert np.array_equal(new[indices], np.full(len(indices[0]), new_id))
    else:
        assert new_id == 0


def test_background_ring_surrounds_the_cell_on_unlabeled_pixels_only():
    labels = np.zeros((20, 20), np.int32)
    labels[2:5, 2:5] = 7  # a painted cell nearby
    cell = np.zeros_like(labels, dtype=bool)
    cell[8:12, 8:12] = True
    labels[cell] = 3
    avoid = np.zeros_like(cell)
    avoid[8:12, 13:15] = True  # a predicted object touching the cell
    ring = np.zeros_like(cell)
    ring[background_ring(labels, cell, width=2, avoid=avoid)] = True
    expected = ndi.binary_dilation(cell, iterations=2) & ~cell & ~avoid
    assert np.array_equal(ring, expected)
    wide = np.zeros_like(cell)
    wide[background_ring(labels, cell, width=6)] = True
    assert not np.any(wide & (labels != 0))  # painted labels are never overwritten
    assert all(a.size == 0 for a in background_ring(labels, cell, width=0))
    with pytest.raises(ValueError, match="shape"):
        background_ring(labels, cell[:5])


def test_remove_takes_the_whole_object_under_the_click():
    """Alt-click on a labeled cell inside a larger predicted object: both become background."""
    labels = np.zeros((10, 10), np.int32)
    labels[3:6, 3:6] = 4
    labels[0, 0] = 2  # another cell, inside the predicted object too: kept
    predicted = np.zeros_like(labels)
    predicted[:8, :8] = 3
    new = remove_object(labels, (4, 4), predicted)
    assert np.all(new[:8, :8][1:, :] == BACKGROUND_LABEL)
    assert new[0, 0] == 2 and np.all(new[8:, :] == 0)


def test_labels_from_prediction_keeps_cells_and_fills_background():
    predicted = np.array([[0, 1, 1], [0, 0, 2]], dtype=np.uint8)
    sparse = labels_from_prediction(predicted)
    assert sparse.dtype == np.int32
    np.testing.assert_array_equal(sparse, [[1, 2, 2], [1, 1, 3]])
    dense = labels_from_prediction(predicted, dense=True)
    assert dense.dtype == np.int32
    np.testing.assert_array_equal(dense, predicted)


def test_stack_indices_address_the_plane_of_a_stack():
    stack = np.zeros((2, 3, 4, 5), np.int32)
    plane = (np.array([0, 2]), np.array([1, 4]))
    full = stack_indices(plane, (1, 2))
    assert len(full) == 4 and all(i.dtype == np.intp for i in full[:2])
    stack[full] = 7
    assert stack[1, 2, 0, 1] == 7 and stack[1, 2, 2, 4] == 7 and stack.sum() == 14
    assert stack_indices(plane, ()) == plane
