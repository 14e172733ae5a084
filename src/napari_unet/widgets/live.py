"""Live mode of the Annotate widget: the network trains while the user paints and clicks.

A :class:`LiveSession` runs :class:`napari_unet.core.live.LiveTrainer` in a ``thread_worker``.
Every edit of the annotation layer (a paint stroke, a click, an undo) is handed to the
trainer at once; every ``refresh_s`` seconds the worker predicts the region on screen
(``layer.corner_pixels``) and the overlay layers are updated there. Stopping predicts the
whole image. The worker yields after every step, so the window stays responsive and Pause /
Stop act within a step.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_unet.core.labels import ids_above
from napari_unet.core.segment import label_probability, min_size_for, model_threshold
from napari_unet.widgets import _notify
from napari_unet.widgets._layers import image_layer_data
from napari_unet.widgets._session import TrainingBusyError, get_session
from napari_unet.widgets._training_run import (
    WORKER_NICE,
    freeze_gc,
    lower_thread_priority,
    unfreeze_gc,
    worker_threads,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

    from napari_unet.core.live import LiveTrainer

LIVE_OWNER = "Live (Annotate)"
#: seconds between two overlay refreshes of the visible region
REFRESH_S = 3.0


@dataclass
class Overlay:
    """A prediction of one region, labelled in the worker: what the GUI writes into layers."""

    region: tuple[slice, slice]
    probability: np.ndarray
    instances: np.ndarray
    steps: int
    loss: float | None
    kept: float | None = None  # share of the start model's cells still found (kept_cells)


class _Control:
    """Knobs the GUI thread turns and the worker reads: pause and the region on screen."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self._lock = threading.Lock()
        self._region: tuple[slice, slice] | None = None

    @property
    def region(self) -> tuple[slice, slice] | None:
        with self._lock:
            return self._region

    @region.setter
    def region(self, value: tuple[slice, slice] | None) -> None:
        with self._lock:
            self._region = value


def live_loop(trainer: LiveTrainer, control: _Control, refresh_s: float = REFRESH_S
              ) -> Generator[Any, None, None]:
    """Train step after step at low thread priority; yield each step's loss, the trainer's
    message while it waits, or an :class:`Overlay` when one is due."""
    torch.set_num_threads(worker_threads())
    with lower_thread_priority(WORKER_NICE):  # the GUI thread comes first
        last, undone = time.perf_counter(), 0
        while True:
            if control.paused.is_set():
                time.sleep(0.05)
                yield "paused"
                continue
            loss = trainer.step()
            if trainer.undone != undone:  # a Ctrl+Z of a correction: say it was unlearned
                undone = trainer.undone
                yield trainer.message
            elif loss is None:
                time.sleep(0.1)
                yield trainer.message
            elif time.perf_counter() - last < refresh_s:
                yield loss
            else:
                yield _overlay(trainer, control.region)
                last = time.perf_counter()


def _overlay(trainer: LiveTrainer, region: tuple[slice, slice] | None) -> Overlay:
    """The trainer's prediction of ``region``, labelled at the model's threshold and scale."""
    fg, interior, region = trainer.predict(region)
    labels = label_probability(fg, model_threshold(trainer.model),
                               min_size_for(trainer.factor or 1.0), interior,
                               trainer.annotations(region))
    return Overlay(region, fg, labels, trainer.steps, trainer.loss,
                   trainer.kept_cells(fg, region))


def overlay_status(overlay: Overlay, count: int) -> str:
    """The status line after an overlay refresh, with a warning when most cells are lost."""
    from napari_unet.core.live import KEPT_WARNING

    if overlay.kept is not None and overlay.kept < KEPT_WARNING:
        return (f"live: the model now finds only {overlay.kept:.0%} of the cells it found at "
                "the start, away from your corrections: the last correction may be teaching "
                "it that cells are background. Pause and check it")
    return (f"live: step {overlay.steps}, loss {overlay.loss:.3f}; overlay refreshed on "
            f"screen ({count})")


