"""Overlap-tile prediction of images of any size (Ronneberger et al. 2015, Fig. 2).

The image is extended by mirroring at its border (``reflect``, repeated for tiny images) and cut
into tiles whose outputs tile the image. Tiles are read lazily from the image, one batch at a
time, through reflected index arrays, so no padded copy of the image is made: the output array is
the only full-size buffer (plus, without ``norm_range``, one pass over each slice to compute its
percentiles).

- ``padding="valid"`` networks: tile output origins are multiples of ``model.shape_multiple`` and
  each tile's input starts ``model.context`` pixels before its output, so the tiled result equals
  the whole-image result (a single tile over the mirrored image) up to float rounding.
- ``padding="same"`` networks: tiles overlap by ``model.context`` (the halo) on each side and only
  their centres are kept; origins are also multiples of ``shape_multiple``. With batch norm (eval)
  or no norm the result matches the whole-image one to ~1e-5; with group norm the statistics are
  per tile, so the result depends (slightly) on the tiling.

:func:`predict_region` predicts a window of a large 2D array-like (zarr, dask, memmap) reading only
the tiles in flight (plus their context) when ``norm_range`` is given; its result equals the same
window of :func:`predict_tiled` on the whole image.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .device import free_device_memory, resolve_device
from .model import UNet, fold_batchnorm
from .normalize import (
    apply_range,
    model_percentiles,
    percentile_range,
    range_to_offset_scale,
    to_channels_first,
)

# default tile (network input) edge per device type; see benchmarks/README.md "Tiled prediction"
DEFAULT_TILE_SIZE = {"cpu": 768, "mps": 768, "cuda": 1024}
#: on the CPU a batch holds at most this many input pixels (4 tiles of 348 px): batching more
#: does not use the cores better, it only costs memory (benchmarks/README.md finding P4)
CPU_BATCH_PIXELS = 4 * 348 * 348


class PredictionCancelled(RuntimeError):
    """Raised by predict_tiled / predict_region when ``cancel()`` returned True."""


def reflect_indices(start: int, length: int, n: int) -> np.ndarray:
    """Indices ``start .. start+length-1`` mirrored into ``[0, n)`` (numpy "reflect", repeated)."""
    idx = np.arange(start, start + length)
    if n == 1:
        return np.zeros(length, dtype=np.intp)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx).astype(np.intp)


@dataclass(frozen=True)
class AxisTile:
    """One tile position along an axis (image coordinates)."""

    in_start: int  # first input pixel (may be negative / beyond the image: mirrored)
    out_origin: int  # image coordinate of the tile's first output pixel
    dst_start: int  # part of the output written by this tile: [dst_start, dst_stop)
    dst_stop: int


@dataclass(frozen=True)
class AxisPlan:
    tile_len: int  # network input length
    tiles: tuple[AxisTile, ...]


def _cover(model: UNet, tile_len: int) -> int:
    """Output pixels a tile of ``tile_len`` contributes (valid: its output; same: its centre)."""
    if model.padding == "valid":
        out = model._out_len(tile_len)
        assert out is not None
        return out
    return tile_len - 2 * model.context


def _plan_axis(model: UNet, start: int, stop: int, tile_len: int) -> AxisPlan:
    """Tiles covering output ``[start, stop)`` of one axis, origins aligned to shape_multiple."""
    m = model.shape_multiple
    a0 = start // m * m
    need = stop - a0
    if model.padding == "valid":
        lead = model.context
        smallest = model._valid_len(m + 2 * lead)  # output >= one shape_multiple
        if tile_len < smallest:
            raise ValueError(f"tile_size must be at least {smallest} px for this network")
        tile_len = model._valid_len_at_most(tile_len)
        single = model._valid_len(need + 2 * lead)
        tile_len = min(tile_len, single)
        cover = _cover(model, tile_len)
        out_shift = 0  # tile output index 0 sits at image coordinate ``origin``
    else:
        lead = model.context
        tile_len = tile_len // m * m
        smallest = 2 * lead + m
        if tile_len < smallest:
            raise ValueError(f"tile_size must be at least {smallest} px for this network")
        tile_len = min(tile_len, -(-need // m) * m + 2 * lead)
        cover = _cover(model, tile_len)
        out_shift = lead  # tile output index 0 sits at ``origin - lead``
    step = max(cover // m * m, m)
    if cover < need:
        # balance: the smallest tile that still needs no more tiles (saves mirrored compute)
        count = 1 + -(-(need - cover) // step)
        while tile_len - m >= smallest:
            c = _cover(model, tile_len - m)
            s = c // m * m
            if s < m or (count - 1) * s + c < need:
                break
            tile_len, cover, step = tile_len - m, c, s
    tiles: list[AxisTile] = []
    origin, prev_end = a0, start
    while True:
        end = min(origin + cover, stop)
        tiles.append(AxisTile(origin - lead, origin - out_shift, max(prev_end, origin), end))
        prev_end = end
        if end >= stop:
            break
        # next origin; the last tile is moved back (staying aligned) to read less mirrored data
        origin = min(origin + step, max(a0, -(-(stop - cover) // m) * m))
    return AxisPlan(tile_len, tuple(tiles))


def _requested_tile(tile_size: int | Sequence[int] | None, device: torch.device) -> tuple[int, int]:
    if tile_size is None:
        t = DEFAULT_TILE_SIZE.get(device.type, 512)
        return t, t
    if isinstance(tile_size, (int, np.integer)) and not isinstance(tile_size, bool):
        return int(tile_size), int(tile_size)
    try:
        th, tw = (int(v) for v in tile_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"tile_size must be an int or (h, w), got {tile_size!r}") from None
    return th, tw


@dataclass
class _Source:
    """Reads mirrored, normalized ``(C, th, tw)`` tiles from one slice of an array-like."""

    image: Any
    lead: tuple[int, ...]  # index of the slice in the leading (stack) axes
    has_channel: bool
    offset: np.ndarray | None  # normalization (None: no normalization)
    scale: np.ndarray | None

    def read(self, y0: int, th: int, x0: int, tw: int) -> np.ndarray:
        ny, nx = self.image.shape[-2], self.image.shape[-1]
        chan = (slice(None),) if self.has_channel else ()
        if y0 >= 0 and x0 >= 0 and y0 + th <= ny and x0 + tw <= nx:
            window = (slice(y0, y0 + th), slice(x0, x0 + tw))
            block = np.asarray(self.image[self.lead + chan + window])
        else:
            iy = reflect_indices(y0, th, ny)
            ix = reflect_indices(x0, tw, nx)
            ylo, yhi, xlo, xhi = iy.min(), iy.max() + 1, ix.min(), ix.max() + 1
            block = np.asarray(self.image[self.lead + chan + (slice(ylo, yhi), slice(xlo, xhi))])
            block = block[..., iy - ylo, :][..., ix - xlo]
        if not self.has_channel:
            block = block[None]
        if block.dtype.kind in "fc" and not np.isfinite(block).all():
            raise ValueError("image contains NaN or infinite values; replace them first")
        if self.offset is None or self.scale is None:
            return np.asarray(block, dtype=np.float32)
        return apply_range(block, self.offset, self.scale, channel_dim=True)


def _normalization(
    model: UNet,
    image: Any,
    lead: tuple[int, ...],
    has_channel: bool,
    normalize: bool,
    norm_range: tuple[Any, Any] | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not normalize:
        return None, None
    n_ch = model.in_channels
    if norm_range is not None:
        if len(norm_range) != 2:
            raise ValueError(f"norm_range must be (lo, hi), got {norm_range!r}")
        offset, scale = range_to_offset_scale(*norm_range)
    else:
        low, high = model_percentiles(model.metadata)
        plane = np.asarray(image[lead])
        lo, hi = percentile_range(plane, low, high, -3 if has_channel else None)
        offset, scale = range_to_offset_scale(lo, hi)
    if offset.ndim == 0 or offset.size == 1:
        offset = np.full(n_ch, offset.reshape(-1)[0])
        scale = np.full(n_ch, scale.reshape(-1)[0])
    if offset.shape != (n_ch,):
        raise ValueError(f"norm_range has {offset.size} values per bound, model expects {n_ch}")
    return offset, scale


def _layout(model: UNet, image: Any, channel_axis: int | None) -> tuple[Any, bool]:
    """Return the image with channels at -3 (when it has them) and whether it has them."""
    shape = tuple(image.shape)
    c = model.in_channels
    if channel_axis is not None:
        image = to_channels_first(image, channel_axis)
        if image.shape[-3] != c:
            raise ValueError(
                f"model expects {c} channels, image has {image.shape[-3]} along "
                f"channel_axis={channel_axis} (shape {shape})"
            )
        return image, True
    if len(shape) < 2:
        raise ValueError(f"image must have at least 2 dimensions (Y, X), got shape {shape}")
    if c == 1:
        if len(shape) == 3 and shape[-1] in (3, 4) and shape[-2] > 4:
            raise ValueError(
                f"image of shape {shape} looks like RGB(A) with channels last; pass "
                f"channel_axis=-1 (with a {shape[-1]}-channel model), or convert it to grey"
            )
        return image, False
    if len(shape) < 3 or shape[-3] != c:
        hint = " (pass channel_axis=-1 for channels last)" if shape[-1] == c else ""
        raise ValueError(
            f"model expects {c} channels, image has shape {shape}: need (..., {c}, Y, X){hint}"
        )
    return image, True


def _parse_region(region: Any, ny: int, nx: int) -> tuple[int, int, int, int]:
    if region is None:
        return 0, ny, 0, nx
    try:
        ry, rx = region
    except (TypeError, ValueError):
        raise ValueError(f"region must be (rows, cols) slices or pairs, got {region!r}") from None
    bounds = []
    for r, n in ((ry, ny), (rx, nx)):
        if isinstance(r, slice):
            if r.step not in (None, 1):
                raise ValueError("region slices must have step 1")
            lo, hi, _ = r.indices(n)
        else:
            lo, hi = (int(v) for v in r)
        if not 0 <= lo < hi <= n:
            raise ValueError(f"region {r!r} is empty or outside the image axis of length {n}")
        bounds += [lo, hi]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def iter_tiles(
    model: UNet,
    shape: tuple[int, int],
    tile_size: int | Sequence[int] | None = None,
    region: Any = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[tuple[int, int], tuple[slice, slice], tuple[slice, slice]]]:
    """Yield ``((in_y, in_x), dst, src)`` for each tile of a ``(Y, X)`` image.

    ``(in_y, in_x)`` is the (possibly negative) input origin of a tile of size
    ``tile_shape(...)``; ``out[dst] = tile_output[src]`` assembles the result
    (``dst`` relative to ``region``'s origin).
    """
    ny, nx = int(shape[-2]), int(shape[-1])
    y0, y1, x0, x1 = _parse_region(region, ny, nx)
    th, tw = _requested_tile(tile_size, resolve_device(device))
    py, px = _plan_axis(model, y0, y1, th), _plan_axis(model, x0, x1, tw)
    for ty in py.tiles:
        for tx in px.tiles:
            dst, src = _tile_slices(ty, tx, (y0, x0))
            yield (ty.in_start, tx.in_start), dst, src


def _tile_slices(
    ty: AxisTile, tx: AxisTile, origin: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``(dst, src)`` with ``out[dst] = tile_output[src]``; ``dst`` relative to ``origin``."""
    y0, x0 = origin
    dst = (
        slice(ty.dst_start - y0, ty.dst_stop - y0),
        slice(tx.dst_start - x0, tx.dst_stop - x0),
    )
    src = (
        slice(ty.dst_start - ty.out_origin, ty.dst_stop - ty.out_origin),
        slice(tx.dst_start - tx.out_origin, tx.dst_stop - tx.out_origin),
    )
    return dst, src


def _check_call(model: UNet, image: Any, batch_size: int) -> Any:
    """``image`` as an array-like, after checking the model, the batch size and the dtype."""
    if not isinstance(model, UNet):
        raise ValueError(f"model must be a napari_unet UNet, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not hasattr(image, "shape") or not hasattr(image, "__getitem__"):
        image = np.asarray(image)
    if getattr(image, "dtype", None) is not None and np.dtype(image.dtype).kind not in "biuf":
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    return image


@dataclass(frozen=True)
class _RegionPlan:
    """The tiles of one predict_region call: where they read and where they write."""

    image: Any  # channels at -3 when has_channel
    has_channel: bool
    lead_shape: tuple[int, ...]  # the stack axes in front of (C,) Y, X
    origin: tuple[int, int]  # (y0, x0) of the region
    py: AxisPlan
    px: AxisPlan
    out_shape: tuple[int, ...]

    def jobs(self) -> tuple[int, Iterator[tuple[tuple[int, ...], AxisTile, AxisTile]]]:
        """``(count, iterator)`` of ``(lead, y tile, x tile)``, slice by slice."""
        leads = list(np.ndindex(*self.lead_shape)) if self.lead_shape else [()]
        total = len(leads) * len(self.py.tiles) * len(self.px.tiles)
        jobs = ((lead, ty, tx) for lead in leads for ty in self.py.tiles for tx in self.px.tiles)
        return total, jobs


def _plan_region(
    model: UNet,
    image: Any,
    region: Any,
    tile_size: int | Sequence[int] | None,
    dev: torch.device,
    channel_axis: int | None,
) -> _RegionPlan:
    """Lay out the image, check the region and plan the tiles of both axes."""
    image, has_channel = _layout(model, image, channel_axis)
    shape = tuple(int(s) for s in image.shape)
    ny, nx = shape[-2], shape[-1]
    if ny < 1 or nx < 1:
        raise ValueError(f"image is empty (shape {shape})")
    y0, y1, x0, x1 = _parse_region(region, ny, nx)
    lead_shape = shape[: len(shape) - 2 - int(has_channel)]
    th, tw = _requested_tile(tile_size, dev)
    py, px = _plan_axis(model, y0, y1, th), _plan_axis(model, x0, x1, tw)
    out_shape = lead_shape + (model.n_classes, y1 - y0, x1 - x0)
    return _RegionPlan(image, has_channel, lead_shape, (y0, x0), py, px, out_shape)


class _TileReader:
    """Normalized input tiles of a plan, keeping only the current slice's statistics."""

    def __init__(
        self, model: UNet, plan: _RegionPlan, normalize: bool, norm_range: tuple[Any, Any] | None
    ) -> None:
        self.model, self.plan = model, plan
        self.normalize, self.norm_range = normalize, norm_range
        self._sources: dict[tuple[int, ...], _Source] = {}

    def read(self, lead: tuple[int, ...], ty: AxisTile, tx: AxisTile) -> np.ndarray:
        """The ``(C, th, tw)`` input of tile ``(ty, tx)`` of slice ``lead``."""
        plan = self.plan
        src = self._sources.get(lead)
        if src is None:
            self._sources.clear()
            off, sc = _normalization(
                self.model, plan.image, lead, plan.has_channel, self.normalize, self.norm_range
            )
            src = self._sources[lead] = _Source(plan.image, lead, plan.has_channel, off, sc)
        return src.read(ty.in_start, plan.py.tile_len, tx.in_start, plan.px.tile_len)


def inference_model(model: UNet, device: str | torch.device = "auto") -> UNet:
    """An eval-mode copy of ``model`` ready to predict on ``device``; ``model`` is left as is.

    BatchNorm is folded into the convolutions and, on the CPU, the weights are channels-last:
    together the faster CPU inference (benchmarks/README.md finding M1). :func:`predict_region`
    uses such a copy as it is, so callers that predict many pieces with one model
    (``core.scaleout``) make it once.
    """
    dev = resolve_device(device)
    net = fold_batchnorm(model).to(dev)
    if dev.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    net.inference_device = dev
    return net


@contextmanager
def inference_net(model: UNet, device: str | torch.device = "auto") -> Iterator[UNet]:
    """``model`` itself when it is an :func:`inference_model` for ``device``, else a new one,
    freed on leaving: callers that predict one image several times fold BatchNorm once."""
    dev = resolve_device(device)
    if getattr(model, "inference_device", None) == dev:
        yield model
        return
    net = inference_model(model, dev)
    try:
        yield net
    finally:
        del net
        if dev.type != "cpu":
            free_device_memory(dev)


#: the flips of a tile that :func:`flip_average` predicts (the tile itself, up-down, left-right,
#: both): each maps the tile's input window onto itself, so the outputs align exactly
FLIP_DIMS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (2, 3))


def flip_average(model: UNet, x: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of ``x`` averaged over its flips (test-time augmentation).

    A valid-padding network's output window is centred in its input, and a same-padding
    network is shift-equivariant up to its halo, so flipping the input, predicting and flipping
    the output back gives a prediction for the same pixels; the mean of the four evens out the
    network's orientation-dependent errors.
    """
    total = torch.zeros((), device=x.device)
    for dims in FLIP_DIMS:
        xi = torch.flip(x, dims) if dims else x
        p = torch.softmax(model(xi).float(), dim=1)
        total = total + (torch.flip(p, dims) if dims else p)
    return total / len(FLIP_DIMS)


def _predict_batches(
    model: UNet,
    plan: _RegionPlan,
    out: Any,
    *,
    dev: torch.device,
    batch_size: int,
    normalize: bool,
    norm_range: tuple[Any, Any] | None,
    use_amp: bool,
    flips: bool,
    progress: Callable[[int, int], Any] | None,
    cancel: Callable[[], bool] | None,
) -> None:
    """Run the tiles of ``plan`` through the network in batches and write them into ``out``."""
    reader = _TileReader(model, plan, normalize, norm_range)
    total, jobs = plan.jobs()
    if dev.type == "cpu":
        batch_size = min(batch_size, max(1, CPU_BATCH_PIXELS // (plan.py.tile_len
                                                                 * plan.px.tile_len)))
    slots = min(batch_size, total)
    batch = np.empty((slots, model.in_channels, plan.py.tile_len, plan.px.tile_len), np.float32)
    done = 0
    while done < total:
        if cancel is not None and cancel():
            raise PredictionCancelled("prediction cancelled")
        chunk = list(itertools.islice(jobs, batch_size))
        for b, (lead, ty, tx) in enumerate(chunk):
            batch[b] = reader.read(lead, ty, tx)
        x = torch.from_numpy(batch[: len(chunk)]).to(dev, non_blocking=True)
        if dev.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=use_amp):
            probs = flip_average(model, x) if flips else torch.softmax(model(x).float(), dim=1)
        probs_np = probs.cpu().numpy()
        for b, (lead, ty, tx) in enumerate(chunk):
            (dy, dx), (sy, sx) = _tile_slices(ty, tx, plan.origin)
            out[lead + (slice(None), dy, dx)] = probs_np[b, :, sy, sx]
        done += len(chunk)
        if progress is not None:
            progress(done, total)


def predict_region(
    model: UNet,
    image: Any,
    region: Any = None,
    *,
    tile_size: int | Sequence[int] | None = None,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    channel_axis: int | None = None,
    normalize: bool = True,
    norm_range: tuple[Any, Any] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    out: Any = None,
    amp: bool = True,
    flips: bool = False,
) -> Any:
    """Class probabilities for ``region`` (rows, cols) of the last two axes of ``image``.

    ``region=None`` is the whole image (this is :func:`predict_tiled`). Context around the
    region is read from the image itself (mirroring only at the real image border), so the
    result equals the same window of the whole-image prediction. ``out`` (optional) receives the
    result, shape ``(..., n_classes, h, w)``, any array-like supporting slice assignment.
    ``tile_size`` is the network input size per tile (rounded down to a valid size; default per
    device: DEFAULT_TILE_SIZE). ``amp`` enables float16 autocast on CUDA. ``flips`` averages
    each tile's prediction over its four flips (:func:`flip_average`; 4 times the work). On the
    CPU a batch holds at most ``CPU_BATCH_PIXELS`` input pixels (fewer tiles than
    ``batch_size`` when they are large).
    """
    image = _check_call(model, image, batch_size)
    dev = resolve_device(device)
    plan = _plan_region(model, image, region, tile_size, dev, channel_axis)
    if out is None:
        out = np.empty(plan.out_shape, dtype=np.float32)
    elif tuple(out.shape) != plan.out_shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {plan.out_shape}")
    with inference_net(model, dev) as net:
        _predict_batches(
            net, plan, out, dev=dev, batch_size=batch_size, normalize=normalize,
            norm_range=norm_range, use_amp=amp and dev.type == "cuda", flips=flips,
            progress=progress, cancel=cancel,
        )
    return out


def predict_tiled(model: UNet, image: Any, **options: Any) -> np.ndarray:
    """Softmax class probabilities (float32) of ``image`` by overlap-tile prediction.

    Shapes: ``(Y, X)`` or ``(C, Y, X)`` -> ``(n_classes, Y, X)``; a stack ``(Z, Y, X)`` or
    ``(Z, C, Y, X)`` -> ``(Z, n_classes, Y, X)``, predicted slice by slice. ``options`` are the
    keywords of :func:`predict_region` (``tile_size``, ``batch_size``, ``device``,
    ``channel_axis``, ``normalize``, ``norm_range``, ``progress``, ``cancel``...).
    ``channel_axis`` says where the channels are when not at -3. With ``normalize``, each slice
    is scaled with the percentiles in ``model.metadata["normalization"]`` (default 1 / 99.8),
    or with ``norm_range`` when given. ``progress(done, total)`` counts tiles and is called
    after each batch; ``cancel()`` returning True raises :class:`PredictionCancelled`. The
    model's device and train/eval mode are restored afterwards. Any image size works, also
    smaller than one tile.
    """
    return predict_region(model, image, None, **options)


def tile_shape(
    model: UNet, shape: tuple[int, int], tile_size: Any = None, device: str | torch.device = "cpu"
) -> tuple[int, int]:
    """The network input shape of the tiles used for an image (region) of ``shape``."""
    th, tw = _requested_tile(tile_size, resolve_device(device))
    return (
        _plan_axis(model, 0, int(shape[-2]), th).tile_len,
        _plan_axis(model, 0, int(shape[-1]), tw).tile_len,
    )


__all__ = [
    "DEFAULT_TILE_SIZE",
    "PredictionCancelled",
    "inference_model",
    "inference_net",
    "iter_tiles",
    "predict_region",
    "predict_tiled",
    "reflect_indices",
    "tile_shape",
]
