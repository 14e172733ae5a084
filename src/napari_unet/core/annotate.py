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
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sobel, threshold_otsu
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

from .instances import DEFAULT_THRESHOLD, remove_small
from .labels import BACKGROUND_LABEL, UNLABELED

__all__ = ["BACKGROUND_RING_PX", "DEFAULT_DIAMETER", "ClickEdit", "accept_object", "add_cell",
           "apply_edit", "background_ring", "click_edit", "expected_diameter", "grow_cell",
           "grow_click", "labels_from_prediction", "remove_object", "stack_indices"]

Indices = tuple[np.ndarray, ...]

#: width of the background painted around a cell added in the sparse convention
BACKGROUND_RING_PX = 3
#: expected cell diameter (px) when there are neither predicted nor labeled cells to measure
DEFAULT_DIAMETER = 20.0
#: the predicted cells' median size is trusted within this factor of the model's object size
SCALE_TRUST = 2.0
#: a grown cell stays within this many expected diameters of the click (less cuts off-centre
#: clicks short)
DISC_DIAMETERS = 1.0
#: a click where the probability exceeds this is on a cell the network found
CLICK_PROBABILITY = 0.5
#: the confident cores (the instances' threshold) seed the split of touching cells
CORE_PROBABILITY = DEFAULT_THRESHOLD
#: a grown piece larger than this many expected cells is taken for merged cells
MERGED_AREA = 1.2
#: a piece above this many expected cells is cut along the image's edges (_cut_oversize),
#: from a seed at the click against what lies beyond OVERSIZE_FAR diameters
OVERSIZE_AREA, OVERSIZE_FAR = 2.0, 0.8


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


def expected_diameter(
    predicted: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    dense: bool = False,
    default: float = DEFAULT_DIAMETER,
    model_diameter: float | None = None,
) -> float:
    """Median equivalent diameter (px) of the predicted cells, else the labeled ones, else default.

    It sets the scale of a click: the disc a grown cell stays in, the window its intensity
    threshold is taken from, and the size above which a grown piece is taken for merged cells.
    ``model_diameter``: the object size the prediction was made for (the model's object size
    over its resampling factor); it wins when the predicted cells' median is more than
    ``SCALE_TRUST`` times off it, as when a weak model predicts cells in fragments.
    """
    if predicted is not None:
        found = _median_diameter(np.asarray(predicted))
        if model_diameter and (found is None or
                               not 1 / SCALE_TRUST <= found / model_diameter <= SCALE_TRUST):
            return float(model_diameter)
        if found is not None:
            return found
    elif model_diameter:
        return float(model_diameter)
    if labels is not None:
        lab = np.asarray(labels)
        found = _median_diameter(np.where(lab >= _first_cell(dense), lab, 0))
        if found is not None:
            return found
    return float(default)


def _median_diameter(objects: np.ndarray) -> float | None:
    """Median of ``sqrt(4 area / pi)`` over the objects (ids > 0); None when there are none."""
    ids = objects[objects > 0]
    if ids.size == 0:
        return None
    top = int(ids.max())
    if ids.dtype.kind in "iu" and top <= 4 * ids.size:  # linear time: no sort per click
        areas = np.bincount(ids.astype(np.intp, copy=False), minlength=top + 1)[1:]
        areas = areas[areas > 0]
    else:
        _, areas = np.unique(ids, return_counts=True)
    return float(np.median(np.sqrt(4.0 * areas / np.pi)))


def grow_cell(
    source: np.ndarray,
    point: Sequence[float],
    *,
    diameter: float | None = None,
    max_radius: int | None = None,
    threshold: float | None = None,
    labels: np.ndarray | None = None,
    image: np.ndarray | None = None,
    dense: bool = False,
) -> np.ndarray:
    """Grow the cell under a clicked ``point``; returns a bool mask of ``source``'s 2D shape.

    ``source`` is the foreground probability (2D, or ``(n_classes, Y, X)`` from
    ``predict_tiled``: class 1) when ``image`` (the raw 2D image) is given, else the image.
    A click where the probability exceeds ``threshold`` (default 0.5) takes the connected
    region above it; a click where it is low (a dim cell the network missed), or no
    probability at all, thresholds the intensity instead (Otsu in a window of about three
    diameters, the side the click is on; ``threshold`` fixes the intensity threshold when there
    is no probability).  Either region is cut from touching neighbours by a seeded watershed
    (:func:`_basin_at`, :func:`_split_merged`) and limited to a disc of ``max_radius`` (default
    ``DISC_DIAMETERS`` x ``diameter``) around the click.  ``diameter`` is the expected cell
    diameter (default: :func:`expected_diameter` of the labeled cells, else 20 px).  The mask
    never covers another cell of ``labels`` and is empty when the point is on one.
    """
    prob, values = _grow_inputs(source, image)
    shape = values.shape
    if max_radius is not None and max_radius < 1:
        raise ValueError(f"max_radius must be >= 1, got {max_radius}")
    pt = _point(point, shape)
    d = float(diameter) if diameter else expected_diameter(labels=labels, dense=dense)
    radius = int(max_radius) if max_radius is not None else max(3, round(DISC_DIAMETERS * d))
    win = _window(shape, pt, int(np.ceil(max(radius, d) + d / 2)))
    local = tuple(p - s.start for p, s in zip(pt, win, strict=True))
    allowed = _free_mask(labels, shape, dense, win)
    if not allowed[local]:
        return np.zeros(shape, dtype=bool)
    yy, xx = np.ogrid[win[0], win[1]]
    disc = (yy - pt[0]) ** 2 + (xx - pt[1]) ** 2 <= radius**2
    click_t = CLICK_PROBABILITY if threshold is None else float(threshold)
    if prob is not None and prob[pt] > click_t:
        region = _probability_cell(prob[win].astype(np.float32), local, d, allowed, click_t)
        region = _cut_oversize(region, values[win], local, d)
    else:
        fixed = threshold if prob is None else None
        region = _intensity_cell(values[win], local, d, allowed, fixed)
    region = _component(ndi.binary_fill_holes(region & disc) & disc & allowed, local)
    out = np.zeros(shape, dtype=bool)
    out[win] = region
    return out


