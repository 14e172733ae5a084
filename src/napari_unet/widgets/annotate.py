"""Click to annotate: correct a prediction with single clicks, then retrain.

With "annotation mode" on and the annotation labels layer selected in pan/zoom mode:

* click inside a missed cell: the cell is grown from the click (over the probability map, or the
  image where the probability is low; ``core.grow.grow_cell``, at the scale of the expected
  cell diameter) and added as a new cell, in the sparse convention with a thin background ring
  around it (off the predicted objects) so that retraining learns its border, not just "cell";
* Alt-click or Shift-click on a wrong object: the whole object there (the labeled cell and the
  predicted instance) becomes background (label 1);
* Ctrl-click (Cmd on macOS) on a predicted object: it is accepted as a labeled cell.

A click-and-drag still pans the view. Every click is one entry of napari's undo history
(Ctrl+Z / ``layer.undo()``), and napari's own paint, fill and erase tools keep working (the
click actions are only active in pan/zoom mode). Retrain takes the annotations as corrections
of the current model: where nothing is labeled it keeps the model's own answer
(``core.training.correction_settings``). It shows a progress bar and the live loss, Cancel
stops it within a step (the model keeps that step and predicts), and it excludes Train U-Net
(one training per viewer at a time). The logic lives in :mod:`napari_unet.core.annotate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    PushButton,
    SpinBox,
)

from napari_unet.core.annotate import click_edit, labels_from_prediction, stack_indices
from napari_unet.widgets import _layers, _notify, _roles, paint
from napari_unet.widgets._layers import connect_layer_list, layer_choices
from napari_unet.widgets._qt import unless_deleted
from napari_unet.widgets._session import get_session
from napari_unet.widgets.live import LiveSession, start_live
from napari_unet.widgets.loss_plot import TrainingDisplay

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

#: a press and release farther apart than this (canvas pixels) is a drag (pan), not a click
CLICK_TOLERANCE_PX = 4.0
HELP = (
    "click: add the missed cell under the cursor\n"
    " (sparse: with a thin background ring)\n"
    "Alt- or Shift-click: object becomes background\n"
    "Ctrl/Cmd-click: accept the predicted cell\n"
    "(annotation layer selected, pan/zoom tool;\n"
    " Ctrl+Z undoes a click, painting still works)"
)


def click_action(modifiers: Iterable[Any]) -> str:
    """``"add"``, ``"remove"`` (Alt/Shift) or ``"accept"`` (Ctrl/Cmd) for a click's modifiers."""
    names = {str(getattr(m, "name", m)).lower() for m in modifiers or ()}
    if names & {"control", "ctrl", "meta", "cmd"}:
        return "accept"
    if names & {"alt", "option", "shift"}:
        return "remove"
    return "add"


def _plane(data: Any, lead: tuple[int, ...]) -> np.ndarray:
    return np.asarray(data[lead] if lead else data)


