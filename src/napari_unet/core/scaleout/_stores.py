"""Zarr stores of a streamed prediction: opened, created, staged next to their outputs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._runner import _publish, _temp_sibling
from .grid import ChunkGrid


def _open_source(source: Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        from ..io import read_image

        return read_image(source)
    return source


def _create_zarr(
    path: Path, shape: tuple[int, int], chunk: int, dtype: Any, compress: bool = True
) -> Any:
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        return zarr.create_array(
            store=str(path),
            shape=shape,
            chunks=(chunk, chunk),
            dtype=dtype,
            fill_value=0,
            overwrite=True,
            **({} if compress else {"compressors": None}),
        )
    return zarr.open_array(  # zarr 2
        store=str(path),
        mode="w",
        shape=shape,
        chunks=(chunk, chunk),
        dtype=dtype,
        fill_value=0,
        **({} if compress else {"compressor": None}),
    )


def _open_zarr(path: str | Path, mode: str = "r+") -> Any:
    import zarr

    return zarr.open_array(store=str(path), mode=mode)


@contextmanager
def _staged_outputs(
    dest: Path, prob_dest: Path | None, grid: ChunkGrid, overwrite: bool
) -> Iterator[tuple[str, str]]:
    """Temporary (probability, label) stores next to the outputs, moved in place on success.

    An error or interrupt inside the block removes them and leaves the outputs untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    labels_tmp = _temp_sibling(dest, "partial")
    prob_tmp = _temp_sibling(prob_dest if prob_dest is not None else dest, "prob")
    try:
        _create_zarr(prob_tmp, grid.shape, grid.chunk, np.float32, compress=prob_dest is not None)
        _create_zarr(labels_tmp, grid.shape, grid.chunk, np.uint32)
        yield str(prob_tmp), str(labels_tmp)
        _publish(labels_tmp, dest, overwrite)
        if prob_dest is not None:
            _publish(prob_tmp, prob_dest, overwrite)
    finally:
        for tmp in (labels_tmp, prob_tmp):
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
