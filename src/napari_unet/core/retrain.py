"""Retrain on clicked corrections with the live recipe, as a training loop with progress.

One Retrain on a trained model's sparse corrections runs the steps a live session would
(:class:`.live.LiveTrainer`: half the patches centred on the corrections, their pixels
weighed more, the unlabeled pixels keeping the model's answer, the weights anchored), all the
corrections counting as recent.  ``benchmarks/README.md`` finding L20: that fixes more of the
clicked objects than a fine-tune of the same length at the same cost to the other images.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from .live import LiveSettings, LiveTrainer
from .model import is_trained
from .training import TrainProgress

__all__ = ["correction_loop", "uses_live_recipe"]


def uses_live_recipe(model: torch.nn.Module | None, labels: list[np.ndarray],
                     dense: bool) -> bool:
    """Whether a Retrain takes the live recipe: sparse clicks on one plane of a trained model."""
    return (model is not None and is_trained(model) and not dense and len(labels) == 1
            and np.asarray(labels[0]).ndim == 2)


def correction_loop(
    model: torch.nn.Module,
    image: np.ndarray,
    labels: np.ndarray,
    steps: int,
    *,
    settings: LiveSettings | None = None,
    factor: float | None = None,
    num_threads: int | None = None,
) -> Generator[TrainProgress, None, int]:
    """Train ``model`` ``steps`` live steps on ``labels`` (sparse), yielding progress per step.

    ``image``: ``(Y, X)`` or channels first ``(C, Y, X)``; ``factor``: the resampling factor of
    the prediction being corrected (as :class:`.live.LiveTrainer`).  Raises ``ValueError`` when
    the labels hold nothing to learn.  Closing the generator stops after the last finished
    step; the model always ends in eval mode on the CPU.  Returns the number of steps.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    image = np.asarray(image)
    axis = 0 if image.ndim == 3 else None
    trainer = LiveTrainer(model, image, settings or LiveSettings(), channel_axis=axis,
                          factor=factor)
    trainer.update(labels, changed=np.asarray(labels) > 0)  # every click is a recent one
    old_threads = torch.get_num_threads()  # set after the checks, restored in the finally
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            loss = trainer.step()
            if loss is None:
                raise ValueError(trainer.message)
            elapsed = time.perf_counter() - start
            yield TrainProgress(
                step=step, total_steps=steps, loss=loss,
                learning_rate=trainer.cfg.learning_rate, elapsed_s=elapsed,
                eta_s=elapsed / step * (steps - step), device=str(trainer.device),
                done=step == steps,
            )
    finally:
        trainer.close()
        torch.set_num_threads(old_threads)
        if trainer.steps:
            model.metadata["training"] = _record(trainer, steps)
    return trainer.steps


def _record(trainer: LiveTrainer, steps: int) -> dict[str, Any]:
    """The run's settings as ``model.metadata["training"]`` (as ``training.train`` records)."""
    s = trainer.settings
    record = dataclasses.asdict(trainer.cfg)
    record.update(
        recipe="live corrections", steps=steps, steps_completed=trainer.steps, n_images=1,
        anchor=s.anchor, correction_weight=s.correction_weight,
        recent_fraction=s.recent_fraction, live=trainer.model.metadata["training"]["live"],
    )
    return record