class AnnotateWidget(Container):
    """Correct a prediction with clicks on an annotation labels layer, then retrain."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image_combo = ComboBox(
            label="image", choices=lambda _w: self._image_choices(),
            tooltip="The raw image (used to grow cells when there is no probability map)",
        )
        self._labels_combo = ComboBox(
            label="annotations", choices=lambda _w: self._labels_choices(), nullable=True,
            tooltip="Labels layer that receives the corrections (0 unlabeled, 1 background, "
            ">= 2 cells)",
        )
        self._new_button = PushButton(text="New empty")
        self._from_pred_button = PushButton(text="From prediction")
        buttons = Container(widgets=[self._new_button, self._from_pred_button],
                            layout="horizontal", labels=False)
        self._pred_combo = ComboBox(
            label="prediction", choices=lambda _w: self._labels_choices(), nullable=True,
            tooltip="Predicted instances (Ctrl-click accepts one, Alt-click rejects one)",
        )
        self._prob_combo = ComboBox(
            label="probability", choices=lambda _w: layer_choices(self._viewer, "image"),
            nullable=True, tooltip="Cell probability map used to grow clicked cells",
        )
        self._diameter = SpinBox(
            label="cell diameter (px)", value=0, min=0, max=1000,
            tooltip="Expected diameter of a cell: a grown cell stays within one diameter of the "
            "click. 0 = automatic: the median of the predicted cells, else of the labeled "
            "ones, else 20 px",
        )
        self._dense = CheckBox(
            text="labels are complete (0 = background)", value=False,
            tooltip="Dense convention for the annotation layer and training",
        )
        self._mode = CheckBox(text="annotation mode", value=False)
        self._help = Label(value=HELP)
        super().__init__(widgets=[
            self._image_combo, self._labels_combo, buttons, self._pred_combo, self._prob_combo,
            self._diameter, self._dense, self._mode, self._help, *self._retrain_widgets(),
        ])
        self.native.layout().addWidget(self._display)
        self.corrections = 0
        self.worker: Any = None
        self.live: LiveSession | None = None
        self._cancellable = False
        self._outcome = ""
        self._attached: Labels | None = None
        self._session = get_session(napari_viewer)
        self._training_changed()
        self._connect()
        self._pick_prediction_layers()
        self._show_count()

    def _connect(self) -> None:
        """Follow the layer list and the session; wire the buttons."""
        connect_layer_list(self._viewer, self._layers_changed)
        self._session.training_changed.connect(self._training_changed)
        self._new_button.changed.connect(lambda *_: self.new_annotation_layer(False))
        self._from_pred_button.changed.connect(lambda *_: self.new_annotation_layer(True))
        self._mode.changed.connect(self._update_mode)
        self._labels_combo.changed.connect(self._update_mode)
        self._image_combo.changed.connect(self._pick_prediction_layers)
        self._retrain_button.changed.connect(lambda *_: self.retrain())
        self._cancel_button.changed.connect(lambda *_: self.cancel())
        self._live_box.changed.connect(self._live_toggled)
        self._pause_button.changed.connect(lambda *_: self.toggle_pause())
        self.native.destroyed.connect(self._cleanup)

    def _retrain_widgets(self) -> list[Any]:
        """Retrain and Cancel, the every-N setting, the count; the progress display (Qt)."""
        self._retrain_button = PushButton(text="Retrain")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._cancel_button.tooltip = "Stop retraining after the current step (kept, predicted)"
        run_buttons = Container(widgets=[self._retrain_button, self._cancel_button],
                                layout="horizontal", labels=False)
        self._auto = SpinBox(
            label="retrain after every N corrections", value=0, min=0, max=1000,
            tooltip="0 = only when Retrain is pressed",
        )
        self._count_label = Label(value="")
        self._display = TrainingDisplay()
        self._live_box = CheckBox(
            text="Live: train while you annotate", value=False,
            tooltip="Train continuously on the annotations; every stroke or click counts "
            "within a second and the overlay on screen refreshes every few seconds. "
            "Unticking predicts the whole image.")
        self._pause_button = PushButton(text="Pause", enabled=False)
        live = Container(widgets=[self._live_box, self._pause_button], layout="horizontal",
                         labels=False)
        return [run_buttons, self._auto, live, self._count_label]

    def _cleanup(self, *_: Any) -> None:
        """The Qt widget is gone: detach the click callback and stop following the layers."""
        connect_layer_list(self._viewer, self._layers_changed, disconnect=True)
        self._session.training_changed.disconnect(self._training_changed)
        if self.live is not None:
            self.live.stop()
        self._detach()

    def _detach(self) -> None:
        layer, self._attached = self._attached, None
        if layer is not None and self._on_mouse in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._on_mouse)

    # -- layer choices --------------------------------------------------------------------
    def _image_choices(self) -> list[tuple[str, Any]]:
        """Image layers to annotate: not the plugin's previews (probability, weights...)."""
        return [c for c in layer_choices(self._viewer, "image") if not _roles.is_preview(c[1])]

    def _labels_choices(self) -> list[tuple[str, Any]]:
        """Labels layers: not the augmentation preview's deformed copies."""
        return [c for c in layer_choices(self._viewer, "labels")
                if _roles.layer_role(c[1]) != _roles.DEFORMED]

    def _layers_changed(self, *_: Any) -> None:
        self.reset_choices()
        self._pick_prediction_layers()
        if self._attached is not None and self._attached not in self._viewer.layers:
            self._attached = None
            self._mode.value = False

    def _pick_prediction_layers(self, *_: Any) -> None:
        """Default to the predict widget's ``"<image> instances/probability"`` layers."""
        image = self._image_combo.value
        if image is None:
            return
        for combo, suffix in ((self._pred_combo, "instances"), (self._prob_combo, "probability")):
            name = f"{image.name} {suffix}"
            if combo.value is None and name in self._viewer.layers:
                combo.value = self._viewer.layers[name]
        labels = self._labels_combo.value
        if labels is None or labels is self._pred_combo.value:
            name = f"{image.name} annotations"
            if name in self._viewer.layers:
                self._labels_combo.value = self._viewer.layers[name]

    # -- annotation layer -----------------------------------------------------------------
    def new_annotation_layer(self, from_prediction: bool = False) -> Labels | None:
        """Add ``"<image> annotations"``: empty (all unlabeled), or the prediction as a start.

        From a prediction, predicted cells become cells (ids >= 2) and the rest background
        (1), so that every click then corrects a complete annotation.
        """
        image = self._image_combo.value
        if image is None:
            _notify.notify_error("Annotate: choose an image layer first.")
            return None
        data, channel_axis = _layers.image_layer_data(image)
        shape = _layers.spatial_shape(data, channel_axis)
        if from_prediction:
            pred = self._pred_combo.value
            if pred is None:
                _notify.notify_error("Annotate: choose (or compute) a prediction layer first.")
                return None
            predicted = np.asarray(pred.data)
            if predicted.shape != shape:
                _notify.notify_error(
                    f"Annotate: prediction shape {predicted.shape} does not match image {shape}")
                return None
            labels = labels_from_prediction(predicted, dense=bool(self._dense.value))
        else:
            labels = np.zeros(shape, dtype=np.int32)
        name = f"{image.name} annotations"
        if name in self._viewer.layers:
            name = f"{name} [{len(self._viewer.layers)}]"
        geometry = {"scale": list(image.scale)[-len(shape):],
                    "translate": list(image.translate)[-len(shape):]}
        if channel_axis is not None and not image.rgb:
            axis = channel_axis % data.ndim
            geometry = {k: [v for i, v in enumerate(vals) if i != axis]
                        for k, vals in (("scale", list(image.scale)),
                                        ("translate", list(image.translate)))}
        layer = self._viewer.add_labels(labels, name=name, opacity=0.6, **geometry)
        if not self._dense.value:  # background (1) grey and named, as on a painted layer
            paint.explain_layer(layer, sparse_labels=True)
        self._labels_combo.value = layer
        return layer

    def _update_mode(self, *_: Any) -> None:
        """Attach the click callback to the annotation layer while annotation mode is on."""
        layer = self._labels_combo.value if self._mode.value else None
        if layer is self._attached:
            return
        self._detach()
        self._attached = layer
        if layer is not None:
            layer.mouse_drag_callbacks.append(self._on_mouse)
            layer.mode = "pan_zoom"
            self._viewer.layers.selection.active = layer

    def _on_mouse(self, layer: Labels, event: Any) -> Any:
        """Drag callback: a press and release without moving is a click; a drag pans."""
        if layer.mode != "pan_zoom" or getattr(event, "button", 1) not in (1, None):
            return
        position = tuple(event.position)
        modifiers = tuple(event.modifiers or ())
        start = np.asarray(getattr(event, "pos", None) if getattr(event, "pos", None) is not None
                           else position, dtype=float)
        moved = False
        yield
        while event.type == "mouse_move":
            now = getattr(event, "pos", None)
            now = np.asarray(now if now is not None else event.position, dtype=float)
            if now.shape == start.shape and np.abs(now - start).max() > CLICK_TOLERANCE_PX:
                moved = True
            yield
        if not moved:
            self.handle_click(position, modifiers)

    # -- the click ------------------------------------------------------------------------
    def handle_click(self, position: Iterable[float], modifiers: Iterable[Any] = ()) -> str | None:
        """Apply the click at world ``position``; returns the action done (None if nothing)."""
        action = click_action(modifiers)
        labels_layer = self._labels_combo.value
        if labels_layer is None:
            _notify.notify_error("Annotate: choose an annotation labels layer first.")
            return None
        try:
            edit = self._edit(labels_layer, tuple(position), action)
        except ValueError as err:
            _notify.notify_error(f"Annotate: {err}")
            return None
        if edit is None:
            return None
        indices, value = edit
        labels_layer.data_setitem(indices, value)
        self.corrections += 1
        self._show_count()
        auto = int(self._auto.value)
        if auto > 0 and self.corrections >= auto and self._session.training is None:
            self.retrain()
        return action

    def _edit(self, layer: Labels, position: tuple[float, ...],
              action: str) -> tuple[tuple[np.ndarray, ...], np.ndarray] | None:
        """``(indices, values)`` for ``layer.data_setitem`` (one undo step); None when the
        click changes nothing (``core.annotate.click_edit`` decides what changes)."""
        data = layer.data
        point = np.round(np.asarray(layer.world_to_data(position), dtype=float)).astype(int)
        if np.any(point < 0) or np.any(point >= np.asarray(data.shape)):
            return None  # a click beside the image
        if data.ndim < 2:
            raise ValueError(f"annotation layer must be at least 2D, got shape {data.shape}")
        lead, yx = tuple(int(p) for p in point[:-2]), tuple(int(p) for p in point[-2:])
        shape = tuple(data.shape)
        sources: dict[str, Any] = {}
        if action == "add":
            sources = {"image": self._image_plane(shape, lead),
                       "probability": self._plane_of(self._prob_combo.value, shape, lead,
                                                     "probability"),
                       "diameter": float(self._diameter.value) or None,
                       "model_diameter": self._model_diameter(),
                       "cell_threshold": self._model_threshold()}
        edit = click_edit(
            _plane(data, lead), yx, action, dense=bool(self._dense.value),
            predicted=self._plane_of(self._pred_combo.value, shape, lead, "prediction"),
            **sources,
        )
        if edit is None:
            return None
        return stack_indices(edit.indices, lead), edit.values

    def _model_threshold(self) -> float | None:
        """The session model's calibrated threshold (None before there is a model)."""
        from napari_unet.core.segment import model_threshold

        model = self._session.model
        return None if model is None else model_threshold(model)

    def _model_diameter(self) -> float | None:
        """Object size (px) the session's last prediction of the image was made for."""
        from napari_unet.core.scale import data_diameter, model_diameter

        model, image = self._session.model, self._image_combo.value
        if model is None or image is None:
            return None
        prediction = self._session.predictions.get(image.name)
        factor = getattr(prediction, "factor", None)
        return model_diameter(model) / factor if factor else data_diameter(model)

    def _image_plane(self, shape: tuple[int, ...], lead: tuple[int, ...]) -> np.ndarray | None:
        """The chosen image's plane (channels averaged) to grow cells over, or None."""
        image_layer = self._image_combo.value
        if image_layer is None:
            return None
        data, channel_axis = _layers.image_layer_data(image_layer)
        if channel_axis is not None:  # grow over the mean of the channels
            data = np.asarray(data, dtype=np.float32).mean(axis=channel_axis)
        if data.shape != shape:
            raise ValueError(f"image {image_layer.name!r} has shape {data.shape}, the "
                             f"annotation layer {shape}")
        return _plane(data, lead).astype(np.float32, copy=False)

    @staticmethod
    def _plane_of(layer: Any, shape: tuple[int, ...], lead: tuple[int, ...],
                  what: str) -> np.ndarray | None:
        if layer is None:
            return None
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        if tuple(data.shape) != tuple(shape):
            raise ValueError(f"{what} layer {layer.name!r} has shape {tuple(data.shape)}, the "
                             f"annotation layer {tuple(shape)}")
        return _plane(data, lead)

    # -- retraining -----------------------------------------------------------------------
    def _show_count(self) -> None:
        self._count_label.value = f"corrections since last training: {self.corrections}"

    def retrain(self, *, steps: int | None = None, start: bool = True,
                on_finished: Callable[[bool], None] | None = None) -> Any:
        """Fine-tune the session model on the annotations; returns the training worker.

        Progress, loss and Cancel show as in Train U-Net; ``train.retrain`` predicts the image
        again afterwards (refreshing the prediction layers, after a Cancel too) and then calls
        ``on_finished(ok)``. Returns None (with a notification) when the inputs are missing or
        invalid, or a training (this one, or Train U-Net's) is already running.
        """
        image, labels = self._image_combo.value, self._labels_combo.value
        if image is None or labels is None:
            _notify.notify_error("Annotate: choose the image and the annotation layer first.")
            return None
        if self.worker is not None:
            _notify.notify_warning("Annotate: a training is already running.")
            return None
        from napari_unet.widgets import train

        def finished(ok: bool) -> None:
            self.worker = None
            if ok:
                self.corrections = 0
            with unless_deleted():  # the widget may be closed meanwhile
                self._show_count()
                self._training_changed()
                self._display.set_status(self._outcome)
            if on_finished is not None:
                on_finished(ok)

        worker = train.retrain(self._viewer, image, labels, dense=bool(self._dense.value),
                               steps=steps, on_finished=finished, start=False,
                               on_progress=self._progress, on_trained=self._trained)
        if worker is None:
            return None
        self.worker = worker
        self._cancellable = True
        self._outcome = "retraining failed"
        self._count_label.value = "training…"
        self._display.begin(1, "retraining: starting…")
        self._training_changed()
        if start:
            worker.start()
        return worker

    def cancel(self) -> None:
        """Stop retraining after the current step; the model keeps it and predicts."""
        if self.worker is not None:
            self.worker.quit()
            self._cancellable = False
            self._cancel_button.enabled = False
            self._display.set_status("stopping after the current step…")

    def _progress(self, p: Any) -> None:
        from napari_unet.widgets._training_run import describe_progress

        with unless_deleted():  # the widget may be closed meanwhile
            self._display.show_step(p.step, p.total_steps, p.loss, describe_progress(p))

    def _trained(self, run: Any) -> None:
        """Training stopped: no more Cancel; the prediction follows when a step finished."""
        last = run.last.step if run.last is not None else 0
        self._cancellable = False
        with unless_deleted():  # the widget may be closed meanwhile
            self._cancel_button.enabled = False
            predicting = run.status != "failed" and last > 0
            self._outcome = f"retraining {run.status} at step {last}" + (
                "; prediction updated" if predicting else "")
            self._display.set_status(f"retraining {run.status} at step {last}"
                                     + (", predicting…" if predicting else ""))

    # -- live mode ------------------------------------------------------------------------
    def _live_toggled(self, on: bool) -> None:
        if on and self.live is None:
            self.start_live()
        elif not on and self.live is not None:
            self.stop_live()

    def start_live(self, start_thread: bool = True) -> LiveSession | None:
        """Start live training on the chosen image and annotations (None when it cannot)."""
        image, labels = self._image_combo.value, self._labels_combo.value
        if image is None or labels is None:
            _notify.notify_error("Live: choose the image and the annotation layer first.")
            self._set_live_box(False)
            return None
        self.live = start_live(
            self._viewer, image, labels, start_thread=start_thread,
            dense=bool(self._dense.value), diameter=float(self._diameter.value) or None,
            on_status=self._display.set_status, on_step=self._live_step,
            on_stopped=self._live_stopped)
        if self.live is None:
            self._set_live_box(False)
            return None
        self._set_live_box(True)
        self._display.begin(1, "live: starting…")
        self._training_changed()
        return self.live

    def stop_live(self) -> None:
        """Stop live training; the whole image is predicted with the updated model."""
        if self.live is not None:
            self.live.stop()
            self._display.set_status("live: stopping after the current step…")

    def toggle_pause(self) -> None:
        """Pause live training, or resume it."""
        if self.live is None:
            return
        paused = self._pause_button.text == "Pause"
        self.live.pause(paused)
        self._pause_button.text = "Resume" if paused else "Pause"
        self._display.set_status("live: paused" if paused else "live: training")

    def _set_live_box(self, value: bool) -> None:
        with self._live_box.changed.blocked():
            self._live_box.value = value

    def _live_step(self, step: int, loss: float) -> None:
        with unless_deleted():  # the widget may be closed meanwhile
            self._display.show_step(step, step, loss, f"live: step {step} · loss {loss:.4f}")

    def _live_stopped(self, trained: bool) -> None:
        """Live has ended: predict the whole image with the updated model."""
        from napari_unet.widgets._layers import plane_annotations
        from napari_unet.widgets.predict import predict_layer

        image = self.live.image_layer if self.live is not None else None
        edits = plane_annotations(self.live.labels_layer, self.live.dense) \
            if self.live is not None else None
        self.live = None
        with unless_deleted():  # the widget may be closed meanwhile
            self._set_live_box(False)
            self._pause_button.text = "Pause"
            self._training_changed()
            self.corrections = 0 if trained else self.corrections
            self._show_count()
            self._display.set_status("live stopped" + (", predicting the whole image…"
                                                        if trained else ""))
        if trained and image is not None and image in self._viewer.layers:
            self.predict_worker = predict_layer(self._viewer, image, self._session.model,
                                                annotations=edits)

    def _training_changed(self, *_: Any) -> None:
        """Retrain is enabled only when no training runs; while Train U-Net does, say so."""
        mine = self.worker is not None or self.live is not None
        busy = None if mine else self._session.busy_message()
        with unless_deleted():  # the widget may be closed meanwhile
            self._retrain_button.enabled = not mine and busy is None
            self._live_box.enabled = self.worker is None and busy is None
            self._pause_button.enabled = self.live is not None
            self._retrain_button.tooltip = busy or "Fine-tune the model on the corrections"
            self._cancel_button.enabled = mine and self._cancellable
            if busy is not None:
                self._display.set_status(busy)
            elif not mine and self._display.status.text().endswith("cancel it there"):
                self._display.set_status("")
