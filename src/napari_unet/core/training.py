"""Train a U-Net on sparse (painted) or dense labels; ``train()`` is a step-by-step generator.

One step (:func:`train_step`) is one Adam update on a batch of augmented random patches: the
weighted cross-entropy, plus, when fine-tuning, a term that keeps the starting model (method and
defaults: benchmarks/README.md findings T1-T6).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .calibration import ClassMass, calibrated_threshold
from .device import free_device_memory, place_for_training, release_to_cpu, resolve_device
from .losses import distillation_loss, label_agreement, trust_from, weighted_cross_entropy
from .model import is_trained, train_mode
from .patches import PatchSampler, Prefetcher, default_patch_size
from .scale import data_diameter
from .training_data import NORMALIZATION, TrainingSlice, prepare_slices

__all__ = [
    "CORRECTION_ANCHOR",
    "DEFAULT_DISTILL_WEIGHT",
    "TrainConfig",
    "TrainProgress",
    "WeightAnchor",
    "check_training_data",
    "correction_settings",
    "new_image_type_hint",
    "records_data_scale",
    "train",
    "train_to_completion",
]

_FINAL_LR_FRACTION = 0.05
# Learning rate for fine-tuning a trained model: benchmarks/README.md finding T3.
FINE_TUNE_LEARNING_RATE = 1e-4
# Weight of the keep-the-starting-model term on sparse labels: benchmarks/README.md finding T4.
DEFAULT_DISTILL_WEIGHT = 10.0
# Pull toward the starting weights on dense labels, x the trust: benchmarks/README.md finding T5.
DEFAULT_DENSE_ANCHOR = 100.0
#: the weight anchor of a retrain on sparse corrections (the live anchor's value; finding L19)
CORRECTION_ANCHOR = 100.0
# Batches the starting model predicts before a dense fine-tune to measure that agreement.
_TRUST_BATCHES = 4


@dataclass
class TrainConfig:
    """Training settings (all JSON-able; stored in ``model.metadata["training"]``).

    ``minutes`` (a time budget) replaces ``steps`` when set.  ``patch_size`` is the side of the
    output patch (None: :func:`default_patch_size`).  ``dense=True`` means 0 is background and
    every pixel counts; otherwise 0 is unlabeled, 1 background and >= 2 cells.
    ``mixed_precision`` is only used on CUDA.  ``foreground_fraction`` is how often a patch
    centre is drawn on a cell pixel rather than on another labeled pixel.
    ``freeze_norm_stats`` keeps BatchNorm running statistics fixed (None: only when fine-tuning a
    trained model; benchmarks/README.md finding T3).
    ``distill_weight`` weighs the term that keeps the starting model's predictions on unlabeled
    pixels.  None: ``DEFAULT_DISTILL_WEIGHT`` when fine-tuning a trained model on sparse labels,
    else 0, scaled by the starting model's agreement with the labels (:func:`trust_from`); an
    explicit weight is used as given (findings T4-T6).
    ``anchor`` pulls the weights back toward where training started after every step,
    ``w -= lr * anchor * (w - w_start)``.  None: ``DEFAULT_DENSE_ANCHOR`` x that agreement when
    fine-tuning on dense labels, else 0 (finding T5).
    """

    steps: int = 300
    minutes: float | None = None
    learning_rate: float = 1e-3
    batch_size: int = 4
    patch_size: int | None = None
    augment: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    w0: float = 10.0
    sigma: float = 5.0
    dense: bool = False
    device: str = "auto"
    mixed_precision: bool = True
    seed: int | None = None
    num_threads: int | None = None
    foreground_fraction: float = 0.5
    freeze_norm_stats: bool | None = None
    distill_weight: float | None = None
    anchor: float | None = None
    diameter: float | None = None
    prefetch: bool = True
    channel_conversion: str | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot work."""

        def positive(name: str, value: float | None, integer: bool = False) -> None:
            if value is None:
                return
            bad = isinstance(value, bool) or (integer and not isinstance(value, int | np.integer))
            if bad or not np.isfinite(value) or value <= 0:
                kind = "a positive integer" if integer else "a positive number"
                raise ValueError(f"{name} must be {kind}, got {value!r}")

        positive("steps", self.steps, integer=True)
        positive("minutes", self.minutes)
        positive("learning_rate", self.learning_rate)
        positive("batch_size", self.batch_size, integer=True)
        positive("patch_size", self.patch_size, integer=True)
        positive("elastic_grid", self.elastic_grid, integer=True)
        positive("sigma", self.sigma)
        positive("num_threads", self.num_threads, integer=True)
        positive("diameter", self.diameter)
        if not np.isfinite(self.elastic_sigma) or self.elastic_sigma < 0:
            raise ValueError(f"elastic_sigma must be >= 0, got {self.elastic_sigma!r}")
        if self.distill_weight is not None and not (
            np.isfinite(self.distill_weight) and self.distill_weight >= 0
        ):
            raise ValueError(f"distill_weight must be >= 0 or None, got {self.distill_weight!r}")
        if self.anchor is not None and not (np.isfinite(self.anchor) and self.anchor >= 0):
            raise ValueError(f"anchor must be >= 0 or None, got {self.anchor!r}")
        if not np.isfinite(self.w0) or self.w0 < 0:
            raise ValueError(f"w0 must be >= 0, got {self.w0!r}")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ValueError(
                f"foreground_fraction must be in [0, 1], got {self.foreground_fraction!r}"
            )
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'auto', got {self.device!r}")


