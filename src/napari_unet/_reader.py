"""npe2 reader for zarr folders only: napari reads TIFF, PNG, JPEG and NumPy files itself.

Claiming those too would make napari ask "Choose reader" on every File > Open. For a zarr
folder this reader adds something: the array is opened lazily (never loaded whole), a group
opens its first array (OME-Zarr level 0), and an integer array named like labels opens as a
Labels layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .core.io import read_image

LayerData = tuple[Any, dict, str]
LABEL_HINTS = ("label", "mask", "annotation", "instances", "seg")
READ_SUFFIXES = (".zarr",)


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for zarr folders, else None so napari's own readers open the file."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(_is_zarr(Path(p)) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each zarr path into one layer: integer arrays named like labels become Labels."""
    paths = [path] if isinstance(path, str) else list(path)
    return [_layer_from(Path(p)) for p in paths]


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() in READ_SUFFIXES and path.is_dir()


def _layer_from(path: Path) -> LayerData:
    data = read_image(path)
    name = path.stem
    is_integer = np.issubdtype(np.dtype(data.dtype), np.integer)
    if is_integer and any(hint in name.lower() for hint in LABEL_HINTS):
        return data, {"name": name}, "labels"
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4) and np.dtype(data.dtype) == np.uint8
    return data, {"name": name, "rgb": rgb}, "image"
