"""Large 2D zarr images predicted chunk by chunk (:func:`predict_zarr`).

The image is streamed in four passes over a grid of square chunks;
every pass is one independent task per chunk (run in a loop, or on a ``dask.distributed``
cluster), and only small summaries travel back to the caller:

1. **probabilities**: each chunk is read with a halo (the network's context plus alignment
   margin; :func:`~napari_unet.core.tiling.predict_region` mirrors only at the real image border)
   and predicted with one global ``norm_range`` (percentiles of a strided subsample, computed
   once), so the foreground probability equals :func:`predict_tiled` on the whole image (same
   ``norm_range``) up to float rounding. It goes to a zarr array (kept with ``probabilities=``).
2. **marker spacing**: ``label_instances`` merges watershed markers closer than half the median
   cell radius; that median is computed once over the whole image (each component counted by
   the chunk holding its bounding-box corner), not per chunk. Components larger than a label
   window (chunk + ``label_halo``) are not counted, so on images with such large blobs the
   spacing is smaller than the in-memory one (pass ``min_distance`` to fix it).
3. **labels**: each chunk runs ``label_instances`` on its probabilities plus ``label_halo``
   pixels around it and keeps its own pixels (local ids 1..n). For each pair of 8-adjacent
   pixels across a chunk border, the two objects are merged when either chunk's labelling (which
   sees both pixels) gives them the same id. Merging is a union-find (connected components of the
   merge graph); ids become 1..N in raster order of the chunks. ``min_size`` is applied by
   ``label_instances`` inside each window (as in memory), not again after merging.
4. **relabel**: each chunk maps its local ids to the global ids and writes them.

What is guaranteed, compared with ``label_instances(predict_tiled(model, image, norm_range=r))``
on the whole image (same ``threshold``, ``min_size``, ``norm_range``):

- probabilities agree to float rounding (~1e-6), hence the foreground mask is identical except
  for pixels within rounding distance of ``threshold``;
- instance labels are identical up to a permutation of ids for every object whose connected
  component, with a 5-pixel margin (the distance-transform smoothing), lies inside the label
  window (chunk + ``label_halo``) of every chunk it touches; this holds for all objects smaller
  than ``label_halo - 10`` px across when the median cell radius is computed from all components.
  Larger objects crossing a chunk border are still one object or split by the watershed, but the
  split may differ near the border (each chunk sees only part of them). ``label_instances`` can
  give one id to disconnected fragments (pixels of a component that no watershed marker reached);
  fragments on both sides of a chunk border keep one id only where they touch across it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..instances import DEFAULT_MIN_SIZE, DEFAULT_THRESHOLD
from ..model import UNet
from ..normalize import DEFAULT_PERCENTILES, model_percentiles
from ._models import _resolve_model, _share_model
from ._runner import _refuse_existing, _Runner
from ._stores import _open_source, _staged_outputs
from .chunks import _chunk_peaks, _label_chunk, _merge, _predict_chunk, _relabel_chunk
from .grid import DEFAULT_LABEL_HALO, ChunkGrid, _pick_chunk, _prediction_halo

NORM_SAMPLES = 1 << 18  # values per channel used to estimate percentiles of a zarr image


def _spatial(source: Any, model: UNet) -> tuple[tuple[int, int], bool]:
    """``((H, W), has_channel_axis)`` of a 2D image, or ``(C, H, W)`` for a C-channel model."""
    shape = tuple(int(s) for s in source.shape)
    c = model.in_channels
    if len(shape) == 2 and c == 1:
        return (shape[0], shape[1]), False
    if len(shape) == 3 and shape[0] == c and c > 1:
        return (shape[1], shape[2]), True
    need = "(Y, X)" if c == 1 else f"({c}, Y, X)"
    raise ValueError(
        f"predict_zarr needs a 2D image {need} for this {c}-channel model, got shape {shape}"
    )


def estimate_norm_range(
    source: Any,
    low: float = DEFAULT_PERCENTILES[0],
    high: float = DEFAULT_PERCENTILES[1],
    *,
    max_samples: int = NORM_SAMPLES,
    rows_per_read: int = 1024,
    channel_axis: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles ``(lo, hi)`` of a large image from a regular-grid subsample.

    The image is read in bands of ``rows_per_read`` rows, keeping every ``step``-th row and
    column (``step`` chosen so that about ``max_samples`` values per channel are kept), so
    memory stays bounded by one band's chunks plus the sample.
    """
    from ..normalize import percentile_range

    shape = tuple(int(s) for s in source.shape)
    h, w = shape[-2], shape[-1]
    step = max(1, int(np.ceil(np.sqrt(h * w / max(1, max_samples)))))
    band = max(step, rows_per_read // step * step)
    lead = (slice(None),) * (len(shape) - 2)
    parts = [
        np.asarray(source[lead + (slice(y, min(y + band, h), step), slice(0, w, step))])
        for y in range(0, h, band)
    ]
    sample = np.concatenate(parts, axis=-2)
    return percentile_range(sample, low, high, channel_axis)


def _plan(
    model: UNet,
    src: Any,
    chunk: int,
    budget_mb: float | None,
    client: Any,
    norm_range: tuple[Any, Any] | None,
    **kw: Any,
) -> tuple[ChunkGrid, bool, tuple[Any, Any]]:
    """``(grid, has_channel, norm_range)``: chunk fitted to the budget, percentiles estimated."""
    (h, w), has_channel = _spatial(src, model)
    label_halo = kw["label_halo"]
    if isinstance(label_halo, bool) or not isinstance(label_halo, int) or label_halo < 1:
        raise ValueError(f"label_halo must be a positive integer, got {label_halo!r}")
    in_flight = 1
    if client is not None:
        in_flight = max(1, sum(client.nthreads().values()))
    c = _pick_chunk(model, chunk, budget_mb, in_flight, **kw)
    if norm_range is None:
        norm_range = estimate_norm_range(
            src,
            *model_percentiles(model.metadata),
            rows_per_read=c,
            channel_axis=0 if has_channel else None,
        )
    return ChunkGrid((h, w), c, _prediction_halo(model), label_halo), has_channel, norm_range


def _run_passes(
    runner: _Runner,
    grid: ChunkGrid,
    stores: tuple[str, str],
    predict: tuple[Any, Any, bool, tuple[Any, Any], dict[str, Any]],
    threshold: float,
    min_size: int,
    min_distance: float | None,
) -> tuple[int, float]:
    """The four passes of the module docstring; returns ``(n_objects, min_distance)``.

    ``predict``: ``(model_ref, source_ref, has_channel, norm_range, opts)`` of pass 1.
    """
    pt, lt = stores
    model_ref, src_ref, has_channel, norm_range, opts = predict
    jobs = grid.indices()
    runner.map(
        _predict_chunk,
        [(model_ref, src_ref, pt, grid, iy, ix, has_channel, norm_range, opts) for iy, ix in jobs],
    )
    if min_distance is None:
        peaks = np.concatenate(
            runner.map(_chunk_peaks, [(pt, grid, iy, ix, threshold, min_size) for iy, ix in jobs])
        )
        min_distance = max(2.0, 0.5 * float(np.median(peaks))) if peaks.size else 2.0
    else:
        runner.done += len(jobs)
    results = runner.map(
        _label_chunk,
        [(pt, lt, grid, iy, ix, threshold, min_size, min_distance) for iy, ix in jobs],
    )
    luts = _merge(grid, results, min_size)
    n_objects = int(max((int(lut.max()) for lut in luts), default=0))
    del results
    runner.map(_relabel_chunk, [(lt, grid, iy, ix, luts[k]) for k, (iy, ix) in enumerate(jobs)])
    return n_objects, min_distance


def predict_zarr(
    model: UNet | str | os.PathLike,
    source: Any,
    dest: str | os.PathLike,
    *,
    chunk: int = 1024,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    memory_budget_mb: float | None = None,
    device: str = "auto",
    client: Any = None,
    progress: Callable[[int, int], Any] | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    norm_range: tuple[Any, Any] | None = None,
    label_halo: int = DEFAULT_LABEL_HALO,
    min_distance: float | None = None,
    probabilities: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Instance labels of a large 2D image, streamed chunk by chunk into a zarr array at ``dest``.

    ``source``: a zarr array (or any sliceable array) or a path to one; ``(Y, X)``, or
    ``(C, Y, X)`` for a C-channel model. ``dest`` receives a uint32 zarr array (chunks of
    ``chunk`` px) with ids 1..N (see the module docstring for how ids agree across chunk borders
    and what equals the in-memory path). ``probabilities``: also keep the foreground probability
    (float32 zarr) there. ``memory_budget_mb`` shrinks ``chunk`` until the estimated memory of the
    chunks in flight (one locally, one per worker thread with ``client``) fits, or raises
    ValueError. ``norm_range`` defaults to the model's percentiles (metadata, else 1/99.8) of a
    strided subsample (:func:`estimate_norm_range`). ``progress(done, total)`` counts chunk
    tasks over all passes. Outputs are written to temporary stores next to ``dest`` and moved in
    place at the end: an error or interrupt leaves nothing behind. Returns a summary dict.
    """
    model_obj = _resolve_model(model)
    src = _open_source(source)
    dest = Path(dest)
    prob_dest = None if probabilities is None else Path(probabilities)
    _refuse_existing((dest, prob_dest), overwrite)
    grid, has_channel, norm_range = _plan(
        model_obj, src, chunk, memory_budget_mb, client, norm_range,
        label_halo=label_halo, tile_size=tile_size, batch_size=batch_size,
    )  # fmt: skip
    opts = {"tile_size": tile_size, "batch_size": batch_size, "device": device}
    runner = _Runner(client, progress, 4 * len(grid.indices()))
    src_ref: Any = source if isinstance(source, (str, os.PathLike)) else src
    with _staged_outputs(dest, prob_dest, grid, overwrite) as stores:
        model_ref = _share_model(model_obj, client)
        predict = (model_ref, src_ref, has_channel, norm_range, opts)
        n_objects, min_distance = _run_passes(
            runner, grid, stores, predict, threshold, min_size, min_distance
        )
    return {
        "shape": grid.shape,
        "chunk": grid.chunk,
        "n_chunks": len(grid.indices()),
        "n_objects": n_objects,
        "norm_range": tuple(np.asarray(v).tolist() for v in norm_range),
        "min_distance": float(min_distance),
    }
