"""npe2 reader: TIFF, PNG/JPEG, NumPy and zarr images as napari layers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .core.io import IMAGE_SUFFIXES, read_image

LayerData = tuple[Any, dict, str]
LABEL_HINTS = ("label", "mask", "annotation", "instances", "seg")


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for the paths we understand, else None so napari tries other plugins."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each path into one layer: integer files named like labels become Labels layers."""
    paths = [path] if isinstance(path, str) else list(path)
    return [_layer_from(Path(p)) for p in paths]


def _layer_from(path: Path) -> LayerData:
    data = read_image(path)
    name = path.stem
    is_integer = np.issubdtype(np.dtype(data.dtype), np.integer)
    if is_integer and any(hint in name.lower() for hint in LABEL_HINTS):
        return data, {"name": name}, "labels"
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4) and np.dtype(data.dtype) == np.uint8
    return data, {"name": name, "rgb": rgb}, "image"
