"""Predict widget: run the session's U-Net on an image layer and show probability + instances.

The heavy work (``predict_tiled`` + ``label_instances``) runs in a napari thread worker; the
GUI thread only validates inputs, relays progress and adds/updates the result layers
``"<image> probability"`` and ``"<image> instances"`` (aligned with the image).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from qtpy.QtCore import QObject, Signal, Slot
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet.core.instances import DEFAULT_MIN_SIZE, DEFAULT_THRESHOLD
from napari_unet.core.segment import (
    DEFAULT_FLIPS,
    Annotations,
    label_probability,
    min_size_for,
    model_threshold,
    predict_maps,
    prepare_image,
)
from napari_unet.widgets._qt import ViewerWidget, unless_deleted

from . import _notify, _roles
from ._layers import (
    add_or_update_image,
    add_or_update_labels,
    image_layer_data,
    layer_list_events,
)
from ._session import Prediction, get_session
from .loss_plot import LazyProgressBar, status_label

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import FunctionWorker

    from napari_unet.core.model import UNet


class ProgressRelay(QObject):
    """Carries ``(done, total)`` from a worker thread to a callback run in the GUI thread."""

    changed = Signal(int, int)

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        super().__init__()
        self._callback = callback
        self.changed.connect(self._deliver)

    @Slot(int, int)
    def _deliver(self, done: int, total: int) -> None:
        self._callback(done, total)

    def __call__(self, done: int, total: int) -> None:
        """Thread-safe: emitting from the worker queues the call into the GUI thread."""
        self.changed.emit(int(done), int(total))


def _layer_geometry(layer: Image, channel_axis: int | None) -> dict[str, Any]:
    """Scale and translate of the image's spatial (and stack) axes, without the channel axis."""
    scale, translate = list(layer.scale), list(layer.translate)
    if channel_axis is not None and not layer.rgb:
        axis = channel_axis % layer.ndim
        del scale[axis], translate[axis]
    return {"scale": scale, "translate": translate}


def show_prediction(viewer: napari.viewer.Viewer, image_layer: Image, fg: np.ndarray,
                    labels: np.ndarray, channel_axis: int | None = None) -> None:
    """Add or update ``"<image> probability"`` and ``"<image> instances"`` over the image."""
    geometry = _layer_geometry(image_layer, channel_axis)
    name = image_layer.name
    add_or_update_image(viewer, fg, f"{name} probability", role=_roles.PROBABILITY,
                        colormap="magma", contrast_limits=(0.0, 1.0), blending="additive",
                        opacity=0.6, visible=False, **geometry)
    add_or_update_labels(viewer, labels, f"{name} instances", role=_roles.INSTANCES,
                         opacity=0.5, **geometry)


