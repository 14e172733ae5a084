"""npe2 writers: Labels layers to TIFF, PNG or NumPy in a compact dtype; images to NumPy.

napari calls a writer with the path its Save dialog returned, after the dialog asked whether to
replace an existing file, so the writers replace it (napari's writer contract); the promise
never to overwrite silently is kept by that dialog. Every write is atomic: a temporary file in
the target folder, then one rename, so a failed write never leaves a half-written file and
never destroys the previous one.
"""

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
    return [str(write_array(_with_suffix(path), array, overwrite=True))]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer (e.g. a probability map) unchanged, as a NumPy ``.npy`` file."""
    return [str(write_array(_with_suffix(path, ".npy"), np.asarray(data), overwrite=True))]


def _with_suffix(path: str, default: str = ".tif") -> Path:
    target = Path(path)
    return target if target.suffix else target.with_suffix(default)
