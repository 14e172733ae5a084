"""Data augmentation for training: elastic deformation (U-Net paper), flips, rotations, intensity.

The elastic deformation follows Ronneberger et al. (2015): random displacement vectors on a
coarse ``grid x grid`` lattice spanning the image, each component drawn from N(0, sigma^2) pixels,
interpolated to a smooth per-pixel field with a cubic B-spline (the convention of the
``elasticdeform`` package: the first and last control points sit on the first and last pixel).
The image is resampled with cubic splines, the labels with nearest neighbour, using the SAME field.
Output pixel ``p`` takes its value from input position ``p + field[:, p]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi

__all__ = [
    "elastic_deform",
    "field_from_control",
    "max_displacement",
    "random_augment",
    "random_displacement_field",
]

_MODES = ("reflect", "mirror", "nearest", "constant")


def _make_rng(seed: int | None, rng: np.random.Generator | None) -> np.random.Generator:
    if seed is not None and rng is not None:
        raise ValueError("pass either seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _spline_matrix(n: int, points: int) -> np.ndarray:
    """(n, points) matrix that interpolates ``points`` control values to ``n`` pixels (cubic).

    Column j is the cubic B-spline interpolant of the unit vector e_j; the interpolation is linear
    in the control values, so the full 2D field is ``My @ G @ Mx.T`` (a tensor-product spline).
    """
    if points == 1:
        return np.ones((n, 1))
    eye = np.eye(points)
    coeffs = ndi.spline_filter1d(eye, order=3, axis=0, mode="mirror")
    pos = np.arange(n) * ((points - 1) / max(n - 1, 1))
    out = np.empty((n, points))
    for j in range(points):
        out[:, j] = ndi.map_coordinates(
            coeffs[:, j], pos[None], order=3, mode="mirror", prefilter=False
        )
    return out


def random_displacement_field(
    shape: tuple[int, int],
    grid: int | tuple[int, int] = 3,
    sigma: float = 10.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Smooth random displacement field ``(2, Y, X)`` float32 (in pixels).

    Control displacements on a ``grid`` lattice are N(0, sigma^2) and cubic-spline interpolated.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (Y, X), got {shape}")
    gy, gx = (grid, grid) if np.isscalar(grid) else tuple(grid)
    if int(gy) != gy or int(gx) != gx or gy < 1 or gx < 1:
        raise ValueError(f"grid must be a positive integer (or a pair), got {grid!r}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    rng = np.random.default_rng() if rng is None else rng
    control = rng.standard_normal((2, int(gy), int(gx))) * float(sigma)
    return field_from_control(shape, control)


def max_displacement(field: np.ndarray) -> float:
    """The largest displacement (px) of a field ``(2, Y, X)``; 0 for an empty one."""
    field = np.asarray(field, dtype=np.float32)
    return float(np.sqrt((field**2).sum(axis=0)).max()) if field.size else 0.0


def field_from_control(shape: tuple[int, int], control: np.ndarray) -> np.ndarray:
    """Interpolate control displacements ``(2, gy, gx)`` to a dense field ``(2, Y, X)`` float32."""
    control = np.asarray(control, dtype=np.float64)
    if control.ndim != 3 or control.shape[0] != 2:
        raise ValueError(f"control must have shape (2, gy, gx), got {control.shape}")
    my = _spline_matrix(shape[0], control.shape[1])
    mx = _spline_matrix(shape[1], control.shape[2])
    # tensor product My @ G @ Mx.T with plain einsum loops, not BLAS, whose threads spin far
    # longer than these skinny products take (benchmarks/README.md, "Elastic deformation")
    rows = np.einsum("yi,dij->dyj", my, control).astype(np.float32)  # (2, Y, gx)
    return np.einsum("dyj,xj->dyx", rows, mx.astype(np.float32))


def _sample_coords(field: np.ndarray) -> np.ndarray:
    """Input positions ``(2, Y, X)`` float32 sampled by each output pixel: pixel + field."""
    coords = np.empty(field.shape, dtype=np.float32)
    np.add(field[0], np.arange(field.shape[1], dtype=np.float32)[:, None], out=coords[0])
    np.add(field[1], np.arange(field.shape[2], dtype=np.float32)[None, :], out=coords[1])
    return coords


def _nearest_index(coord: np.ndarray, n: int, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Rounded integer indices into an axis of length n, folded like scipy's boundary modes.

    Returns (index, outside) where ``outside`` marks samples that fall off for mode="constant".
    """
    idx = np.floor(coord + 0.5).astype(np.int32)
    outside = None
    if n == 1:
        idx[:] = 0
        return idx, None
    if mode in ("nearest", "constant"):
        if mode == "constant":
            outside = (idx < 0) | (idx >= n)
        np.clip(idx, 0, n - 1, out=idx)
        return idx, outside
    if idx.min() >= 0 and idx.max() < n:
        return idx, None
    if mode == "reflect":  # d c b a | a b c d | d c b a
        period, last = 2 * n, 2 * n - 1
    else:  # mirror: d c b | a b c d | c b a
        period, last = 2 * n - 2, 2 * n - 2
    np.mod(idx, period, out=idx)
    idx = np.where(idx >= n, last - idx, idx)
    return idx, outside


