"""The chunk grid of a large image and the memory one chunk task needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import UNet

DEFAULT_LABEL_HALO = 64
_LABEL_BYTES_PER_PX = 128  # peak of label_instances (tracemalloc): 68-125 B/px


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
