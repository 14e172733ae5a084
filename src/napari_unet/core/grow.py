"""Grow the cell under an add-click from the network's probability and the image.

Pure numpy/scipy (used by :mod:`.annotate`'s ``click_edit``).  A click on a cell the network
found takes the probability's region at the click and cuts it from touching neighbours; a click
the network missed thresholds the intensity instead.  The label conventions are those of
:mod:`.labels` (sparse: 0 = unlabeled, 1 = background, >= 2 = cells; dense: 0 = background).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sobel, threshold_otsu
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

from .instances import DEFAULT_THRESHOLD, remove_small
from .labels import BACKGROUND_LABEL

__all__ = ["DEFAULT_DIAMETER", "expected_diameter", "grow_cell", "grow_click",
           "tiles_the_plane"]

#: expected cell diameter (px) when there are neither predicted nor labeled cells to measure
DEFAULT_DIAMETER = 20.0
#: the predicted cells' median size is trusted within this factor of the model's object size
#: (benchmarks/README.md L3, L21: fragments of a weak model lie 3x off, small nuclei 2x)
SCALE_TRUST = 2.5
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
#: cells tile the plane (EM, epithelia) when the probability above the click threshold covers
#: at least this share of the image: a cell ends where the network's probability dips (a
#: membrane), not where its shape narrows, so the nuclei-style shape split does not apply
TILING_FRACTION = 0.5
#: in a tiling image a grown cell stays within this many expected diameters of the click
TILING_DIAMETERS = 3.0
#: the threshold steps of the component tree (_tree_cell), and the drop in area from one step
#: to the next that marks a leak through a gap in the boundary closing
TREE_STEP, LEAK_RATIO = 0.05, 2.5

def click_pixel(point: Sequence[float], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Round a (possibly float, napari world) point to an in-bounds pixel index."""
    if len(point) != len(shape):
        raise ValueError(f"point {tuple(point)} must have {len(shape)} coordinates")
    idx = tuple(int(np.floor(float(p) + 0.5)) for p in point)
    if any(not 0 <= i < n for i, n in zip(idx, shape, strict=True)):
        raise ValueError(f"point {tuple(point)} lies outside the image of shape {shape}")
    return idx


def first_cell_id(dense: bool) -> int:
    """The lowest cell id of the convention (sparse: 2, since 1 is background; dense: 1)."""
    return 1 if dense else BACKGROUND_LABEL + 1


def writable(labels: np.ndarray, dense: bool) -> np.ndarray:
    """Pixels that may be written: unlabeled or background (not another cell)."""
    return labels < first_cell_id(dense)


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
        found = _median_diameter(np.where(lab >= first_cell_id(dense), lab, 0))
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
    tiling: bool = False,
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
    diameter (default: :func:`expected_diameter` of the labeled cells, else 20 px).  With
    ``tiling`` (cells fill the plane, :func:`tiles_the_plane`) a click the network found takes
    the probability's region at the threshold where it stops leaking (:func:`_tree_cell`),
    within ``TILING_DIAMETERS`` diameters.  The mask never covers another cell of ``labels``
    and is empty when the point is on one.
    """
    prob, values = _grow_inputs(source, image)
    shape = values.shape
    if max_radius is not None and max_radius < 1:
        raise ValueError(f"max_radius must be >= 1, got {max_radius}")
    pt = click_pixel(point, shape)
    d = float(diameter) if diameter else expected_diameter(labels=labels, dense=dense)
    click_t = CLICK_PROBABILITY if threshold is None else float(threshold)
    found = prob is not None and prob[pt] > click_t
    reach = TILING_DIAMETERS if tiling and found else DISC_DIAMETERS
    radius = int(max_radius) if max_radius is not None else max(3, round(reach * d))
    win = _window(shape, pt, int(np.ceil(max(radius, d) + d / 2)))
    local = tuple(p - s.start for p, s in zip(pt, win, strict=True))
    allowed = _free_mask(labels, shape, dense, win)
    if not allowed[local]:
        return np.zeros(shape, dtype=bool)
    yy, xx = np.ogrid[win[0], win[1]]
    disc = (yy - pt[0]) ** 2 + (xx - pt[1]) ** 2 <= radius**2
    if found and tiling:
        region = _tree_cell(prob[win], local, click_t, allowed)
    elif found:
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
    return writable(lab[win], dense)


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


def _tree_cell(prob: np.ndarray, point: tuple[int, ...], threshold: float,
               allowed: np.ndarray) -> np.ndarray:
    """The click's region of the probability at the highest threshold where a leak closes.

    The regions at the click for rising thresholds form a branch of the probability's component
    tree (Salembier, Oliveras & Garrido, 1998); where the boundary of a cell has a gap, the
    region includes its neighbours until the threshold closes the gap, and the area then drops
    by far more than the cell's own slow shrinking.  The region just after the last drop by
    ``LEAK_RATIO`` or more is the cell; none: the region at ``threshold``.
    """
    best, previous = None, 0
    for t in np.arange(threshold, 1.0, TREE_STEP):
        if prob[point] <= t:
            break
        region = _component((prob > t) & allowed, point)
        area = int(region.sum())
        if best is None or previous >= LEAK_RATIO * area:
            best = region
        previous = area
    return best if best is not None else _component(allowed, point)


def tiles_the_plane(probability: np.ndarray, threshold: float) -> bool:
    """Do the cells fill the image (share above ``threshold`` >= ``TILING_FRACTION``)?"""
    fg = np.asarray(probability)
    fg = fg[1] if fg.ndim == 3 else fg
    return bool(fg.size) and float((fg > threshold).mean()) >= TILING_FRACTION


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


def grow_click(
    labels: np.ndarray, point: Sequence[int], *, predicted: np.ndarray | None = None,
    probability: np.ndarray | None = None, image: np.ndarray | None = None,
    diameter: float | None = None, dense: bool = False, model_diameter: float | None = None,
    cell_threshold: float | None = None,
) -> np.ndarray:
    """The mask an add-click at ``point`` grows, from the probability and/or the image.

    ``cell_threshold``: the model's calibrated threshold; a probability above it, or above
    ``CLICK_PROBABILITY`` when lower, is cell (a model calibrated low, as for EM cell
    interiors, calls cell what stays under 0.5).  Where the cells fill the image
    (:func:`tiles_the_plane`), they are grown as such (``grow_cell(..., tiling=True)``).
    """
    d = diameter or expected_diameter(predicted, labels, dense=dense,
                                      model_diameter=model_diameter)
    if probability is not None and image is not None:
        t = None if cell_threshold is None else min(CLICK_PROBABILITY, float(cell_threshold))
        tiling = tiles_the_plane(probability, CLICK_PROBABILITY if t is None else t)
        return grow_cell(probability, point, diameter=d, threshold=t, labels=labels,
                         image=image, dense=dense, tiling=tiling)
    source = probability if probability is not None else image
    if source is None:
        raise ValueError("choose an image (or a probability map) to grow cells from")
    return grow_cell(source, point, diameter=d, labels=labels, dense=dense)
