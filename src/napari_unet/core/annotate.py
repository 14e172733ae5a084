"""Click-to-annotate edits: add, remove and accept cells in a label image.

Pure numpy/scipy so that the napari widget stays thin and the logic is testable; the mask an
add-click grows comes from :mod:`.grow`.  The label
image follows the training convention of :mod:`.labels` (sparse by default: 0 = unlabeled,
1 = background, >= 2 = cells; ``dense=True``: 0 = background, >= 1 = cells).  No function
modifies its input: each returns a new label image, and with ``return_indices=True`` also the
``indices`` tuple of changed pixels (as from ``np.nonzero``), so that the widget can replay the
edit as ``layer.data_setitem(indices, value)`` and get napari's undo history for free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .grow import (
    DEFAULT_DIAMETER,
    click_pixel,
    expected_diameter,
    first_cell_id,
    grow_cell,
    grow_click,
    writable,
)
from .labels import BACKGROUND_LABEL, UNLABELED

__all__ = ["BACKGROUND_RING_PX", "DEFAULT_DIAMETER", "ClickEdit", "accept_object", "add_cell",
           "apply_edit", "background_ring", "click_edit", "expected_diameter", "grow_cell",
           "grow_click", "labels_from_prediction", "remove_object", "stack_indices"]

Indices = tuple[np.ndarray, ...]

#: width of the background painted around a cell added in the sparse convention
BACKGROUND_RING_PX = 3


def _background(dense: bool) -> int:
    return UNLABELED if dense else BACKGROUND_LABEL


def add_cell(
    labels: np.ndarray,
    mask: np.ndarray,
    *,
    dense: bool = False,
    return_indices: bool = False,
) -> tuple[np.ndarray, int] | tuple[np.ndarray, int, Indices]:
    """Paint ``mask`` as a new cell; returns ``(new_labels, new_id[, indices])``.

    The id is ``max + 1`` (at least 2 in the sparse convention, 1 in dense).  Only unlabeled or
    background pixels are written, so existing cells are never overwritten.  ``new_id`` is 0
    and nothing changes when no pixel can be written.
    """
    lab = np.asarray(labels)
    m = np.asarray(mask, dtype=bool)
    if m.shape != lab.shape:
        raise ValueError(f"mask shape {m.shape} does not match labels shape {lab.shape}")
    write = m & writable(lab, dense)
    indices = np.nonzero(write)
    if not write.any():
        result: tuple = (lab.copy(), 0)
        return (*result, indices) if return_indices else result
    new_id = max(int(lab.max()) + 1 if lab.size else 0, first_cell_id(dense))
    dtype = np.result_type(lab.dtype, np.min_scalar_type(new_id))
    new = lab.astype(dtype, copy=True)
    new[indices] = new_id
    return (new, new_id, indices) if return_indices else (new, new_id)


def background_ring(
    labels: np.ndarray,
    cell: np.ndarray,
    width: int = BACKGROUND_RING_PX,
    avoid: np.ndarray | None = None,
) -> Indices:
    """Unlabeled pixels within ``width`` px around ``cell``: where to paint background (sparse).

    A cell added alone teaches the network only "cell here"; with no background next to it,
    neither its border nor what is not a cell (benchmarks/README.md, "Click-to-correct",
    finding 2).  Only unlabeled pixels outside ``avoid`` (e.g. predicted objects, which may be
    touching cells) are returned, so nothing painted is overwritten.
    """
    lab = np.asarray(labels)
    m = np.asarray(cell, dtype=bool)
    if m.shape != lab.shape:
        raise ValueError(f"cell mask shape {m.shape} does not match labels shape {lab.shape}")
    if width <= 0 or not m.any():
        return tuple(np.zeros(0, dtype=np.intp) for _ in lab.shape)
    ring = ndi.binary_dilation(m, iterations=int(width)) & ~m & (lab == UNLABELED)
    if avoid is not None:
        ring &= ~np.asarray(avoid, dtype=bool)
    return np.nonzero(ring)


def remove_object(
    labels: np.ndarray,
    point: Sequence[float],
    predicted: np.ndarray | None = None,
    *,
    dense: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, Indices]:
    """Turn the object under ``point`` into background; returns ``new_labels[, indices]``.

    The object is the whole of what is under the point: the cell of ``labels`` there, and
    the predicted instance there (``predicted``, an instance image), so that "this is not a
    cell" also covers the predicted rim a labeled cell may leave out.  Its pixels become
    background (``BACKGROUND_LABEL``, or 0 in dense mode), except other labeled cells.
    Nothing changes when neither has an object there.
    """
    lab = np.asarray(labels)
    pt = click_pixel(point, lab.shape)
    background = _background(dense)
    target = np.zeros(lab.shape, dtype=bool)
    if lab[pt] >= first_cell_id(dense):
        target |= lab == lab[pt]
    if predicted is not None:
        pred = np.asarray(predicted)
        if pred.shape != lab.shape:
            raise ValueError(
                f"predicted shape {pred.shape} does not match labels shape {lab.shape}"
            )
        if pred[pt] > 0:
            target |= (pred == pred[pt]) & (writable(lab, dense) | target)
    target &= lab != background
    indices = np.nonzero(target)
    new = lab.copy()
    new[indices] = background
    return (new, indices) if return_indices else new


def accept_object(
    labels: np.ndarray,
    predicted: np.ndarray,
    point: Sequence[float],
    *,
    dense: bool = False,
    return_indices: bool = False,
) -> tuple[np.ndarray, int] | tuple[np.ndarray, int, Indices]:
    """Copy the predicted instance under ``point`` into ``labels`` as a new cell.

    Returns ``(new_labels, new_id[, indices])``; only unlabeled/background pixels are written
    (as in :func:`add_cell`).  ``new_id`` is 0 and nothing changes when there is no predicted
    object under the point or the point is already on a labeled cell.
    """
    lab = np.asarray(labels)
    pred = np.asarray(predicted)
    if pred.shape != lab.shape:
        raise ValueError(f"predicted shape {pred.shape} does not match labels shape {lab.shape}")
    pt = click_pixel(point, lab.shape)
    if pred[pt] <= 0 or lab[pt] >= first_cell_id(dense):
        mask = np.zeros(lab.shape, dtype=bool)
    else:
        mask = pred == pred[pt]
    return add_cell(lab, mask, dense=dense, return_indices=return_indices)


@dataclass
class ClickEdit:
    """What one click changes: ``labels[indices] = values``; ``new_id`` of an added cell."""

    indices: Indices
    values: np.ndarray
    new_id: int = 0


def click_edit(
    labels: np.ndarray, point: Sequence[int], action: str, *,
    predicted: np.ndarray | None = None, probability: np.ndarray | None = None,
    image: np.ndarray | None = None, diameter: float | None = None, dense: bool = False,
    model_diameter: float | None = None, cell_threshold: float | None = None,
) -> ClickEdit | None:
    """The edit of one click (``"add"``, ``"remove"`` or ``"accept"``) on a 2D label image.

    None when the click changes nothing.  A cell added in the sparse convention comes with a
    background ring (:func:`background_ring`) off the predicted objects, so that retraining
    learns its border.
    """
    lab = np.asarray(labels)
    if action == "remove":
        _, indices = remove_object(lab, point, predicted, dense=dense, return_indices=True)
        value = _background(dense)
    elif action == "accept":
        if predicted is None:
            raise ValueError("Ctrl-click accepts a predicted cell: choose a prediction layer")
        _, value, indices = accept_object(lab, predicted, point, dense=dense,
                                          return_indices=True)
    elif action == "add":
        mask = grow_click(lab, point, predicted=predicted, probability=probability,
                          image=image, diameter=diameter, dense=dense,
                          model_diameter=model_diameter, cell_threshold=cell_threshold)
        new, value, indices = add_cell(lab, mask, dense=dense, return_indices=True)
    else:
        raise ValueError(f"action must be 'add', 'remove' or 'accept', got {action!r}")
    if indices[0].size == 0:
        return None
    if lab.dtype.kind in "iu" and value > np.iinfo(lab.dtype).max:
        raise ValueError(f"label {value} does not fit the layer's dtype {lab.dtype}")
    values = np.full(indices[0].size, value, dtype=lab.dtype)
    new_id = int(value) if action != "remove" else 0
    if action == "add" and not dense:
        ring = background_ring(new, new == value,
                               avoid=None if predicted is None else predicted > 0)
        indices = tuple(np.concatenate(pair) for pair in zip(indices, ring, strict=True))
        values = np.concatenate([values, np.full(ring[0].size, BACKGROUND_LABEL, lab.dtype)])
    return ClickEdit(indices, values, new_id)


def apply_edit(labels: np.ndarray, edit: ClickEdit | None) -> np.ndarray:
    """A copy of ``labels`` with ``edit`` applied (for scripts; the widget replays it)."""
    out = np.array(labels, copy=True)
    if edit is not None:
        out[edit.indices] = edit.values
    return out


def stack_indices(indices: Indices, lead: Sequence[int]) -> Indices:
    """``indices`` of one plane, the plane ``lead`` of a stack, as indices into the stack."""
    n = indices[0].shape
    return tuple(np.full(n, int(i), dtype=np.intp) for i in lead) + tuple(indices)


def labels_from_prediction(predicted: np.ndarray, dense: bool = False) -> np.ndarray:
    """An annotation (int32) made from predicted instances: their cells, the rest background."""
    pred = np.asarray(predicted)
    if dense:
        return pred.astype(np.int32)
    return np.where(pred > 0, pred.astype(np.int32) + 1, BACKGROUND_LABEL).astype(np.int32)