class _PredictionRun:
    """One prediction of a layer: the worker's function and its callbacks in the GUI thread."""

    def __init__(self, viewer: napari.viewer.Viewer, image_layer: Image, model: UNet,
                 inputs: tuple[np.ndarray, int | None, int | None], settings: dict[str, Any],
                 on_progress: Callable[[int, int], None] | None,
                 on_finished: Callable[[bool], None] | None) -> None:
        self.viewer, self.layer, self.model = viewer, image_layer, model
        self.image, self.channel_axis, self.model_axis = inputs
        self.settings = settings
        self.on_progress, self.on_finished = on_progress, on_finished
        self.ok = self.done = False
        self.pbar = napari_progress(total=0, desc=f"U-Net: {image_layer.name}")
        self.relay = ProgressRelay(self.report)
        self.worker: FunctionWorker | None = None

    def report(self, done: int, total: int) -> None:
        """Progress in the GUI thread: the napari progress bar and ``on_progress``."""
        if self.done:  # a relayed update that arrives after the end: keep the final state
            return
        if self.pbar.total != total:
            self.pbar.total = total
        self.pbar.update(done - self.pbar.n)
        if self.on_progress is not None:
            self.on_progress(done, total)

    def _aborted(self) -> bool:
        return bool(self.worker is not None and self.worker.abort_requested)

    def run(self) -> tuple | None:
        """In the worker: maps, then instances (None when cancelled)."""
        from napari_unet.core.tiling import PredictionCancelled

        threshold, min_size = self.settings["threshold"], self.settings["min_size"]
        try:
            fg, interior, factor = predict_maps(
                self.model, self.image, channel_axis=self.model_axis,
                diameter=self.settings["diameter"], device=self.settings["device"],
                flips=self.settings["flips"], progress=self.relay, cancel=self._aborted)
        except PredictionCancelled:
            return None
        if self._aborted():
            return None
        t = model_threshold(self.model) if threshold is None else threshold
        size = min_size_for(factor) if min_size is None else min_size
        edits = self._annotations(fg.shape)
        return fg, label_probability(fg, t, size, interior, edits), t, size, interior, factor

    def _annotations(self, shape: tuple[int, ...]) -> Annotations | None:
        """The user's edits when they fit the prediction (not a stack, same shape)."""
        edits = self.settings["annotations"]
        return edits if edits is not None and edits.cells.shape == shape else None

    def returned(self, result: tuple | None) -> None:
        """Show the result as layers and cache it in the session."""
        if result is None:
            return
        fg, labels, used_threshold, used_size, interior, factor = result
        axis = self.channel_axis if self.channel_axis is not None else self.model_axis
        try:
            show_prediction(self.viewer, self.layer, fg, labels, axis)
        except (RuntimeError, KeyError, ValueError) as exc:  # viewer closed or layer removed
            _notify.notify_warning(f"Prediction finished but could not be shown: {exc}")
            return
        get_session(self.viewer).set_prediction(
            self.layer.name,
            Prediction(fg, labels, threshold=used_threshold, min_size=used_size,
                       interior=interior, factor=factor,
                       annotations=self._annotations(fg.shape)))
        self.ok = True

    def errored(self, exc: Exception) -> None:
        """Say why the prediction failed."""
        _notify.notify_error(f"Prediction of {self.layer.name!r} failed: {exc}")

    def finished(self) -> None:
        """Once at the end: close the progress bar, call ``on_finished(ok)``."""
        if self.done:
            return
        self.done = True
        self.pbar.close()
        self.relay.deleteLater()
        if self.on_finished is not None:
            self.on_finished(self.ok)

    def make_worker(self) -> FunctionWorker:
        """The (not started) worker, its signals connected to this run."""
        worker = create_worker(self.run, _start_thread=False)  # holds this run alive
        self.worker = worker
        worker.returned.connect(self.returned)
        worker.errored.connect(self.errored)
        worker.finished.connect(self.finished)
        return worker


def predict_layer(
    viewer: napari.viewer.Viewer,
    image_layer: Image,
    model: UNet | None,
    threshold: float | None = None,
    min_size: int | None = None,
    start: bool = True,
    *,
    device: str = "auto",
    diameter: float | str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_finished: Callable[[bool], None] | None = None,
    annotations: Annotations | None = None,
    flips: bool = DEFAULT_FLIPS,
) -> FunctionWorker | None:
    """Predict ``image_layer`` with ``model`` in a worker and show the results as layers.

    Returns the worker (not started when ``start=False``), or None when the inputs are invalid
    (a notification says why). ``on_progress(done, total)`` runs in the GUI thread;
    ``on_finished(ok)`` runs once at the end (``ok`` False when cancelled or failed).
    Cancel with ``worker.quit()``: the tiling loop stops after the current batch.
    ``threshold``/``min_size`` None: the model's calibrated threshold and the smallest object
    at its scale (``core.segment``); ``diameter`` None: ``core.scale.default_diameter`` (the
    size recorded in training, else estimated per image). ``annotations``: the user's edits of a
    2D image, which win where they were made (``core.instances.follow_annotations``): an added
    cell stays apart from its neighbour, a removed one stays removed. ``flips``: average the
    prediction over the image's four flips (``core.segment.DEFAULT_FLIPS``).
    """
    from napari_unet.core.scale import default_diameter

    if diameter is None and model is not None:
        diameter = default_diameter(model)
    try:
        data, channel_axis = image_layer_data(image_layer)
        image, model_axis = prepare_image(data, channel_axis, model)
    except ValueError as exc:
        _notify.notify_error(f"Cannot predict {image_layer.name!r}: {exc}")
        if on_finished is not None:
            on_finished(False)
        return None
    settings = {"threshold": threshold, "min_size": min_size, "diameter": diameter,
                "device": device, "annotations": annotations, "flips": flips}
    run = _PredictionRun(viewer, image_layer, model, (image, channel_axis, model_axis),
                         settings, on_progress, on_finished)
    worker = run.make_worker()
    if start:
        worker.start()
    return worker


