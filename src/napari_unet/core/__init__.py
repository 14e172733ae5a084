"""The U-Net engine: pure numpy/scipy/torch, no Qt and no napari.

Names are imported lazily so that ``import napari_unet.core.metrics`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "UNet": "model",
    "DEFAULT_CONFIG": "model",
    "elastic_deform": "augment",
    "weight_map": "weights",
    "predict_tiled": "tiling",
    "PredictionCancelled": "tiling",
    "train": "training",
    "TrainConfig": "training",
    "TrainProgress": "training",
    "label_instances": "instances",
    "save_model": "checkpoint",
    "load_model": "checkpoint",
    "CheckpointError": "checkpoint",
    "split_labels": "labels",
    "BACKGROUND_LABEL": "labels",
    "make_cells": "synthetic",
    "read_image": "io",
    "write_array": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