def _warp_labels(labels: np.ndarray, coords: np.ndarray, mode: str) -> np.ndarray:
    """Nearest-neighbour resampling by integer indexing: exact, keeps dtype and values."""
    iy, out_y = _nearest_index(coords[0], labels.shape[0], mode)
    ix, out_x = _nearest_index(coords[1], labels.shape[1], mode)
    flat = iy.astype(np.intp)
    flat *= labels.shape[1]
    flat += ix
    warped = np.ascontiguousarray(labels).ravel().take(flat)
    if out_y is not None:
        warped[out_y | out_x] = 0
    return warped


def _warp_image(image: np.ndarray, coords: np.ndarray, mode: str, order: int) -> np.ndarray:
    """Resample one 2D plane; the spline prefilter runs once, in float32."""
    out_dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32
    work = image.astype(np.float32, copy=False)
    if order > 1:
        work = ndi.spline_filter(work, order=order, output=np.float32, mode=mode)
    out = ndi.map_coordinates(
        work, coords, order=order, mode=mode, prefilter=False, output=np.float32
    )
    return out.astype(out_dtype, copy=False)


def _image_planes(image: ArrayLike, channel_axis: int | None) -> np.ndarray:
    """The numeric 2D image as ``(C, Y, X)`` planes (``C = 1`` without ``channel_axis``)."""
    img = np.asarray(image)
    if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
        raise ValueError(f"image must be numeric, got dtype {img.dtype}")
    if np.iscomplexobj(img):
        raise ValueError("complex images are not supported")
    if channel_axis is None:
        if img.ndim != 2:
            raise ValueError(
                f"elastic_deform works on 2D images (Y, X); got shape {img.shape}. Pass "
                "channel_axis for a multichannel image, or deform a stack slice by slice."
            )
        planes = img[None]
    else:
        if img.ndim != 3:
            raise ValueError(
                f"with channel_axis the image must be 3D (2 spatial axes + channels), "
                f"got shape {img.shape}"
            )
        if not -3 <= channel_axis < 3:
            raise ValueError(f"channel_axis {channel_axis} is out of range for a 3D image")
        planes = np.moveaxis(img, channel_axis, 0)
    if min(planes.shape[1:]) < 1:
        raise ValueError(f"image has an empty spatial axis: {img.shape}")
    return planes


def _matching_labels(labels: ArrayLike, spatial: tuple[int, ...]) -> np.ndarray:
    """``labels`` as an array, checked against the image's spatial shape."""
    lab = np.asarray(labels)
    if lab.shape != spatial:
        raise ValueError(f"labels shape {lab.shape} does not match image spatial shape {spatial}")
    return lab


def elastic_deform(
    image: ArrayLike,
    labels: ArrayLike | None = None,
    grid: int | tuple[int, int] = 3,
    sigma: float = 10.0,
    seed: int | None = None,
    *,
    channel_axis: int | None = None,
    return_field: bool = False,
    rng: np.random.Generator | None = None,
    mode: str = "reflect",
    order: int = 3,
):
    """Elastic deformation of a 2D image (and labels) with one random smooth field.

    image: ``(Y, X)``, or multichannel with ``channel_axis`` (every channel gets the same field).
    labels: optional ``(Y, X)`` label image, resampled with nearest neighbour so it keeps its dtype
    and contains only values it already had.
    grid, sigma: control-point lattice (per axis) and std of the control displacements in pixels.
    seed / rng: seed for a new generator, or an existing ``numpy.random.Generator`` (not both).
    mode: boundary handling, one of "reflect", "mirror", "nearest", "constant" (labels 0 outside).
    order: spline order for the image (3 = cubic, as in the paper).

    Returns the deformed image (float input keeps its dtype, integer input becomes float32),
    ``(image, labels)`` when labels are given, and the field ``(2, Y, X)`` appended last when
    ``return_field``. sigma=0 gives the identity. Stacks must be deformed slice by slice.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if order not in range(6):
        raise ValueError(f"order must be an integer 0..5, got {order!r}")
    planes = _image_planes(image, channel_axis)
    spatial = planes.shape[1:]
    lab = None if labels is None else _matching_labels(labels, spatial)
    gen = _make_rng(seed, rng)
    field = random_displacement_field(spatial, grid, sigma, gen)
    coords = _sample_coords(field)
    if channel_axis is None:
        out_img = _warp_image(planes[0], coords, mode, order)
    else:
        warped = np.stack([_warp_image(p, coords, mode, order) for p in planes])
        out_img = np.moveaxis(warped, 0, channel_axis)

    result: list[np.ndarray] = [out_img]
    if lab is not None:
        result.append(_warp_labels(lab, coords, mode))
    if return_field:
        result.append(field)
    return result[0] if len(result) == 1 else tuple(result)


def _as_extra_list(weights) -> tuple[list[np.ndarray], bool]:
    if weights is None:
        return [], False
    if isinstance(weights, np.ndarray):
        return [weights], True
    if isinstance(weights, Sequence):
        return [np.asarray(w) for w in weights], False
    return [np.asarray(weights)], True


def _jitter_intensity(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Per-channel random gamma, contrast scale and brightness shift (all of size ~amount)."""
    out = np.empty_like(img)
    for c in range(img.shape[0]):
        ch = img[c]
        lo, hi = float(ch.min()), float(ch.max())
        if hi > lo:
            gamma = float(np.exp(rng.uniform(-amount, amount)))
            ch = lo + (hi - lo) * ((ch - lo) / (hi - lo)) ** gamma
        scale = 1.0 + rng.uniform(-amount, amount)
        shift = rng.uniform(-amount, amount)
        out[c] = ch * scale + shift
    return out