@dataclass
class TrainProgress:
    """State after one optimizer step (``eta_s``/``total_steps`` are estimates with ``minutes``)."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    elapsed_s: float
    eta_s: float
    device: str
    done: bool = False


def _make_config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    base = TrainConfig() if config is None else config
    if not isinstance(base, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(base).__name__}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; valid: {sorted(names)}")
    cfg = dataclasses.replace(base, **overrides)
    cfg.validate()
    return cfg


def _lr_factor(step: int, fraction: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``_FINAL_LR_FRACTION``."""
    warm = min(1.0, (step + 1) / max(warmup, 1))
    fraction = min(max(fraction, 0.0), 1.0)
    floor = _FINAL_LR_FRACTION
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction))
    return warm * cosine


def _starting_trust(
    model: torch.nn.Module, sampler: PatchSampler, batch_size: int, device: Any, use_amp: bool
) -> float:
    """:func:`trust_from` the model's predictions on a few training batches (before training)."""
    agreement = torch.zeros(())
    model.eval()
    with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
        for _ in range(_TRUST_BATCHES):
            x, target, weights = (t.to(device) for t in sampler.batch(batch_size))
            soft = torch.softmax(model(x).float(), dim=1)
            agreement = agreement + label_agreement(soft, target, weights > 0).cpu()
    return trust_from(agreement)


# Below this trust a fine-tune is told that its images look new to the starting model.
LOW_TRUST = 0.2


def new_image_type_hint(model: torch.nn.Module) -> str | None:
    """A hint for the user when the finished fine-tune's starting model disagreed with the labels
    (a new network may then learn more: benchmarks/README.md finding 8)."""
    trust = getattr(model, "metadata", {}).get("training", {}).get("start_trust")
    if trust is None or trust >= LOW_TRUST:
        return None
    return (
        f"The starting model disagreed with your labels (trust {trust:.2f} of 1): these images "
        "look new to it, so little of what it knew was kept. If the result is poor, train a "
        "'new model' on the same labels: on H&E nuclei that learned more in our tests."
    )


def records_data_scale(model: torch.nn.Module, diameter: float | None) -> bool:
    """Whether training ``model`` records its labels' object size as the images' size.

    Not when fine-tuning a starting model that records none without a ``diameter`` given:
    its predictions keep estimating the size per image (``scale.default_diameter``), which on
    mixed magnifications beats the one size of a few labeled images (finding K5).
    """
    return diameter is not None or not is_trained(model) or data_diameter(model) is not None


