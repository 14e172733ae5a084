"""From an image to cell probabilities and instances: channels, object scale and threshold.

One pipeline for the widgets, the CLI and the benchmarks:

1. :func:`prepare_image` checks the image against the model and converts colour images for a
   single-channel model (:func:`to_single_channel`: grey, or the hematoxylin stain by colour
   deconvolution, Ruifrok & Johnston 2001).
2. :func:`predict_maps` resamples the image so that its objects appear at the model's
   object size (:mod:`.scale`), predicts it tile by tile and resamples the cell probability
   back to the image's pixel grid.  ``diameter="auto"`` estimates the object size first
   (:func:`estimate_diameter`).
3. :func:`segment` labels instances with the model's calibrated threshold
   (:func:`model_threshold`) and a smallest-object size that follows the object scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .instances import (
    DEFAULT_MIN_SIZE,
    DEFAULT_THRESHOLD,
    follow_annotations,
    label_instances,
    label_planes,
    label_with_interior,
)
from .labels import BACKGROUND_LABEL, split_labels
from .normalize import to_channels_first
from .scale import (
    MAX_FACTOR,
    data_diameter,
    model_diameter,
    object_diameter,
    resample,
    scale_factor,
    scaled_shape,
)

__all__ = [
    "CONVERSIONS",
    "DEFAULT_FLIPS",
    "Annotations",
    "Segmentation",
    "auto_factor",
    "estimate_diameter",
    "guess_channel_axis",
    "label_probability",
    "measure_objects",
    "min_size_for",
    "model_threshold",
    "predict_foreground",
    "predict_maps",
    "prepare_image",
    "scale_fingerprint",
    "segment",
    "to_single_channel",
]

#: ways to turn a colour image into the one channel a single-channel model reads
CONVERSIONS = ("hematoxylin", "grey", "first")
#: a whole-image prediction averages over the image's four flips (test-time augmentation):
#: higher accuracy on every kind of image for 4 times the network's work (benchmarks/README.md
#: finding P5); the live overlay and the estimate of the object size predict once
DEFAULT_FLIPS = True
# Object-size search of estimate_diameter: factors tried, and the side (px) of the resampled
# crop each is predicted on.
_SEARCH_FACTORS = (2.0, 1.0, 0.5, 0.25, 0.125)
_SEARCH_SIDE = 512
_MIN_OBJECTS = 3
# Weight of the ambiguity against the log-size miss when choosing the scale.
_AMBIGUITY = 0.3
# Weight of the cell area lost (log of the fraction of the largest over the factors tried).
_LOST = 0.1
# An estimated size within this factor of the model's own is taken as equal (no resampling).
_AUTO_SNAP = 1.5


def to_single_channel(image: Any, conversion: str = "hematoxylin") -> np.ndarray:
    """One channel ``(..., Y, X)`` from a colour image with channels on axis -3.

    ``hematoxylin``: the optical density of the hematoxylin stain (nuclei bright, as in a
    fluorescence image); ``grey``: luminance; ``first``: channel 0.
    """
    arr = np.asarray(image)
    if conversion not in CONVERSIONS:
        raise ValueError(f"unknown colour conversion {conversion!r}; use one of {CONVERSIONS}")
    if conversion == "first" or arr.shape[-3] == 1:
        return np.asarray(arr[..., 0, :, :])
    if arr.shape[-3] < 3:
        raise ValueError(
            f"a {conversion} conversion needs 3 colour channels, got {arr.shape[-3]} "
            f"(shape {arr.shape})"
        )
    rgb = np.moveaxis(arr[..., :3, :, :], -3, -1).astype(np.float32)
    if arr.dtype.kind in "ui" and arr.dtype.itemsize == 1:
        rgb /= 255.0
    elif rgb.size and rgb.max() > 1.0:
        rgb /= float(rgb.max())
    if conversion == "grey":
        return rgb @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
    from skimage.color import rgb2hed

    return rgb2hed(np.clip(rgb, 0.0, 1.0))[..., 0].astype(np.float32)


def guess_channel_axis(
    shape: tuple[int, ...], labels_shape: tuple[int, ...] | None = None
) -> int | None:
    """-1 for a shape that reads as colour, ``(..., Y, X, 3|4)`` (as napari's RGB guess), else None.

    With ``labels_shape`` the image must also have one axis more than the labels.
    """
    if len(shape) < 3 or shape[-1] not in (3, 4) or min(shape[-3:-1]) <= 4:
        return None
    if labels_shape is not None and tuple(labels_shape) != tuple(shape[:-1]):
        return None
    return -1


def _conversion_of(model: Any, conversion: str | None) -> str:
    if conversion is not None:
        return conversion
    metadata = getattr(model, "metadata", None) or {}
    return str(metadata.get("channel_conversion") or "hematoxylin")


def prepare_image(
    image: Any, channel_axis: int | None, model: Any, conversion: str | None = None
) -> tuple[np.ndarray, int | None]:
    """Check ``image`` against ``model``; return ``(image, channel_axis)`` ready to predict.

    A colour image given to a single-channel model is converted (``conversion``; default the
    model's ``metadata["channel_conversion"]``, else hematoxylin).  Raises ValueError with a
    message for the user: no model, channel mismatch, NaN, a degenerate size.
    """
    if model is None:
        raise ValueError("no model: train one, or load a checkpoint first")
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"image must be numeric, got dtype {arr.dtype}")
    n_in = int(getattr(model, "in_channels", 1))
    if channel_axis is not None:
        arr = to_channels_first(arr, channel_axis)
        n_img = arr.shape[-3]
        if n_in == 1:
            arr, channel_axis = to_single_channel(arr, _conversion_of(model, conversion)), None
        elif n_img != n_in:
            raise ValueError(
                f"channel mismatch: the model expects {n_in} channels, the image has {n_img} "
                f"(shape {image.shape}, channel axis {channel_axis})"
            )
        else:
            channel_axis = -3
    elif n_in > 1:
        if arr.ndim >= 3 and arr.shape[-3] == n_in:
            channel_axis = -3
        else:
            raise ValueError(
                f"channel mismatch: the model expects {n_in} channels but the image has shape "
                f"{arr.shape}; give the channel axis (--channel-axis, or open the image as RGB)"
            )
    spatial_ndim = arr.ndim - (1 if channel_axis is not None else 0)
    if spatial_ndim < 2:
        raise ValueError(f"image must be at least 2D, got shape {arr.shape}")
    if min(arr.shape[-2:]) < 2:
        raise ValueError(f"image too small to segment: shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    return arr, channel_axis


def _maps(probs: np.ndarray) -> np.ndarray:
    """``(..., k, Y, X)``: cell probability (1 - background), and for a 3-class network also
    the cell-interior probability (k = 2)."""
    cell = 1.0 - np.take(probs, 0, axis=-3)
    if probs.shape[-3] < 3:
        return np.ascontiguousarray(cell[..., None, :, :], dtype=np.float32)
    return np.ascontiguousarray(np.stack([cell, np.take(probs, 1, axis=-3)], axis=-3),
                                dtype=np.float32)


def _predict_at(
    model: Any, image: np.ndarray, channel_axis: int | None, factor: float, **kw: Any
) -> np.ndarray:
    """:func:`_maps` of ``image`` predicted at ``factor``, on the image's own grid."""
    from .tiling import predict_tiled

    if factor == 1.0:
        return _maps(predict_tiled(model, image, channel_axis=channel_axis, **kw))
    shape = image.shape[-2:]
    small = resample(image, scaled_shape(shape, factor))
    maps = _maps(predict_tiled(model, small, channel_axis=channel_axis, **kw))
    return np.clip(resample(maps, shape), 0.0, 1.0)


def predict_maps(
    model: Any,
    image: Any,
    *,
    channel_axis: int | None = None,
    diameter: float | str | None = None,
    tile_size: Any = None,
    batch_size: int = 4,
    device: str = "auto",
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    factor: float | None = None,
    flips: bool = DEFAULT_FLIPS,
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """``(cell probability, interior probability or None, factor)`` of a prepared image.

    Maps are ``(..., Y, X)`` on the image's grid; the interior map exists for 3-class
    (border-aware) networks.  ``diameter``: the objects' size in this image (pixels); None: the
    size in the model's own training data (no resampling for a model without one); ``"auto"``:
    estimated.  ``factor``: the resampling factor itself (one found before), instead.
    ``flips``: average the prediction over the image's flips (``tiling.flip_average``).
    """
    from .tiling import inference_net

    if isinstance(diameter, str) and diameter != "auto":
        raise ValueError(f"diameter must be a number of pixels or 'auto', got {diameter!r}")
    kw = dict(tile_size=tile_size, batch_size=batch_size, device=device)
    with inference_net(model, device) as net:  # the estimate predicts 5 times more
        if factor is not None:
            factor = float(factor)
        elif diameter == "auto":
            factor = auto_factor(net, image, channel_axis=channel_axis, **kw)
        else:
            factor = scale_factor(model, diameter)
        maps = _predict_at(net, image, channel_axis, factor, progress=progress, cancel=cancel,
                           flips=flips, **kw)
    interior = maps[..., 1, :, :] if maps.shape[-3] > 1 else None
    return maps[..., 0, :, :], interior, factor


def auto_factor(model: Any, image: Any, *, channel_axis: int | None = None,
                **kw: Any) -> float:
    """The resampling factor ``diameter="auto"`` predicts ``image`` at: the estimated object
    size's (:func:`estimate_diameter`), or 1 when within ``_AUTO_SNAP`` of it.  The estimate
    predicts each candidate scale once (``flips`` is ignored)."""
    from .tiling import inference_net

    kw.pop("flips", None)
    with inference_net(model, kw.get("device", "auto")) as net:
        factor = scale_factor(model, estimate_diameter(net, image, channel_axis=channel_axis,
                                                       **kw))
    # within the estimate's error: predict the image as it is
    return 1.0 if abs(np.log(factor)) < np.log(_AUTO_SNAP) else factor


def predict_foreground(model: Any, image: Any, **kw: Any) -> tuple[np.ndarray, float]:
    """``(cell probability, factor)``: :func:`predict_maps` without the interior map."""
    fg, _, factor = predict_maps(model, image, **kw)
    return fg, factor


def _centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[-2:]
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[..., y0 : y0 + side, x0 : x0 + side]


def _first_plane(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    keep = 3 if channel_axis is not None else 2
    while image.ndim > keep:
        image = image[0]
    return image


def estimate_diameter(
    model: Any, image: Any, *, channel_axis: int | None = None, **kw: Any
) -> float:
    """Estimate the objects' diameter (pixels) in a prepared image, for a model that has none.

    The image (a centre crop, its first plane) is predicted at several scales; at each the
    median diameter of the objects found is measured.  The scale whose objects come out
    closest to the model's own object size with the least undecided probability is taken, and
    the estimate is that size mapped back to the image's pixels (the model's diameter when no
    scale finds objects).
    """
    plane = _first_plane(np.asarray(image), channel_axis)
    target = model_diameter(model)
    measured = [(f, _objects_at(model, plane, channel_axis, f, **kw)) for f in _SEARCH_FACTORS]
    measured = [(f, m) for f, m in measured if m is not None]
    most = max((m[2] for _, m in measured), default=0.0)
    found = [
        (_scale_score(size, target, ambiguity, cover, most), size / f)
        for f, (size, ambiguity, cover) in measured
        if size is not None
    ]
    if not found:
        return data_diameter(model) or target
    estimate = min(found)[1]
    return float(np.clip(estimate, target / MAX_FACTOR, target * MAX_FACTOR))


def _scale_score(size: float, target: float, ambiguity: float, cover: float,
                 most: float) -> float:
    """Lower is better: log-size miss, plus ambiguity, plus foreground lost to the scale."""
    lost = max(0.0, -float(np.log(max(cover, 1e-4) / max(most, 1e-4))))
    return abs(float(np.log(size / target))) + _AMBIGUITY * ambiguity + _LOST * lost


def _objects_at(
    model: Any, plane: np.ndarray, channel_axis: int | None, factor: float, **kw: Any
) -> tuple[float | None, float, float] | None:
    """(median object diameter, ambiguity, cell fraction) of a crop resampled by ``factor``.

    Ambiguity is the area of undecided probability (0.2-0.8) per area of confident cell: a
    network shown objects far larger than it knows breaks them into pieces of its own size,
    with undecided interiors and less area called cell, and one shown far smaller ones blurs
    them; both raise it.  None when the crop would be too small at this factor.
    """
    crop = _centre_crop(plane, int(_SEARCH_SIDE / factor))
    shape = scaled_shape(crop.shape, factor)
    if min(shape) < 32:
        return None
    fg = _predict_at(model, resample(crop, shape), channel_axis, 1.0, **kw)[..., 0, :, :]
    return measure_objects(fg, model_threshold(model))


def measure_objects(fg: np.ndarray, threshold: float, min_size: int = DEFAULT_MIN_SIZE,
                    ) -> tuple[float | None, float, float]:
    """``(median object diameter or None, ambiguity, cell fraction)`` of a probability map.

    What :func:`estimate_diameter` compares between scales: the size is None with fewer than
    ``_MIN_OBJECTS`` objects; the ambiguity is the undecided area (0.2-0.8) per cell area.
    """
    objects = label_instances(fg, threshold, min_size)
    size = object_diameter(objects) if objects.max() >= _MIN_OBJECTS else None
    cover = float(np.mean(fg > threshold))
    undecided = float(np.mean((fg > 0.2) & (fg < 0.8)))
    return size, undecided / max(cover, 1e-3), cover


def scale_fingerprint(fg: np.ndarray, threshold: float, factor: float,
                      ) -> tuple[float | None, float]:
    """``(median object diameter at the network's scale or None, ambiguity)`` of a prediction
    made at ``factor`` (its first plane's centre crop, the area the size search looks at)."""
    plane = _first_plane(np.asarray(fg), None)
    crop = _centre_crop(plane, int(_SEARCH_SIDE / factor))
    size, ambiguity, _ = measure_objects(crop, threshold, min_size_for(factor))
    return (None if size is None else size * factor), ambiguity


def model_threshold(model: Any) -> float:
    """The model's calibrated probability threshold (``metadata["threshold"]``), else 0.8."""
    metadata = getattr(model, "metadata", None) or {}
    value = metadata.get("threshold")
    return float(value) if value is not None else DEFAULT_THRESHOLD


def min_size_for(factor: float, min_size: int = DEFAULT_MIN_SIZE) -> int:
    """Smallest object (image pixels) for a prediction made at resampling ``factor``."""
    return max(1, round(min_size / (factor * factor)))


@dataclass
class Annotations:
    """The user's edits of one 2D plane: their cells (ids > 0) and the background they set."""

    cells: np.ndarray
    background: np.ndarray | None = None

    @classmethod
    def of(cls, labels: np.ndarray, dense: bool = False) -> Annotations:
        """From an annotation layer's plane (sparse: 1 background, >= 2 cells; dense: >= 1
        cells, and its 0 is not taken for a user's background, which would hide the rest)."""
        labels = np.asarray(labels)
        return cls(split_labels(labels, dense)[0],
                   None if dense else labels == BACKGROUND_LABEL)


@dataclass
class Segmentation:
    """A prediction: cell probability and instances on the image's grid, and its settings."""

    probability: np.ndarray
    instances: np.ndarray
    factor: float
    threshold: float
    min_size: int
    interior: np.ndarray | None = None


def label_probability(
    fg: np.ndarray, threshold: float, min_size: int, interior: np.ndarray | None = None,
    annotations: Annotations | None = None,
) -> np.ndarray:
    """Instances of a 2D cell-probability map, or of every 2D plane of a stack.

    With ``interior`` (a 3-class network) cells are split where the network saw their border
    (:func:`~.instances.label_with_interior`), else by the distance transform. With
    ``annotations`` (of a 2D map) the user's edits win where they were made
    (:func:`~.instances.follow_annotations`): an added cell is shown as its own object, a
    removed one stays removed.
    """
    if annotations is not None:
        if fg.ndim != 2 or annotations.cells.shape != fg.shape:
            raise ValueError(f"annotations {annotations.cells.shape} must be of the 2D map's "
                             f"shape, got {fg.shape}")
        plain = label_probability(fg, threshold, min_size, interior)
        return follow_annotations(plain, annotations.cells, annotations.background, min_size)
    if interior is None:
        if fg.ndim == 2:
            return label_instances(fg, threshold, min_size)
        flat = fg.reshape((-1, *fg.shape[-2:]))
        return label_instances(flat, threshold, min_size, stack=True).reshape(fg.shape)
    planes = fg.reshape((-1, *fg.shape[-2:]))
    inner = interior.reshape(planes.shape)
    out = label_planes(
        planes.shape, lambda z: label_with_interior(planes[z], inner[z], threshold, min_size)
    )
    return out.reshape(fg.shape)


def segment(
    model: Any,
    image: Any,
    *,
    channel_axis: int | None = None,
    diameter: float | str | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    conversion: str | None = None,
    **kw: Any,
) -> Segmentation:
    """Predict and label ``image`` (raw: it is prepared here) at the model's object scale.

    ``threshold`` None: the model's calibrated one; ``min_size`` None: ``DEFAULT_MIN_SIZE``
    at the network's scale, converted to image pixels.  ``kw`` go to :func:`predict_maps`.
    """
    arr, axis = prepare_image(image, channel_axis, model, conversion)
    fg, interior, factor = predict_maps(model, arr, channel_axis=axis, diameter=diameter, **kw)
    threshold = model_threshold(model) if threshold is None else float(threshold)
    min_size = min_size_for(factor) if min_size is None else int(min_size)
    labels = label_probability(fg, threshold, min_size, interior)
    return Segmentation(fg, labels, factor, threshold, min_size, interior)
