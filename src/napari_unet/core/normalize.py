"""Intensity normalization (percentiles -> [0, 1]) and channel-axis handling.

The network is trained and applied on images scaled so that the ``low`` percentile maps to 0 and
the ``high`` percentile to 1 (robust to hot pixels and to the bit depth of the camera). Tiled
prediction normalizes tile by tile with :func:`apply_range`, using the same arithmetic as
:func:`percentile_normalize`, so both give identical values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# images with more pixels per channel than this are subsampled (regular grid) for percentiles
MAX_PERCENTILE_SAMPLES = 1 << 22
# the low / high percentiles mapped to 0 / 1, everywhere (training, prediction, export)
DEFAULT_PERCENTILES: tuple[float, float] = (1.0, 99.8)


def to_channels_first(image: Any, channel_axis: int | None) -> Any:
    """Move ``channel_axis`` to position -3 (``(..., C, Y, X)``); no-op for ``None``.

    Works on numpy arrays (returns a view) and on array-likes that support ``np.moveaxis``.
    """
    if channel_axis is None:
        return image
    ndim = len(image.shape)
    if ndim < 3:
        raise ValueError(
            f"channel_axis={channel_axis} given but the image is {ndim}D with shape "
            f"{tuple(image.shape)}; a channel axis needs at least 3 dimensions (C, Y, X)"
        )
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise ValueError(f"channel_axis must be an integer or None, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"channel_axis={channel_axis} is out of range for an image of shape "
            f"{tuple(image.shape)}"
        )
    return np.moveaxis(image, int(channel_axis), -3)


def model_percentiles(metadata: dict[str, Any]) -> tuple[float, float]:
    """The ``(low, high)`` percentiles in a model's metadata, else :data:`DEFAULT_PERCENTILES`."""
    norm = metadata.get("normalization") or {}
    return (
        float(norm.get("low", DEFAULT_PERCENTILES[0])),
        float(norm.get("high", DEFAULT_PERCENTILES[1])),
    )


def _check_finite(array: np.ndarray) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values; replace them before normalizing")


def _subsample(x: np.ndarray, max_samples: int) -> np.ndarray:
    """A regular-grid subsample (a view) of the last two axes with about ``max_samples`` values."""
    if x.size <= max_samples:
        return x
    step = int(np.ceil(np.sqrt(x.size / max_samples)))
    if x.ndim < 2:
        return x[:: step * step]
    return x[..., ::step, ::step]


def percentile_range(
    image: Any,
    low: float = DEFAULT_PERCENTILES[0],
    high: float = DEFAULT_PERCENTILES[1],
    channel_axis: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(lo, hi)``: the ``low``/``high`` percentiles of ``image``.

    With ``channel_axis`` the result has one value per channel (shape ``(C,)``), otherwise the
    arrays are 0-d. Images above ``MAX_PERCENTILE_SAMPLES`` pixels (per channel) are subsampled on
    a regular grid, which changes the percentiles by far less than their natural noise.
    NaN or infinite values raise ``ValueError``.
    """
    if not (0.0 <= float(low) < float(high) <= 100.0):
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    x = np.asarray(image)
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"image must be numeric, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"image is empty (shape {x.shape})")
    _check_finite(x)
    q = [float(low), float(high)]
    if channel_axis is None:
        lo, hi = np.percentile(_subsample(x, MAX_PERCENTILE_SAMPLES), q)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    x = to_channels_first(x, channel_axis)
    x = np.moveaxis(x, -3, 0)  # (C, ..., Y, X)
    los, his = [], []
    for channel in x:
        lo, hi = np.percentile(_subsample(channel, MAX_PERCENTILE_SAMPLES), q)
        los.append(lo)
        his.append(hi)
    return np.asarray(los, dtype=np.float64), np.asarray(his, dtype=np.float64)


def range_to_offset_scale(lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(offset, scale)`` so that ``(x - offset) * scale`` maps lo->0, hi->1.

    A constant image (``hi <= lo``) gets scale 0: it normalizes to zeros instead of NaN/inf.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"normalization range must be finite, got lo={lo}, hi={hi}")
    width = hi - lo
    scale = np.where(width > 0, 1.0 / np.where(width > 0, width, 1.0), 0.0)
    return lo, scale


def _work_dtype(dtype: np.dtype) -> type:
    """float32 unless the input has more precision than float32 keeps (float64, 32/64-bit ints)."""
    return (
        np.float64
        if dtype.itemsize > 4 or (dtype.kind in "iu" and dtype.itemsize == 4)
        else np.float32
    )


def apply_range(x: Any, offset: np.ndarray, scale: np.ndarray, channel_dim: bool) -> np.ndarray:
    """``(x - offset) * scale`` as float32; per-channel values broadcast along axis -3.

    The subtraction happens in float64 for float64 / 32-bit integer input, so that a narrow
    range far from zero (e.g. 128.000 .. 128.012) keeps its resolution.
    """
    x = np.asarray(x)
    work = _work_dtype(x.dtype)
    offset = np.asarray(offset, dtype=work)
    scale = np.asarray(scale, dtype=work)
    if channel_dim and offset.ndim == 1:
        offset = offset[:, None, None]
        scale = scale[:, None, None]
    out = x.astype(work, copy=True)  # never modifies the input
    out -= offset
    out *= scale
    return out.astype(np.float32, copy=False)


def percentile_normalize(
    image: Any,
    low: float = DEFAULT_PERCENTILES[0],
    high: float = DEFAULT_PERCENTILES[1],
    channel_axis: int | None = None,
    norm_range: tuple[Any, Any] | None = None,
) -> np.ndarray:
    """Scale ``image`` so that its ``low``/``high`` percentiles become 0/1 (float32).

    Per channel when ``channel_axis`` is given (the axis stays where it is). ``norm_range=(lo, hi)``
    skips the percentile computation (scalars, or one value per channel). A constant image becomes
    zeros. NaN or infinite values raise ``ValueError``.
    """
    x = np.asarray(image)
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"image must be numeric, got dtype {x.dtype}")
    _check_finite(x)
    if norm_range is None:
        lo, hi = percentile_range(x, low, high, channel_axis)
    else:
        if len(norm_range) != 2:
            raise ValueError(f"norm_range must be (lo, hi), got {norm_range!r}")
        lo, hi = norm_range
    offset, scale = range_to_offset_scale(lo, hi)
    if channel_axis is None:
        if offset.ndim != 0 and offset.size != 1:
            raise ValueError("per-channel norm_range given but channel_axis is None")
        return apply_range(x, offset.reshape(()), scale.reshape(()), channel_dim=False)
    moved = to_channels_first(x, channel_axis)
    if offset.ndim == 0:
        offset = np.full(moved.shape[-3], offset)
        scale = np.full(moved.shape[-3], scale)
    if offset.shape != (moved.shape[-3],):
        raise ValueError(
            f"norm_range has {offset.size} values per bound but the image has "
            f"{moved.shape[-3]} channels"
        )
    out = apply_range(moved, offset, scale, channel_dim=True)
    return np.moveaxis(out, -3, channel_axis)