def _augment_inputs(
    image: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike | Sequence[ArrayLike] | None,
    elastic: bool | float,
    intensity: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], bool, float]:
    """Checked ``(image, labels, extras, single_extra, p_elastic)`` of random_augment."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"image must be (C, Y, X), got shape {img.shape}")
    lab = np.asarray(labels)
    if lab.shape != img.shape[1:]:
        raise ValueError(f"labels shape {lab.shape} does not match image {img.shape[1:]}")
    extras, single = _as_extra_list(weights)
    for w in extras:
        if w.shape != lab.shape:
            raise ValueError(f"weights shape {w.shape} does not match labels {lab.shape}")
    p_elastic = float(elastic)
    if not 0.0 <= p_elastic <= 1.0:
        raise ValueError(f"elastic must be a bool or a probability in [0, 1], got {elastic!r}")
    if not np.isfinite(intensity) or intensity < 0:
        raise ValueError(f"intensity must be >= 0, got {intensity!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator")
    return img, lab, extras, single, p_elastic


def _rotate_and_flip(
    img: np.ndarray,
    spatial: list[np.ndarray],
    rng: np.random.Generator,
    rotations: bool,
    flips: bool,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One random 90-degree rotation (0/180 when not square) and flips, the same for all arrays."""
    if rotations:
        square = img.shape[1] == img.shape[2]
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        if k:
            img = np.rot90(img, k, axes=(1, 2))
            spatial = [np.rot90(a, k) for a in spatial]
    if flips:
        for axis in (0, 1):
            if rng.random() < 0.5:
                img = np.flip(img, axis=axis + 1)
                spatial = [np.flip(a, axis=axis) for a in spatial]
    return np.ascontiguousarray(img), [np.ascontiguousarray(a) for a in spatial]


def _deform_all(
    img: np.ndarray, spatial: list[np.ndarray], rng: np.random.Generator, grid: int, sigma: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One elastic field for the image, the labels (``spatial[0]``) and the extra arrays."""
    img, labels, field = elastic_deform(
        img, spatial[0], grid, sigma, channel_axis=0, return_field=True, rng=rng
    )
    if len(spatial) == 1:
        return img, [labels]
    coords = _sample_coords(field)
    return img, [labels, *(_warp_labels(a, coords, "reflect") for a in spatial[1:])]


def random_augment(
    image: ArrayLike,
    labels: ArrayLike,
    rng: np.random.Generator,
    *,
    elastic: bool | float = True,
    grid: int = 3,
    sigma: float = 10.0,
    flips: bool = True,
    rotations: bool = True,
    intensity: float = 0.1,
    weights=None,
):
    """Random training augmentation applied identically to image, labels and extra arrays.

    image: float32 ``(C, Y, X)``; labels: integer ``(Y, X)``; weights: optional label-like
    ``(Y, X)`` array or sequence of arrays (e.g. a labeled mask or weight map), warped with
    nearest neighbour like the labels. Steps: random 90-degree rotation (only 0/180 degrees
    when Y != X so the shape is kept), random flips, elastic deformation with probability
    ``elastic`` (True = always, False = never, a float = probability), and intensity jitter on
    the image only: gamma exp(U(-a, a)) on the per-channel range, scale 1 + U(-a, a), shift U(-a, a)
    with ``a = intensity``.

    Returns ``(image, labels)`` or ``(image, labels, weights)`` (same structure as given).
    """
    img, lab, extras, single, p_elastic = _augment_inputs(
        image, labels, weights, elastic, intensity, rng
    )
    img, spatial = _rotate_and_flip(img, [lab, *extras], rng, rotations, flips)
    if p_elastic > 0 and sigma > 0 and rng.random() < p_elastic:
        img, spatial = _deform_all(img, spatial, rng, grid, sigma)
    if intensity > 0:
        img = _jitter_intensity(img, rng, float(intensity))
    img = img.astype(np.float32, copy=False)

    if weights is None:
        return img, spatial[0]
    extra_out = spatial[1] if single else list(spatial[1:])
    return img, spatial[0], extra_out
