"""Turn a cell-probability map into an instance label image (one id per cell).

Pipeline per 2D slice: threshold -> fill holes -> drop components smaller than ``min_size`` ->
split touching cells with a marker-controlled watershed on the smoothed distance transform.
Markers are the h-maxima of the (Gaussian-smoothed, sigma 1 px) distance transform with a
height-relative ``h = max(1 px, 0.2 * peak height)``: a peak becomes a separate cell only when
the neck (saddle) towards a higher peak is lower than 80 % of its own inscribed radius (and at
least 1 px lower). A convex blob (disc, ellipse, rectangle) has a single maximum and is never
split; two touching discs whose centres are more than ~1.2 radii apart are. Markers closer than
``min_distance`` are merged; split pieces smaller than ``min_size`` lose their marker.
A component whose smoothed distance transform has a single regional maximum (most isolated
cells) cannot split and skips the h-maxima search: the same labels, found 2-3x faster.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi
from skimage import measure
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_THRESHOLD",
    "component_maxima",
    "follow_annotations",
    "label_instances",
    "label_planes",
    "label_with_interior",
    "remove_small",
    "split_at_cells",
]

_H_MIN = 1.0  # smallest peak dynamic (pixels of inscribed radius) that makes a separate cell
_H_REL = 0.2  # ... relative to the component's largest inscribed radius
_SMOOTH = 1.0  # Gaussian smoothing of the distance transform (pixels)
_REST_CELL = 0.75  # split_at_cells: a rest this large (x the annotated cell) is another cell

# Where the widgets, the CLI and the demo start: class-balanced training leans towards "cell",
# so 0.8 beats 0.5 (benchmarks/README.md finding 7).
DEFAULT_THRESHOLD = 0.8
# Smallest object kept (px): smaller specks are mostly noise (benchmarks/README.md finding 7).
DEFAULT_MIN_SIZE = 30


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndi.label(mask, structure=np.ones((3, 3), dtype=bool))


def remove_small(mask: np.ndarray, min_size: float, *, diagonal: bool = True) -> np.ndarray:
    """``mask`` without its pieces under ``min_size`` px (``diagonal``: 8-, else 4-connected)."""
    if min_size <= 1:
        return mask
    comp, n = ndi.label(mask, structure=np.ones((3, 3), dtype=bool) if diagonal else None)
    if n == 0:
        return mask
    sizes = np.bincount(comp.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[comp]


def component_maxima(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Largest value of each label 1..n (``ndi.maximum(values, labels, 1..n)``, without a sort)."""
    inside = labels > 0
    out = np.full(n + 1, -np.inf)
    np.maximum.at(out, labels[inside], values[inside])
    return out[1:]


def _single_peak(smooth: np.ndarray, mask: np.ndarray, comp: np.ndarray, n: int) -> np.ndarray:
    """``single[k]``: component k has one regional maximum, so it is one cell (no search).

    Every regional maximum is a connected plateau of pixels equal to their 3x3 maximum, and two
    different maxima never share such a plateau; one plateau per component means one maximum.
    """
    peaks = mask & (smooth >= ndi.maximum_filter(smooth, size=3))
    plateaus, m = _components(peaks)
    owner = np.zeros(m + 1, dtype=np.intp)
    owner[plateaus[peaks]] = comp[peaks]  # each plateau lies in one component
    single = np.bincount(owner[1:], minlength=n + 1) == 1
    single[0] = False
    return single


