"""Training runs behind the Train widget: data gathering, the worker loop, session updates.

Kept apart from the widget's layout code: ``TrainingRun`` owns one worker (progress, cancel,
viewer-close safety, out-of-memory retry, GC freeze, lower thread priority) and the prediction
that follows; ``collect_training_data`` turns layers into validated arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import weakref
from collections.abc import Callable, Collection, Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from napari.layers import Image, Labels
from napari.qt.threading import create_worker

from napari_unet.core.labels import NO_LABELS_MESSAGE, summarize, validate_pair
from napari_unet.core.model import DEFAULT_CONFIG, UNet
from napari_unet.core.segment import Annotations, to_single_channel
from napari_unet.core.training import TrainConfig, TrainProgress, train
from napari_unet.core.training_data import check_label_classes, keeps_unlabeled

from . import _notify
from ._layers import image_layer_data
from ._qt import on_viewer_closed
from ._session import get_session
from .predict import predict_layer

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import GeneratorWorker


#: what ``core.labels.validate_pair``'s warnings about labels of one class say; moot when the
#: unlabeled pixels keep the model's answer (``core.training_data.keeps_unlabeled``)
ONE_CLASS_WARNING = "the network only sees"

# Niceness added to the training thread (Linux: per thread) so that, when the CPU is busy, the
# GUI thread is scheduled first; see benchmarks/bench_responsiveness.py.
WORKER_NICE = 10


def field_of_view(model: UNet) -> int:
    """Receptive field (px) of ``model``: the smallest image side training makes sense for."""
    if model.padding == "valid":
        return 2 * model.context + 1
    twin = UNet(**{**model.config, "padding": "valid", "in_channels": 1, "base_channels": 1})
    return 2 * twin.context + 1


def _pretrained_names() -> list[str]:
    """Short names of the starting models shipped with the package (those whose files exist)."""
    try:
        from napari_unet.models import starting_models

        return list(starting_models())
    except (ImportError, ValueError):
        return []


def load_starting_model(choice: str) -> UNet:
    """Load a starting model by name, or named in a combo entry ("starting model: NAME")."""
    from napari_unet.models import load_pretrained

    return load_pretrained(choice.split(": ", 1)[-1])


def worker_threads() -> int:
    """Torch threads for a training worker: all cores but one, so the GUI thread stays free."""
    return max(1, (os.cpu_count() or 1) - 1)


def make_model(in_channels: int = 1, depth: int | None = None, base_channels: int | None = None,
               padding: str | None = None) -> UNet:
    """A new U-Net with ``DEFAULT_CONFIG`` except for the given settings."""
    cfg = dict(DEFAULT_CONFIG, in_channels=in_channels)
    for key, value in (("depth", depth), ("base_channels", base_channels), ("padding", padding)):
        if value is not None:
            cfg[key] = value
    return UNet(**cfg)


def _channels_first(image: np.ndarray, channel_axis: int | None, labels: np.ndarray,
                    name: str) -> tuple[np.ndarray, int]:
    """Return ``(image with channels at -3 or none, n_channels)``; explain shape confusions."""
    if channel_axis is not None:
        spatial = np.delete(np.array(image.shape), channel_axis % image.ndim)
        if tuple(spatial) != labels.shape:
            raise ValueError(
                f"labels shape {labels.shape} does not match image {name!r} of shape "
                f"{image.shape} (without its channel axis: {tuple(spatial)})"
            )
        return np.moveaxis(image, channel_axis, -3), image.shape[channel_axis]
    if image.shape == labels.shape:
        return image, 1
    if image.ndim == labels.ndim + 1:
        if image.shape[:-3] + image.shape[-2:] == labels.shape:
            return image, image.shape[-3]
        if image.shape[:-1] == labels.shape and image.shape[-1] in (2, 3, 4):
            raise ValueError(
                f"image {name!r} of shape {image.shape} looks like RGB/multichannel with the "
                "channels on the last axis, but napari shows it as a stack: open it as RGB "
                "(rgb=True) or put the channels on axis -3"
            )
    raise ValueError(
        f"labels shape {labels.shape} does not match image {name!r} of shape {image.shape}"
    )


def training_channels(pairs: Sequence[tuple[Image, Labels]]) -> int:
    """The channel count training reads from the first pair (from the shapes, nothing copied),
    so that a new network can be made before the data are collected against it."""
    if not pairs:
        raise ValueError("choose an image layer and a labels layer to train on")
    image_layer, labels_layer = pairs[0]
    data, channel_axis = image_layer_data(image_layer)
    image = np.broadcast_to(np.zeros((), np.uint8), np.shape(data))
    labels = np.broadcast_to(np.zeros((), np.uint8), np.shape(labels_layer.data))
    return int(_channels_first(image, channel_axis, labels, image_layer.name)[1])


def collect_training_data(
    pairs: Sequence[tuple[Image, Labels]], dense: bool, in_channels: int | None = None,
    model: UNet | None = None, one_class_ok: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray], int, list[str]]:
    """Copy and check the layer pairs; return ``(images, labels, n_channels, warnings)``.

    Raises ValueError (message for the user) for shape or channel mismatches, unlabeled data,
    images smaller than the network's field of view or a model with another channel count.
    ``one_class_ok``: labels of one class suffice (``core.training_data.keeps_unlabeled``); the
    warnings that the network "only sees" one class are then left out, as they do not hold.
    """
    if not pairs:
        raise ValueError("choose an image layer and a labels layer to train on")
    images, labels, warnings = [], [], []
    n_channels: int | None = None
    totals = {"n_cells": 0, "n_background_px": 0, "n_labeled_px": 0}
    for image_layer, labels_layer in pairs:
        data, channel_axis = image_layer_data(image_layer)
        lab = np.array(labels_layer.data, copy=True)
        img, n = _channels_first(np.array(data, copy=True), channel_axis, lab, image_layer.name)
        if in_channels == 1 and n > 1:  # a colour image for a 1-channel (starting) model
            img, n = to_single_channel(img), 1
            if model is not None:
                model.metadata["channel_conversion"] = "hematoxylin"
            warnings.append(f"{image_layer.name}: colour image read as its hematoxylin stain "
                            "(nuclei bright) for the 1-channel model")
        if n_channels is not None and n != n_channels:
            raise ValueError(f"all images must have the same channels: {n} vs {n_channels}")
        n_channels = n
        if in_channels is not None and n != in_channels:
            raise ValueError(
                f"channel mismatch: the model to continue has {in_channels} input channel(s), "
                f"image {image_layer.name!r} has {n}; start a new model instead"
            )
        for message in validate_pair(img, lab, dense, in_channels=n, require_labels=False):
            if not (one_class_ok and ONE_CLASS_WARNING in message):
                warnings.append(f"{image_layer.name}: {message}")
        for key, value in summarize(lab, dense).items():
            totals[key] += value
        if model is not None and min(lab.shape[-2:]) < field_of_view(model):
            raise ValueError(
                f"image {image_layer.name!r} ({lab.shape[-2]}x{lab.shape[-1]}) is smaller than "
                f"the network's field of view ({field_of_view(model)} px): use a smaller depth"
            )
        images.append(img)
        labels.append(lab)
    if totals["n_labeled_px"] == 0:
        raise ValueError(NO_LABELS_MESSAGE)
    check_label_classes(totals["n_cells"] > 0, totals["n_background_px"] > 0, dense,
                        one_class_ok=one_class_ok)
    return images, labels, int(n_channels or 1), warnings


def training_loop(model: UNet, images: list[np.ndarray], labels: list[np.ndarray],
                  config: TrainConfig) -> Generator[TrainProgress | str, None, int]:
    """``train`` with one retry at half the batch size after a GPU out-of-memory error.

    Yields ``TrainProgress`` per step (steps counted across the retry) and a ``str`` notice
    when it retries; returns the number of finished steps.
    """
    cfg, offset, steps_done, retried = config, 0, 0, False
    while True:
        gen = train(model, images, labels, cfg)
        try:
            for p in gen:
                steps_done = offset + p.step
                if offset:
                    p = dataclasses.replace(p, step=steps_done, total_steps=offset + p.total_steps)
                yield p
            return steps_done
        except torch.OutOfMemoryError as exc:
            gen.close()
            if retried or cfg.batch_size <= 1:
                raise RuntimeError(
                    f"GPU out of memory with batch size {cfg.batch_size}: use a smaller patch "
                    "size or batch size, or the CPU"
                ) from exc
            retried, offset = True, steps_done
            cfg = dataclasses.replace(
                cfg, batch_size=max(1, cfg.batch_size // 2),
                steps=max(1, cfg.steps - steps_done),
            )
            yield f"GPU out of memory: retrying with batch size {cfg.batch_size}"
        finally:
            gen.close()


@contextlib.contextmanager
def lower_thread_priority(nice: int) -> Generator[None, None, None]:
    """Raise the niceness of the calling thread (Linux) for the block; no-op elsewhere."""
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + nice))
    except (AttributeError, OSError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # lowering niceness again may need privileges
            os.setpriority(os.PRIO_PROCESS, tid, before)


_GC_FROZEN = [0]  # number of runs holding the freeze
_GC_LOCK = threading.Lock()


def freeze_gc() -> None:
    """Move the objects that exist now out of the garbage collector's sight during training.

    A full collection in napari's process scans every Qt/napari/torch object and holds the GIL
    long enough to freeze the GUI (benchmarks/README.md, "UI responsiveness"); the training
    thread triggers such collections (automatically, and ``free_device_memory`` on an
    accelerator). With the existing objects frozen, collections only scan what training
    allocates.
    """
    with _GC_LOCK:
        if _GC_FROZEN[0] == 0:
            gc.freeze()
        _GC_FROZEN[0] += 1


def unfreeze_gc() -> None:
    """Undo :func:`freeze_gc` once the last run has finished (objects go back to gen 2)."""
    with _GC_LOCK:
        _GC_FROZEN[0] = max(0, _GC_FROZEN[0] - 1)
        if _GC_FROZEN[0] == 0:
            gc.unfreeze()


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def describe_progress(p: TrainProgress) -> str:
    """Status line: device, step, loss and time left."""
    return (f"{p.device} · step {p.step}/{p.total_steps} · loss {p.loss:.4f} · "
            f"{_fmt_seconds(p.eta_s)} left")


# --------------------------------------------------------------------------- run orchestration
_ACTIVE_RUNS: set[TrainingRun] = set()


class TrainingRun:
    """One training run: worker, session update, prediction afterwards, viewer-close safety.

    ``status`` goes "running" -> "done" | "cancelled" | "failed"; ``busy`` stays True until the
    follow-up prediction has finished too. ``on_trained(run)`` is called when training stops
    (before that prediction), ``on_done(run)`` once at the very end.  The run holds the
    session's training flag (``ModelSession.begin_training``) from creation to the end, so a
    second run on the same viewer raises ``TrainingBusyError`` instead of training the same
    model twice.  ``predict_after_cancel``: a cancelled run with finished steps predicts too
    (Retrain).  ``known_warnings``: data warnings already shown, not repeated from the worker.
    ``loop``: the training generator to run (default: :func:`training_loop` of the data).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        model: UNet,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        config: TrainConfig,
        *,
        predict_target: Image | None = None,
        threshold: float | None = None,
        min_size: int | None = None,
        on_progress: Callable[[TrainProgress], None] | None = None,
        on_done: Callable[[TrainingRun], None] | None = None,
        on_trained: Callable[[TrainingRun], None] | None = None,
        owner: str = "Train U-Net",
        predict_after_cancel: bool = False,
        known_warnings: Collection[str] = (),
        predict_annotations: Annotations | None = None,
        loop: Generator[TrainProgress | str, None, int] | None = None,
    ) -> None:
        self._session = get_session(viewer)
        self._session.begin_training(owner)  # raises TrainingBusyError while another runs
        self.owner = owner
        self._viewer = weakref.ref(viewer)
        self.model = model
        self.config = config
        self.predict_target, self.predict_annotations = predict_target, predict_annotations
        self.threshold, self.min_size = threshold, min_size
        self.on_progress, self.on_done, self.on_trained = on_progress, on_done, on_trained
        self.predict_after_cancel = predict_after_cancel
        self._known_warnings = tuple(known_warnings)
        self._one_class_ok = keeps_unlabeled(model, config)
        self.status = "running"
        self.busy = True
        self.error: Exception | None = None
        self.last: TrainProgress | None = None
        self.predict_worker = None
        self._viewer_closed = False
        self._gc_frozen = False
        try:
            if loop is None:
                loop = training_loop(model, images, labels, config)
            self.worker = self._make_worker(loop)
        except BaseException:
            if loop is not None:
                loop.close()
            self._session.end_training(owner)
            raise
        on_viewer_closed(viewer, _calls_while_busy(self))
        _ACTIVE_RUNS.add(self)

    def _make_worker(self, loop: Generator[TrainProgress | str, None, int]) -> GeneratorWorker:
        """The (not started) worker that runs ``loop`` at lower priority with the GC frozen."""
        self._loop = loop

        def run() -> Generator[TrainProgress | str, None, int]:
            self._gc_frozen = True
            freeze_gc()
            with lower_thread_priority(WORKER_NICE):
                return (yield from loop)

        worker: GeneratorWorker = create_worker(run, _start_thread=False)
        worker.yielded.connect(self._yielded)
        with contextlib.suppress(TypeError, RuntimeError):  # napari's relay, replaced by ours
            worker.warned.disconnect()
        worker.warned.connect(self._warned)
        worker.errored.connect(self._errored)
        worker.finished.connect(self._finished)
        return worker

    def start(self) -> None:
        """Start the worker thread."""
        self.worker.start()

    def cancel(self) -> None:
        """Stop after the current step (the model keeps its last finished step)."""
        self.worker.quit()

    def viewer_closed(self, *_: Any) -> None:
        """The viewer is gone: stop training and skip the follow-up prediction."""
        self._viewer_closed = True
        self.worker.quit()
        if self.predict_worker is not None:
            self.predict_worker.quit()

    def _yielded(self, item: TrainProgress | str) -> None:
        if isinstance(item, str):
            _notify.notify_warning(item)
            return
        self.last = item
        if self.on_progress is not None:
            self.on_progress(item)

    def _warned(self, show_warning_args: tuple) -> None:
        """Relay a warning from the worker, except repeats of the data checks shown already."""
        message = str(show_warning_args[0])
        if self._one_class_ok and ONE_CLASS_WARNING in message:
            return  # the unlabeled pixels keep the model's answer: one class is enough
        if any(m == message or m.endswith(f": {message}") for m in self._known_warnings):
            return  # train() repeats collect_training_data's checks on the same data
        _notify.notify_warning(message)

    def _errored(self, exc: Exception) -> None:
        self.error = exc
        _notify.notify_error(f"Training failed: {exc}")

    def _finished(self) -> None:
        self._loop.close()  # runs train()'s cleanup: eval mode, CPU, device memory freed
        if self._gc_frozen:
            self._gc_frozen = False
            unfreeze_gc()
        if self.error is not None:
            self.status = "failed"
        elif self.worker.abort_requested:
            self.status = "cancelled"
        else:
            self.status = "done"
        if self.on_trained is not None:
            self.on_trained(self)
        viewer = self._viewer()
        steps = self.last.step if self.last is not None else 0
        if viewer is None or self._viewer_closed or self.status == "failed" or steps == 0:
            self._complete()
            return
        session = get_session(viewer)
        if self.status == "done":
            session.set_model(self.model, "trained")
        else:
            session.set_model(self.model, f"trained (stopped at step {steps})")
            _notify.notify_info(f"Training stopped at step {steps}; the model keeps that step")
        target = self.predict_target
        predict = self.status == "done" or self.predict_after_cancel
        if not predict or target is None or target not in viewer.layers:
            self._complete()
            return
        self.predict_worker = predict_layer(
            viewer, target, self.model, self.threshold, self.min_size, start=True,
            device=self.config.device, on_finished=lambda ok: self._complete(),
            annotations=self.predict_annotations,
        )

    def _complete(self) -> None:
        if not self.busy:
            return
        self.busy = False
        self.predict_worker = None
        _ACTIVE_RUNS.discard(self)
        self._session.end_training(self.owner)
        if self.on_done is not None:
            self.on_done(self)


def _calls_while_busy(run: TrainingRun) -> Callable[..., None]:
    """A plain function calling ``run.viewer_closed()`` while the run is busy; holds it weakly."""
    wref = weakref.ref(run)

    def closed(*_: Any) -> None:
        r = wref()
        if r is not None and r.busy:
            r.viewer_closed()

    return closed
