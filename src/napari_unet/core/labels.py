"""Label conventions for training: sparse (painted) and dense (complete) label images.

Sparse mode (default): ``0`` = unlabeled (ignored by the loss), ``1`` = background painted by
the user, every id ``>= 2`` is one cell.  Dense mode: ``0`` = background, every id ``>= 1`` is
one cell, and every pixel counts.  :func:`split_labels` turns either into the pair the trainer
needs: instance ids ``1..n`` (0 = not a cell) and a boolean mask of pixels the loss counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND_LABEL",
    "CONVENTION",
    "CONVENTION_METADATA",
    "DEFAULT_LABEL_RING_PX",
    "NO_LABELS_MESSAGE",
    "UNLABELED",
    "as_label_array",
    "has_labels",
    "ids_above",
    "looks_dense",
    "next_cell_id",
    "only_default_label",
    "read_default_label",
    "split_labels",
    "summarize",
    "validate_pair",
]

UNLABELED = 0
BACKGROUND_LABEL = 1
#: the sparse convention in one line, shown where the user paints
CONVENTION = "0 unlabeled · 1 background · 2, 3, … one id per cell"
#: Labels layer metadata key saying the layer is painted in the sparse convention on purpose
CONVENTION_METADATA = "napari_unet_labels"
#: background painted around each cell of a layer painted only with napari's default label 1
DEFAULT_LABEL_RING_PX = 3
NO_LABELS_MESSAGE = (
    "no labels painted: paint at least one cell (label >= 2) and some background (label 1)"
)


def as_label_array(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as an integer array, rejecting NaN, fractions and negative ids."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr.astype(np.int32)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError("labels contain NaN or infinite values; labels must be integers")
        if np.any(arr != np.round(arr)):
            raise ValueError(
                "labels are floating point with fractional values; labels must be integer ids "
                "(was an image loaded as labels?)"
            )
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"labels contain negative values (min {arr.min()}); ids must be >= 0")
    return arr


def split_labels(
    labels: np.ndarray,
    dense: bool = False,
    image_shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a label image into ``(instances, labeled_mask)``.

    ``instances`` is int32 with 0 = not a cell and cells relabelled ``1..n`` (in order of their
    original ids); ``labeled_mask`` is True where the loss counts (all True in dense mode).
    ``image_shape``, when given, must equal the label shape.
    """
    arr = as_label_array(labels)
    if image_shape is not None and tuple(image_shape) != arr.shape:
        raise ValueError(
            f"labels shape {arr.shape} does not match image shape {tuple(image_shape)}"
        )
    first_cell = 1 if dense else 2
    ids = np.unique(arr)
    cell_ids = ids[ids >= first_cell]
    instances = np.zeros(arr.shape, dtype=np.int32)
    if cell_ids.size:
        # searchsorted maps each cell id to its rank 0..n-1 in the sorted id list.
        is_cell = arr >= first_cell
        instances[is_cell] = np.searchsorted(cell_ids, arr[is_cell]).astype(np.int32) + 1
    if dense:
        labeled_mask = np.ones(arr.shape, dtype=bool)
    else:
        labeled_mask = arr != UNLABELED
    return instances, labeled_mask


def summarize(labels: np.ndarray, dense: bool = False) -> dict[str, int]:
    """Count cells, background pixels and labeled pixels under the given convention."""
    arr = as_label_array(labels)
    first_cell = 1 if dense else 2
    ids = np.unique(arr)
    background_id = UNLABELED if dense else BACKGROUND_LABEL
    n_background = int(np.count_nonzero(arr == background_id))
    n_labeled = int(arr.size if dense else np.count_nonzero(arr != UNLABELED))
    return {
        "n_cells": int(np.count_nonzero(ids >= first_cell)),
        "n_background_px": n_background,
        "n_labeled_px": n_labeled,
    }


