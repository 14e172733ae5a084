"""Live training: a U-Net that keeps learning from annotations while the user edits them.

ilastik's "live update" for a U-Net: :class:`LiveTrainer` holds the model, its optimizer and a
training set built from the current annotations. :meth:`LiveTrainer.update` hands it new
labels (from any thread); the next :meth:`LiveTrainer.step` trains on them. What the user
corrected last is what the next update must get right, so patches are centred on recent
corrections part of the time and their pixels weigh more; where nothing is labeled, a frozen
copy of the starting model keeps its own answer (distillation, as the one-shot Retrain does).
Undoing a correction (annotations back to what they were before it) also undoes what was
learned from it: the weights of before each of the last ``REVERTS`` corrections are kept.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .device import free_device_memory, place_for_training, release_to_cpu, resolve_device
from .losses import distillation_loss, weighted_cross_entropy
from .model import is_trained, train_mode
from .patches import PatchSampler, default_patch_size
from .scale import model_diameter, resample
from .segment import Annotations, model_threshold
from .tiling import predict_region
from .training import (
    FINE_TUNE_LEARNING_RATE,
    TrainConfig,
    WeightAnchor,
    correction_settings,
    records_data_scale,
)
from .training_data import (
    TrainingSlice,
    check_label_classes,
    keeps_unlabeled,
    training_planes,
    training_scale,
    training_slice,
)

__all__ = [
    "KEPT_WARNING",
    "LIVE_ANCHOR",
    "LIVE_LEARNING_RATE",
    "REVERTS",
    "LiveSettings",
    "LiveTrainer",
]

#: a click should be learned within a few dozen steps: 3x the one-shot fine-tuning rate
#: (benchmarks/README.md, finding L1)
LIVE_LEARNING_RATE = 3 * FINE_TUNE_LEARNING_RATE
#: pull of a trained model's weights toward where the session started, after every step
#: (``training.WeightAnchor``): it keeps the images nobody corrected (finding L17)
LIVE_ANCHOR = 100.0

#: how many corrections back an undo can go (one copy of the weights each)
REVERTS = 5

#: warn when the model keeps less than this share of the cells it found at the start, away
#: from the annotations: one correction undoing the model (benchmarks/README.md finding L8)
KEPT_WARNING = 0.5


@dataclass
class LiveSettings:
    """How a live session trains: ``recent_fraction`` of the patches are centred on one of the
    last ``recent`` corrections, whose pixels weigh ``correction_weight`` times more; a trained
    model's weights are pulled back toward the session's start by ``anchor`` (0: off)."""

    learning_rate: float = LIVE_LEARNING_RATE
    batch_size: int = 4
    recent: int = 8
    recent_fraction: float = 0.5
    correction_weight: float = 3.0
    replay_fraction: float = 0.0
    balanced_distill: bool = False
    anchor: float = LIVE_ANCHOR
    threshold_frame: bool = False
    dense: bool = False
    diameter: float | None = None
    seed: int | None = 0
    device: str = "auto"

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot work."""
        if not self.learning_rate > 0 or self.batch_size < 1 or self.recent < 0:
            raise ValueError("learning_rate and batch_size must be positive, recent >= 0")
        for name in ("recent_fraction", "replay_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.anchor >= 0.0:
            raise ValueError(f"anchor must be >= 0, got {self.anchor}")
        if not self.correction_weight >= 1.0:
            raise ValueError(f"correction_weight must be >= 1, got {self.correction_weight}")


class _CorrectionSampler(PatchSampler):
    """The training sampler, with part of the patch centres on recent corrections."""

    def __init__(self, *args: Any, recent: list[np.ndarray], fraction: float,
                 replay: float = 0.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.recent = [r for r in recent if r.size]
        self.fraction = fraction if self.recent else 0.0
        self.replay = replay

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A patch anywhere in the image ``replay`` of the time (unlabeled: distilled only)."""
        if self.replay and self.rng.random() < self.replay:
            s = self.slices[0]
            h, w = s.mask.shape
            return self.patch(s, int(self.rng.integers(h)), int(self.rng.integers(w)))
        return super().sample()

    def _centre(self) -> tuple[TrainingSlice, int, int]:
        if self.fraction == 0.0 or self.rng.random() >= self.fraction:
            return super()._centre()
        age = np.arange(1, len(self.recent) + 1, dtype=np.float64)  # the newest weighs most
        pool = self.recent[int(self.rng.choice(len(self.recent), p=age / age.sum()))]
        s = self.slices[0]
        cy, cx = divmod(int(pool[self.rng.integers(pool.size)]), s.mask.shape[1])
        return s, cy, cx


class LiveTrainer:
    """Fine-tune ``model`` step by step on one 2D image whose annotations keep changing.

    ``image``: ``(Y, X)`` or ``(C, Y, X)`` (``channel_axis`` as in ``core.training.train``).
    Labels follow the sparse convention (0 unlabeled, 1 background, >= 2 cells) unless
    ``settings.dense``. :meth:`update` may be called from any thread; :meth:`step`,
    :meth:`predict` and :meth:`close` belong to the training thread. ``factor``: the resampling
    factor of the prediction being corrected (``Prediction.factor``), so that training and the
    overlay run at the scale the user sees; without it (and without ``settings.diameter``) the
    scale is measured on the first labeled cells. ``start_probability``: that prediction's
    cell probability of this plane, what :meth:`kept_cells` compares against (without it, the
    first step predicts the whole plane once).
    """

    def __init__(self, model: torch.nn.Module, image: np.ndarray, settings: LiveSettings | None
                 = None, *, channel_axis: int | None = None,
                 factor: float | None = None,
                 start_probability: np.ndarray | None = None) -> None:
        self.settings = settings or LiveSettings()
        self.settings.validate()
        self.model = model
        image = np.asarray(image)
        if channel_axis is not None:  # channels first: the last two axes are the plane
            image, channel_axis = np.moveaxis(image, channel_axis, 0), 0
        self.image = image
        self.channel_axis = channel_axis
        self.cfg = self._config(model)
        self.device = resolve_device(self.settings.device)
        self.rng = np.random.default_rng(self.settings.seed)
        if self.settings.seed is not None:
            torch.manual_seed(self.settings.seed)
        self.steps = 0
        self.corrections = 0
        self.undone = 0  # corrections undone (their training with them)
        self.loss: float | None = None
        self.message = "waiting for annotations"
        self.data_diameter: float | None = None
        self.factor: float | None = None
        if factor is not None and self.settings.diameter is None:
            if not np.isfinite(factor) or factor <= 0:
                raise ValueError(f"factor must be a positive number, got {factor!r}")
            self.factor = float(factor)
            self.data_diameter = model_diameter(model) / self.factor
        self._recent: deque[np.ndarray] = deque(maxlen=max(self.settings.recent, 1))
        # (pixels, their old values, weights) of before each of the last corrections
        self._before: deque[tuple[np.ndarray, np.ndarray, dict[str, torch.Tensor]]] = \
            deque(maxlen=REVERTS)
        self._labels: np.ndarray | None = None  # the annotations trained on now
        self._lock = threading.Lock()
        self._pending: tuple[np.ndarray, np.ndarray | None] | None = None
        self._sampler: _CorrectionSampler | None = None
        self._teacher = self._optimizer = None
        self._anchor: WeightAnchor | None = None
        self._scaled_image: np.ndarray | None = None
        self._records_scale = records_data_scale(model, self.settings.diameter)
        self._start_cells: np.ndarray | None = None  # the start model's cells, off the labels
        if start_probability is not None:
            self._start_cells = self._cells_of(start_probability)
        self._labeled: np.ndarray | None = None
        self._background_offset = self._threshold_offset()
        self._shapes: tuple[tuple[int, int], tuple[int, int]] | None = None

    def _threshold_offset(self) -> float:
        """What ``threshold_frame`` adds to the background logit in the labeled loss (0: off).

        A fine-tuned model's cells are read at its calibrated threshold t, not at 0.5, so a
        corrected pixel is right only on the far side of t: raising the background logit by
        log(t / (1 - t)) puts the loss's decision boundary there (logit adjustment, Menon et
        al. 2021).
        """
        if not self.settings.threshold_frame or not is_trained(self.model):
            return 0.0
        t = float(np.clip(model_threshold(self.model), 0.01, 0.99))
        return float(np.log(t / (1.0 - t)))

    def _cells_of(self, probability: np.ndarray) -> np.ndarray:
        """The start model's cells from a whole-plane cell probability already predicted."""
        fg = np.asarray(probability)
        if fg.shape != self.image.shape[-2:]:
            raise ValueError(f"start_probability shape {fg.shape} does not match the image "
                             f"{self.image.shape[-2:]}")
        return fg > model_threshold(self.model)

    def _config(self, model: torch.nn.Module) -> TrainConfig:
        """Training settings of a correction retrain (``correction_settings``) at this pace."""
        s = self.settings
        return TrainConfig(
            learning_rate=s.learning_rate, batch_size=s.batch_size, dense=s.dense,
            diameter=s.diameter, device=s.device, seed=s.seed,
            **correction_settings(model, s.dense),
        )

    # -- from any thread ------------------------------------------------------------------
    def update(self, labels: np.ndarray, changed: np.ndarray | None = None) -> None:
        """Train on ``labels`` from the next step on; ``changed``: the pixels just corrected."""
        labels = np.array(labels, copy=True)
        if labels.shape != self.image.shape[-2:]:
            raise ValueError(f"labels shape {labels.shape} does not match the image "
                             f"{self.image.shape[-2:]}")
        if changed is not None:
            changed = np.asarray(changed, dtype=bool)
            if changed.shape != labels.shape:
                raise ValueError("changed must have the labels' shape")
        with self._lock:
            old = self._pending[1] if self._pending is not None else None
            if old is not None and changed is not None:
                changed = changed | old  # two edits between steps: both are recent
            self._pending = (labels, changed if changed is not None else old)

    # -- on the training thread -----------------------------------------------------------
    def _take_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        labels, changed = pending
        undo = self._undoes_last(labels)
        if undo:
            self._restore_before_last()
            changed = None
        elif changed is not None and self._labels is not None \
                and np.array_equal(labels, self._labels):
            changed = None  # an edit and its undo between two steps: nothing new
        elif changed is not None and changed.any():
            self._keep_weights(labels)
        self._labels = labels
        self._rebuild(labels, changed)
        if undo and self._sampler is not None:
            self.message = "undone: the last correction and what was learned from it"

    def _undoes_last(self, labels: np.ndarray) -> bool:
        """Whether ``labels`` are the annotations of before the last correction (its undo)."""
        if not self._before or self._labels is None:
            return False
        where, old = self._before[-1][:2]
        before = self._labels.copy()
        before.flat[where] = old
        return np.array_equal(labels, before)

    def _restore_before_last(self) -> None:
        """Weights of before the last correction, a fresh optimizer, that correction forgotten."""
        self.model.load_state_dict(self._before.pop()[2])
        self.undone += 1
        if self._recent:
            self._recent.pop()
        self.corrections = max(self.corrections - 1, 0)
        if self._optimizer is not None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self._optimizer = torch.optim.Adam(params, lr=self.cfg.learning_rate)

    def _keep_weights(self, labels: np.ndarray) -> None:
        """Keep what the correction to ``labels`` overwrote (pixels, old values) and a copy of
        the weights (on the CPU), so that its undo can go back."""
        if self._labels is None:
            return
        where = np.flatnonzero(labels != self._labels)
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self._before.append((where, self._labels.flat[where].copy(), weights))

    def _rebuild(self, labels: np.ndarray, changed: np.ndarray | None) -> None:
        """A new training set from ``labels``; ``changed`` joins the recent corrections."""
        with warnings.catch_warnings(record=True) as caught:  # said once, in the status
            warnings.simplefilter("always")
            planes = training_planes(self.model, self.image, labels, self.cfg, self.channel_axis)
        if not planes:
            self._sampler, self.message = None, "waiting for annotations"
            return
        if self.factor is None:
            self.data_diameter, self.factor = training_scale(
                self.model, [planes[0].instances[planes[0].mask]], self.cfg.diameter)
        s = training_slice(planes[0], self.factor, self.rng)
        self._scaled_image = s.image
        self._labeled = labels > 0
        if changed is not None and changed.any():
            self.corrections += 1
            self._recent.append(self._at_scale(changed, s.mask.shape))
        boost = np.zeros(s.mask.shape, dtype=np.uint8)
        for idx in self._recent:
            boost.flat[idx] = 1
        s.boost = boost
        try:
            check_label_classes(s.fg.size > 0, s.bg.size > 0, self.cfg.dense,
                                one_class_ok=keeps_unlabeled(self.model, self.cfg))
        except ValueError as error:
            self._sampler, self.message = None, str(error)
            return
        self._sampler = self._make_sampler(s)
        self.message = str(caught[0].message) if caught else "training"

    def _at_scale(self, changed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Flat indices of the ``changed`` pixels at the training scale."""
        small = resample(changed.astype(np.uint8), shape, order=0) if changed.shape != shape \
            else changed
        return np.flatnonzero(small).astype(np.int64)

    def _make_sampler(self, s: TrainingSlice) -> _CorrectionSampler:
        if self._shapes is None:
            side = default_patch_size(self.model, [s.mask.shape])
            in_shape = tuple(self.model.valid_input_shape((side, side)))
            self._shapes = (in_shape, tuple(self.model.output_shape(in_shape)))
        recent = list(self._recent) if self.settings.recent else []
        return _CorrectionSampler(
            [s], self.cfg, *self._shapes, self.rng, int(self.model.n_classes),
            boost=self.settings.correction_weight, recent=recent,
            fraction=self.settings.recent_fraction,
            replay=self.settings.replay_fraction if self._teacher_kept() else 0.0,
        )

    def _teacher_kept(self) -> bool:
        """Whether unlabeled pixels keep the starting model's answer (distillation on)."""
        return (self.cfg.distill_weight or 0.0) > 0

    def _start(self) -> None:
        """Optimizer, teacher and train mode (frozen BatchNorm statistics when fine-tuning)."""
        if self._optimizer is not None:
            return
        if self._start_cells is None and is_trained(self.model):  # what it finds before any
            self._start_cells = self.predict()[0] > model_threshold(self.model)  # update
        if self._teacher_kept():
            self._teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
            place_for_training(self._teacher, self.device)
        place_for_training(self.model, self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self._optimizer = torch.optim.Adam(params, lr=self.cfg.learning_rate)
        if self.settings.anchor > 0 and is_trained(self.model):  # a new network: free to move
            self._anchor = WeightAnchor(params, self.settings.anchor)  # (after the placement)

    def step(self) -> float | None:
        """One optimizer step on the current annotations; None while there is nothing to learn."""
        self._take_pending()
        if self._sampler is None:
            return None
        self._start()
        train_mode(self.model, freeze_norm_stats=is_trained(self.model))
        warm = min(1.0, (self.steps + 1) / 10)  # a short warm-up, then a constant rate
        for group in self._optimizer.param_groups:
            group["lr"] = self.cfg.learning_rate * warm
        x, target, weights = (t.to(self.device) for t in self._sampler.batch(self.cfg.batch_size))
        self._optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = weighted_cross_entropy(self._at_threshold(logits), target, weights)
        if self._teacher is not None:
            with torch.no_grad():
                soft = torch.softmax(self._teacher(x).float(), dim=1)
            loss = loss + self.cfg.distill_weight * distillation_loss(
                logits, soft, weights == 0, balanced=self.settings.balanced_distill)
        if not torch.isfinite(loss):
            raise ValueError("live training diverged (the loss is not finite)")
        loss.backward()
        self._optimizer.step()
        if self._anchor is not None:
            self._anchor.pull(self.cfg.learning_rate * warm)
        self.steps += 1
        self.loss = float(loss.detach())
        return self.loss

    def _at_threshold(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits whose 0.5 cell probability is the model's threshold, for the labeled loss."""
        if not self._background_offset:
            return logits
        return torch.cat([logits[:, :1] + self._background_offset, logits[:, 1:]], dim=1)

    def predict(self, region: tuple[slice, slice] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, tuple[slice, slice]]:
        """``(cell probability, interior or None, region)`` of the image's ``region`` now.

        Predicted at the network's scale on the training image (so normalized like the whole
        image; context read around the region) and resampled back onto the region's pixels.
        """
        region = _clip_region(region, self.image.shape[-2:])
        scaled = self._scaled_image
        if scaled is None:
            raise ValueError("nothing to predict yet: no annotations were given")
        f = self.factor or 1.0
        rows, cols = (_scaled_span(r, f, n) for r, n in zip(region, scaled.shape[-2:],
                                                             strict=True))
        self.model.eval()
        with torch.inference_mode():
            probs = predict_region(self.model, scaled, (rows, cols), channel_axis=0,
                                   normalize=False, device=self.device)
        shape = (region[0].stop - region[0].start, region[1].stop - region[1].start)
        if probs.shape[-2:] != shape:
            probs = resample(probs, shape)
        fg = np.clip(1.0 - probs[0], 0.0, 1.0).astype(np.float32)
        interior = np.clip(probs[1], 0.0, 1.0).astype(np.float32) if probs.shape[0] > 2 else None
        return fg, interior, region

    def annotations(self, region: tuple[slice, slice] | None = None) -> Annotations | None:
        """The annotations trained on now, in ``region`` (None before any): what the overlay
        shows as the user made it."""
        labels = self._labels
        if labels is None:
            return None
        return Annotations.of(labels[_clip_region(region, labels.shape)], self.settings.dense)

    def kept_cells(self, fg: np.ndarray, region: tuple[slice, slice]) -> float | None:
        """Share of the start model's cell pixels in ``region``, off the annotations, that
        ``fg`` (a prediction of ``region``) still calls cell; None when there are too few."""
        if self._start_cells is None or self._labeled is None:
            return None
        start = self._start_cells[region] & ~self._labeled[region]
        if start.sum() < 100:
            return None
        return float(np.mean(fg[start] > model_threshold(self.model)))

    def close(self) -> torch.nn.Module:
        """End the session: the model in eval mode on the CPU, device memory freed."""
        self._optimizer = self._teacher = self._sampler = self._anchor = None
        self.model.eval()
        release_to_cpu(self.model)
        free_device_memory(self.device)
        metadata = self.model.metadata if isinstance(getattr(self.model, "metadata", None),
                                                     dict) else {}
        if self.steps:
            if self.data_diameter and self._records_scale:  # later predictions: this scale
                metadata.setdefault("scale", {}).update(
                    object_diameter=model_diameter(self.model), data_diameter=self.data_diameter)
            metadata.setdefault("training", {})["live"] = {
                "steps": self.steps, "corrections": self.corrections,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        self.model.metadata = metadata
        return self.model


def _clip_region(region: tuple[slice, slice] | None, shape: tuple[int, ...]
                 ) -> tuple[slice, slice]:
    """``region`` within ``shape`` (None: the whole image); ``ValueError`` when empty."""
    if region is None:
        return slice(0, shape[0]), slice(0, shape[1])
    out = tuple(slice(max(int(r.start or 0), 0), min(int(n if r.stop is None else r.stop), n))
                for r, n in zip(region, shape, strict=True))
    if any(r.stop <= r.start for r in out):
        raise ValueError(f"region {region} lies outside the image of shape {tuple(shape)}")
    return out



def _scaled_span(span: slice, factor: float, n: int) -> slice:
    """The rows (or columns) at the network's scale that cover ``span`` of the image."""
    start = min(int(span.start * factor), n - 1)
    return slice(start, min(max(int(np.ceil(span.stop * factor)), start + 1), n))