def correction_settings(model: torch.nn.Module, dense: bool) -> dict[str, float]:
    """``TrainConfig`` fields for retraining ``model`` on corrections of its own prediction.

    Corrections are painted exactly where the model was wrong, so its agreement with them says
    nothing about the pixels nobody corrected (benchmarks/README.md finding T6).  So on sparse
    labels the unlabeled pixels keep the model's answer at the full ``DEFAULT_DISTILL_WEIGHT``
    and the weights are pulled toward the model's own by ``CORRECTION_ANCHOR``, which keeps
    the images nobody corrected (finding L19); dense labels made from the prediction already
    hold that answer everywhere, and no anchor holds back the corrections.
    """
    if not is_trained(model):
        return {"distill_weight": 0.0, "anchor": 0.0}
    if dense:
        return {"distill_weight": 0.0, "anchor": 0.0}
    return {"distill_weight": DEFAULT_DISTILL_WEIGHT, "anchor": CORRECTION_ANCHOR}


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite: the learning rate is too high."""


def _check_finite(what: str, tensors: Sequence[torch.Tensor], step: int, lr: float) -> None:
    """Raise :class:`TrainingDiverged` unless every value of ``tensors`` is finite."""
    tensors = [t.detach() for t in tensors if t.is_floating_point()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        raise TrainingDiverged(
            f"training diverged at step {step}: the {what} became NaN or infinite "
            f"(learning rate {lr:g}); lower the learning rate and train again"
        )


def _check_model(model: torch.nn.Module) -> None:
    n_classes = int(model.n_classes)
    if n_classes < 2:
        raise ValueError(f"training needs a model with n_classes >= 2, got {n_classes}")


def check_training_data(model: torch.nn.Module, images: Any, labels: Any,
                        config: TrainConfig | None = None, **options: Any) -> list[str]:
    """Run :func:`train`'s checks without training: ``ValueError`` or a list of warnings.

    ``train`` is a generator, so its checks only run at the first ``next()``; a widget or CLI
    can call this first to report bad input before starting a worker.  ``options``: those of
    :func:`train` (``channel_axis`` and ``TrainConfig`` fields).
    """
    channel_axis = options.pop("channel_axis", None)
    cfg = _make_config(config, options)
    _check_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_slices(model, images, labels, cfg, channel_axis, np.random.default_rng(0))[0]
    return [str(w.message) for w in caught]


@dataclass(frozen=True)
class _Resolved:
    """The settings :func:`train` resolves from its config and the model before the first step."""

    freeze_stats: bool  # BatchNorm running statistics kept fixed
    distill: float  # weight of the keep-the-starting-model term (0: off)
    scale_distill: bool  # that weight x the live agreement with the labels (default weight)
    anchor: float  # pull toward the starting weights, before the trust scaling
    scale_anchor: bool  # the anchor x the agreement measured before training (default anchor)
    device: torch.device
    use_amp: bool  # float16 autocast (CUDA only)


def _make_sampler(
    model: torch.nn.Module, cfg: TrainConfig, slices: list[TrainingSlice], rng: np.random.Generator
) -> tuple[PatchSampler, int]:
    """The patch sampler of a run and its output patch side."""
    side = cfg.patch_size or default_patch_size(model, [s.mask.shape for s in slices])
    in_shape = tuple(model.valid_input_shape((side, side)))
    out_shape = tuple(model.output_shape(in_shape))
    return PatchSampler(slices, cfg, in_shape, out_shape, rng, int(model.n_classes)), side


def _resolve(cfg: TrainConfig, fine_tuning: bool) -> _Resolved:
    """The fine-tuning policy (benchmarks/README.md findings T3-T5) and the device."""
    freeze_stats = fine_tuning if cfg.freeze_norm_stats is None else bool(cfg.freeze_norm_stats)
    distill = cfg.distill_weight
    if distill is None:
        distill = DEFAULT_DISTILL_WEIGHT if fine_tuning and not cfg.dense else 0.0
    anchor = cfg.anchor
    if anchor is None:
        anchor = DEFAULT_DENSE_ANCHOR if fine_tuning and cfg.dense else 0.0
    scale_anchor = cfg.anchor is None and anchor > 0
    device = resolve_device(cfg.device)
    use_amp = bool(cfg.mixed_precision) and torch.device(device).type == "cuda"
    return _Resolved(
        freeze_stats, distill, cfg.distill_weight is None, anchor, scale_anchor, device, use_amp
    )


def _record_start(
    model: torch.nn.Module,
    cfg: TrainConfig,
    slices: list[TrainingSlice],
    scale: dict[str, Any],
    sampler: PatchSampler,
    side: int,
) -> tuple[dict[str, Any], float | None]:
    """Write the run's settings into ``model.metadata``; returns them and the old threshold."""
    settings = dataclasses.asdict(cfg)
    settings.update(
        patch_size=side,
        input_patch_shape=list(sampler.in_shape),
        output_patch_shape=list(sampler.out_shape),
        n_images=len(slices),
        steps_completed=0,
    )
    if not isinstance(getattr(model, "metadata", None), dict):
        model.metadata = {}
    model.metadata["normalization"] = dict(NORMALIZATION)
    model.metadata["in_channels"] = int(model.in_channels)
    start_threshold = model.metadata.get("threshold")
    if scale["object_diameter"] is not None:
        keys = ("object_diameter", "data_diameter") if records_data_scale(model, cfg.diameter) \
            else ("object_diameter",)
        model.metadata["scale"] = {k: scale[k] for k in keys}
    settings["scale_factor"] = scale["factor"]
    model.metadata["training"] = settings
    return settings, start_threshold