def _spatial_image_shape(
    image: np.ndarray, labels_ndim: int, channel_axis: int | None, in_channels: int | None
) -> tuple[int, ...]:
    """Shape of ``image`` without its channel axis (if it has one)."""
    shape = list(image.shape)
    if channel_axis is not None:
        axis = channel_axis if channel_axis >= 0 else channel_axis + image.ndim
        if not 0 <= axis < image.ndim:
            raise ValueError(f"channel_axis {channel_axis} is out of range for shape {image.shape}")
        del shape[axis]
    elif (in_channels is not None and in_channels > 1) or (
        image.ndim == labels_ndim + 1 and image.ndim >= 3
    ):
        if image.ndim < 3:
            raise ValueError(
                f"image shape {image.shape} has no channel axis but {in_channels} channels "
                "are expected"
            )
        del shape[-3]
    return tuple(shape)


def validate_pair(
    image: np.ndarray,
    labels: np.ndarray,
    dense: bool = False,
    channel_axis: int | None = None,
    *,
    in_channels: int | None = None,
    require_labels: bool = True,
) -> list[str]:
    """Check an image/label pair for training; raise ``ValueError`` or return warnings.

    The image may carry a channel axis (``channel_axis``, or axis -3 when ``in_channels > 1``
    or when the image has exactly one axis more than the labels).  ``require_labels=False``
    lets a caller with several images accept one that has no labeled pixel (it checks the
    total itself).
    """
    img = np.asarray(image)
    lab = as_label_array(labels)
    _check_pair(img, lab, channel_axis, in_channels)
    info = summarize(lab, dense)
    if dense:
        warnings = ["the labels contain no cells (ids >= 1)"] if info["n_cells"] == 0 else []
    else:
        if info["n_labeled_px"] == 0:
            if require_labels:
                raise ValueError(NO_LABELS_MESSAGE)
            return ["an image has no labeled pixels and is skipped"]
        warnings = _sparse_warnings(lab, info)
    if img.size and float(img.min()) == float(img.max()):
        warnings.append("the image is constant")
    return warnings


def _check_pair(
    img: np.ndarray, lab: np.ndarray, channel_axis: int | None, in_channels: int | None
) -> None:
    """ValueError unless the image is numeric and finite and its spatial shape is the labels'."""
    if img.dtype.kind not in "biuf":
        raise ValueError(f"image must be numeric, got dtype {img.dtype}")
    if lab.ndim < 2:
        raise ValueError(f"labels must be at least 2D (Y, X), got shape {lab.shape}")
    spatial = _spatial_image_shape(img, lab.ndim, channel_axis, in_channels)
    if spatial != lab.shape:
        raise ValueError(
            f"image shape {img.shape} does not match labels shape {lab.shape}"
            + (f" (image without channel axis: {spatial})" if spatial != img.shape else "")
        )
    if img.dtype.kind == "f" and not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinite values")


def _sparse_warnings(lab: np.ndarray, info: dict[str, int]) -> list[str]:
    """Warnings on sparse labels with some labeled pixels (ValueError: only cells, no unlabeled)."""
    warnings: list[str] = []
    if info["n_cells"] > 0 and info["n_background_px"] == 0:
        if np.count_nonzero(lab == UNLABELED) == 0:
            raise ValueError(
                "every pixel is labeled as a cell (ids >= 2) and there is no background "
                "(label 1): paint some background, or use dense mode if 0 means background"
            )
        warnings.append(
            "no background painted (label 1): the network only sees cell pixels; paint "
            "some background, or use dense mode if 0 means background"
        )
    if info["n_cells"] == 0:
        warnings.append("no cells painted (labels >= 2): the network only sees background")
    return warnings


