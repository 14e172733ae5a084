"""Train widget: pick image/label pairs and settings, train in a worker, watch the loss live.

Training runs ``core.training.train`` (a generator) in a napari generator worker, so the GUI
thread only receives one ``TrainProgress`` per optimizer step. A copy of the model is trained
and swapped into the session at the end, so predictions running meanwhile never see a model
halfway through a step. Cancel stops between steps; the model keeps its last finished step.
``retrain`` is the same machinery without the widget, for click-to-annotate. One training runs
at a time per viewer (the session's training flag): while Retrain runs, Train is disabled and
says why, and the other way round.
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet.core.live import LiveSettings
from napari_unet.core.model import DEFAULT_CONFIG, is_trained
from napari_unet.core.retrain import correction_loop, uses_live_recipe
from napari_unet.core.training import (
    FINE_TUNE_LEARNING_RATE,
    TrainConfig,
    TrainProgress,
    correction_settings,
    new_image_type_hint,
)
from napari_unet.core.training_data import keeps_unlabeled
from napari_unet.widgets._qt import ViewerWidget, calls_weakly, unless_deleted

from . import _notify, _roles
from ._layers import layer_list_events, plane_annotations
from ._session import TrainingBusyError, get_session
from ._training_run import (
    TrainingRun,
    _pretrained_names,
    collect_training_data,
    describe_progress,
    load_starting_model,
    make_model,
    training_channels,
    worker_threads,
)
from .loss_plot import TrainingDisplay

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import GeneratorWorker

SOURCE_NEW, SOURCE_CONTINUE, SOURCE_LOAD, SOURCE_PRETRAINED = range(4)
RETRAIN_STEPS = 100
#: who holds the session's training flag (shown to the user when the other one is refused)
TRAIN_OWNER = "Train U-Net"
RETRAIN_OWNER = "Retrain (Annotate)"
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


# --------------------------------------------------------------------------- pure helpers
def _prediction_settings(viewer: napari.viewer.Viewer, layer: Image | None) -> tuple[None, None]:
    """Threshold and smallest object after training: the new model's calibrated threshold and
    its object-scaled minimum size (None, None), not those of the model before."""
    return None, None


def retrain(
    viewer: napari.viewer.Viewer,
    image_layer: Image,
    labels_layer: Labels,
    *,
    dense: bool = False,
    steps: int | None = None,
    on_finished: Callable[[bool], None] | None = None,
    start: bool = True,
    on_progress: Callable[[TrainProgress], None] | None = None,
    on_trained: Callable[[TrainingRun], None] | None = None,
) -> GeneratorWorker | None:
    """Fine-tune the session's model (or a new default one) on one pair, then re-predict.

    Uses the last training settings of the session (steps: ``steps``, else the last run's
    step count, else 100).  The labels are taken as corrections of the session model's own
    prediction (``core.training.correction_settings``): where nothing is labeled it keeps its
    answer, however much the corrections disagree with it, so one class (only removed
    objects) is enough and draws no warning.  Sparse clicks on one plane of a trained model
    train with the live recipe instead (``core.retrain``; ``steps`` else 100).
    ``on_progress(p)`` gets every step, ``on_trained(run)`` is called when training stops; a
    cancelled retrain keeps its last finished step and predicts too.  The prediction overlays
    of ``image_layer`` are updated at the end and ``on_finished(ok)`` is called.  Returns the
    worker (not started when ``start=False``), or None when the inputs are invalid or a
    training is already running (a notification says why).
    """
    session = get_session(viewer)
    busy = session.busy_message()
    if busy is not None:
        _notify.notify_warning(f"Cannot retrain: {busy}")
        if on_finished is not None:
            on_finished(False)
        return None
    try:
        model, images, labels, config, warnings = _retrain_inputs(
            session, image_layer, labels_layer, dense, steps)
        threshold, min_size = _prediction_settings(viewer, image_layer)
        loop = _correction_loop(session, image_layer, model, images, labels, config, dense,
                                steps)

        def done(run: TrainingRun) -> None:
            if on_finished is not None:
                on_finished(run.status == "done")

        run = TrainingRun(viewer, model, images, labels, config, predict_target=image_layer,
                          threshold=threshold, min_size=min_size, on_progress=on_progress,
                          on_trained=on_trained, on_done=done, owner=RETRAIN_OWNER,
                          predict_after_cancel=True, known_warnings=warnings,
                          predict_annotations=plane_annotations(labels_layer, dense), loop=loop)
    except (ValueError, TrainingBusyError) as exc:
        _notify.notify_error(f"Cannot retrain: {exc}")
        if on_finished is not None:
            on_finished(False)
        return None
    for message in warnings:
        _notify.notify_warning(message)
    if start:
        run.start()
    return run.worker


def _correction_loop(session: Any, image_layer: Image, model: Any, images: list, labels: list,
                     config: TrainConfig, dense: bool, steps: int | None) -> Any:
    """The live-recipe loop of a Retrain (``core.retrain``), or None for a plain fine-tune."""
    if not uses_live_recipe(session.model, labels, dense):
        return None
    prediction = session.predictions.get(image_layer.name)
    settings = LiveSettings(diameter=config.diameter, device=config.device, seed=config.seed)
    return correction_loop(model, images[0], labels[0], int(steps or RETRAIN_STEPS),
                           settings=settings, factor=getattr(prediction, "factor", None),
                           num_threads=config.num_threads)


def _retrain_inputs(
    session: Any, image_layer: Image, labels_layer: Labels, dense: bool, steps: int | None,
) -> tuple[Any, list, list, TrainConfig, list[str]]:
    """``(model copy, images, labels, config, warnings)`` for :func:`retrain`; ValueError if bad."""
    settings = session.train_settings
    base = session.model
    in_channels = int(base.in_channels) if base is not None else None
    fields = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
    fields.update(dense=dense, minutes=None,
                  steps=int(steps or settings.get("steps") or RETRAIN_STEPS))
    if base is not None and is_trained(base):
        fields.update(correction_settings(base, dense))
        fields.setdefault("learning_rate", FINE_TUNE_LEARNING_RATE)
    fields.setdefault("num_threads", worker_threads())
    config = TrainConfig(**fields)
    config.validate()
    # removed objects alone are enough when the rest keeps the model's answer
    one_class_ok = base is not None and keeps_unlabeled(base, config)
    pairs = [(image_layer, labels_layer)]
    model = copy.deepcopy(base) if base is not None else make_model(
        training_channels(pairs), settings.get("depth"), settings.get("base_channels"),
        settings.get("padding"))
    images, labels, _, warnings = collect_training_data(
        pairs, dense, in_channels, model, one_class_ok=one_class_ok)
    return model, images, labels, config, warnings


# --------------------------------------------------------------------------- widget
def _spin(lo: float, hi: float, value: float, step: float = 1.0, decimals: int | None = None,
          tip: str = "") -> QSpinBox | QDoubleSpinBox:
    box: QSpinBox | QDoubleSpinBox
    if decimals is None:
        box = QSpinBox()
        box.setRange(int(lo), int(hi))
        box.setValue(int(value))
        box.setSingleStep(int(step))
    else:
        box = QDoubleSpinBox()
        box.setDecimals(decimals)
        box.setRange(lo, hi)
        box.setValue(value)
        box.setSingleStep(step)
    box.setToolTip(tip)
    return box


class TrainWidget(ViewerWidget):
    """Train a U-Net on painted labels, with live loss curve, progress, cancel and save."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self._box: dict[str, TrainingRun | None] = {"run": None}  # shared with the cleanup
        self._build()
        self.refresh_layers()
        self._show_model()
        self._on_layers = calls_weakly(self, "refresh_layers")
        for event in layer_list_events(napari_viewer):
            event.connect(self._on_layers)
        self.session.model_changed.connect(self._show_model)
        self.session.training_changed.connect(self._training_changed)
        self._training_changed(self.session.training)
        self.destroyed.connect(_make_cleanup(self))

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        """Create the inputs, lay them out in data / model / training boxes and wire them."""
        self._build_data_inputs()
        self._build_model_inputs()
        self._build_training_inputs()
        self._build_actions()
        layout = QVBoxLayout(self)
        for widget in (self._data_box(), self._model_box(), self._training_box()):
            layout.addWidget(widget)
        layout.addLayout(self._action_row())
        layout.addWidget(self.display)
        layout.addStretch(1)
        self._connect_inputs()

    def _build_data_inputs(self) -> None:
        """The layer pickers, the pair list, the labels convention and the notes line."""
        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.add_pair_button = QPushButton("Add pair")
        self.remove_pair_button = QPushButton("Remove pair")
        self.pair_list = QListWidget()
        self.pair_list.setMaximumHeight(70)
        self.pair_list.setToolTip("training pairs; when empty, the pair above is used")
        self.dense = QCheckBox("labels are complete (0 = background)")
        self.dense.setToolTip("unchecked: 0 = unlabeled (ignored), 1 = background, >= 2 = cells")
        self.notes = QLabel()  # the last warning or note on the data; stays until the next
        self.notes.setWordWrap(True)
        self.notes.setObjectName("notes")

    def _build_model_inputs(self) -> None:
        """The model source (new, continue, checkpoint, starting model) and its architecture."""
        self.source_combo = QComboBox()
        self.source_combo.addItems(["new model", "continue current model", "load checkpoint…"])
        self.source_combo.addItems([f"starting model: {name}" for name in _pretrained_names()])
        self.source_combo.setToolTip(
            "new: from scratch; starting model: the shipped network trained on DSB2018 "
            "fluorescence nuclei (fine-tuned on your labels). A trained model fine-tuned on "
            "sparse labels keeps its predictions where you painted nothing, as far as they "
            "agree with what you painted. On H&E nuclei a new model learned more in our tests")
        if self.source_combo.count() > SOURCE_PRETRAINED:
            self.source_combo.setCurrentIndex(SOURCE_PRETRAINED)
        self.depth = _spin(1, 6, DEFAULT_CONFIG["depth"], tip="number of poolings")
        self.width = _spin(2, 128, DEFAULT_CONFIG["base_channels"], tip="channels of level 1")
        self.padding = QComboBox()
        self.padding.addItems(["valid", "same"])
        self.padding.setCurrentText(DEFAULT_CONFIG["padding"])
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)

    def _build_training_inputs(self) -> None:
        """Length, optimizer, patch, augmentation, border weights and device settings."""
        from napari_unet.core.device import available_devices

        self.length = _spin(1, 10**6, 300, 50, tip="training length")
        self.minutes = _spin(0.1, 24 * 60, 2.0, 0.5, decimals=1)
        self.length_unit = QComboBox()
        self.length_unit.addItems(["steps", "minutes"])
        self.learning_rate = _spin(1e-6, 1.0, 1e-3, 1e-4, decimals=6)
        self.batch_size = _spin(1, 256, 4)
        self.patch_size = _spin(0, 2048, 0, 8, tip="output patch side in px; 0 = automatic")
        self.patch_size.setSpecialValueText("auto")
        self.diameter = _spin(0, 2000, 0, 1, tip="object diameter in px; 0 = the median of the "
                              "labeled cells (training resamples the images to the model's "
                              "object size)")
        self.diameter.setSpecialValueText("from the labels")
        self.augment = QCheckBox("augmentation (rotations, flips, elastic)")
        self.augment.setChecked(True)
        self.w0 = _spin(0.0, 100.0, 10.0, 1.0, decimals=1, tip="border weight w0 (paper: 10)")
        self.sigma = _spin(0.5, 50.0, 5.0, 0.5, decimals=1, tip="border weight sigma in px")
        self.device_combo = QComboBox()
        devices = list(available_devices())
        self.device_combo.addItems(devices)
        self.device_combo.setCurrentText("cuda" if "cuda" in devices else devices[0])

    def _build_actions(self) -> None:
        """Train, Cancel and Save, and the progress display (bar, status, loss plot)."""
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save model…")
        self.display = TrainingDisplay()
        self.progress_bar = self.display.progress_bar
        self.status = self.display.status
        self.loss_plot = self.display.loss_plot

    def _data_box(self) -> QGroupBox:
        """The "data" group: pickers, pairs, convention, diameter, notes."""
        data_box = QGroupBox("data")
        data = QFormLayout(data_box)
        data.addRow("image", self.image_combo)
        data.addRow("labels", self.labels_combo)
        pair_buttons = QHBoxLayout()
        pair_buttons.addWidget(self.add_pair_button)
        pair_buttons.addWidget(self.remove_pair_button)
        data.addRow(pair_buttons)
        data.addRow(self.pair_list)
        data.addRow(self.dense)
        data.addRow("object diameter", self.diameter)
        data.addRow(self.notes)
        return data_box

    def _model_box(self) -> QGroupBox:
        """The "model" group: source, architecture and the current model."""
        model_box = QGroupBox("model")
        model = QFormLayout(model_box)
        model.addRow("source", self.source_combo)
        model.addRow("depth", self.depth)
        model.addRow("width", self.width)
        model.addRow("padding", self.padding)
        model.addRow("current", self.model_label)
        return model_box

    def _training_box(self) -> QGroupBox:
        """The "training" group: length and the optimisation settings."""
        train_box = QGroupBox("training")
        form = QFormLayout(train_box)
        length = QHBoxLayout()
        length.addWidget(self.length)
        length.addWidget(self.minutes)
        length.addWidget(self.length_unit)
        form.addRow("length", length)
        form.addRow("learning rate", self.learning_rate)
        form.addRow("batch size", self.batch_size)
        form.addRow("patch size", self.patch_size)
        form.addRow(self.augment)
        form.addRow("w0", self.w0)
        form.addRow("sigma", self.sigma)
        form.addRow("device", self.device_combo)
        return train_box

    def _action_row(self) -> QHBoxLayout:
        """Train, Cancel and Save side by side."""
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        return buttons

    def _connect_inputs(self) -> None:
        """Wire the buttons and the fields that enable or preset others."""
        self.add_pair_button.clicked.connect(self.add_pair)
        self.remove_pair_button.clicked.connect(self._remove_pair)
        self.source_combo.activated.connect(self._source_activated)
        self.source_combo.currentIndexChanged.connect(self._update_enabled)
        self.source_combo.currentIndexChanged.connect(self._default_learning_rate)
        self._default_learning_rate(self.source_combo.currentIndex())
        self.length_unit.currentIndexChanged.connect(self._update_enabled)
        self.train_button.clicked.connect(lambda: self.start_training())
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._save_clicked)
        self._update_enabled()

    def _default_learning_rate(self, index: int) -> None:
        """Fine-tune the starting model gently; train a new network at the usual rate."""
        if index >= SOURCE_PRETRAINED:  # any shipped starting model
            self.learning_rate.setValue(FINE_TUNE_LEARNING_RATE)
        elif index == SOURCE_NEW:
            self.learning_rate.setValue(TrainConfig.learning_rate)

    def _update_enabled(self, *_: Any) -> None:
        new = self.source_combo.currentIndex() == SOURCE_NEW
        for widget in (self.depth, self.width, self.padding):
            widget.setEnabled(new)
        minutes = self.length_unit.currentText() == "minutes"
        self.length.setVisible(not minutes)
        self.minutes.setVisible(minutes)

    # ------------------------------------------------------------------ layers
    def refresh_layers(self, *_: Any) -> None:
        """Refill the layer pickers from the viewer, keeping the current choices."""
        with unless_deleted():  # the widget may be closed meanwhile
            layers = [lay for lay in self.viewer.layers if isinstance(lay, Image)]
            images = [lay.name for lay in _roles.without_previews(layers) or layers]
            labels = [lay.name for lay in self.viewer.layers if isinstance(lay, Labels)]
            for combo, names in ((self.image_combo, images), (self.labels_combo, labels)):
                current = combo.currentText()
                combo.blockSignals(True)
                combo.clear()
                combo.addItems(names)
                if current in names:
                    combo.setCurrentText(current)
                combo.blockSignals(False)

    def _show_model(self, *_: Any) -> None:
        with unless_deleted():  # the widget may be closed meanwhile
            self.model_label.setText(self.session.describe())

    def add_pair(self) -> None:
        """Add the selected image/labels pair to the training list."""
        image, labels = self.image_combo.currentText(), self.labels_combo.currentText()
        if not image or not labels:
            _notify.notify_error("Select an image and a labels layer first")
            return
        text = f"{image} | {labels}"
        if not self.pair_list.findItems(text, _match_exactly()):
            self.pair_list.addItem(text)

    def _remove_pair(self) -> None:
        for item in self.pair_list.selectedItems():
            self.pair_list.takeItem(self.pair_list.row(item))

    def pairs(self) -> list[tuple[Image, Labels]]:
        """The training pairs: the list, or the selected pair when the list is empty."""
        names = [self.pair_list.item(i).text().split(" | ", 1)
                 for i in range(self.pair_list.count())]
        if not names:
            names = [[self.image_combo.currentText(), self.labels_combo.currentText()]]
        pairs = []
        for image, labels in names:
            _check_present(self.viewer, image, labels)
            pairs.append((self.viewer.layers[image], self.viewer.layers[labels]))
        return pairs

    # ------------------------------------------------------------------ model
    def _source_activated(self, index: int) -> None:
        if index != SOURCE_LOAD:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load U-Net model", "",
                                              "napari-unet model (*.pt *.pth);;All files (*)")
        if not path or not self.load_checkpoint(path):
            self.source_combo.setCurrentIndex(SOURCE_NEW if self.session.model is None
                                              else SOURCE_CONTINUE)

    def load_checkpoint(self, path: str) -> bool:
        """Load a checkpoint into the session and continue from it; errors are notified."""
        from napari_unet.core.checkpoint import load_model

        if not self.load_into_session(path, load_model):
            return False
        self.source_combo.setCurrentIndex(SOURCE_CONTINUE)
        return True

    def config(self) -> TrainConfig:
        """Training settings from the form."""
        minutes = self.length_unit.currentText() == "minutes"
        return TrainConfig(
            steps=int(self.length.value()),
            minutes=float(self.minutes.value()) if minutes else None,
            learning_rate=float(self.learning_rate.value()),
            batch_size=int(self.batch_size.value()),
            patch_size=int(self.patch_size.value()) or None,
            augment=self.augment.isChecked(),
            w0=float(self.w0.value()),
            sigma=float(self.sigma.value()),
            dense=self.dense.isChecked(),
            device=self.device_combo.currentText() or "cpu",
            num_threads=worker_threads(),
            diameter=float(self.diameter.value()) or None,
        )

    # ------------------------------------------------------------------ actions
    def start_training(self, start: bool = True) -> GeneratorWorker | None:
        """Validate inputs and create (and by default start) the training worker.

        Returns None, with a notification, when the inputs are invalid; layers are untouched.
        """
        if self.run is not None:
            _notify.notify_in(self.status, "Training is already running", "warning")
            return None
        busy = self.session.busy_message()
        if busy is not None:
            _notify.notify_in(self.status, f"Cannot train: {busy}", "warning")
            return None
        source = self.source_combo.currentIndex()
        try:
            config = self.config()
            config.validate()
            pairs, notes = read_default_labels(self.pairs(), config.dense)
            base = self.session.model if source != SOURCE_NEW else None
            if source >= SOURCE_PRETRAINED:
                base = load_starting_model(self.source_combo.currentText())
            if source != SOURCE_NEW and base is None:
                raise ValueError("there is no current model to continue: choose 'new model'")
            in_channels = int(base.in_channels) if base is not None else None
            if base is not None:
                model = copy.deepcopy(base)
            else:
                model = make_model(training_channels(pairs), self.depth.value(),
                                   self.width.value(), self.padding.currentText())
            images, labels, _, warnings = collect_training_data(
                pairs, config.dense, in_channels, model)
        except ValueError as exc:
            _notify.notify_in(self.status, f"Cannot train: {exc}")
            return None
        self.notes.setText("")
        for message in notes:
            _notify.notify_in(self.notes, message, "info")
        for message in warnings:
            _notify.notify_in(self.notes, message, "warning")
        target = self.viewer.layers[self.image_combo.currentText()] if (
            self.image_combo.currentText() in self.viewer.layers) else pairs[0][0]
        threshold, min_size = _prediction_settings(self.viewer, target)
        try:
            self.run = TrainingRun(
                self.viewer, model, images, labels, config, predict_target=target,
                threshold=threshold, min_size=min_size, on_progress=self._progress,
                on_done=self._done, owner=TRAIN_OWNER, known_warnings=warnings,
            )
        except TrainingBusyError as exc:
            _notify.notify_in(self.status, f"Cannot train: {exc}", "warning")
            return None
        self.session.train_settings = {
            **dataclasses.asdict(config),
            "depth": model.depth, "base_channels": model.base_channels, "padding": model.padding,
        }
        self.display.begin(config.steps, f"starting on {config.device}…")
        self._training_changed(self.session.training)
        if start:
            self.run.start()
        return self.run.worker

    @property
    def run(self) -> TrainingRun | None:
        """The current training run (None when idle)."""
        return self._box["run"]

    @run.setter
    def run(self, value: TrainingRun | None) -> None:
        self._box["run"] = value

    @property
    def worker(self) -> GeneratorWorker | None:
        """The running training worker, if any."""
        return self.run.worker if self.run is not None else None

    @property
    def busy(self) -> bool:
        """True while training or the prediction that follows it is running."""
        return self.run is not None

    def cancel(self) -> None:
        """Stop training after the current step."""
        if self.run is not None:
            self.run.cancel()
            self.status.setText("stopping after the current step…")

    def _progress(self, p: TrainProgress) -> None:
        with unless_deleted():  # the widget may be closed meanwhile
            self.display.show_step(p.step, p.total_steps, p.loss, describe_progress(p))

    def _training_changed(self, owner: str | None = None) -> None:
        """Train is enabled only when no training runs; while another one does, say whose."""
        mine = self.run is not None
        busy = None if mine else self.session.busy_message()
        with unless_deleted():  # the widget may be closed meanwhile
            self.train_button.setEnabled(not mine and busy is None)
            self.cancel_button.setEnabled(mine)
            self.train_button.setToolTip(busy or "train on the pairs above with these settings")
            if busy is not None:
                self.status.setText(busy)
            elif not mine and owner is None and self.status.text().endswith("cancel it there"):
                self.status.setText("")

    def _done(self, run: TrainingRun) -> None:
        self.run = None
        with unless_deleted():  # the widget may be closed meanwhile
            self._training_changed(self.session.training)
            last = f" at step {run.last.step}" if run.last is not None else ""
            failed = f": {run.error}" if run.error is not None else ""
            self.status.setText(f"training {run.status}{last}{failed}")
            if run.status == "done":
                self.source_combo.setCurrentIndex(SOURCE_CONTINUE)
                hint = new_image_type_hint(run.model)
                if hint is not None:
                    _notify.notify_info(hint)

    def save_model_dialog(self) -> None:
        """Ask where to save the session model (a Yes/No question before replacing a file)."""
        self._save_clicked()

    def _save_clicked(self) -> None:
        if self.session.model is None:
            _notify.notify_in(self.status, "No model to save: train or load one first")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save U-Net model", "unet.pt",
            "napari-unet model (*.pt);;bioimage.io model package, to share (*.zip)",
            options=QFileDialog.DontConfirmOverwrite,
        )
        if path:
            self.save_model_to(path)

    def save_model_to(self, path: str, confirm: Callable[[str], bool] | None = None,
                      start: bool = True) -> bool:
        """Save the session model to ``path``; an existing file is replaced only if confirmed.

        ``confirm(path)`` answers the overwrite question (default: a Yes/No dialog). A ``.zip``
        path gets a bioimage.io package, written by ``self.export_worker`` (not started when
        ``start=False``).
        """
        from napari_unet.core.checkpoint import save_model

        model = self.session.model
        if model is None:
            _notify.notify_error("No model to save: train or load one first")
            return False
        overwrite = Path(path).exists()
        if overwrite:
            ask = confirm or self._confirm_overwrite
            if not ask(path):
                return False
        if path.lower().endswith(".zip"):
            self.export_worker = self._export(model, path, overwrite, start)
            return True
        try:
            save_model(model, path, overwrite=overwrite)
        except (OSError, ValueError) as exc:
            _notify.notify_error(f"Cannot save model to {path}: {exc}")
            return False
        _notify.notify_info(f"Model saved to {path}")
        return True

    def _export(self, model: Any, path: str, overwrite: bool, start: bool) -> Any:
        """Write a bioimage.io package in a worker (test tensors are predicted: seconds)."""
        import copy

        from napari.qt.threading import create_worker

        from napari_unet.core.bioimageio import export_package

        worker = create_worker(export_package, copy.deepcopy(model), path, overwrite=overwrite,
                               _start_thread=False)
        worker.returned.connect(lambda out: _notify.notify_info(
            f"bioimage.io package written to {out}"))
        worker.errored.connect(lambda exc: _notify.notify_error(
            f"Cannot export the model to {path}: {exc}"))
        if start:
            worker.start()
        return worker

    def _confirm_overwrite(self, path: str) -> bool:
        answer = QMessageBox.question(self, "Overwrite?", f"{path} exists. Replace it?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes


def _check_present(viewer: napari.viewer.Viewer, image: str, labels: str) -> None:
    """ValueError saying which layer of a training pair is missing, and how to get it."""
    if not image:
        raise ValueError("there is no image layer: open an image (File > Open, or a sample)")
    if not labels:
        raise ValueError(
            "there is no Labels layer to learn from: add one (the 'new labels layer' button "
            "above the layer list) and paint a few cells on the image")
    for kind, name in (("image", image), ("labels", labels)):
        if name not in viewer.layers:
            raise ValueError(f"the {kind} layer {name!r} was removed from the viewer: "
                             "choose another one, or remove the pair from the list")


def read_default_labels(pairs: list[tuple[Image, Labels]], dense: bool,
                        ) -> tuple[list[tuple[Image, Labels]], list[str]]:
    """Pairs whose labels hold only napari's default label 1, read as cells (sparse mode).

    A layer the Paint widget marked sparse (label 1 painted as background on purpose) is
    kept. Such labels are read by ``core.labels.read_default_label`` (each painted blob a cell, a
    background ring around it) into a Labels layer outside the viewer, so the user's layer is
    untouched. Returns the pairs to train on and one note per layer read that way.
    """
    from napari_unet.core.labels import (
        CONVENTION_METADATA,
        only_default_label,
        read_default_label,
    )

    if dense:
        return pairs, []
    out, notes = [], []
    for image_layer, labels_layer in pairs:
        marked = (labels_layer.metadata or {}).get(CONVENTION_METADATA) == "sparse"
        if not marked and only_default_label(labels_layer.data):
            data, note = read_default_label(labels_layer.data)
            labels_layer = Labels(data, name=labels_layer.name)
            notes.append(f"{labels_layer.name}: {note}")
        out.append((image_layer, labels_layer))
    return out, notes


def _match_exactly() -> Any:
    from qtpy.QtCore import Qt

    return Qt.MatchExactly


def _make_cleanup(widget: TrainWidget) -> Callable[..., None]:
    """Callback for ``destroyed``: stop training and disconnect, holding the widget weakly."""
    wref = weakref.ref(widget)
    box = widget._box
    events = layer_list_events(widget.viewer)
    session = widget.session
    on_layers = widget._on_layers

    def cleanup(*_: Any) -> None:
        run = box.get("run")
        if run is not None:
            run.viewer_closed()
        # a plain function: disconnecting a bound method of the deleted widget made napari
        # compare it with the other callbacks, which raised RuntimeError (deleted C++ object)
        for event in events:
            event.disconnect(on_layers)
        w = wref()
        if w is None:
            return
        session.model_changed.disconnect(w._show_model)
        session.training_changed.disconnect(w._training_changed)

    return cleanup