class PredictWidget(ViewerWidget):
    """Pick an image layer and a model, set threshold and minimum size, predict or cancel."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.worker: FunctionWorker | None = None
        self.relabel_worker: FunctionWorker | None = None
        self._build_model_inputs()
        self._build_settings()
        self._build_starting_inputs()
        self._build_actions()
        self._lay_out()
        self._fill_devices()
        self.refresh_layers()
        self._show_model()
        self._connect()

    # ------------------------------------------------------------------ layout
    def _build_model_inputs(self) -> None:
        """The image picker, the session model's description and its Load button."""
        self.image_combo = QComboBox()
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.load_button = QPushButton("Load model…")

    def _build_settings(self) -> None:
        """Threshold, minimum object size, object diameter and flip-averaging fields."""
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 0.99)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setToolTip(
            "Cell probability above which a pixel is a cell; set from the model (calibrated "
            "on its training labels). Changing it re-labels the last prediction at once."
        )
        self.min_size = QSpinBox()
        self.min_size.setRange(0, 10**7)
        self.min_size.setSpecialValueText("auto")
        self.min_size.setValue(0)
        self.min_size.setToolTip(
            f"Smallest object kept (px); auto: {DEFAULT_MIN_SIZE} px at the model's object size"
        )
        self.diameter = QDoubleSpinBox()
        self.diameter.setRange(0.0, 10_000.0)
        self.diameter.setDecimals(1)
        self.diameter.setSpecialValueText("auto")
        self.diameter.setSuffix(" px")
        self.diameter.setValue(0.0)
        self.diameter.setToolTip(
            "Diameter of the objects in this image. auto: the size the model was trained at, "
            "or estimated for a starting model. The image is resampled so that objects appear "
            "at the model's size; the result stays on the image's pixel grid."
        )
        self.flips = QCheckBox("average over flips")
        self.flips.setChecked(DEFAULT_FLIPS)
        self.flips.setToolTip(
            "Predict the image and its three mirror images and average them: more accurate "
            "masks for four times the network's work. Off: one pass, four times faster."
        )

    def _build_starting_inputs(self) -> None:
        """The shipped starting models (combo and Use button) and the device picker."""
        self.starting_combo = QComboBox()
        self._fill_starting_models()
        self.starting_button = QPushButton("Use starting model")
        self.starting_button.setToolTip(
            "Predict with the shipped starting model chosen on the left, without training"
        )
        self.device_combo = QComboBox()

    def _build_actions(self) -> None:
        """Predict and Cancel, the progress bar and the status line."""
        self.predict_button = QPushButton("Predict")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = LazyProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = status_label()

    def _lay_out(self) -> None:
        """Place the inputs in a form above the buttons, the progress bar and the status."""
        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_label)
        model_buttons = QHBoxLayout()
        model_buttons.addWidget(self.load_button)
        starting = QHBoxLayout()
        starting.addWidget(self.starting_combo, 1)
        starting.addWidget(self.starting_button)
        form.addRow("", model_buttons)
        form.addRow("starting model", starting)
        form.addRow("object diameter", self.diameter)
        form.addRow("threshold", self.threshold)
        form.addRow("min object size (px)", self.min_size)
        form.addRow("", self.flips)
        form.addRow("device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.predict_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _connect(self) -> None:
        """Wire the buttons and fields; follow the layer list and the session's model."""
        self.load_button.clicked.connect(self._load_clicked)
        self.starting_button.clicked.connect(lambda *_: self.use_starting_model())
        self.threshold.valueChanged.connect(self.relabel)
        self.diameter.valueChanged.connect(self._show_diameter)
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.cancel)
        for event in layer_list_events(self.viewer):
            event.connect(self.refresh_layers)
        self.session.model_changed.connect(self._show_model)
        self.destroyed.connect(_make_cleanup(self))

    # ------------------------------------------------------------------ inputs
    def _fill_devices(self) -> None:
        from napari_unet.core.device import available_devices

        self.device_combo.clear()
        self.device_combo.addItems(list(available_devices()))

    def refresh_layers(self, *_: Any) -> None:
        """Refill the image combo from the viewer's image layers, keeping the selection."""
        with unless_deleted():  # the widget may be closed meanwhile
            current = self.image_combo.currentText()
            images = [lay for lay in self.viewer.layers if isinstance(lay, Image)]
            names = [lay.name for lay in _roles.without_previews(images) or images]
            self.image_combo.blockSignals(True)
            self.image_combo.clear()
            self.image_combo.addItems(names)
            if current in names:
                self.image_combo.setCurrentText(current)
            self.image_combo.blockSignals(False)

    def _show_model(self, *_: Any) -> None:
        with unless_deleted():  # the widget may be closed meanwhile
            self.model_label.setText(self.session.describe())
            if self.session.model is not None:
                self.threshold.blockSignals(True)
                self.threshold.setValue(model_threshold(self.session.model))
                self.threshold.blockSignals(False)

    def _fill_starting_models(self) -> None:
        from qtpy.QtCore import Qt

        from napari_unet.models import starting_models

        for index, (name, description) in enumerate(starting_models().items()):
            self.starting_combo.addItem(name)
            self.starting_combo.setItemData(index, description, Qt.ItemDataRole.ToolTipRole)
        self.starting_combo.setToolTip(
            "Shipped starting models: nuclei (fluorescence), phase-cells (phase contrast), "
            "em-cells (electron microscopy), he-nuclei (H&E / brightfield, RGB)"
        )

    def use_starting_model(self, name: str | None = None) -> None:
        """Make a shipped starting model the session's model (default: the combo's choice)."""
        from napari_unet.widgets._training_run import load_starting_model

        name = name or self.starting_combo.currentText()
        try:
            model = load_starting_model(name)
        except ValueError as exc:
            _notify.notify_error(f"Cannot load the starting model: {exc}")
            return
        self.session.set_model(model, f"starting model: {name}")

    def diameter_value(self) -> float | str | None:
        """The diameter field: a number of pixels, or None (the model's own / estimated)."""
        value = float(self.diameter.value())
        if value > 0:
            return value
        model = self.session.model
        from napari_unet.core.scale import default_diameter

        return None if model is None else default_diameter(model)

    def _show_diameter(self, value: float) -> None:
        """Draw a circle of the diameter on the image, so the user can compare it with cells."""
        from napari_unet.core.scale import diameter_circle

        layer = self.image_layer()
        if layer is None or value <= 0:
            return
        name = "object size"
        data = diameter_circle(layer.data.shape[-2:] if not layer.rgb else layer.data.shape[-3:-1],
                               float(value))
        geometry = _layer_geometry(layer, None)
        try:
            if name in self.viewer.layers:
                self.viewer.layers[name].data = [data]
            else:
                self.viewer.add_shapes(
                    [data], shape_type="ellipse", name=name, edge_color="yellow",
                    face_color="transparent", edge_width=2, scale=geometry["scale"][-2:],
                    translate=geometry["translate"][-2:],
                    metadata=_roles.role_metadata(_roles.OBJECT_SIZE),
                )
        except (RuntimeError, ValueError) as exc:
            _notify.notify_warning(f"Cannot draw the object size: {exc}")

    def relabel(self, *_: Any) -> FunctionWorker | None:
        """Re-label the last prediction of the selected image at the current threshold."""
        layer = self.image_layer()
        cached = self.session.predictions.get(layer.name) if layer is not None else None
        if cached is None or self.worker is not None or self.relabel_worker is not None:
            return None
        threshold, min_size = float(self.threshold.value()), cached.min_size
        worker = create_worker(label_probability, cached.probability, threshold, min_size,
                               cached.interior, cached.annotations, _start_thread=False)

        def show(labels: np.ndarray) -> None:
            name = f"{layer.name} instances"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = labels
            self.session.set_prediction(
                layer.name,
                Prediction(cached.probability, labels, threshold, min_size, cached.interior,
                           cached.factor, cached.annotations))

        def finished() -> None:
            self.relabel_worker = None
            if float(self.threshold.value()) != threshold:  # moved again meanwhile
                self.relabel()

        worker.returned.connect(show)
        worker.finished.connect(finished)
        self.relabel_worker = worker
        worker.start()
        return worker

    def image_layer(self) -> Image | None:
        """The selected image layer, or None."""
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load U-Net model", "",
                                              "napari-unet model or bioimage.io package "
                                              "(*.pt *.pth *.zip);;All files (*)")
        if path:
            self.load_model(path)

    def load_model(self, path: str) -> bool:
        """Load a checkpoint into the session; a bad file gives a notification, not a crash."""
        from napari_unet.core.bioimageio import load_any

        if not self.load_into_session(path, load_any):
            return False
        _notify.notify_info(f"Loaded model {path}")
        return True

    # --------------------------------------------------------------- actions
    def predict(self, *_: Any, start: bool = True) -> FunctionWorker | None:
        """Start predicting the selected image; returns the worker (None on invalid input)."""
        if self.worker is not None:
            _notify.notify_warning("A prediction is already running")
            return None
        layer = self.image_layer()
        if layer is None:
            _notify.notify_error("Select an image layer to predict")
            return None
        self.predict_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)
        self.status.setText(f"predicting {layer.name}…")
        worker = predict_layer(
            self.viewer, layer, self.session.model, self.threshold.value(),
            self.min_size.value() or None, start=False, device=self.device_combo.currentText(),
            diameter=self.diameter_value(), on_progress=self._progress,
            on_finished=self._finished, flips=self.flips.isChecked(),
        )
        self.worker = worker
        if worker is not None and start:
            worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running prediction to stop after its current batch."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("cancelling…")

    def _progress(self, done: int, total: int) -> None:
        if self.worker is None:  # late update after the prediction finished
            return
        with unless_deleted():  # the widget may be closed meanwhile
            self.progress_bar.setRange(0, max(1, total))
            self.progress_bar.setValue(done)
            self.status.setText(f"predicting: batch {done}/{total}")

    def _finished(self, ok: bool) -> None:
        self.worker = None
        with unless_deleted():  # the widget may be closed meanwhile
            self.predict_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1 if ok else 0)
            self.status.setText("done" if ok else "stopped")


def _make_cleanup(widget: PredictWidget) -> Callable[..., None]:
    """Callback for ``destroyed`` that stops the widget's worker and disconnects its handlers.

    It holds the widget weakly so that it never keeps a closed viewer alive.
    """
    wref = weakref.ref(widget)
    events = layer_list_events(widget.viewer)
    session = widget.session

    def cleanup(*_: Any) -> None:
        w = wref()
        if w is None:
            return
        if w.worker is not None:
            w.worker.quit()
        for event in events:
            event.disconnect(w.refresh_layers)
        session.model_changed.disconnect(w._show_model)

    return cleanup