class _Distiller:
    """The frozen starting model whose answer the unlabeled pixels keep (finding T4)."""

    def __init__(
        self, teacher: torch.nn.Module, weight: float, scaled: bool, record: dict[str, Any]
    ) -> None:
        self.teacher, self.weight, self.scaled, self.record = teacher, weight, scaled, record
        self.agreement = torch.zeros(())

    def loss(
        self,
        x: torch.Tensor,
        logits: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor,
        use_amp: bool,
    ) -> torch.Tensor:
        """``weight x trust x`` the KL term; updates the trust (``start_trust`` in ``record``)."""
        with torch.no_grad(), torch.autocast(
            device_type="cuda", dtype=torch.float16, enabled=use_amp
        ):
            soft = torch.softmax(self.teacher(x).float(), dim=1)
            self.agreement = self.agreement + label_agreement(soft, target, weights > 0)
            self.record["start_trust"] = trust_from(self.agreement)
            trust = self.record["start_trust"] if self.scaled else 1.0
        self.record["distill_trust"] = trust
        return self.weight * trust * distillation_loss(logits, soft, weights == 0)


class WeightAnchor:
    """Pulls the weights toward where training started: ``w -= lr * anchor * (w - w_start)``."""

    def __init__(self, params: list[torch.nn.Parameter], strength: float) -> None:
        self.params, self.strength = params, strength
        self.start = [p.detach().clone() for p in params]

    def pull(self, lr: float) -> None:
        """One pull after an optimizer step at learning rate ``lr`` (finding T5)."""
        with torch.no_grad():
            pull = min(lr * self.strength, 1.0)
            for p, p0 in zip(self.params, self.start, strict=True):
                p.sub_(p - p0, alpha=pull)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: Sequence[torch.Tensor],
    *,
    lr: float,
    use_amp: bool = False,
    distiller: _Distiller | None = None,
    anchor: WeightAnchor | None = None,
    mass: ClassMass | None = None,
    step: int = 1,
    base_lr: float | None = None,
) -> torch.Tensor:
    """One update on ``batch = (x, target, weights)`` at ``lr``: forward, loss, backward, step.

    The loss is :func:`weighted_cross_entropy`, plus the ``distiller``'s term; ``anchor`` pulls
    the weights back after the step; ``mass`` collects the labeled class mass (calibration).
    :class:`TrainingDiverged` (naming ``step`` and ``base_lr``, default ``lr``) when the loss,
    then the weights, stop being finite. Returns the loss.
    """
    x, target, weights = batch
    report_lr = lr if base_lr is None else base_lr
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
        logits = model(x)
    loss = weighted_cross_entropy(logits, target, weights)
    if mass is not None:
        mass.add(target, weights)
    if distiller is not None:
        loss = loss + distiller.loss(x, logits, target, weights, use_amp)
    _check_finite("loss", [loss], step, report_lr)  # the weights are still good
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if anchor is not None:
        anchor.pull(lr)
    _check_finite("weights", [*model.parameters(), *model.buffers()], step, report_lr)
    return loss


