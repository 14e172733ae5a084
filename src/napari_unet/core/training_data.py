"""Training data: labeled image pairs -> normalized 2D slices at the training scale.

Each image/label pair is validated, split into labeled 2D planes (:func:`training_planes`),
resampled so the labeled objects appear at the model's object size (:func:`training_scale`) and
normalized like prediction does (:func:`training_slice`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .labels import NO_LABELS_MESSAGE, split_labels, validate_pair
from .model import is_trained
from .normalize import DEFAULT_PERCENTILES, percentile_normalize, to_channels_first
from .scale import (
    data_diameter,
    model_diameter,
    object_diameters,
    resample,
    scale_factor,
    scaled_shape,
    training_factor,
)
from .segment import to_single_channel

if TYPE_CHECKING:
    from .training import TrainConfig

__all__ = [
    "NORMALIZATION",
    "TrainingPlane",
    "TrainingSlice",
    "check_label_classes",
    "keeps_unlabeled",
    "prepare_slices",
    "training_planes",
    "training_scale",
    "training_slice",
]

NORMALIZATION = {"low": DEFAULT_PERCENTILES[0], "high": DEFAULT_PERCENTILES[1]}
# At most this many candidate centres are kept per image and class (a random subset).
_MAX_CENTRES = 1 << 20


@dataclass
class TrainingSlice:
    """One 2D training image: normalized ``(C, Y, X)`` image, instances, mask, centres."""

    image: np.ndarray
    instances: np.ndarray
    mask: np.ndarray
    fg: np.ndarray  # flat indices of labeled cell pixels (candidate patch centres)
    bg: np.ndarray  # flat indices of other labeled pixels
    boost: np.ndarray | None = None  # recently corrected pixels, weighed more (core.live)


def _as_list(x: Any, name: str) -> list[np.ndarray]:
    if isinstance(x, np.ndarray) or not isinstance(x, Sequence | tuple):
        return [np.asarray(x)]
    if len(x) == 0:
        raise ValueError(f"no {name} given")
    return [np.asarray(a) for a in x]



def _candidates(flags: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(flags)
    if idx.size > _MAX_CENTRES:
        idx = rng.choice(idx, _MAX_CENTRES, replace=False)
    return idx.astype(np.int64)


def _normalize(image: np.ndarray) -> np.ndarray:
    """Scale one ``(C, Y, X)`` slice like ``predict_tiled`` does: per slice and per channel."""
    return np.ascontiguousarray(
        percentile_normalize(image, NORMALIZATION["low"], NORMALIZATION["high"], channel_axis=0),
        dtype=np.float32,
    )


@dataclass
class TrainingPlane:
    """One 2D training plane before resampling: ``(C, Y, X)`` image, instances, mask."""

    image: np.ndarray
    instances: np.ndarray
    mask: np.ndarray


def _colour_to_model(
    model: torch.nn.Module, img: np.ndarray, lab: np.ndarray, channel_axis: int | None,
    cfg: TrainConfig,
) -> np.ndarray:
    """The image with channels on axis -3 as the model reads them (colour -> 1 channel)."""
    in_channels = int(model.in_channels)
    img = to_channels_first(img, channel_axis)
    if img.ndim == lab.ndim:
        if in_channels != 1:
            raise ValueError(
                f"the model expects {in_channels} channels (axis -3) but image shape "
                f"{img.shape} matches labels shape {lab.shape}; give the channel axis "
                "(--channel-axis, or open the image as RGB)"
            )
        return img[..., None, :, :]
    if in_channels == 1 and img.shape[-3] > 1 and channel_axis is not None:
        conversion = cfg.channel_conversion or "hematoxylin"
        model.metadata["channel_conversion"] = conversion
        return to_single_channel(img, conversion)[..., None, :, :]
    if img.shape[-3] != in_channels:
        raise ValueError(
            f"the model expects {in_channels} channel(s), but image shape {img.shape} has "
            f"{img.shape[-3]} on axis -3 (labels shape {lab.shape}; --channel-axis says "
            "where the channels are)"
        )
    return img


def training_planes(
    model: torch.nn.Module, images: Any, labels: Any, cfg: TrainConfig, channel_axis: int | None
) -> list[TrainingPlane]:
    """Validate all image/label pairs and split them into labeled 2D planes."""
    image_list = _as_list(images, "images")
    label_list = _as_list(labels, "labels")
    if len(image_list) != len(label_list):
        raise ValueError(f"got {len(image_list)} images but {len(label_list)} label images")
    if not isinstance(getattr(model, "metadata", None), dict):
        model.metadata = {}
    planes: list[TrainingPlane] = []
    for img, lab in zip(image_list, label_list, strict=True):
        colour = channel_axis is not None and int(model.in_channels) == 1
        for message in validate_pair(
            img, lab, cfg.dense, channel_axis, in_channels=None if colour else
            int(model.in_channels), require_labels=False
        ):
            warnings.warn(message, UserWarning, stacklevel=4)
        img = _colour_to_model(model, img, lab, channel_axis, cfg)
        instances, mask = split_labels(lab, cfg.dense)
        img = img.reshape((-1, *img.shape[-3:]))
        instances = instances.reshape((-1, *instances.shape[-2:]))
        mask = mask.reshape((-1, *mask.shape[-2:]))
        planes.extend(
            TrainingPlane(img[z], instances[z], mask[z])
            for z in range(img.shape[0]) if mask[z].any()
        )
    return planes


def training_scale(model: torch.nn.Module, planes_instances: Sequence[np.ndarray],
                   diameter: float | None) -> tuple[float | None, float]:
    """``(data diameter, resampling factor)`` for training ``model`` on these cell labels.

    The diameter is ``diameter`` when given, else the median of the labeled cells; without
    cells (only removals, say) the model's own recorded scale is kept.
    """
    if diameter is None:
        sizes = [object_diameters(inst) for inst in planes_instances]
        pooled = np.concatenate(sizes) if sizes else np.zeros(0)
        diameter = float(np.median(pooled)) if pooled.size else None
    if diameter is None:
        return data_diameter(model), scale_factor(model, None)
    model_size = model_diameter(model) if is_trained(model) else None
    return diameter, training_factor(diameter, model_size)


def training_slice(plane: TrainingPlane, factor: float, rng: np.random.Generator) -> TrainingSlice:
    """A normalized training slice of ``plane`` resampled by ``factor``."""
    image, instances, mask = plane.image, plane.instances, plane.mask
    if factor != 1.0:
        shape = scaled_shape(mask.shape, factor)
        image = resample(image, shape)
        instances = resample(instances, shape, order=0)
        mask = resample(mask, shape, order=0)
    cells = instances > 0
    return TrainingSlice(
        image=_normalize(image), instances=instances, mask=mask,
        fg=_candidates(cells & mask, rng), bg=_candidates(~cells & mask, rng),
    )


def prepare_slices(
    model: torch.nn.Module,
    images: Any,
    labels: Any,
    cfg: TrainConfig,
    channel_axis: int | None,
    rng: np.random.Generator,
) -> tuple[list[TrainingSlice], dict[str, float | None]]:
    """Validate, split, resample to the training scale and normalize all pairs."""
    planes = training_planes(model, images, labels, cfg, channel_axis)
    if not planes:
        raise ValueError(NO_LABELS_MESSAGE)
    diameter, factor = training_scale(
        model, [p.instances[p.mask] for p in planes], cfg.diameter
    )
    slices = [training_slice(p, factor, rng) for p in planes]
    check_label_classes(
        any(s.fg.size for s in slices),
        any(s.bg.size for s in slices),
        cfg.dense,
        one_class_ok=keeps_unlabeled(model, cfg),
    )
    scale = {
        "data_diameter": diameter,
        "object_diameter": None if diameter is None else diameter * factor,
        "factor": factor,
    }
    return slices, scale


def keeps_unlabeled(model: torch.nn.Module, cfg: TrainConfig) -> bool:
    """True when the unlabeled pixels keep ``model``'s answer at a fixed (given) weight.

    Then that answer supplies the class the labels lack, so corrections of one kind (only
    removed objects, say) are enough to train on.
    """
    return not cfg.dense and (cfg.distill_weight or 0.0) > 0 and is_trained(model)


def check_label_classes(
    has_cells: bool, has_background: bool, dense: bool, one_class_ok: bool = False
) -> None:
    """Raise ``ValueError`` (a message for the user) unless both classes are labeled.

    ``one_class_ok``: see :func:`keeps_unlabeled`; at least one labeled pixel is still needed.
    """
    if one_class_ok and (has_cells or has_background):
        return
    if not has_cells:
        first_cell = 1 if dense else 2
        raise ValueError(f"no cells labeled: paint at least one cell (label >= {first_cell})")
    if not has_background:
        raise ValueError(
            "no background labeled: paint some background (label 1)"
            if not dense
            else "the labels contain no background (0): every pixel is a cell"
        )

