"""Reading images and writing arrays safely.

Writes are atomic (a temporary file in the target folder, then ``os.replace``) so a crash or a
cancelled run never leaves a half-written file, and an existing file is never overwritten
unless the caller says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".npz", ".zarr")
WRITE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def read_image(path: str | os.PathLike) -> Any:
    """Read TIFF, PNG/JPEG, NumPy (.npy/.npz) or zarr into an array.

    zarr stores are returned lazily (a ``zarr.Array``) so large images are never loaded whole.
    Raises FileNotFoundError for a missing path and ValueError for an unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        if suffix in (".png", ".jpg", ".jpeg"):
            import imageio.v3 as iio

            return np.asarray(iio.imread(path))
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if not archive.files:
                    raise ValueError("empty .npz archive")
                return archive[archive.files[0]]
        if suffix == ".zarr" or (path.is_dir() and _looks_like_zarr(path)):
            return _open_zarr_array(path)
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    raise ValueError(
        f"cannot read {path}: unsupported file type {suffix!r} "
        f"(supported: {', '.join(IMAGE_SUFFIXES)})"
    )


def _looks_like_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in (".zarray", ".zgroup", "zarr.json"))


def _open_zarr_array(path: Path) -> Any:
    """Open a zarr array, or the first array of a zarr group (e.g. OME-Zarr level 0)."""
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return node
    arrays = sorted(node.array_keys())
    if not arrays:
        raise ValueError("zarr group holds no array")
    return node[arrays[0]]


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Call ``write(tmp_path)`` then move the result to ``path`` in one step.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent
    )
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_array(path: str | os.PathLike, data: np.ndarray, overwrite: bool = False) -> Path:
    """Write ``data`` to TIFF, PNG or NumPy (chosen by suffix), atomically, keeping its dtype.

    PNG holds only 2D (or RGB) unsigned 8/16-bit data: label images with larger ids or other
    dtypes raise ValueError instead of being silently truncated.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    data = np.asarray(data)
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"cannot write {suffix!r}; use one of {', '.join(WRITE_SUFFIXES)}")
    if suffix == ".png":
        data = _png_compatible(data)

    def write(tmp: Path) -> None:
        if suffix in (".tif", ".tiff"):
            import tifffile

            rgb = data.ndim == 3 and data.shape[-1] in (3, 4) and data.dtype == np.uint8
            tifffile.imwrite(tmp, data, photometric="rgb" if rgb else "minisblack")
        elif suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(tmp, data, extension=".png")
        else:
            with open(tmp, "wb") as stream:
                np.save(stream, data, allow_pickle=False)

    return atomic_write(path, write, overwrite=overwrite)


def _png_compatible(data: np.ndarray) -> np.ndarray:
    """Return ``data`` as uint8/uint16 for PNG, or raise if that would lose information."""
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise ValueError(f"PNG holds 2D or RGB(A) images; got shape {data.shape}: use .tif or .npy")
    if data.dtype == np.bool_:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"PNG holds integers; got {data.dtype}: use .tif or .npy")
    if data.size and int(data.min()) < 0:
        raise ValueError("PNG cannot hold negative values: use .tif or .npy")
    high = int(data.max()) if data.size else 0
    if high <= np.iinfo(np.uint8).max and data.dtype.itemsize == 1:
        return data.astype(np.uint8)
    if high <= np.iinfo(np.uint16).max:
        return data.astype(np.uint16)
    raise ValueError(f"label ids up to {high} do not fit a 16-bit PNG: use .tif or .npy")