def _markers(mask: np.ndarray, comp: np.ndarray, n: int, min_distance: float | None):
    """Markers: relative h-maxima of the smoothed distance transform (see module docstring)."""
    dist = ndi.distance_transform_edt(mask)
    smooth = ndi.gaussian_filter(dist, _SMOOTH) * mask
    # seed = f - h(f) with h = max(_H_MIN, _H_REL * f): a peak stays a marker only when the
    # saddle towards any higher peak is lower than its own height minus h (scale invariant).
    # Markers are the regional maxima of the reconstruction (one connected plateau per
    # significant peak, so equal-height maxima along a ridge join into one marker). Done per
    # component in its bounding box: same result, less sorting than one full-image pass.
    single = _single_peak(smooth, mask, comp, n)
    tops = np.zeros(mask.shape, dtype=bool)
    for k, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None or single[k]:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        inside = comp[sl] == k
        f = smooth[sl] * inside
        seed = np.clip(f - np.maximum(_H_MIN, _H_REL * f), 0, None)
        rec = reconstruction(seed, f, method="dilation")
        tops[sl] |= inside & local_maxima(rec, connectivity=2, allow_borders=True)
    if min_distance is None:
        # merge tops closer than about half the typical cell radius (protects elongated cells)
        peak = component_maxima(dist, comp, n)
        min_distance = max(2.0, 0.5 * float(np.median(peak)))
    if min_distance > 1 and tops.any():
        r = float(min_distance) / 2.0
        tops = mask & (ndi.distance_transform_edt(~tops) <= r)
    tops[single[comp]] = True  # one peak: the whole component is its marker
    markers, _ = _components(tops)
    return smooth, markers


def _label_slice(
    prob: np.ndarray,
    threshold: float,
    min_size: int,
    split_touching: bool,
    min_distance: float | None,
    fill_holes: bool,
) -> np.ndarray:
    mask = prob > threshold
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    mask = remove_small(mask, min_size)
    comp, n = _components(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=np.int32)
    if not split_touching:
        return comp.astype(np.int32)
    smooth, markers = _markers(mask, comp, n, min_distance)
    labels = watershed(-smooth, markers, mask=mask)
    if min_size > 1 and markers.max() > 1:
        # a split must not leave slivers below min_size: drop their markers and flood again
        sizes = np.bincount(labels.ravel(), minlength=markers.max() + 1)
        small = sizes < min_size
        small[0] = False
        if np.any(small):
            markers = np.where(small[markers], 0, markers)
            labels = watershed(-smooth, markers, mask=mask)
    # components without a marker (thin objects) stay whole
    missing = mask & (labels == 0)
    if np.any(missing):
        labels = labels.astype(np.int64)
        labels[missing] = comp[missing] + labels.max()
    return _connected_and_large(labels, min_size)


