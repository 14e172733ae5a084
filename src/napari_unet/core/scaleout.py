"""Scale-out prediction: large 2D zarr images chunk by chunk, and many files, locally or on dask.

Large images (:func:`predict_zarr`) are streamed in four passes over a grid of square chunks;
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

Files (:func:`predict_files`) are one task each; zarr files go through :func:`predict_zarr`.
With a ``client``, the model travels as checkpoint bytes (or a checkpoint path) and is loaded
inside the task, once per worker thread. Workers must see the same file system as the caller.
Without a client nothing imports dask.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .folder_scale import FolderScale
from .instances import DEFAULT_MIN_SIZE, DEFAULT_THRESHOLD, component_maxima
from .model import UNet
from .normalize import DEFAULT_PERCENTILES, model_percentiles

__all__ = [
    "DEFAULT_LABEL_HALO",
    "ChunkGrid",
    "chunk_memory_bytes",
    "estimate_norm_range",
    "output_path",
    "predict_file",
    "predict_files",
    "predict_zarr",
]

DEFAULT_LABEL_HALO = 64
NORM_SAMPLES = 1 << 18  # values per channel used to estimate percentiles of a zarr image
_LABEL_BYTES_PER_PX = 128  # peak of label_instances (tracemalloc): 68-125 B/px
_SMOOTH_MARGIN = 5  # gaussian (sigma 1, truncate 4) of the distance transform, + 1


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class ChunkGrid:
    """Square chunks of a ``(H, W)`` image; ``halo``: prediction context read around a chunk."""

    shape: tuple[int, int]
    chunk: int
    halo: int
    label_halo: int

    @property
    def counts(self) -> tuple[int, int]:
        return -(-self.shape[0] // self.chunk), -(-self.shape[1] // self.chunk)

    def indices(self) -> list[tuple[int, int]]:
        ny, nx = self.counts
        return [(iy, ix) for iy in range(ny) for ix in range(nx)]

    def core(self, iy: int, ix: int) -> tuple[int, int, int, int]:
        c = self.chunk
        return iy * c, min((iy + 1) * c, self.shape[0]), ix * c, min((ix + 1) * c, self.shape[1])

    def window(self, iy: int, ix: int, margin: int) -> tuple[int, int, int, int]:
        y0, y1, x0, x1 = self.core(iy, ix)
        h, w = self.shape
        return max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)

    def owner(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Raster index of the chunk holding each pixel."""
        return (y // self.chunk) * self.counts[1] + x // self.chunk


def _prediction_halo(model: UNet) -> int:
    """Context read around a chunk: enough for every tile predict_region plans (aligned)."""
    m = model.shape_multiple
    return -(-(model.context + 2 * m) // m) * m


def chunk_memory_bytes(
    model: UNet,
    chunk: int,
    *,
    label_halo: int = DEFAULT_LABEL_HALO,
    tile_size: int | None = None,
    batch_size: int = 4,
) -> int:
    """Estimated peak memory (bytes) of one chunk task of :func:`predict_zarr`.

    The larger of the prediction task (input block with halo, class probabilities, a batch of
    tiles and a rough allowance for the network's activations) and the labelling task
    (``label_instances`` on the chunk plus ``label_halo``, up to ~128 bytes per pixel).
    """
    halo = _prediction_halo(model)
    block = (chunk + 2 * halo) ** 2 * 4 * (model.in_channels + 1)
    probs = (model.n_classes + 1) * chunk**2 * 4
    tile = min(tile_size or 512, chunk + 2 * halo)
    net = batch_size * tile**2 * 4 * (model.in_channels + 6 * model.base_channels)
    label = (chunk + 2 * label_halo) ** 2 * _LABEL_BYTES_PER_PX
    return int(max(block + probs + net, label))


def _pick_chunk(model: UNet, chunk: int, budget_mb: float | None, in_flight: int, **kw: Any) -> int:
    """``chunk`` rounded down to the network's shape multiple, shrunk to fit the budget."""
    m = model.shape_multiple
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < m:
        raise ValueError(f"chunk must be an integer >= {m} for this network, got {chunk!r}")
    c = int(chunk) // m * m
    if budget_mb is None:
        return c
    if not budget_mb > 0:
        raise ValueError(f"memory_budget_mb must be positive, got {budget_mb!r}")
    budget = budget_mb * 2**20 / max(1, in_flight)
    smallest = max(m, 32 // m * m)
    while c >= smallest:
        if chunk_memory_bytes(model, c, **kw) <= budget:
            return c
        c -= m
    need = chunk_memory_bytes(model, smallest, **kw) * max(1, in_flight) / 2**20
    raise ValueError(
        f"memory_budget_mb={budget_mb} is too small: the smallest chunk ({smallest} px) "
        f"needs about {need:.1f} MB with {in_flight} task(s) in flight"
    )


# ----------------------------------------------------------------------------- models
_MODELS: dict[tuple[str, int], UNet] = {}
_MODELS_LOCK = threading.Lock()


def _model_bytes(model: UNet) -> bytes:
    import torch

    from .checkpoint import checkpoint_dict

    buffer = io.BytesIO()
    torch.save(checkpoint_dict(model), buffer)
    return buffer.getvalue()


_PREPARED: weakref.WeakKeyDictionary[UNet, tuple[tuple, UNet]] = weakref.WeakKeyDictionary()


def _weights_key(model: UNet) -> tuple:
    """Changes whenever a weight or buffer of ``model`` is replaced or changed in place
    (torch counts in-place writes per tensor: an optimizer step, ``load_state_dict``)."""
    return tuple((t.data_ptr(), t._version) for t in model.state_dict().values())


def _prepared(model: UNet, device: Any) -> UNet:
    """The CPU :func:`~.tiling.inference_model` of ``model``, made once per model and weights;
    on a GPU ``model`` itself (each prediction makes its copy and frees the device memory)."""
    from .device import resolve_device
    from .tiling import inference_model

    if resolve_device(device).type != "cpu":
        return model
    key = _weights_key(model)
    cached = _PREPARED.get(model)
    if cached is None or cached[0] != key:
        cached = _PREPARED[model] = (key, inference_model(model, "cpu"))
    return cached[1]


def _resolve_model(ref: Any) -> UNet:
    """A UNet from a UNet, checkpoint bytes or a checkpoint path (cached per thread)."""
    if isinstance(ref, UNet):
        return ref
    from .bioimageio import load_any
    from .checkpoint import load_model_bytes

    if isinstance(ref, (bytes, bytearray)):
        key = hashlib.sha256(ref).hexdigest()
        loader: Callable[[], UNet] = lambda: load_model_bytes(bytes(ref))  # noqa: E731
    else:
        path = Path(ref)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        key = f"{path.resolve()}:{path.stat().st_mtime_ns}"
        loader = lambda: load_any(path)  # noqa: E731  (checkpoint or bioimage.io package)
    # one model per thread (each thread's inference copy is made from its own: _prepared)
    cache_key = (key, threading.get_ident())
    with _MODELS_LOCK:
        model = _MODELS.get(cache_key)
    if model is None:
        model = loader()
        model.eval()
        with _MODELS_LOCK:
            _MODELS[cache_key] = model
    return model


# ----------------------------------------------------------------------------- zarr helpers
def _open_source(source: Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        from .io import read_image

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
    from .normalize import percentile_range

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


# ----------------------------------------------------------------------------- chunk tasks
def _predict_chunk(
    model_ref: Any,
    source: Any,
    prob_path: str,
    grid: ChunkGrid,
    iy: int,
    ix: int,
    has_channel: bool,
    norm_range: tuple[Any, Any],
    opts: dict[str, Any],
) -> None:
    """Pass 1: foreground probability of one chunk, read with its halo."""
    from .tiling import predict_region

    model = _prepared(_resolve_model(model_ref), opts.get("device", "auto"))
    source = _open_source(source)
    y0, y1, x0, x1 = grid.core(iy, ix)
    by0, by1, bx0, bx1 = grid.window(iy, ix, grid.halo)
    lead = (slice(None),) if has_channel else ()
    block = np.asarray(source[lead + (slice(by0, by1), slice(bx0, bx1))])
    region = ((y0 - by0, y1 - by0), (x0 - bx0, x1 - bx0))
    probs = predict_region(model, block, region, norm_range=norm_range, **opts)
    del block
    _open_zarr(prob_path)[y0:y1, x0:x1] = probs[1]


def _clean_mask(prob: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """Threshold, fill holes, drop small components: the mask label_instances splits."""
    mask = ndi.binary_fill_holes(prob > threshold)
    if min_size > 1:
        comp, n = ndi.label(mask, structure=np.ones((3, 3), bool))
        if n:
            keep = np.bincount(comp.ravel()) >= min_size
            keep[0] = False
            mask = keep[comp]
    return mask


def _chunk_peaks(
    prob_path: str, grid: ChunkGrid, iy: int, ix: int, threshold: float, min_size: int
) -> np.ndarray:
    """Pass 2: largest inscribed radius of each component owned by this chunk."""
    y0, y1, x0, x1 = grid.core(iy, ix)
    wy0, wy1, wx0, wx1 = grid.window(iy, ix, grid.label_halo)
    prob = np.asarray(_open_zarr(prob_path, "r")[wy0:wy1, wx0:wx1])
    mask = _clean_mask(prob, threshold, min_size)
    comp, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(0)
    dist = ndi.distance_transform_edt(mask)
    peaks = component_maxima(dist, comp, n)
    h, w = grid.shape
    keep = np.zeros(n, dtype=bool)
    for k, (sy, sx) in enumerate(ndi.find_objects(comp)):
        top, left = sy.start + wy0, sx.start + wx0
        cut = (
            (sy.start == 0 and wy0 > 0)
            or (sx.start == 0 and wx0 > 0)
            or (sy.stop == mask.shape[0] and wy1 < h)
            or (sx.stop == mask.shape[1] and wx1 < w)
        )
        keep[k] = not cut and y0 <= top < y1 and x0 <= left < x1
    return peaks[keep]


_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _label_chunk(
    prob_path: str,
    labels_path: str,
    grid: ChunkGrid,
    iy: int,
    ix: int,
    threshold: float,
    min_size: int,
    min_distance: float | None,
) -> dict[str, np.ndarray | int]:
    """Pass 3: local instance ids of one chunk + what the merge step needs from it."""
    from .instances import label_instances

    y0, y1, x0, x1 = grid.core(iy, ix)
    wy0, wy1, wx0, wx1 = grid.window(iy, ix, grid.label_halo)
    prob = np.asarray(_open_zarr(prob_path, "r")[wy0:wy1, wx0:wx1])
    window = label_instances(prob, threshold, min_size, min_distance=min_distance)
    del prob
    cy, cx = y0 - wy0, x0 - wx0
    hh, ww = y1 - y0, x1 - x0
    ids, inverse = np.unique(window[cy : cy + hh, cx : cx + ww], return_inverse=True)
    local = inverse.reshape(hh, ww).astype(np.uint32)
    if ids.size and ids[0] != 0:
        local += 1
    n = int(local.max()) if local.size else 0
    # merge candidates seen from this chunk: core edge pixel p, outside neighbour q, same id
    ey = np.concatenate([np.zeros(ww, int), np.full(ww, hh - 1), np.arange(hh), np.arange(hh)])
    ex = np.concatenate([np.arange(ww), np.arange(ww), np.zeros(hh, int), np.full(hh, ww - 1)])
    edge = np.unique(ey * ww + ex)
    ey, ex = edge // ww, edge % ww
    p_ids, q_y, q_x = [], [], []
    for dy, dx in _NEIGHBOURS:
        qy, qx = ey + dy, ex + dx
        outside = (qy < 0) | (qy >= hh) | (qx < 0) | (qx >= ww)
        wy, wx = qy + cy, qx + cx
        inside_window = (wy >= 0) & (wy < window.shape[0]) & (wx >= 0) & (wx < window.shape[1])
        sel = outside & inside_window
        py, px, qys, qxs = ey[sel], ex[sel], wy[sel], wx[sel]
        win_p = window[py + cy, px + cx]
        same = (win_p != 0) & (win_p == window[qys, qxs])
        p_ids.append(local[py[same], px[same]])
        q_y.append(qys[same] + wy0)
        q_x.append(qxs[same] + wx0)
    del window
    _open_zarr(labels_path)[y0:y1, x0:x1] = local
    return {
        "n": n,
        "sizes": np.bincount(local.ravel(), minlength=n + 1).astype(np.int64),
        "top": local[0].copy(),
        "bottom": local[-1].copy(),
        "left": local[:, 0].copy(),
        "right": local[:, -1].copy(),
        "pairs": np.stack([np.concatenate(p_ids), np.concatenate(q_y), np.concatenate(q_x)]).astype(
            np.int64
        ),
    }


def _relabel_chunk(labels_path: str, grid: ChunkGrid, iy: int, ix: int, lut: np.ndarray) -> None:
    """Pass 4: local ids -> global ids."""
    y0, y1, x0, x1 = grid.core(iy, ix)
    store = _open_zarr(labels_path)
    store[y0:y1, x0:x1] = lut[np.asarray(store[y0:y1, x0:x1])]


def _merge(grid: ChunkGrid, results: list[dict[str, Any]], min_size: int) -> list[np.ndarray]:
    """Union-find over the merge pairs; returns one lookup table (local -> global) per chunk."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = np.array([r["n"] for r in results], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    if total == 0:
        return [np.zeros(1, np.uint32) for _ in results]
    sizes = np.concatenate([r["sizes"][1:] for r in results])
    cores = [grid.core(*ij) for ij in grid.indices()]
    src, dst = [], []
    for k, r in enumerate(results):
        p, qy, qx = r["pairs"]
        if p.size == 0:
            continue
        owner = grid.owner(qy, qx)
        for k2 in np.unique(owner):
            sel = owner == k2
            oy0, oy1, ox0, ox1 = cores[k2]
            ys, xs = qy[sel], qx[sel]
            o = results[k2]
            q = np.where(
                ys == oy0,
                o["top"][np.clip(xs - ox0, 0, ox1 - ox0 - 1)],
                np.where(
                    ys == oy1 - 1,
                    o["bottom"][np.clip(xs - ox0, 0, ox1 - ox0 - 1)],
                    np.where(
                        xs == ox0,
                        o["left"][np.clip(ys - oy0, 0, oy1 - oy0 - 1)],
                        o["right"][np.clip(ys - oy0, 0, oy1 - oy0 - 1)],
                    ),
                ),
            )
            ok = q > 0
            src.append(offsets[k] + p[sel][ok] - 1)
            dst.append(offsets[k2] + q[ok].astype(np.int64) - 1)
    a = np.concatenate(src) if src else np.zeros(0, np.int64)
    b = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(total, total))
    _, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp, weights=sizes)
    keep = comp_size >= 1
    # global ids 1..N in order of each object's first node (raster order of chunks)
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first, kind="stable")  # component ids sorted by first appearance
    ranked = np.zeros(comp_size.size, np.int64)
    kept_in_order = order[keep[order]]
    ranked[kept_in_order] = np.arange(1, kept_in_order.size + 1)
    node_id = ranked[comp].astype(np.uint32)
    return [
        np.concatenate([[0], node_id[offsets[k] : offsets[k + 1]]]).astype(np.uint32)
        for k in range(len(results))
    ]


# ----------------------------------------------------------------------------- runner
class _Runner:
    """Runs one task per argument tuple, in a loop or on a dask client, counting progress."""

    def __init__(self, client: Any, progress: Callable[[int, int], Any] | None, total: int):
        self.client = client
        self.progress = progress
        self.total = total
        self.done = 0

    def tick(self) -> None:
        """Count one finished task."""
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def map(self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]:
        if self.client is None:
            out = []
            for args in jobs:
                out.append(fn(*args))
                self.tick()
            return out
        from distributed import as_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in jobs]
        try:
            for _ in as_completed(futures):
                self.tick()
            return self.client.gather(futures)
        finally:
            for f in futures:
                f.cancel()


def _temp_sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move a finished store into place (replacing ``dest`` only with ``overwrite``)."""
    if dest.exists():
        if not overwrite:
            raise FileExistsError(f"{dest} already exists; not overwriting it")
        trash = _temp_sibling(dest, "old")
        os.replace(dest, trash)
        os.replace(tmp, dest)
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink()
    else:
        os.replace(tmp, dest)


def _refuse_existing(targets: Sequence[Path | None], overwrite: bool) -> None:
    """FileExistsError for an existing output, unless ``overwrite``."""
    for target in targets:
        if target is not None and target.exists() and not overwrite:
            raise FileExistsError(f"{target} already exists; not overwriting it")


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


def _share_model(model: UNet, client: Any) -> Any:
    """The model itself locally; its checkpoint bytes broadcast to the workers with a client."""
    if client is None:
        return model
    [ref] = client.scatter([_model_bytes(model)], broadcast=True)
    return ref


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
    )
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


# ----------------------------------------------------------------------------- files
def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def output_path(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "tif") -> Path:
    """Where :func:`predict_files` writes the labels of ``path``: same stem, ``fmt`` suffix
    (``.zarr`` for zarr inputs)."""
    path = Path(path)
    suffix = ".zarr" if _is_zarr(path) else f".{fmt}"
    return Path(out_dir) / f"{path.stem}{suffix}"


def probability_path(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "tif") -> Path:
    """Where the foreground probability of ``path`` goes (``probabilities/`` under ``out_dir``);
    float data, so PNG becomes TIFF."""
    path = Path(path)
    suffix = ".zarr" if _is_zarr(path) else (".npy" if fmt == "npy" else ".tif")
    return Path(out_dir) / "probabilities" / f"{path.stem}{suffix}"


def predict_file(
    model_ref: Any,
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    threshold: float | None = None,
    min_size: int | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    channel_axis: int | None = None,
    probabilities: str | os.PathLike | None = None,
    overwrite: bool = False,
    diameter: float | str | None = None,
    conversion: str | None = None,
    folder_scale: FolderScale | None = None,
) -> Path:
    """Predict one in-memory image file and write its instance labels (atomically) to ``out``.

    ``model_ref``: a UNet, checkpoint bytes or a checkpoint path. 2D images give ``(Y, X)``
    labels, stacks ``(Z, Y, X)`` (or stacks of stacks, ``(T, Z, Y, X)``) labels of the same
    shape with ids unique over the whole stack. PNG output is uint16 (ValueError when ids
    exceed 65535). ``diameter``, ``threshold``, ``min_size``: see ``core.segment.segment``
    (None: the model's object scale and calibrated threshold); ``folder_scale``: see
    :func:`file_maps`.
    """
    maps = file_maps(model_ref, path, channel_axis=channel_axis, diameter=diameter,
                     conversion=conversion, tile_size=tile_size, batch_size=batch_size,
                     device=device, folder_scale=folder_scale)
    return write_file_labels(maps, out, threshold=threshold, min_size=min_size,
                             probabilities=probabilities, overwrite=overwrite)


@dataclass
class FileMaps:
    """The network's output for one image file, before labelling (see :func:`file_maps`)."""

    fg: np.ndarray
    interior: np.ndarray | None
    factor: float
    threshold: float  # the model's calibrated threshold (``segment.model_threshold``)


def file_maps(model_ref: Any, path: str | os.PathLike, *, channel_axis: int | None = None,
              diameter: float | str | None = None, conversion: str | None = None,
              folder_scale: FolderScale | None = None, **kw: Any) -> FileMaps:
    """Read ``path`` and run the network on it (the part of ``predict_file`` on the cores).

    With ``diameter="auto"``, ``folder_scale`` (one per folder) reuses the object scale
    estimated on an earlier file while the objects found at it stay alike.
    """
    from .io import read_image
    from .segment import guess_channel_axis, model_threshold, predict_maps, prepare_image

    model = _resolve_model(model_ref)
    image = np.asarray(read_image(path))
    if channel_axis is None:
        channel_axis = guess_channel_axis(image.shape)
    arr, axis = prepare_image(image, channel_axis, model, conversion)
    net = _prepared(model, kw.get("device", "auto"))  # BatchNorm folded once per folder
    if diameter == "auto" and folder_scale is not None:
        fg, interior, factor = folder_scale.predict(net, arr, channel_axis=axis, **kw)
    else:
        fg, interior, factor = predict_maps(net, arr, channel_axis=axis, diameter=diameter,
                                            **kw)
    return FileMaps(fg, interior, factor, model_threshold(model))


def write_file_labels(maps: FileMaps, out: str | os.PathLike, *, threshold: float | None = None,
                      min_size: int | None = None,
                      probabilities: str | os.PathLike | None = None,
                      overwrite: bool = False) -> Path:
    """Label ``maps`` and write the labels (and probabilities) atomically: the rest of
    ``predict_file``, which can run beside the network's work on the next file."""
    from .io import write_array
    from .segment import label_probability, min_size_for

    threshold = maps.threshold if threshold is None else float(threshold)
    min_size = min_size_for(maps.factor) if min_size is None else int(min_size)
    labels = label_probability(maps.fg, threshold, min_size, maps.interior)
    out = Path(out)
    if out.suffix.lower() == ".png":
        if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
            raise ValueError(
                f"{int(labels.max())} objects do not fit a 16-bit PNG: use --format tif or npy"
            )
        labels = labels.astype(np.uint16)
    if probabilities is not None:
        write_array(probabilities, maps.fg.astype(np.float32), overwrite=overwrite)
    write_array(out, labels, overwrite=overwrite)
    return out


def _predict_local(ref: Any, jobs: Sequence[_FileJob], kw: dict[str, Any],
                   counter: _Runner) -> None:
    """In-memory files here: labelling and writing one file in a second thread while the
    network runs on the next (torch releases the interpreter lock in its kernels)."""
    from concurrent.futures import ThreadPoolExecutor

    kw = dict(kw, folder_scale=FolderScale())
    write_kw = {k: kw.pop(k) for k in ("threshold", "min_size", "overwrite")}
    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-label") as pool:
        for p, o, q in jobs:
            maps = file_maps(ref, p, **kw)
            if pending is not None:
                pending.result()  # the previous file's error raises here, in order
                counter.tick()
            pending = pool.submit(write_file_labels, maps, o, probabilities=q, **write_kw)
        if pending is not None:
            pending.result()
            counter.tick()


def _check_inputs(paths: Sequence[Path]) -> None:
    """Every input readable (header, size, small files whole) before any output is written."""
    from .io import check_readable

    for p in paths:
        check_readable(p)  # ValueError "cannot read image ..." names the file


def _plan_files(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    fmt: str,
    probabilities: bool,
    overwrite: bool,
) -> tuple[list[Path], list[Path], list[Path | None]]:
    """``(inputs, label outputs, probability outputs)``, after the checks of predict_files."""
    if fmt not in ("tif", "png", "npy"):
        raise ValueError(f"format must be tif, png or npy, got {fmt!r}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise NotADirectoryError(f"--out must be a folder, but {out_dir} is a file")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
    outs = [output_path(p, out_dir, fmt) for p in paths]
    probs = [probability_path(p, out_dir, fmt) if probabilities else None for p in paths]
    seen: dict[Path, Path] = {}
    for p, o in zip(paths, outs, strict=True):
        if o in seen:
            raise ValueError(f"{seen[o]} and {p} would both be written to {o}")
        seen[o] = p
    _refuse_existing([*outs, *probs], overwrite)
    return paths, outs, probs


def _file_model_ref(model_path: Any, model: UNet, client: Any) -> Any:
    """What file tasks load the model from: the path, or the UNet (its bytes with a client)."""
    if not isinstance(model_path, UNet):
        return str(model_path)
    return _model_bytes(model) if client is not None else model


_FileJob = tuple[Path, Path, Path | None]  # input, label output, probability output


def _predict_on_client(
    client: Any, ref: Any, jobs: Sequence[_FileJob], kw: dict[str, Any], counter: _Runner
) -> None:
    """In-memory files as dask tasks (paths as strings); the first failed task's error raises."""
    from distributed import as_completed

    if isinstance(ref, bytes):
        [ref] = client.scatter([ref], broadcast=True)
    futures = [
        client.submit(
            predict_file,
            ref,
            str(p),
            str(o),
            probabilities=None if q is None else str(q),
            pure=False,
            **kw,
        )
        for p, o, q in jobs
    ]
    try:
        for future in as_completed(futures):
            future.result()  # re-raises the task's error here
            counter.tick()
    finally:
        for f in futures:
            f.cancel()


def _predict_zarr_files(
    model: UNet, jobs: Sequence[_FileJob], kw: dict[str, Any], client: Any, counter: _Runner
) -> None:
    """Zarr inputs streamed by predict_zarr (its threshold / min_size resolved for the model)."""
    kw = dict(kw)
    if kw["threshold"] is None:
        from .segment import model_threshold

        kw["threshold"] = model_threshold(model)
    kw["min_size"] = DEFAULT_MIN_SIZE if kw["min_size"] is None else kw["min_size"]
    for p, o, q in jobs:
        predict_zarr(model, p, o, probabilities=q, client=client, **kw)
        counter.tick()


def _predict_in_memory(ref: Any, jobs: Sequence[_FileJob], kw: dict[str, Any], client: Any,
                       counter: _Runner, pipeline: bool) -> None:
    """The in-memory files: on ``client``, else here (pipelined, or one after the other)."""
    if client is not None:
        if jobs:
            _predict_on_client(client, ref, jobs, kw, counter)
    elif pipeline:
        _predict_local(ref, jobs, kw, counter)
    else:
        shared = FolderScale()
        for p, o, q in jobs:
            predict_file(ref, p, o, probabilities=q, folder_scale=shared, **kw)
            counter.tick()


def predict_files(
    model_path: UNet | str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "tif",
    threshold: float | None = None,
    min_size: int | None = None,
    diameter: float | str | None = None,
    conversion: str | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    channel_axis: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    chunk: int = 1024,
    memory_budget_mb: float | None = None,
    client: Any = None,
    progress: Callable[[int, int], Any] | None = None,
    pipeline: bool = True,
) -> list[Path]:
    """Predict every file in ``paths`` into ``out_dir`` (one label image per input, same stem).

    Everything is checked before any work starts: ``out_dir`` is not a file, inputs exist and
    can be read (:func:`~napari_unet.core.io.check_readable`), no two inputs share a stem, and
    no output exists (unless ``overwrite``), so a bad input never leaves the folder half done.
    In-memory files are one task each (on ``client`` when given, loading the model inside the
    task; without a client, each file is labelled and written beside the network's work on the
    next one unless ``pipeline=False``); zarr inputs are streamed with :func:`predict_zarr`.
    ``progress(done, total)`` counts files. ``threshold``/``min_size``/``diameter`` None: the
    model's calibrated threshold and object scale (``core.segment``; zarr inputs are streamed
    at the image's own scale).  ``diameter="auto"`` estimates the scale on the first file and
    keeps it for the next ones while their objects look alike (:mod:`.folder_scale`; on a
    ``client`` each file is estimated on its own).
    Returns the written label paths, in input order.
    """
    paths, outs, probs = _plan_files(paths, out_dir, fmt, probabilities, overwrite)
    _check_inputs(paths)
    model = _resolve_model(model_path)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    kw = dict(
        threshold=threshold,
        min_size=min_size,
        tile_size=tile_size,
        batch_size=batch_size,
        device=device,
    )
    counter = _Runner(None, progress, len(paths))
    flat = [(p, o, q) for p, o, q in zip(paths, outs, probs, strict=True) if not _is_zarr(p)]
    file_kw = dict(
        kw, channel_axis=channel_axis, overwrite=overwrite, diameter=diameter, conversion=conversion
    )
    ref = _file_model_ref(model_path, model, client)
    _predict_in_memory(ref, flat, file_kw, client, counter, pipeline)
    zarrs = [(p, o, q) for p, o, q in zip(paths, outs, probs, strict=True) if _is_zarr(p)]
    zarr_kw = dict(kw, chunk=chunk, memory_budget_mb=memory_budget_mb, overwrite=overwrite)
    _predict_zarr_files(model, zarrs, zarr_kw, client, counter)
    return outs
