"""npe2 writers: label layers (and images) to TIFF, PNG or NumPy, atomically, never overwriting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .core.io import write_array


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer keeping its ids, in the smallest unsigned dtype that holds them."""
    array = np.asarray(data)
    if array.size and int(array.min()) >= 0:
        array = array.astype(np.min_scalar_type(int(array.max())), copy=False)
    return [str(write_array(_with_suffix(path), array))]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer (e.g. a probability map) unchanged."""
    return [str(write_array(_with_suffix(path), np.asarray(data)))]


def _with_suffix(path: str) -> Path:
    target = Path(path)
    return target if target.suffix else target.with_suffix(".tif")
