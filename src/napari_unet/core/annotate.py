"""Click-to-annotate helpers: grow, add, remove and accept cells in a label image.

Pure numpy/scipy so that the napari widget stays thin and the logic is testable.  The label
image follows the training convention of :mod:`.labels` (sparse by default: 0 = unlabeled,
1 = background, >= 2 = cells; ``dense=True``: 0 = background, >= 1 = cells).  No function
modifies its input: each returns a new label image, and with ``return_indices=True`` also the
``indices`` tuple of changed pixels (as from ``np.nonzero``), so that the widget can replay the
edit as ``layer.data_setitem(indices, value)`` and get napari's undo history for free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .labels import BACKGROUND_LABEL, UNLABELED

__all__ = ["BACKGROUND_RING_PX", "accept_object", "add_cell", "background_ring", "grow_cell",
           "remove_object"]

Indices = tuple[np.ndarray, ...]

#: width of the background painted around a cell added in the sparse convention
BACKGROUND_RING_PX = 3


def _point(point: Sequence[float], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Round a (possibly float, napari world) point to an in-bounds pixel index."""
    if len(point) != len(shape):
        raise ValueError(f"point {tuple(point)} must have {len(shape)} coordinates")
    idx = tuple(int(np.floor(float(p) + 0.5)) for p in point)
    if any(not 0 <= i < n for i, n in zip(idx, shape, strict=True)):
        raise ValueError(f"point {tuple(point)} lies outside the image of shape {shape}")
    return idx


def _first_cell(dense: bool) -> int:
    return 1 if dense else BACKGROUND_LABEL + 1


def _background(dense: bool) -> int:
    return UNLABELED if dense else BACKGROUND_LABEL


def _free(labels: np.ndarray, dense: bool) -> np.ndarray:
    """Pixels that may be written: unlabeled or background (not another cell)."""
    return labels < _first_cell(dense)


def _component(mask: np.ndarray, point: tuple[int, ...]) -> np.ndarray:
    """The connected component of ``mask`` that contains ``point`` (empty if off the mask)."""
    if not mask[point]:
        return np.zeros(mask.shape, dtype=bool)
    comp, _ = ndi.label(mask)
    return comp == comp[point]


def _window(shape: tuple[int, ...], point: tuple[int, ...], radius: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(p - radius, 0), min(p + radius + 1, n)) for p, n in zip(point, shape, strict=True)
    )


def grow_cell(
    source: np.ndarray,
    point: Sequence[float],
    *,
    max_radius: int = 40,
    threshold: float | None = None,
    labels: np.ndarray | None = None,
    image: np.ndarray | None = None,
    dense: bool = False,
) -> np.ndarray:
    """Grow a cell mask from a clicked ``point``; returns a bool mask of ``source``'s 2D shape.

    Two ways, both bounded by a disc of ``max_radius`` around the point and never covering
    another cell of ``labels``:

    - With a prediction: ``source`` is the foreground probability (2D, or ``(n_classes, Y, X)``
      from ``predict_tiled``, class 1 is used) and ``image`` the raw 2D image.  When the clicked
      pixel's probability exceeds ``threshold`` (default 0.5) the mask is the connected region
      above it.  A click on a low-probability pixel (a cell the network missed) falls back to
      growing over ``image``'s intensity.
    - Without a prediction (``image`` is None): ``source`` is the 2D image and the region is
      grown over its intensity: a pixel joins when it lies between the clicked pixel's value
      and the local background's, past ``threshold`` (default: halfway between them).
    Holes are filled.  The mask is empty when the point is on an existing cell.
    """
    src = np.asarray(source)
    if image is not None and src.ndim == 3:
        if src.shape[0] < 2:
            raise ValueError(f"probabilities {src.shape} need a foreground class at index 1")
        src = src[1]
    if src.ndim != 2:
        raise ValueError(f"grow_cell needs a 2D map, got shape {src.shape}")
    if max_radius < 1:
        raise ValueError(f"max_radius must be >= 1, got {max_radius}")
    shape = src.shape
    pt = _point(point, shape)
    free = np.ones(shape, dtype=bool)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != shape:
            raise ValueError(f"labels shape {lab.shape} does not match source shape {shape}")
        free = _free(lab, dense)
        if not free[pt]:
            return np.zeros(shape, dtype=bool)

    win = _window(shape, pt, max_radius)
    local_pt = tuple(p - s.start for p, s in zip(pt, win, strict=True))
    yy, xx = np.ogrid[win[0], win[1]]
    disc = (yy - pt[0]) ** 2 + (xx - pt[1]) ** 2 <= max_radius**2
    allowed = disc & free[win]

    if image is not None:
        img = np.asarray(image)
        if img.shape != shape:
            raise ValueError(f"image shape {img.shape} does not match probability shape {shape}")
        prob_threshold = 0.5 if threshold is None else float(threshold)
        prob = src[win].astype(np.float32)
        if prob[local_pt] > prob_threshold:
            region = _split_component(prob, prob_threshold, allowed, local_pt)
        else:
            region = _grow_intensity(img[win], local_pt, allowed, None)
    else:
        region = _grow_intensity(src[win], local_pt, allowed, threshold)

    region = ndi.binary_fill_holes(region) & allowed
    out = np.zeros(shape, dtype=bool)
    out[win] = region
    return out