class _Clock:
    """Where a run is in its schedule: by step count, or by elapsed time with ``minutes``."""

    def __init__(self, steps: int, minutes: float | None) -> None:
        self.budget_s = None if minutes is None else 60.0 * minutes
        self.total = steps
        self.warmup = 10 if self.budget_s is not None else min(10, max(1, steps // 10))
        self.start = time.perf_counter()

    def lr_factor(self, step: int) -> float:
        """The learning-rate factor of ``step`` (finding T2)."""
        elapsed = time.perf_counter() - self.start
        fraction = step / self.total if self.budget_s is None else elapsed / self.budget_s
        return _lr_factor(step, fraction, self.warmup)

    def after(self, step: int) -> tuple[bool, float, float]:
        """``(done, elapsed_s, eta_s)`` after ``step`` steps; re-estimates ``total`` by time."""
        elapsed = time.perf_counter() - self.start
        if self.budget_s is None:
            return step >= self.total, elapsed, elapsed / step * (self.total - step)
        done = elapsed >= self.budget_s
        self.total = step if done else max(step + 1, round(step * self.budget_s / elapsed))
        return done, elapsed, max(self.budget_s - elapsed, 0.0)


@dataclass
class _Run:
    """What one training run updates: optimizer, grad scaler and the fine-tuning terms."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    distiller: _Distiller | None
    anchor: WeightAnchor | None


def _start_run(
    model: torch.nn.Module,
    cfg: TrainConfig,
    res: _Resolved,
    sampler: PatchSampler,
    settings: dict[str, Any],
) -> _Run:
    """Move the model to its device in train mode and build the optimizer and the terms."""
    device, use_amp = res.device, res.use_amp
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    distiller = None
    if res.distill > 0:
        teacher = place_for_training(copy.deepcopy(model).eval().requires_grad_(False), device)
        distiller = _Distiller(teacher, res.distill, res.scale_distill, settings)
    place_for_training(model, device)
    anchor = res.anchor
    if res.scale_anchor:
        settings["start_trust"] = _starting_trust(model, sampler, cfg.batch_size, device, use_amp)
        anchor *= settings["start_trust"]
    settings["anchor"] = anchor
    params = [p for p in model.parameters() if p.requires_grad]
    puller = WeightAnchor(params, anchor) if anchor > 0 else None
    train_mode(model, res.freeze_stats)
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return _Run(optimizer, scaler, distiller, puller)


def train(
    model: torch.nn.Module,
    images: Any,
    labels: Any,
    config: TrainConfig | None = None,
    *,
    channel_axis: int | None = None,
    **overrides: Any,
) -> Generator[TrainProgress, None, None]:
    """Train ``model`` in place, yielding a :class:`TrainProgress` after every optimizer step.

    ``images``/``labels``: one array or a list; 2D ``(Y, X)``, multichannel ``(C, Y, X)``
    (``channel_axis`` says where C is if not at -3), or stacks ``(Z, [C,] Y, X)`` whose slices
    are separate training images.  ``overrides`` replace fields of ``config``.  Validation
    happens at the first ``next()`` (``ValueError`` for bad input).  Closing the generator
    stops after the last finished step; in every case the model ends in eval mode, on the CPU,
    with device memory freed.  A model loaded from a checkpoint is simply fine-tuned.
    """
    cfg = _make_config(config, overrides)
    _check_model(model)
    rng = _seeded_rng(cfg.seed)
    slices, scale = prepare_slices(model, images, labels, cfg, channel_axis, rng)
    sampler, side = _make_sampler(model, cfg, slices, rng)
    res = _resolve(cfg, is_trained(model))  # before _record_start marks the model trained
    settings, start_threshold = _record_start(model, cfg, slices, scale, sampler, side)
    settings["distill_weight"] = res.distill
    old_threads = torch.get_num_threads() if cfg.num_threads is not None else None
    mass, step, batches = ClassMass(), 0, None
    try:
        run = _start_run(model, cfg, res, sampler, settings)  # may draw trust batches first
        batches = Prefetcher(sampler, cfg.batch_size, background=cfg.prefetch)
        clock = _Clock(cfg.steps, cfg.minutes)
        while True:
            lr = cfg.learning_rate * clock.lr_factor(step)
            batch = [t.to(res.device) for t in batches.next()]
            loss = train_step(
                model, run.optimizer, run.scaler, batch, lr=lr, use_amp=res.use_amp, mass=mass,
                distiller=run.distiller, anchor=run.anchor, step=step + 1, base_lr=cfg.learning_rate
            )
            step += 1
            settings["steps_completed"] = step
            done, elapsed, eta = clock.after(step)
            if done:
                _calibrate(model, slices, mass, cfg, start_threshold, res.device)
            yield TrainProgress(
                step=step, total_steps=clock.total, loss=float(loss.detach()), learning_rate=lr,
                elapsed_s=elapsed, eta_s=eta, device=str(res.device), done=done,
            )
            if done:
                break
    except GeneratorExit:  # stopped early: the model of the last step gets its threshold too
        if step > 0:
            _calibrate(model, slices, mass, cfg, start_threshold, res.device)
        raise
    finally:
        if batches is not None:
            batches.close()
        run = None  # drops the optimizer, the teacher and the starting weights
        _release(model, res.device, old_threads)


def _seeded_rng(seed: int | None) -> np.random.Generator:
    """The patches' random generator; torch is seeded too (its draws, if any)."""
    if seed is not None:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _release(model: torch.nn.Module, device: Any, threads: int | None) -> None:
    """The model in eval mode on the CPU, device memory freed, torch's thread count restored."""
    model.eval()
    release_to_cpu(model)
    free_device_memory(device)
    if threads is not None:
        torch.set_num_threads(threads)


# Training slices (centre crops of at most this side) predicted to estimate the cell prior.
_PRIOR_SLICES, _PRIOR_SIDE = 4, 512


def _predicted_cell_prior(model: torch.nn.Module, slices: list[TrainingSlice],
                          device: Any) -> float:
    """Fraction of cell pixels the model predicts on (crops of) its training slices.

    Sparse labels say nothing about how much of an image is cell, so the prior comes from the
    model's own prediction: thresholded at the calibrated threshold of the current estimate,
    iterated to a fixed point.
    """
    from .tiling import predict_tiled

    maps = []
    for s in slices[:_PRIOR_SLICES]:
        h, w = s.mask.shape
        y0, x0 = max(0, (h - _PRIOR_SIDE) // 2), max(0, (w - _PRIOR_SIDE) // 2)
        crop = s.image[:, y0 : y0 + _PRIOR_SIDE, x0 : x0 + _PRIOR_SIDE]
        crop = crop[0] if crop.shape[0] == 1 else crop
        maps.append(1.0 - predict_tiled(model, crop, normalize=False, device=device)[0].ravel())
    p = np.concatenate(maps)
    prior, threshold = 0.5, 0.5
    for _ in range(5):
        prior = float(np.clip(np.mean(p > threshold), 1e-3, 1 - 1e-3))
        threshold = calibrated_threshold(np.array([1.0, 1.0]), prior) or 0.5
    return prior


def _calibrate(
    model: torch.nn.Module, slices: list[TrainingSlice], mass: ClassMass, cfg: TrainConfig,
    start_threshold: float | None, device: Any,
) -> None:
    """Store the calibrated threshold (``core.calibration``) in ``model.metadata``."""
    if cfg.dense:
        cells = sum(int((s.instances[s.mask] > 0).sum()) for s in slices)
        prior = cells / max(1, sum(int(s.mask.sum()) for s in slices))
    else:
        prior = _predicted_cell_prior(model.eval(), slices, device)
    threshold = calibrated_threshold(mass.mass, prior)
    if threshold is None:
        return
    training = model.metadata.get("training", {})
    keep = float(training.get("distill_trust", 0.0)) if training.get("distill_weight") else 0.0
    if start_threshold is not None and keep > 0:
        threshold = keep * float(start_threshold) + (1.0 - keep) * threshold
    model.metadata["threshold"] = float(threshold)
    training["cell_prior"] = float(prior)


def train_to_completion(
    model: torch.nn.Module,
    images: Any,
    labels: Any,
    config: TrainConfig | None = None,
    **kw: Any,
) -> list[TrainProgress]:
    """Run :func:`train` to the end and return every progress record (for scripts and the CLI)."""
    return list(train(model, images, labels, config, **kw))
