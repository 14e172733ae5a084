"""Augmented training patches: where they are drawn, what their target and weights are."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .augment import random_augment
from .tiling import reflect_indices
from .training_data import TrainingSlice
from .weights import weight_map

if TYPE_CHECKING:
    from .training import TrainConfig

__all__ = [
    "DEFAULT_OUTPUT_PATCH",
    "PatchSampler",
    "Prefetcher",
    "class_target",
    "default_patch_size",
]

# Output patch side used when TrainConfig.patch_size is None (see default_patch_size).
DEFAULT_OUTPUT_PATCH = 96


def default_patch_size(model: torch.nn.Module, slices_shape: Sequence[tuple[int, int]]) -> int:
    """Output patch side: ``DEFAULT_OUTPUT_PATCH`` px, or less for images smaller than that."""
    largest = max(max(shape) for shape in slices_shape)
    return max(1, min(DEFAULT_OUTPUT_PATCH, largest))


class PatchSampler:
    """Draws augmented ``(image, target, weight)`` training patches."""

    def __init__(
        self,
        slices: list[TrainingSlice],
        cfg: TrainConfig,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        rng: np.random.Generator,
        n_classes: int = 2,
        boost: float = 1.0,
    ) -> None:
        self.slices = slices
        self.boost = float(boost)
        self.cfg = cfg
        self.in_shape = in_shape
        self.out_shape = out_shape
        self.offset = ((in_shape[0] - out_shape[0]) // 2, (in_shape[1] - out_shape[1]) // 2)
        self.rng = rng
        self.n_classes = n_classes
        self.fg_counts = np.array([s.fg.size for s in slices], dtype=np.float64)
        self.bg_counts = np.array([s.bg.size for s in slices], dtype=np.float64)

    def _centre(self) -> tuple[TrainingSlice, int, int]:
        use_fg = self.bg_counts.sum() == 0 or (
            self.fg_counts.sum() > 0 and self.rng.random() < self.cfg.foreground_fraction
        )
        counts = self.fg_counts if use_fg else self.bg_counts
        s = self.slices[int(self.rng.choice(len(self.slices), p=counts / counts.sum()))]
        pool = s.fg if use_fg else s.bg
        flat = int(pool[self.rng.integers(pool.size)])
        cy, cx = divmod(flat, s.mask.shape[1])
        return s, cy, cx

    def _extract(self, s: TrainingSlice, cy: int, cx: int):
        (ih, iw), (oh, ow), (py, px) = self.in_shape, self.out_shape, self.offset
        top, left = cy - oh // 2 - py, cx - ow // 2 - px
        h, w = s.mask.shape
        ys, xs = np.arange(top, top + ih), np.arange(left, left + iw)
        image = s.image[:, reflect_indices(top, ih, h)[:, None], reflect_indices(left, iw, w)]
        inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
        yc, xc = np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None, :]
        instances = np.where(inside, s.instances[yc, xc], 0).astype(np.int32)
        mask = (inside & s.mask[yc, xc]).astype(np.uint8)
        if s.boost is not None:  # 2 = a labeled pixel the user corrected recently
            mask += mask & s.boost[yc, xc]
        return image, instances, mask

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One patch: image ``(C, in_h, in_w)``, target and weights ``(out_h, out_w)``."""
        for _ in range(10):
            patch = self.patch(*self._centre())
            if patch[2].any():  # an augmented patch can lose its labeled pixels; draw again
                break
        return patch

    def patch(self, s: TrainingSlice, cy: int, cx: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The augmented patch whose output is centred on ``(cy, cx)`` of ``s``."""
        (oh, ow), (py, px) = self.out_shape, self.offset
        image, instances, mask = self._extract(s, cy, cx)
        if self.cfg.augment:
            image, instances, mask = random_augment(
                image,
                instances,
                self.rng,
                elastic=self.cfg.elastic_sigma > 0,
                grid=self.cfg.elastic_grid,
                sigma=self.cfg.elastic_sigma,
                weights=mask,
            )
        weights = weight_map(instances, self.cfg.w0, self.cfg.sigma, labeled_mask=mask > 0)
        if self.boost != 1.0:
            weights = np.where(mask == 2, weights * self.boost, weights)
        weights = weights[py : py + oh, px : px + ow]
        target = class_target(instances, self.n_classes)[py : py + oh, px : px + ow]
        return np.ascontiguousarray(image, dtype=np.float32), target, weights

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        patches = [self.sample() for _ in range(n)]
        return tuple(torch.from_numpy(np.stack(p)) for p in zip(*patches, strict=True))


def class_target(instances: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-pixel class: 0 background, 1 cell; with 3 classes, 2 = the cell's 1 px border.

    The border class marks where a cell meets anything else (another cell or background), so a
    3-class network predicts what separates touching cells, not only where cells are.
    """
    cells = instances > 0
    target = cells.astype(np.int64)
    if n_classes >= 3:
        from scipy import ndimage as ndi

        edge = ndi.maximum_filter(instances, 3) != ndi.minimum_filter(instances, 3)
        target[cells & edge] = 2
    return target


class _Failed:
    """What the prefetch thread hands over instead of a batch when drawing one failed."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher:
    """Draws the next batch of ``sampler`` in a background thread while this one trains.

    Batches come in the order one thread draws them, so training is the same as drawing them
    in the loop (same seed, same patches). An error in the sampler is raised by :meth:`next`.
    ``background=False`` draws each batch in :meth:`next` instead (no thread).
    """

    def __init__(self, sampler: PatchSampler, batch_size: int, background: bool = True) -> None:
        self._sampler, self._batch_size = sampler, batch_size
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._fill, name="napari-unet-patches",
                                            daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                self._put(self._sampler.batch(self._batch_size))
        except BaseException as error:  # handed to the training thread
            self._put(_Failed(error))

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next batch ``(x, target, weights)``, drawn while the previous one trained."""
        if self._thread is None:
            return self._sampler.batch(self._batch_size)
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:  # a dead thread has finished its last put: empty is final
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the patch prefetcher has stopped") from None
        if isinstance(item, _Failed):
            raise item.error
        return item

    def close(self) -> None:
        """Stop the thread and drop the batch it holds."""
        self._stop.set()
        while self._thread is not None and self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
