"""One shared model session per napari viewer.

The train, predict, preview and annotate widgets all work on the same model: whatever was trained
or loaded last. The session also remembers the last training settings (so ``retrain`` can reuse
them) and the latest prediction per image layer name, and it lets one training run at a time
(Train and Retrain would otherwise both fine-tune the same model and the last to finish would
silently replace the other's result).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from napari_unet.core.instances import DEFAULT_MIN_SIZE, DEFAULT_THRESHOLD

if TYPE_CHECKING:
    import napari

    from napari_unet.core.model import UNet
    from napari_unet.core.segment import Annotations


@dataclass
class Prediction:
    """The latest prediction of one image layer."""

    probability: np.ndarray
    instances: np.ndarray
    threshold: float = DEFAULT_THRESHOLD
    min_size: int = DEFAULT_MIN_SIZE
    interior: np.ndarray | None = None  # cell-interior probability of a 3-class network
    factor: float | None = None  # the resampling factor it was predicted at
    annotations: Annotations | None = None  # the user's edits it follows (2D)


class TrainingBusyError(RuntimeError):
    """A training is already running on this viewer's model (one at a time)."""


def busy_message(owner: str) -> str:
    """What to tell a user who starts a training while ``owner``'s is running."""
    return f"{owner} is already training the model: wait for it to finish or cancel it there"


@dataclass
class ModelSession:
    """Current model, where it came from, last training settings and predictions.

    ``model_changed`` is emitted with the new model (or None) whenever ``set_model`` is called;
    ``training_changed`` with the owner of the training that starts (a name such as
    ``"Train U-Net"``) or None when it ends.
    """

    model_changed = Signal(object)
    training_changed = Signal(object)

    model: UNet | None = None
    source: str = "none"
    train_settings: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Prediction] = field(default_factory=dict)
    training: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def begin_training(self, owner: str) -> None:
        """Mark a training by ``owner`` as running; raise ``TrainingBusyError`` if one is."""
        with self._lock:
            if self.training is not None:
                raise TrainingBusyError(busy_message(self.training))
            self.training = owner
        self.training_changed.emit(owner)

    def end_training(self, owner: str) -> None:
        """Mark ``owner``'s training as finished (a no-op when another one holds the session)."""
        with self._lock:
            if self.training != owner:
                return
            self.training = None
        self.training_changed.emit(None)

    def busy_message(self) -> str | None:
        """Why a training cannot start now, or None when none is running."""
        owner = self.training
        return None if owner is None else busy_message(owner)

    def set_model(self, model: UNet | None, source: str) -> None:
        """Make ``model`` the current model (``source``: "new", "checkpoint: <path>", "trained")."""
        self.model = model
        self.source = source
        self.model_changed.emit(model)

    def set_prediction(self, image_name: str, prediction: Prediction) -> None:
        """Remember the latest prediction made for the image layer ``image_name``."""
        self.predictions[image_name] = prediction

    def describe(self) -> str:
        """One line for status labels: model size and origin."""
        if self.model is None:
            return "no model"
        cfg = getattr(self.model, "config", {}) or {}
        parts = [f"{k}={cfg[k]}" for k in ("in_channels", "depth", "base_channels", "padding")
                 if k in cfg]
        return f"{self.source} ({', '.join(parts)})" if parts else self.source


_SESSIONS: weakref.WeakKeyDictionary[Any, ModelSession] = weakref.WeakKeyDictionary()


def get_session(viewer: napari.viewer.Viewer) -> ModelSession:
    """Return the session of ``viewer``, creating it on first use (one per viewer)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = ModelSession()
        _SESSIONS[viewer] = session
    return session