def looks_dense(labels: np.ndarray) -> bool:
    """True when labels read as sparse (1 = painted background) look like complete labels.

    In complete labels (0 = background) label 1 is one cell like the others, while painted
    background is rarely a single compact blob of a cell's size. So: 0 covers most of the image,
    there are at least two ids >= 2, and label 1 is one connected, compact object (bounding box
    at most 3:1, at least 40 % filled) whose size is within a factor 3 of the median size of
    the other ids. A CLI or widget can then suggest dense mode.
    """
    from scipy import ndimage as ndi

    arr = as_label_array(labels)
    ids, counts = np.unique(arr, return_counts=True)
    if len(ids) < 4 or ids[0] != UNLABELED or ids[1] != BACKGROUND_LABEL:
        return False
    median = float(np.median(counts[2:]))
    if counts[0] < 0.5 * arr.size or not median / 3 <= counts[1] <= median * 3:
        return False
    blob = arr == BACKGROUND_LABEL
    structure = ndi.generate_binary_structure(arr.ndim, arr.ndim)
    if ndi.label(blob, structure=structure)[1] != 1:
        return False
    sides = [s.stop - s.start for s in ndi.find_objects(blob.astype(np.int8))[0]]
    filled = counts[1] / float(np.prod(sides))
    return max(sides[-2:]) <= 3 * min(sides[-2:]) and filled >= 0.4


def has_labels(labels: np.ndarray) -> bool:
    """True when any pixel holds a label (an id > 0)."""
    arr = np.asarray(labels)
    return bool(arr.size and arr.max() > 0)


def next_cell_id(labels: np.ndarray) -> int:
    """The first id not used in ``labels`` and at least 2 (a new cell): max + 1, or 2."""
    arr = np.asarray(labels)
    top = int(arr.max()) if arr.size else 0
    return max(BACKGROUND_LABEL + 1, top + 1)


def only_default_label(labels: np.ndarray) -> bool:
    """True when labels hold only 0 and 1, both present: painted with napari's default label."""
    arr = np.asarray(labels)
    if not arr.size or arr.dtype.kind not in "biu":
        return False
    return int(arr.max()) == BACKGROUND_LABEL and int(arr.min()) == UNLABELED


def _plane_structure(ndim: int) -> np.ndarray:
    """4-connectivity within each (Y, X) plane, none across leading (stack) axes."""
    from scipy import ndimage as ndi

    structure = np.zeros((3,) * ndim, dtype=bool)
    structure[(1,) * (ndim - 2)] = ndi.generate_binary_structure(2, 1)
    return structure


def read_default_label(
    labels: np.ndarray, ring: int = DEFAULT_LABEL_RING_PX
) -> tuple[np.ndarray, str]:
    """Read labels painted only with napari's default label 1 as cells, with background rings.

    napari paints label 1 first, which the sparse convention reads as background: a user's
    first strokes would then hold no cell.  Here each painted blob (4-connected in its plane)
    becomes one cell (ids 2, 3, ...) and the unlabeled pixels within ``ring`` px around the
    blobs become background (1), as for a cell added by click.  Returns the new sparse labels
    and a note for the user.
    """
    from scipy import ndimage as ndi

    arr = as_label_array(labels)
    painted = arr == BACKGROUND_LABEL
    structure = _plane_structure(arr.ndim)
    cells, n = ndi.label(painted, structure=structure)
    out = np.zeros(arr.shape, dtype=np.int32)
    if ring > 0:
        around = ndi.binary_dilation(painted, structure=structure, iterations=int(ring))
        out[around & ~painted] = BACKGROUND_LABEL
    out[painted] = cells[painted] + 1
    note = (
        f"only label 1 is painted (napari's default): read as {n} cell(s), one per painted "
        f"blob, with a {ring} px background ring around each. To paint background yourself, "
        "use label 1 for background and 2, 3, … for cells"
    )
    return out, note


def ids_above(labels: np.ndarray, existing: np.ndarray, dtype: Any = None) -> np.ndarray:
    """``labels`` with its ids moved above every id in ``existing`` (0 stays 0), so that
    objects written into a region of an instance layer never merge with the ones there."""
    labels = np.asarray(labels)
    offset = int(np.max(existing)) + 1 if labels.any() and np.size(existing) else 0
    out = np.where(labels > 0, labels + offset, 0)
    return out.astype(dtype if dtype is not None else np.asarray(existing).dtype)
