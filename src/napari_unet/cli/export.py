"""``napari-unet export``: a trained model as a bioimage.io package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import (
    EXIT_FILE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    _channel_axis,
    _check_out_file,
    _load_model,
    _read,
)


def _cmd_export(args: argparse.Namespace) -> int:
    """Write a bioimage.io model package (.zip) of a checkpoint, atomically."""
    from ..core.bioimageio import export_package

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise CliError(EXIT_USAGE, f"--out {out}: a bioimage.io package is a .zip file")
    _check_out_file(out, args.overwrite)
    model = _load_model(args.model)
    sample = _read(args.sample, "sample image") if args.sample else None
    axis = args.channel_axis if sample is None else _channel_axis(args, sample)
    try:
        export_package(
            model,
            out,
            sample=sample,
            channel_axis=axis,
            conversion=args.conversion,
            name=args.name,
            authors=args.author,
            license=args.license,
            overwrite=args.overwrite,
        )
    except FileExistsError:
        raise CliError(EXIT_FILE, f"{out} already exists; pass --overwrite to replace it") from None
    except OSError as error:
        raise CliError(EXIT_FILE, f"cannot write {out}: {error.strerror or error}") from None
    print(f"saved {out}", file=sys.stderr)
    return EXIT_OK
