"""``napari-unet predict``: label images, folders and zarr stores, locally or on dask."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import (
    EXIT_FILE,
    EXIT_OK,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    CliError,
    _bar,
    _expand_inputs,
    _load_model,
    _model_path,
    _progress,
)


def _connect(address: str | None) -> Any:
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise CliError(
            EXIT_USAGE, "--scheduler needs dask.distributed (pip install 'napari-unet[dask]')"
        ) from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as error:
        raise CliError(EXIT_FILE, f"cannot connect to scheduler {address}: {error}") from None


# the predict options passed to scaleout.predict_files under their own names
_PREDICT_OPTIONS = (
    "threshold",
    "min_size",
    "diameter",
    "conversion",
    "tile_size",
    "batch_size",
    "device",
    "channel_axis",
    "probabilities",
    "overwrite",
    "flips",
    "chunk",
)


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..core.scale import default_diameter
    from ..core.scaleout import predict_files

    paths = _expand_inputs(args.inputs)
    model = _load_model(args.model)
    if args.diameter is None:
        args.diameter = default_diameter(model)
    for p in paths:  # unreadable files fail before any output is written
        if p.suffix.lower() != ".zarr":
            continue
        _check_zarr(p)
    client = _connect(args.scheduler)
    bar = _bar(len(paths), "predict", "image")
    try:
        written = predict_files(
            model if client is None else str(_model_path(args.model)),
            paths,
            args.out,
            fmt=args.format,
            memory_budget_mb=args.memory_budget,
            client=client,
            progress=_progress(bar),
            **{name: getattr(args, name) for name in _PREDICT_OPTIONS},
        )
    except ValueError as error:
        message = str(error)
        if message.startswith("cannot read"):
            raise CliError(EXIT_UNREADABLE, message) from None
        raise
    finally:
        bar.close()
        if client is not None:
            client.close()
    for path in written:
        print(path)
    return EXIT_OK


def _check_zarr(path: Path) -> None:
    from ..core.io import read_image

    try:
        read_image(path)
    except ValueError as error:
        raise CliError(EXIT_UNREADABLE, str(error)) from None