def visible_region(layer: Any) -> tuple[slice, slice] | None:
    """The rows and columns of ``layer`` on screen (``corner_pixels``), None when unknown."""
    corners = np.asarray(getattr(layer, "corner_pixels", np.zeros((2, 0))), dtype=int)
    if corners.shape[-1] < 2:
        return None
    (y0, x0), (y1, x1) = corners[0, -2:], corners[1, -2:]
    if y1 <= y0 or x1 <= x0:
        return None
    return slice(int(y0), int(y1) + 1), slice(int(x0), int(x1) + 1)


class LiveSession:
    """One live-training run over an image and its annotation layer (GUI-thread object)."""

    def __init__(self, viewer: napari.viewer.Viewer, image_layer: Image, labels_layer: Labels,
                 *, dense: bool = False, diameter: float | None = None,
                 refresh_s: float = REFRESH_S,
                 on_status: Callable[[str], None] | None = None,
                 on_step: Callable[[int, float], None] | None = None,
                 on_stopped: Callable[[bool], None] | None = None) -> None:
        self.viewer, self.image_layer, self.labels_layer = viewer, image_layer, labels_layer
        self.dense, self.refresh_s = dense, refresh_s
        self.on_status, self.on_step, self.on_stopped = on_status, on_step, on_stopped
        self.session = get_session(viewer)
        self.control = _Control()
        self.overlays = 0
        self.worker: Any = None
        self._lead = tuple(int(i) for i in viewer.dims.current_step[: labels_layer.ndim - 2])
        self.trainer = self._make_trainer(diameter)
        self._sent = self._labels_plane()

    # -- set-up ---------------------------------------------------------------------------
    def _make_trainer(self, diameter: float | None) -> LiveTrainer:
        """A trainer on a copy of the session's model; ValueError when inputs are missing."""
        from napari_unet.core.live import LiveSettings, LiveTrainer
        from napari_unet.core.segment import prepare_image

        model = self.session.model
        if model is None:
            raise ValueError("no model to train: predict with the starting model, or train "
                             "one, first")
        data, channel_axis = image_layer_data(self.image_layer)
        image, axis = prepare_image(data, channel_axis, model)
        plane = image[self._lead] if self._lead else image
        if plane.shape[-2:] != tuple(self.labels_layer.data.shape[-2:]):
            raise ValueError(f"image {self.image_layer.name!r} has shape {plane.shape[-2:]}, "
                             f"the annotation layer {self.labels_layer.data.shape[-2:]}")
        settings = LiveSettings(dense=self.dense, diameter=diameter or None)
        prediction = self.session.predictions.get(self.image_layer.name)
        return LiveTrainer(copy.deepcopy(model), plane, settings,
                           channel_axis=None if axis is None else 0,
                           factor=getattr(prediction, "factor", None),
                           start_probability=self._plane_probability(prediction, plane))

    def _plane_probability(self, prediction: Any, plane: np.ndarray) -> np.ndarray | None:
        """The prediction's cell probability of the corrected plane (None: none of its shape)."""
        probability = getattr(prediction, "probability", None)
        if probability is None:
            return None
        fg = np.asarray(probability)
        if fg.ndim > 2 and self._lead and fg.shape[:-2] == self.labels_layer.data.shape[:-2]:
            fg = fg[self._lead]
        return fg if fg.shape == plane.shape[-2:] else None

    def _labels_plane(self) -> np.ndarray:
        data = self.labels_layer.data
        return np.array(data[self._lead] if self._lead else data, copy=True)

    # -- running --------------------------------------------------------------------------
    def start(self, start_thread: bool = True) -> Any:
        """Take the session's training flag and start the worker (TrainingBusyError if taken)."""
        from napari.qt.threading import create_worker

        self._overlay_layers()  # added now, not in the middle of the user's work
        self.session.begin_training(LIVE_OWNER)
        freeze_gc()  # no full collection of napari's objects pauses the window
        self.trainer.update(self._sent)
        self.control.region = visible_region(self.image_layer)
        self.worker = create_worker(live_loop, self.trainer, self.control, self.refresh_s,
                                    _start_thread=False)
        self.worker.yielded.connect(self._yielded)
        self.worker.errored.connect(self._errored)
        self.worker.finished.connect(self._finished)
        for event in self._edit_events():
            event.connect(self.labels_changed)
        if start_thread:
            self.worker.start()
        return self.worker

    def _edit_events(self) -> tuple[Any, ...]:
        """The annotation layer's events of an edit: paint strokes and fills, ``data_setitem``
        (clicks), and ``set_data``, the only one of napari's undo and redo (``refresh``)."""
        events = self.labels_layer.events
        return events.paint, events.data, events.set_data

    def labels_changed(self, *_: Any) -> None:
        """An edit of the annotations: read it once the event loop is back (napari emits
        ``paint`` before it writes the pixels) and hand it to the trainer."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self.send_labels)

    def send_labels(self) -> None:
        """Hand the annotation plane and what changed since the last one to the trainer."""
        plane = self._labels_plane()
        if plane.shape != self._sent.shape:
            return
        changed = plane != self._sent
        if changed.any():
            self._sent = plane
            self.trainer.update(plane, changed)

    def pause(self, paused: bool) -> None:
        """Pause (True) or resume (False) training; the worker keeps its state."""
        if paused:
            self.control.paused.set()
        else:
            self.control.paused.clear()

    def stop(self) -> None:
        """Stop after the current step; the whole image is predicted when the worker ends."""
        if self.worker is not None:
            self.worker.quit()

    # -- worker signals (GUI thread) ------------------------------------------------------
    def _yielded(self, item: Any) -> None:
        if isinstance(item, Overlay):
            self._show(item)
            self.control.region = visible_region(self.image_layer)
        elif isinstance(item, float):
            if self.on_step is not None:
                self.on_step(self.trainer.steps, item)
        elif self.on_status is not None:
            self.on_status(f"live: {item}")

    def _overlay_layers(self) -> tuple[Any, Any]:
        """The ``<image> probability`` and ``instances`` layers, added (empty) if missing."""
        from napari_unet.widgets.predict import show_prediction

        name = self.image_layer.name
        prob_name, inst_name = f"{name} probability", f"{name} instances"
        if prob_name not in self.viewer.layers or inst_name not in self.viewer.layers:
            shape = tuple(self.labels_layer.data.shape)
            show_prediction(self.viewer, self.image_layer, np.zeros(shape, np.float32),
                            np.zeros(shape, np.int32))
        return self.viewer.layers[prob_name], self.viewer.layers[inst_name]

    def _show(self, overlay: Overlay) -> None:
        """Write the region's probability and instances into the overlay layers."""
        prob, inst = self._overlay_layers()
        shape = tuple(self.labels_layer.data.shape)
        if tuple(prob.data.shape) != shape or tuple(inst.data.shape) != shape:
            return  # the user replaced a layer: leave it alone
        where = (*self._lead, *overlay.region)
        prob.data[where] = overlay.probability
        inst.data[where] = ids_above(overlay.instances, inst.data)
        prob.refresh()
        inst.refresh()
        self.overlays += 1
        if self.on_status is not None:
            self.on_status(overlay_status(overlay, self.overlays))

    def _errored(self, exc: Exception) -> None:
        _notify.notify_error(f"Live training stopped: {exc}")

    def _finished(self) -> None:
        """Release the session; the trained model becomes the session's and predicts."""
        for event in self._edit_events():
            event.disconnect(self.labels_changed)
        model = self.trainer.close()
        unfreeze_gc()
        trained = self.trainer.steps > 0
        self.session.end_training(LIVE_OWNER)
        if trained:
            self.session.set_model(model, f"live-trained ({self.trainer.steps} steps)")
        if self.on_stopped is not None:
            self.on_stopped(trained)


def start_live(viewer: napari.viewer.Viewer, image_layer: Image, labels_layer: Labels,
               start_thread: bool = True, **kw: Any) -> LiveSession | None:
    """Start a :class:`LiveSession`; None (with a notification) when it cannot start."""
    try:
        live = LiveSession(viewer, image_layer, labels_layer, **kw)
        live.start(start_thread)
    except (ValueError, TrainingBusyError) as exc:
        _notify.notify_error(f"Cannot start live training: {exc}")
        return None
    return live
