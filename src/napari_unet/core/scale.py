"""Object scale: measure object diameters and resample images to the scale a model knows.

A U-Net sees a fixed receptive field, so it segments objects of about the size it was trained
on (the U-Net paper trains and tests at one magnification).  A model records that size as
``metadata["scale"]``::

    {"object_diameter": d_net,    # median object diameter in the pixels the network saw
     "data_diameter": d_data}     # the same objects in the user's (unresampled) images

Prediction resamples an image by ``d_net / d_image`` so that its objects appear at the network's
scale, and maps the result back onto the image's own pixel grid (same shape, aligned).  The
diameter of an object is its equivalent diameter ``sqrt(4 area / pi)`` (as in Cellpose,
Stringer et al. 2021, which rescales images to a fixed object diameter in the same way).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.transform import resize

__all__ = [
    "DEFAULT_DIAMETER",
    "MAX_FACTOR",
    "TRAIN_DIAMETER",
    "data_diameter",
    "default_diameter",
    "diameter_circle",
    "model_diameter",
    "object_diameter",
    "object_diameters",
    "resample",
    "scale_factor",
    "scaled_shape",
    "training_factor",
]

# Diameter assumed for a model that records none (the median nucleus of DSB2018 train/fluo).
DEFAULT_DIAMETER = 17.9
# A new network is trained with objects at most this wide (larger ones are shrunk), so that its
# receptive field covers an object and its surroundings (benchmarks/README.md, "Object scale").
TRAIN_DIAMETER = 40.0
# Resampling factors are kept within [1 / MAX_FACTOR, MAX_FACTOR].
MAX_FACTOR = 8.0
# Factors this close to 1 are treated as 1 (no resampling, bit-identical results).
_UNIT_TOLERANCE = 0.05


def object_diameters(instances: Any) -> np.ndarray:
    """Equivalent diameters ``sqrt(4 area / pi)`` of the objects (ids > 0) of a label image."""
    inst = np.asarray(instances)
    values = inst[inst > 0]
    if values.size == 0:
        return np.zeros(0)
    _, counts = np.unique(values, return_counts=True)
    return np.sqrt(4.0 * counts / np.pi)


def object_diameter(instances: Any) -> float | None:
    """Median equivalent diameter of the objects (ids > 0), pooled over a stack, or None."""
    sizes = object_diameters(instances)
    return float(np.median(sizes)) if sizes.size else None


def _scale_metadata(model: Any) -> dict[str, Any]:
    metadata = getattr(model, "metadata", None)
    scale = metadata.get("scale") if isinstance(metadata, dict) else None
    return scale if isinstance(scale, dict) else {}


def model_diameter(model: Any) -> float:
    """Object diameter (pixels) at the network's own scale; ``DEFAULT_DIAMETER`` if unrecorded."""
    value = _scale_metadata(model).get("object_diameter")
    return float(value) if value else DEFAULT_DIAMETER


def data_diameter(model: Any) -> float | None:
    """Object diameter in the images the model was trained on (None: not trained by the user)."""
    value = _scale_metadata(model).get("data_diameter")
    return float(value) if value else None


def default_diameter(model: Any) -> str | None:
    """The object size a prediction uses when none is given: the model's training data's
    (None), or ``"auto"`` (estimated per image) for a model that records none.

    A model records no data scale when it was trained on many magnifications (the ``nuclei``
    starting model) or fine-tuned from such a model: its size estimate holds from 0.5x to 8x
    (benchmarks/README.md, scale test), where one recorded size is wrong for mixed images
    (finding K5).
    """
    return None if data_diameter(model) is not None else "auto"


def _clip_factor(factor: float) -> float:
    factor = float(np.clip(factor, 1.0 / MAX_FACTOR, MAX_FACTOR))
    return 1.0 if abs(np.log(factor)) < _UNIT_TOLERANCE else factor


def scale_factor(model: Any, diameter: float | None) -> float:
    """Resampling factor that brings objects of ``diameter`` px to the model's object size.

    ``diameter=None`` uses the diameter of the model's own training data (factor 1 for a model
    without one).  Raises ValueError for a diameter that is not a positive number.
    """
    if diameter is None:
        diameter = data_diameter(model)
        if diameter is None:
            return 1.0
    if not np.isfinite(diameter) or diameter <= 0:
        raise ValueError(f"diameter must be a positive number of pixels, got {diameter!r}")
    return _clip_factor(model_diameter(model) / float(diameter))


def training_factor(diameter: float | None, model_size: float | None) -> float:
    """Factor for training images whose objects are ``diameter`` px wide.

    Fine-tuning (``model_size`` given: the starting model's object diameter) brings them to the
    model's size; a new network (``model_size=None``) only shrinks objects wider than
    ``TRAIN_DIAMETER``, since enlarging small ones costs time and adds no detail.
    """
    if diameter is None or diameter <= 0:
        return 1.0
    if model_size is None:
        return _clip_factor(min(1.0, TRAIN_DIAMETER / diameter))
    return _clip_factor(model_size / diameter)


def scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """The ``(Y, X)`` size of a plane of ``shape`` resampled by ``factor`` (at least 1 px)."""
    return tuple(max(1, round(int(n) * factor)) for n in shape[-2:])  # type: ignore[return-value]


def resample(array: Any, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resample the last two axes of ``array`` to ``shape`` (pixel areas aligned, float32).

    Leading axes (channels, stack) are kept.  ``order`` 1 is bilinear, 0 nearest (labels).
    Shrinking is anti-aliased.  The pixel grids are aligned by their outer edges, so resampling
    back to the original shape puts every structure where it was.
    """
    arr = np.asarray(array)
    shape = (int(shape[0]), int(shape[1]))
    if arr.shape[-2:] == shape:
        return arr
    lead = arr.shape[:-2]
    planes = arr.reshape((-1, *arr.shape[-2:]))
    shrink = shape[0] < arr.shape[-2] or shape[1] < arr.shape[-1]
    out_dtype = arr.dtype if order == 0 else np.float32
    out = np.empty((planes.shape[0], *shape), dtype=out_dtype)
    for i, plane in enumerate(planes):
        work = plane if order == 0 else plane.astype(np.float32, copy=False)
        out[i] = resize(
            work, shape, order=order, mode="reflect", preserve_range=True,
            anti_aliasing=bool(shrink and order > 0),
        )
    return out.reshape((*lead, *shape))


def diameter_circle(shape: tuple[int, int], diameter: float) -> np.ndarray:
    """``[[cy, cx], [r, r]]``: a circle of ``diameter`` near the top left of ``shape``.

    For drawing the object size on an image (napari's ellipse from a centre and radii).
    """
    radius = float(diameter) / 2.0
    centre = min(radius * 1.5 + 2.0, 0.5 * min(shape))
    return np.array([[centre, centre], [radius, radius]], dtype=float)