def _grow_inputs(source: np.ndarray, image: np.ndarray | None) -> tuple[np.ndarray | None,
                                                                        np.ndarray]:
    """``(probability or None, intensity)`` 2D maps from :func:`grow_cell`'s arguments."""
    src = np.asarray(source)
    if image is not None and src.ndim == 3:
        if src.shape[0] < 2:
            raise ValueError(f"probabilities {src.shape} need a foreground class at index 1")
        src = src[1]
    if src.ndim != 2:
        raise ValueError(f"grow_cell needs a 2D map, got shape {src.shape}")
    if image is None:
        return None, src
    img = np.asarray(image)
    if img.shape != src.shape:
        raise ValueError(f"image shape {img.shape} does not match probability shape {src.shape}")
    return src, img


def _free_mask(labels: np.ndarray | None, shape: tuple[int, ...], dense: bool,
               win: tuple[slice, ...]) -> np.ndarray:
    """Where in window ``win`` a grown cell may go: everywhere, or off the cells of ``labels``."""
    if labels is None:
        return np.ones(tuple(s.stop - s.start for s in win), dtype=bool)
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise ValueError(f"labels shape {lab.shape} does not match source shape {shape}")
    return _free(lab[win], dense)


def _probability_cell(
    prob: np.ndarray, point: tuple[int, ...], diameter: float, allowed: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """The cell at ``point`` in a probability window: its region above ``threshold``, split.

    Seeds are the maxima of the distance transform of the confident cores (above the
    instances' threshold 0.8), where touching cells are apart although the region above the
    click threshold joins them; the flooding follows distance x probability, so the cut runs
    along the probability's dip.
    """
    fg = (prob > threshold) & allowed
    fg[point] = True
    comp = _component(fg, point)
    cores = remove_small(comp & (prob > max(CORE_PROBABILITY, threshold)),
                         0.05 * np.pi * diameter**2 / 4, diagonal=False)
    markers = _maxima(cores if cores.any() else comp, diameter)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(comp), 1.0)
    landscape = -(dist * ndi.gaussian_filter(prob, 1.0))
    return _split_merged(_basin_at(comp, point, markers, landscape), point, diameter)


def _cut_oversize(region: np.ndarray, values: np.ndarray, point: tuple[int, ...],
                  diameter: float) -> np.ndarray:
    """A region much larger than a cell, cut along the image's edges around the click.

    A click inside a predicted object that holds several cells: a watershed of the image's
    gradient magnitude (Beucher & Meyer, 1993) floods from a seed at the click and from the
    part of the region farther than ``OVERSIZE_FAR`` diameters (and from outside it); the
    click's basin is the cell.
    """
    if region.sum() <= OVERSIZE_AREA * np.pi * diameter**2 / 4:
        return region
    yy, xx = np.ogrid[: region.shape[0], : region.shape[1]]
    dist = np.sqrt((yy - point[0]) ** 2 + (xx - point[1]) ** 2)
    markers = np.where(~region | (dist > OVERSIZE_FAR * diameter), 2, 0).astype(np.int32)
    markers[dist <= max(2.0, diameter / 6)] = 1
    edges = sobel(ndi.gaussian_filter(values.astype(np.float32), 1.5))
    cell = (watershed(edges, markers) == 1) & region
    return _component(cell, point) if cell[point] else region


def _intensity_cell(
    values: np.ndarray, point: tuple[int, ...], diameter: float, allowed: np.ndarray,
    threshold: float | None,
) -> np.ndarray:
    """The cell at ``point`` in an intensity window: thresholded (:func:`_intensity_side`), split
    from touching neighbours by a watershed on the distance transform."""
    smooth = ndi.gaussian_filter(values.astype(np.float32), 1.0)
    fg = _intensity_side(smooth, point, diameter, threshold) & allowed
    fg[point] = True
    comp = ndi.binary_fill_holes(_component(fg, point)) & allowed
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(comp), 1.0)
    piece = _basin_at(comp, point, _maxima(comp, diameter), -dist)
    return _split_merged(piece, point, diameter)


