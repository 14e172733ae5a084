"""What every command shares: exit codes, reading inputs, loading models, progress bars."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import IMAGE_SUFFIXES

PROG = "napari-unet"
EXIT_OK, EXIT_USAGE, EXIT_FILE, EXIT_UNREADABLE, EXIT_DATA, EXIT_CANCELLED = 0, 2, 3, 4, 5, 130


class CliError(Exception):
    """An error with its exit code and one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- helpers
def _read(path: str | Path, what: str = "image") -> np.ndarray:
    """Read a whole image; missing -> exit 3, unreadable -> exit 4."""
    from ..core.io import read_image

    path = Path(path)
    if not path.exists():
        raise CliError(EXIT_FILE, f"{what} not found: {path}")
    try:
        return np.asarray(read_image(path))
    except ValueError as error:  # also ImageTooLarge: the header promises more than the memory
        raise CliError(EXIT_UNREADABLE, str(error)) from None
    except OSError as error:
        raise CliError(EXIT_UNREADABLE, f"cannot read {what} {path}: {error}") from None
    except MemoryError:
        raise CliError(EXIT_UNREADABLE, f"not enough memory to read {what} {path}") from None


def _model_path(name_or_path: str | Path) -> Path:
    """A checkpoint path, or the file of a shipped starting model given by name ("nuclei")."""
    from ..models import ALIASES, PRETRAINED, pretrained_path

    name = str(name_or_path)
    if (name in PRETRAINED or name in ALIASES) and not Path(name_or_path).exists():
        return pretrained_path(name)
    return Path(name_or_path)


def _starting_help() -> str:
    """The short names of the shipped starting models, for ``--help``."""
    from ..models import starting_models

    return ", ".join(
        f"'{name}' ({text.split(' (')[0]})"
        for name, text in starting_models(installed=False).items()
    )


def _load_model(path: str | Path) -> Any:
    """A checkpoint, a shipped model's name or a bioimage.io package (.zip) exported by us."""
    from ..core.bioimageio import load_any

    path = _model_path(path)
    if not path.exists():
        raise CliError(EXIT_FILE, f"model not found: {path}")
    return load_any(path)  # CheckpointError -> exit 4 in main()


def _expand_inputs(items: Sequence[str]) -> list[Path]:
    """Files as given; folders expand to their image files (and .zarr stores), sorted."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if not path.exists():
            raise CliError(EXIT_FILE, f"input not found: {path}")
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise CliError(EXIT_FILE, f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
            out.extend(found)
        else:
            out.append(path)
    return out


def _bar(total: int | None, desc: str, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None
    )


def _progress(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update


def _check_out_file(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` file that cannot be written, before any data is read or trained on."""
    if out.is_dir():
        raise CliError(EXIT_FILE, f"--out {out} is a folder; give a file name such as model.pt")
    if out.exists() and not overwrite:
        raise CliError(EXIT_FILE, f"{out} already exists; pass --overwrite to replace it")
    folder = out.parent
    if not folder.is_dir():
        raise CliError(EXIT_FILE, f"cannot write --out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(
            EXIT_FILE, f"cannot write --out {out}: folder {folder} is read-only for this user"
        )


def _channel_axis(args: argparse.Namespace, image: np.ndarray, labels: Any = None) -> int | None:
    """``--channel-axis``, or -1 for an image that looks RGB(A), ``(Y, X, 3|4)``."""
    if args.channel_axis is not None:
        return int(args.channel_axis)
    from ..core.segment import guess_channel_axis

    axis = guess_channel_axis(image.shape, None if labels is None else labels.shape)
    if axis is not None:
        print(
            f"{PROG}: reading the image of shape {image.shape} as colour (channels on axis "
            f"{axis}); pass --channel-axis to say otherwise",
            file=sys.stderr,
        )
    return axis