def _connected_and_large(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Sequential ids 1..n where every object is one connected piece of at least min_size px.

    The second watershed pass can leave a marker's region in pieces or below min_size; both
    would surprise a user (one id on two blobs, a speck that min_size should have removed).
    """
    pieces = measure.label(labels, background=0, connectivity=1)
    if min_size > 1 and pieces.max() > 0:
        sizes = np.bincount(pieces.ravel())
        small = sizes < min_size
        small[0] = False
        if np.any(small):
            pieces[small[pieces]] = 0
            pieces = measure.label(pieces, background=0, connectivity=1)
    return pieces.astype(np.int32)


def _pick_cell_probability(arr: np.ndarray, stack: bool | None) -> tuple[np.ndarray, bool]:
    """Return (probabilities (Y, X) or (Z, Y, X), is_stack) from the accepted layouts."""
    if arr.ndim == 2:
        return arr, False
    if arr.ndim == 4:  # (Z, n_classes, Y, X) from predict_tiled on a stack
        if arr.shape[1] < 2:
            raise ValueError(f"(Z, n_classes, Y, X) input needs n_classes >= 2, got {arr.shape}")
        return arr[:, 1], True
    if arr.ndim == 3:
        if stack is None:
            sums = arr.sum(axis=0, dtype=np.float64)
            stack = not (arr.shape[0] >= 2 and np.allclose(sums, 1.0, atol=1e-3))
        if stack:
            return arr, True
        if arr.shape[0] < 2:
            raise ValueError(f"(n_classes, Y, X) input needs n_classes >= 2, got {arr.shape}")
        return arr[1], False
    raise ValueError(
        "foreground must be (Y, X), (n_classes, Y, X), (Z, Y, X) or (Z, n_classes, Y, X); "
        f"got shape {arr.shape}"
    )


def label_instances(
    foreground: ArrayLike,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    *,
    split_touching: bool = True,
    min_distance: float | None = None,
    fill_holes: bool = True,
    stack: bool | None = None,
) -> np.ndarray:
    """Instance labels (int32, ids 1..n, 0 = background) from cell probabilities.

    foreground: ``(Y, X)`` probability of the cell class; ``(n_classes, Y, X)`` class
    probabilities (class 1 is used); ``(Z, Y, X)`` stack of 2D probabilities; or
    ``(Z, n_classes, Y, X)``. A 3D input is read as class probabilities when its first axis sums to
    1 at every pixel, otherwise as a stack; ``stack=True/False`` says it explicitly.
    Stacks are labelled slice by slice with ids unique across the whole stack.
    threshold: pixels with probability > threshold are cell (default 0.8: the U-Net's class
    balanced loss leans towards "cell"). min_size: smaller objects (pixels) are removed.
    split_touching: separate touching cells (watershed on the distance transform).
    min_distance: markers closer than this (pixels) merge; default half the median cell radius.
    fill_holes: fill holes inside objects before splitting.
    """
    arr = np.asarray(foreground)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"foreground must be a real numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("foreground contains NaN or infinite values")
    if not (np.isfinite(threshold) and 0.0 <= threshold < 1.0):
        # probabilities lie in [0, 1]: any other threshold gives all or nothing, silently
        raise ValueError(f"threshold must lie in [0, 1), got {threshold!r}")
    if int(min_size) != min_size or min_size < 0:
        raise ValueError(f"min_size must be an integer >= 0, got {min_size!r}")
    if min_distance is not None and not (np.isfinite(min_distance) and min_distance >= 0):
        raise ValueError(f"min_distance must be >= 0 or None, got {min_distance!r}")
    prob, is_stack = _pick_cell_probability(arr, stack)
    args = (float(threshold), int(min_size), split_touching, min_distance, fill_holes)
    if not is_stack:
        return _label_slice(prob, *args)
    return label_planes(prob.shape, lambda z: _label_slice(prob[z], *args))


def label_planes(shape: tuple[int, ...], label_plane: Callable[[int], np.ndarray]) -> np.ndarray:
    """A ``(Z, Y, X)`` stack of ``label_plane(z)`` results, ids made unique over the stack."""
    out = np.zeros(shape, dtype=np.int32)
    offset = 0
    for z in range(shape[0]):
        lab = label_plane(z)
        out[z] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    return out


def label_with_interior(
    foreground: np.ndarray, interior: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
) -> np.ndarray:
    """Instances of one 2D plane of a 3-class network (background, cell interior, cell border).

    The cell mask is ``foreground > threshold`` (holes filled, small objects dropped); every
    connected region of ``interior > 0.5`` inside it is one cell's seed, and a watershed on the
    interior probability grows the seeds over the mask, so touching cells of any shape part
    where the network saw their border.  Mask components without a seed stay whole.
    """
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    mask = foreground > threshold
    mask = remove_small(ndi.binary_fill_holes(mask), int(min_size))
    comp, n = _components(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=np.int32)
    seeds = remove_small((interior > 0.5) & mask, max(1, int(min_size) // 4))
    markers, _ = _components(seeds)
    labels = watershed(-interior, markers, mask=mask)
    missing = mask & (labels == 0)
    if np.any(missing):
        labels = labels.astype(np.int64)
        labels[missing] = comp[missing] + labels.max()
    return _connected_and_large(labels, int(min_size))


def split_at_cells(instances: np.ndarray, cells: np.ndarray, min_size: int = 1,
                   keep_px: int = 2) -> np.ndarray:
    """``instances`` re-split so that every annotated cell is a seed of its own object.

    ``cells``: the user's cells (ids > 0, one per cell, 0 elsewhere), same 2D shape. Each
    predicted object that overlaps an annotated cell is flooded again (watershed on the
    smoothed distance transform) from the annotated cells inside it and from the rest of it
    that lies beyond a neck: a piece more than ``keep_px`` px from the annotations whose
    contact with them is lower than its own peak by the module's relative h (the same rule
    that splits touching cells). So a cell the user added is never merged with a touching
    neighbour, while a click mask that covers only part of a cell does not cut that cell in
    two. The foreground is the network's: a cell it does not find stays missing (a seeded
    watershed, as in ilastik's carving: the annotations choose the split, the network the
    extent).
    """
    instances, cells = np.asarray(instances), np.asarray(cells)
    if instances.shape != cells.shape or instances.ndim != 2:
        raise ValueError(f"instances {instances.shape} and cells {cells.shape} must be the "
                         "same 2D shape")
    annotated = (cells > 0) & (instances > 0)
    touched = np.unique(instances[annotated])
    if touched.size == 0:
        return instances.astype(np.int32)
    region = np.isin(instances, touched)
    depth = ndi.gaussian_filter(ndi.distance_transform_edt(region), _SMOOTH) * region
    seeds = np.zeros(instances.shape, dtype=np.int64)
    _, first = np.unique(cells[annotated], return_inverse=True)
    seeds[annotated] = first.ravel() + 1
    near = ndi.binary_dilation(annotated, iterations=int(keep_px)) if keep_px > 0 else annotated
    pieces, n = _components(remove_small(region & ~near, max(int(min_size) // 2, 1)))
    if n:
        peak = component_maxima(depth, pieces, n)
        contact = ndi.binary_dilation(near) & (pieces > 0)
        saddle = np.maximum(component_maxima(np.where(contact, depth, -np.inf), pieces, n), 0)
        apart = saddle <= peak - np.maximum(_H_MIN, _H_REL * peak)
        # ... or it is as large as a cell: the user said where one cell ends, so what is left
        # of the object beyond it is another (a partial click mask leaves less than this)
        owner = component_maxima(instances.astype(np.float64), pieces, n).astype(np.intp)
        cell_px = np.bincount(instances[annotated], minlength=int(instances.max()) + 1)
        area = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        apart |= area >= _REST_CELL * cell_px[owner]
        # a neighbour beyond a neck is seeded by its part above the neck, with the network's
        # own ids (so its own split stays)
        above = np.concatenate([[np.inf], np.where(apart, saddle, np.inf)])
        core = (pieces > 0) & (depth > above[pieces])
        seeds[core] = seeds.max() + instances[core].astype(np.int64)
    flooded = watershed(-depth, seeds, mask=region)
    out = np.where(region, 0, instances).astype(np.int64)
    out[region] = flooded[region] + out.max()
    return _connected_and_large(out, int(min_size))


def follow_annotations(instances: np.ndarray, cells: np.ndarray,
                       background: np.ndarray | None = None, min_size: int = 1) -> np.ndarray:
    """``instances`` that agree with the user's annotations wherever there are some.

    Pixels of ``background`` (the user's, bool) are background and the annotated ``cells``
    (ids > 0) are cells, each its own object (:func:`split_at_cells`); elsewhere the
    network's instances stay. What a user sees after a correction: the annotation they made,
    the network's answer around it, never an edit lost.
    """
    inst = np.asarray(instances).astype(np.int64)
    cells = np.asarray(cells)
    if background is not None:
        background = np.asarray(background, dtype=bool)
        if background.shape != inst.shape:
            raise ValueError(f"background {background.shape} and instances {inst.shape} must "
                             "have the same shape")
        inst[background & (cells <= 0)] = 0
    if not (cells > 0).any():
        return _connected_and_large(inst, int(min_size))
    off = (cells > 0) & (inst == 0)
    if off.any():  # annotated pixels the network left out: objects of their own to flood
        inst[off] = inst.max() + cells[off].astype(np.int64)
    return split_at_cells(inst, cells, min_size)  # it ends connected and large
