"""U-Net pixel weight maps: class balancing plus the border term that separates touching cells.

Ronneberger et al. (2015), eq. 2::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

* ``labels`` is an instance image: 0 = background, every id > 0 is one cell.
* ``w_c`` balances the class frequencies over the counted pixels (all pixels, or those where
  ``labeled_mask`` is True): with N counted pixels, N_bg background and N_fg cell pixels,
  ``w_bg = N / (2 * N_bg)`` and ``w_fg = N / (2 * N_fg)``, so each class carries half of the total
  weight and the mean of ``w_c`` over the counted pixels is exactly 1. If one class is absent, the
  other gets weight 1.
* ``d1``/``d2`` are the Euclidean distances from a pixel centre to the centre of the nearest pixel
  of the nearest and of the second-nearest cell (two distinct ids).
* The border term is added on background pixels only (cell pixels keep ``w_c``), as in the
  paper's Fig. 3d where the weight is high in the narrow gaps between cells. It is 0 when there
  are fewer than two cells.
* Cut-off: the border term is set to 0 where ``d1 + d2 > cutoff``. The default
  ``cutoff = sigma * sqrt(2 * ln(1000))`` (~3.72 sigma) is where the term falls below
  ``1e-3 * w0``, so the map is exact up to ``1e-3 * w0``. This lets every cell be processed in its
  bounding box dilated by ``cutoff`` (a cropped distance transform), never over the full image.
* Where ``labeled_mask`` is False the weight is 0 (unlabeled pixels do not count in the loss).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi

from .labels import split_labels

__all__ = [
    "class_balance_weights",
    "default_cutoff",
    "describe_weights",
    "labels_weight_map",
    "weight_map",
]

CUTOFF_EPS = 1e-3


def default_cutoff(sigma: float) -> float:
    """Distance d1 + d2 beyond which the border term is below ``CUTOFF_EPS * w0``."""
    return float(sigma) * math.sqrt(2.0 * math.log(1.0 / CUTOFF_EPS))


def _check_instances(labels: ArrayLike) -> np.ndarray:
    """Validate an instance image and return it as a non-negative integer array."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2D (Y, X) instance image, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int32)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("labels contain NaN or infinite values")
        if np.any(arr != np.round(arr)):
            raise ValueError("labels must be integer ids; got floats with fractional parts")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError("labels must be >= 0 (0 = background, > 0 = cell ids); got negative ids")
    return arr