def _intensity_side(
    smooth: np.ndarray, point: tuple[int, ...], diameter: float, threshold: float | None
) -> np.ndarray:
    """Pixels on the click's side of an intensity threshold (given, or Otsu's of the window).

    A click on the dark side whose dark region is far larger than a cell is on a dim cell
    inside the background (a bright neighbour set the threshold): the dark side is then split
    again by its own Otsu threshold, up to three times.  A dark region of cell size is a dark
    object (e.g. bright-field) and is kept.
    """
    seed = float(smooth[point])
    if threshold is not None:
        t = float(threshold)
        return smooth >= t if seed >= t else smooth < t
    area = np.pi * diameter**2 / 4
    side = np.ones(smooth.shape, dtype=bool)
    for _ in range(3):
        values = smooth[side]
        if values.size < 4 or values.min() == values.max():
            break
        t = float(threshold_otsu(values))
        bright = seed > t
        side = (smooth > t if bright else smooth <= t) & side
        if bright or _component(side, point).sum() <= 2 * area:
            break
    return side


def _maxima(mask: np.ndarray, diameter: float, h_rel: float = 0.2,
            h_min: float = 1.0) -> np.ndarray:
    """Labeled seeds: the h-maxima of ``mask``'s smoothed distance transform (one per cell).

    A peak is a seed when the saddle towards a higher one is lower than it by
    ``max(h_min, h_rel x its height)`` px (as in :mod:`.instances`); seeds closer than a
    quarter diameter are merged.
    """
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0) * mask
    seed = np.clip(dist - np.maximum(h_min, h_rel * dist), 0, None)
    tops = mask & local_maxima(reconstruction(seed, dist, method="dilation"), connectivity=2,
                               allow_borders=True)
    if not tops.any():
        return np.zeros(mask.shape, dtype=np.int32)
    tops = mask & (ndi.distance_transform_edt(~tops) <= max(1.0, diameter / 8))
    return ndi.label(tops)[0]


def _basin_at(comp: np.ndarray, point: tuple[int, ...], markers: np.ndarray,
              landscape: np.ndarray) -> np.ndarray:
    """The part of ``comp`` that a seeded watershed gives to the click.

    The click's seed is the maximum whose basin holds it; the other seeds (the neighbouring
    cells' maxima) take the rest.  One seed or none: ``comp`` itself.
    """
    if markers.max() <= 1:
        return comp
    basins = watershed(landscape, markers, mask=comp)
    own = basins[point]
    return basins == own if own else comp


def _split_merged(piece: np.ndarray, point: tuple[int, ...], diameter: float) -> np.ndarray:
    """Split a piece larger than ``MERGED_AREA`` expected cells with ever lower peaks.

    Two touching nuclei whose union is nearly convex have one clear distance maximum each only
    a fraction of a pixel above their neck; the expected size says when to look for them.  A
    split is kept when the click's part is at least 0.15 of an expected cell.
    """
    area = np.pi * diameter**2 / 4
    for h_rel in (0.1, 0.05, 0.02):
        if piece.sum() <= MERGED_AREA * area:
            break
        markers = _maxima(piece, diameter, h_rel=h_rel, h_min=0.25)
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(piece), 1.0)
        part = _basin_at(piece, point, markers, -dist)
        if part.sum() >= 0.15 * area:
            piece = part
    return piece


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
    pt = _point(point, lab.shape)
    background = _background(dense)
    target = np.zeros(lab.shape, dtype=bool)
    if lab[pt] >= _first_cell(dense):
        target |= lab == lab[pt]
    if predicted is not None:
        pred = np.asarray(predicted)
        if pred.shape != lab.shape:
            raise ValueError(
                f"predicted shape {pred.shape} does not match labels shape {lab.shape}"
            )
        if pred[pt] > 0:
            target |= (pred == pred[pt]) & (_free(lab, dense) | target)
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
    pt = _point(point, lab.shape)
    if pred[pt] <= 0 or lab[pt] >= _first_cell(dense):
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


def grow_click(
    labels: np.ndarray, point: Sequence[int], *, predicted: np.ndarray | None = None,
    probability: np.ndarray | None = None, image: np.ndarray | None = None,
    diameter: float | None = None, dense: bool = False, model_diameter: float | None = None,
    cell_threshold: float | None = None,
) -> np.ndarray:
    """The mask an add-click at ``point`` grows, from the probability and/or the image.

    ``cell_threshold``: the model's calibrated threshold; a probability above it, or above
    ``CLICK_PROBABILITY`` when lower, is cell (a model calibrated low, as for EM cell
    interiors, calls cell what stays under 0.5).
    """
    d = diameter or expected_diameter(predicted, labels, dense=dense,
                                      model_diameter=model_diameter)
    if probability is not None and image is not None:
        t = None if cell_threshold is None else min(CLICK_PROBABILITY, float(cell_threshold))
        return grow_cell(probability, point, diameter=d, threshold=t, labels=labels,
                         image=image, dense=dense)
    source = probability if probability is not None else image
    if source is None:
        raise ValueError("choose an image (or a probability map) to grow cells from")
    return grow_cell(source, point, diameter=d, labels=labels, dense=dense)


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
