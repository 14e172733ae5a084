"""Reading images and writing arrays safely.

Writes are atomic (a temporary file in the target folder, then a hard link or ``os.replace``) so
a crash or a cancelled run never leaves a half-written file, and an existing file is never
overwritten unless the caller says so, not even one that another process wrote a moment ago.
Written files get the permissions of the umask, like any other new file. Images whose header
promises more pixels than the memory can hold are refused before their data is read.
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
    return _by_format(path, _READERS)


# the reading errors of the file formats, raised as ValueError("cannot read image ...")
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, IndexError)
_SUFFIX_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".png": "pixels", ".jpg": "pixels",
                   ".jpeg": "pixels", ".npy": "npy", ".npz": "npz", ".zarr": "zarr"}


def _file_format(path: Path) -> str:
    """The format of an existing image file: its suffix's, or "zarr" for a zarr folder."""
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None and path.is_dir() and _looks_like_zarr(path):
        fmt = "zarr"
    if fmt is None:
        raise _unsupported(path)
    return fmt


def _by_format(path: str | os.PathLike, table: dict[str, Callable[[Path], Any]]) -> Any:
    """``table[format](path)``; FileNotFoundError, or ValueError for an unreadable file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = _file_format(path)
    try:
        return table[fmt](path)
    except ImageTooLarge:
        raise
    except _READ_ERRORS as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        _check_tiff(path, tif)
        return tif.asarray()


def _read_pixels(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    check_fits_memory(path, *_pixel_header(path))
    return np.asarray(iio.imread(path))


def _read_npy(path: Path) -> np.ndarray:
    check_fits_memory(path, *_npy_file_header(path))
    return np.load(path, allow_pickle=False)


def _read_npz(path: Path) -> np.ndarray:
    check_fits_memory(path, *_npz_header(path))
    with np.load(path, allow_pickle=False) as archive:
        if not archive.files:
            raise ValueError("empty .npz archive")
        return archive[archive.files[0]]


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


def _unsupported(path: Path) -> ValueError:
    return ValueError(
        f"cannot read {path}: unsupported file type {path.suffix.lower()!r} "
        f"(supported: {', '.join(IMAGE_SUFFIXES)})"
    )


class ImageTooLarge(ValueError):
    """An image file whose header promises more pixel data than the memory can hold."""


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_fits_memory(path: str | os.PathLike, shape: tuple[int, ...], dtype: Any) -> None:
    """Raise :class:`ImageTooLarge` when an image of this shape cannot be held in memory."""
    need = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    have = available_memory()
    if have is not None and need > have:
        raise ImageTooLarge(
            f"cannot read image {path}: its header says shape {tuple(int(s) for s in shape)} "
            f"{np.dtype(dtype)} ({need / 2**30:.1f} GiB), more than the "
            f"{have / 2**30:.1f} GiB of memory available"
        )


def _check_tiff(path: Path, tif: Any) -> None:
    """Refuse a TIFF whose header asks for more memory, or more data than the file holds."""
    series = tif.series[0]
    check_fits_memory(path, series.shape, series.dtype)
    need = int(np.prod(series.shape, dtype=object)) * np.dtype(series.dtype).itemsize
    have = path.stat().st_size
    if int(tif.pages[0].compression) == 1 and need > have:  # uncompressed: all bytes are there
        raise ValueError(
            f"its header says shape {tuple(series.shape)} {np.dtype(series.dtype)} "
            f"({need} bytes of pixels) but the file holds {have} bytes: truncated or corrupt"
        )


def _npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    return tuple(shape), np.dtype(dtype)


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Header of the first array of an .npz archive (the one :func:`read_image` returns)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if not names:
            raise ValueError("empty .npz archive")
        with archive.open(names[0]) as stream:
            return _npy_header(stream)


def _pixel_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    import imageio.v3 as iio
    from PIL import Image

    try:
        props = iio.improps(path)
    except Image.DecompressionBombError as error:
        raise ValueError(str(error)) from error
    return tuple(props.shape), np.dtype(props.dtype)


def image_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` of an image file from its header alone, to check files before work.

    Raises FileNotFoundError for a missing path and ValueError for an unreadable header.
    """
    return _by_format(path, _HEADERS)


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tuple(tif.series[0].shape), np.dtype(tif.series[0].dtype)


def _npy_file_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with open(path, "rb") as stream:
        return _npy_header(stream)


def _zarr_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    array = _open_zarr_array(path)
    return tuple(int(s) for s in array.shape), np.dtype(array.dtype)


_READERS: dict[str, Callable[[Path], Any]] = {
    "tiff": _read_tiff, "pixels": _read_pixels, "npy": _read_npy, "npz": _read_npz,
    "zarr": _open_zarr_array,
}
_HEADERS: dict[str, Callable[[Path], Any]] = {
    "tiff": _tiff_header, "pixels": _pixel_header, "npy": _npy_file_header,
    "npz": _npz_header, "zarr": _zarr_header,
}


# Files up to this size are read whole by check_readable (their header alone proves little).
FULL_CHECK_BYTES = 64 * 2**20


def check_readable(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Check that an image can be read, before any output is written: ``(shape, dtype)``.

    Reads the header, refuses images larger than the memory (:class:`ImageTooLarge`), and reads
    files up to ``FULL_CHECK_BYTES`` whole. ValueError (or FileNotFoundError) otherwise.
    """
    path = Path(path)
    shape, dtype = image_header(path)
    if path.is_dir():  # zarr: streamed, never read whole
        return shape, dtype
    check_fits_memory(path, shape, dtype)
    if path.stat().st_size <= FULL_CHECK_BYTES:
        data = read_image(path)
        return tuple(data.shape), data.dtype
    return shape, dtype


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Move the finished file ``tmp`` to ``path`` in one step, with the umask's permissions.

    Without ``overwrite`` it never replaces a file, not even one created a moment ago by another
    process: the file is hard-linked to ``path`` (which fails if ``path`` exists), or, where the
    file system has no hard links, ``path`` is first claimed with ``O_EXCL``. FileExistsError
    then, and ``tmp`` is left for the caller to remove.
    """
    tmp, path = Path(tmp), Path(path)
    os.chmod(tmp, 0o666 & ~current_umask())
    if overwrite:
        os.replace(tmp, path)
        return path
    exists = f"{path} already exists; not overwriting it"
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(exists) from None
    except OSError:  # no hard links on this file system: claim the name, then replace it
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise FileExistsError(exists) from None
        os.replace(tmp, path)
        return path
    tmp.unlink()
    return path


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Call ``write(tmp_path)`` then move the result to ``path`` in one step (:func:`publish`).

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False, checked before
    ``write`` and again, atomically, when the result is moved in place.
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
        publish(tmp, path, overwrite)
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