def _check_mask(labeled_mask: ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if labeled_mask is None:
        return None
    mask = np.asarray(labeled_mask)
    if mask.shape != shape:
        raise ValueError(f"labeled_mask shape {mask.shape} does not match labels shape {shape}")
    return mask.astype(bool, copy=False)


def _balance(fg: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    if mask is None:
        n = fg.size
        n_fg = int(np.count_nonzero(fg))
    else:
        n = int(np.count_nonzero(mask))
        n_fg = int(np.count_nonzero(fg & mask))
    n_bg = n - n_fg
    if n_fg == 0 or n_bg == 0:
        return 1.0, 1.0
    return n / (2.0 * n_bg), n / (2.0 * n_fg)


def class_balance_weights(
    instances: ArrayLike, labeled_mask: ArrayLike | None = None
) -> tuple[float, float]:
    """``(w_bg, w_fg)`` = ``(N / (2 N_bg), N / (2 N_fg))`` over the counted pixels (mean 1).

    Pixels count where ``labeled_mask`` is True (all pixels if None); if either class has no
    counted pixel both weights are 1.
    """
    inst = _check_instances(instances)
    mask = _check_mask(labeled_mask, inst.shape)
    return _balance(inst > 0, mask)


def _two_nearest_distances(inst: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, distances to the nearest and second-nearest cell (inf beyond ``cutoff``).

    Each cell's distance transform is computed only in its bounding box dilated by ``cutoff``:
    the box contains the whole cell, so distances inside it are exact, and every pixel outside is
    farther than ``cutoff`` from the cell. Cells with no other cell in their box are skipped.
    """
    if inst.size and int(inst.max()) > inst.size:  # sparse huge ids: find_objects needs small ids
        inst = np.unique(inst, return_inverse=True)[1].reshape(inst.shape)
    h, w = inst.shape
    d1 = np.full(inst.shape, np.inf, dtype=np.float32)
    d2 = np.full(inst.shape, np.inf, dtype=np.float32)
    r = int(math.ceil(cutoff))
    slices = ndi.find_objects(inst)
    for idx, sl in enumerate(slices):
        if sl is None:
            continue
        cell_id = idx + 1
        y0, y1 = max(sl[0].start - r, 0), min(sl[0].stop + r, h)
        x0, x1 = max(sl[1].start - r, 0), min(sl[1].stop + r, w)
        crop = inst[y0:y1, x0:x1]
        if not np.any((crop != 0) & (crop != cell_id)):
            # no other cell within cutoff: by the triangle inequality d1 + d2 >= the distance
            # between two cells, so this cell is never part of a pair with a non-zero term
            continue
        dist = ndi.distance_transform_edt(crop != cell_id).astype(np.float32)
        b1 = d1[y0:y1, x0:x1]
        b2 = d2[y0:y1, x0:x1]
        np.minimum(b2, np.maximum(b1, dist), out=b2)
        np.minimum(b1, dist, out=b1)
    return d1, d2


def _has_two_cells(inst: np.ndarray) -> bool:
    ids = inst[inst > 0]
    return ids.size > 0 and bool(np.any(ids != ids[0]))


def _border_term(inst: np.ndarray, w0: float, sigma: float, cutoff: float) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels, 0 elsewhere / past cutoff."""
    term = np.zeros(inst.shape, dtype=np.float32)
    if w0 == 0 or cutoff <= 0:
        return term
    d1, d2 = _two_nearest_distances(inst, cutoff)
    s = d1 + d2
    use = (inst == 0) & (s <= cutoff)
    if np.any(use):
        sv = s[use].astype(np.float64)
        term[use] = (w0 * np.exp(-(sv * sv) / (2.0 * sigma * sigma))).astype(np.float32)
    return term


def weight_map(
    labels: ArrayLike,
    w0: float = 10.0,
    sigma: float = 5.0,
    *,
    labeled_mask: ArrayLike | None = None,
    class_weights: str | tuple[float, float] | None = "balanced",
    cutoff: float | None = None,
) -> np.ndarray:
    """U-Net weight map (float32, labels' shape); see the module docstring for the formula.

    labels: 2D instance image (0 = background, > 0 = cell ids).
    w0, sigma: amplitude and width (pixels) of the border term.
    labeled_mask: where False the weight is 0 and the pixel does not count for class balance.
    class_weights: "balanced" (N / (2 N_class)), None (w_c = 1), or an explicit ``(w_bg, w_fg)``.
    cutoff: border term is 0 where d1 + d2 > cutoff; default ``default_cutoff(sigma)``.
    """
    inst = _check_instances(labels)
    mask = _check_mask(labeled_mask, inst.shape)
    if not (np.isfinite(w0) and w0 >= 0):
        raise ValueError(f"w0 must be a finite number >= 0, got {w0!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if cutoff is None:
        cutoff = default_cutoff(sigma)
    elif not (np.isfinite(cutoff) and cutoff >= 0):
        raise ValueError(f"cutoff must be a finite number >= 0, got {cutoff!r}")

    fg = inst > 0
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be 'balanced', None or (w_bg, w_fg), got {class_weights!r}"
            )
        w_bg, w_fg = _balance(fg, mask)
    elif class_weights is None:
        w_bg, w_fg = 1.0, 1.0
    else:
        try:
            w_bg, w_fg = (float(v) for v in class_weights)
        except (TypeError, ValueError):
            raise ValueError(
                f"class_weights must be 'balanced', None or (w_bg, w_fg), got {class_weights!r}"
            ) from None

    weights = np.where(fg, np.float32(w_fg), np.float32(w_bg)).astype(np.float32)
    if inst.size and _has_two_cells(inst):
        weights += _border_term(inst, float(w0), float(sigma), float(cutoff))
    if mask is not None:
        weights[~mask] = 0.0
    return weights


def labels_weight_map(labels: ArrayLike, w0: float, sigma: float, dense: bool) -> np.ndarray:
    """Weight map of a label image in the training convention (2D, or a stack slice by slice)."""
    instances, mask = split_labels(np.asarray(labels), dense=dense)
    if instances.ndim < 2:
        raise ValueError(f"labels must be at least 2D, got shape {instances.shape}")
    if instances.ndim == 2:
        return weight_map(instances, w0, sigma, labeled_mask=mask)
    out = np.zeros(instances.shape, dtype=np.float32)
    for idx in np.ndindex(*instances.shape[:-2]):
        if mask[idx].any():
            out[idx] = weight_map(instances[idx], w0, sigma, labeled_mask=mask[idx])
    return out


def describe_weights(weights: np.ndarray, labels: ArrayLike, dense: bool) -> str:
    """One line in plain words: how much cells, background and the gaps between cells weigh."""
    instances, mask = split_labels(np.asarray(labels), dense=dense)
    cells = mask & (instances > 0)
    background = mask & (instances == 0)
    if not mask.any():
        return "Nothing painted yet: weight 0 everywhere."
    parts = []
    if cells.any():
        parts.append(f"cells ×{float(np.median(weights[cells])):.2f}")
    if background.any():
        w_bg = float(weights[background].min())
        parts.append(f"background ×{w_bg:.2f}")
        border = float(weights[background].max()) - w_bg
        if border > 1e-3:
            parts.append(f"gaps between touching cells up to ×{w_bg + border:.2f}")
        else:
            parts.append("no two labeled cells close enough for a border term yet")
    if not dense and (~mask).any():
        parts.append("unlabeled ×0")
    return "Weights: " + ", ".join(parts) + "."