def _split_component(
    prob: np.ndarray, threshold: float, allowed: np.ndarray, point: tuple[int, ...]
) -> np.ndarray:
    """The above-threshold region at ``point``, cut from touching neighbours.

    A click on one of several touching cells must add that cell only, so the region is split
    with the same watershed as the predicted instances and the piece under the click is kept.
    """
    from .instances import label_instances

    component = _component((prob > threshold) & allowed, point)
    pieces = label_instances(np.where(component, prob, 0.0), threshold, min_size=1)
    piece = pieces[point]
    return pieces == piece if piece else component


def _grow_intensity(
    values: np.ndarray, point: tuple[int, ...], allowed: np.ndarray, threshold: float | None
) -> np.ndarray:
    """Region grown from ``point`` over intensity, with a threshold relative to the seed.

    The seed value (median of the 3x3 neighbourhood after a light blur) is compared with the
    disc around it: a seed above the disc's median or nearer its bright end (95th percentile)
    than its dark end (5th) is a bright cell, and pixels join above the midpoint between seed
    and dark end ("half maximum"); otherwise it is a dark object and pixels join below the
    midpoint between seed and bright end.  Pixels far brighter than the seed (another,
    brighter cell touching it) are left out, and a one-pixel opening cuts thin bridges.
    """
    smooth = ndi.gaussian_filter(values.astype(np.float32), 1.0)
    seed_box = tuple(slice(max(p - 1, 0), p + 2) for p in point)
    seed = float(np.median(smooth[seed_box]))
    low, median, high = np.percentile(smooth[allowed], [5, 50, 95])
    bright = seed > median or seed - low >= high - seed
    if bright:
        t = (seed + low) / 2 if threshold is None else float(threshold)
        inside = (smooth >= t) & (smooth <= seed + 2 * max(seed - t, 0.0))
    else:
        t = (seed + high) / 2 if threshold is None else float(threshold)
        inside = (smooth <= t) & (smooth >= seed - 2 * max(t - seed, 0.0))
    inside[point] = True
    region = _component(inside & allowed, point)
    opened = ndi.binary_opening(region, iterations=1)
    if opened[point]:
        region = _component(opened, point)
    return region


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
    write = m & _free(lab, dense)
    indices = np.nonzero(write)
    if not write.any():
        result: tuple = (lab.copy(), 0)
        return (*result, indices) if return_indices else result
    new_id = max(int(lab.max()) + 1 if lab.size else 0, _first_cell(dense))
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
    neither its border nor what is not a cell.  Retrained on 3 added dim nuclei of one DSB2018
    image, the starting model called more debris cells on 10 other images (accuracy 0.805 ->
    0.698); with a 3 px ring 0.805 -> 0.793 (benchmarks/corrections.py, ``--ring 0`` / 3).  Only
    unlabeled pixels outside ``avoid`` (e.g. predicted objects, which may be touching cells)
    are returned, so nothing painted is overwritten.
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

    If a cell of ``labels`` is under the point, all its pixels become background
    (``BACKGROUND_LABEL``, or 0 in dense mode).  Otherwise, if ``predicted`` (an instance
    image) has an object there, its pixels that are not another labeled cell are painted as
    background: the way to tell the network "this is not a cell".  Nothing changes otherwise.
    """
    lab = np.asarray(labels)
    pt = _point(point, lab.shape)
    background = _background(dense)
    value = lab[pt]
    if value >= _first_cell(dense):
        target = lab == value
    elif predicted is not None:
        pred = np.asarray(predicted)
        if pred.shape != lab.shape:
            raise ValueError(
                f"predicted shape {pred.shape} does not match labels shape {lab.shape}"
            )
        target = (pred == pred[pt]) & _free(lab, dense) if pred[pt] > 0 else None
    else:
        target = None
    new = lab.copy()
    if target is None:
        indices: Indices = tuple(np.empty(0, dtype=np.intp) for _ in lab.shape)
    else:
        target &= lab != background
        indices = np.nonzero(target)
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
    pt = _point(point, lab.shape)
    if pred[pt] <= 0 or lab[pt] >= _first_cell(dense):
        mask = np.zeros(lab.shape, dtype=bool)
    else:
        mask = pred == pred[pt]
    return add_cell(lab, mask, dense=dense, return_indices=return_indices)
