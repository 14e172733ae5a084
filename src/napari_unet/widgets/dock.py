"""One dock for the whole plugin: data and labels, train, predict, correct, previews, export.

Each tab holds one of the plugin's widgets (the same classes the Plugins menu opens one by one)
inside a scroll area, so the dock's minimum height stays small and the window fits a 1366x768
screen whatever a tab holds; the dock is as wide as its widest tab (up to ``MAX_WIDTH``), so no
tab's text is cut off at the right edge. All tabs share the viewer's model session
(``_session``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Labels
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from . import _notify
from .annotate import AnnotateWidget
from .augment_preview import AugmentPreviewWidget
from .paint import PaintWidget
from .predict import PredictWidget
from .train import TrainWidget
from .weightmap_preview import WeightMapWidget

if TYPE_CHECKING:
    import napari

DOCK_NAME = "U-Net (all steps)"  # its display name in napari.yaml
TABS = ("Data", "Train", "Predict", "Correct", "Previews", "Export")
DATA_HELP = (
    "Open an image (File > Open, or File > Open Sample > U-Net segmentation), then segment "
    "it with the starting model above. To teach the model your cells: paint a few cells and "
    "some background here, then Train."
)
LABEL_FILTER = "TIFF (*.tif *.tiff);;PNG (*.png);;NumPy (*.npy)"
MAX_WIDTH = 480  # the widest the dock asks to be; a wider tab scrolls sideways


class _TabScrollArea(QScrollArea):
    """A scroll area as narrow as its page allows (up to ``MAX_WIDTH``), of any small height.

    A plain QScrollArea asks for almost no width, so napari docks it narrower than the page and
    every tab scrolls sideways with its text cut off at the right edge. This one asks for the
    page's minimum width (the tab widget takes the widest page's), and stays scrollable
    vertically so that the dock fits a 1366x768 screen.
    """

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        page = self.widget()
        if page is None:
            return hint
        width = (page.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
                 + 2 * self.frameWidth())
        return QSize(min(max(hint.width(), width), MAX_WIDTH), hint.height())


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless scroll area that resizes it to the dock's width."""
    area = _TabScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setWidget(widget)
    return area


def _column(*widgets: QWidget) -> QWidget:
    """A widget stacking ``widgets`` vertically, with the spare height at the bottom."""
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    return page


def _help_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class DockWidget(QWidget):
    """The plugin in one dock: a tab per step, each scrollable (fits a 1366x768 screen)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.paint = PaintWidget(napari_viewer)
        self.train = TrainWidget(napari_viewer)
        self.predict = PredictWidget(napari_viewer)
        self.annotate = AnnotateWidget(napari_viewer)
        self.augment = AugmentPreviewWidget(napari_viewer)
        self.weightmap = WeightMapWidget(napari_viewer)
        self.export = self._export_page()
        self.quick_button = QPushButton("Segment with the starting model")
        self.quick_button.setToolTip(
            "predict the selected image with the shipped starting model chosen in the Predict "
            "tab, without training: the cells appear as a Labels layer over the image")
        self.quick_button.clicked.connect(lambda *_: self.segment_with_starting_model())
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setDocumentMode(True)
        pages = (
            _column(self.paint, self.quick_button, _help_label(DATA_HELP)),
            self.train,
            self.predict,
            self.annotate.native,
            _column(self.augment.native, self.weightmap.native),
            self.export,
        )
        for title, page in zip(TABS, pages, strict=True):
            self.tabs.addTab(scrolled(page), title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

    def event(self, event: QEvent) -> bool:
        """Delete the dock from the event loop once napari takes it out of its window.

        napari unparents a removed dock; left to Python's garbage collector, the children's
        ``destroyed`` callbacks would run while their objects are half collected.
        """
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.deleteLater()
        return super().event(event)

    def show_tab(self, title: str) -> None:
        """Bring the tab ``title`` (one of ``TABS``) to the front."""
        self.tabs.setCurrentIndex(TABS.index(title))

    def segment_with_starting_model(self) -> Any:
        """Predict with the starting model (Predict tab's choice) at once; return the worker."""
        self.predict.use_starting_model()
        self.show_tab("Predict")  # where the progress and the status are
        return self.predict.predict()

    # ------------------------------------------------------------------ export
    def _export_page(self) -> QWidget:
        self.save_model_button = QPushButton("Save model…")
        self.save_model_button.setToolTip(
            "the current model, as a napari-unet .pt file or a bioimage.io package (.zip)")
        self.save_labels_button = QPushButton("Save labels…")
        self.save_labels_button.setToolTip(
            "the selected Labels layer as TIFF, PNG or NumPy, in the smallest integer type")
        self.export_status = _help_label("")
        self.save_model_button.clicked.connect(lambda *_: self.train.save_model_dialog())
        self.save_labels_button.clicked.connect(lambda *_: self.save_labels_dialog())
        return _column(self.save_model_button, self.save_labels_button, self.export_status)

    def labels_to_export(self) -> Labels | None:
        """The selected Labels layer, else the top one (None: there is none)."""
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels):
            return active
        labels = [lay for lay in self.viewer.layers if isinstance(lay, Labels)]
        return labels[-1] if labels else None

    def save_labels_dialog(self) -> None:
        """Ask where to save the labels (the dialog asks before replacing a file), then save."""
        layer = self.labels_to_export()
        if layer is None:
            _notify.notify_in(self.export_status, "There is no Labels layer to save", "warning")
            return
        path, _ = QFileDialog.getSaveFileName(self, f"Save {layer.name}", f"{layer.name}.tif",
                                              LABEL_FILTER)
        if path:
            self.save_labels_to(layer, path)

    def save_labels_to(self, layer: Labels, path: str) -> str | None:
        """Write ``layer`` to ``path`` (replacing it: the caller asked); None on failure."""
        from napari_unet._writer import write_labels

        try:
            [written] = write_labels(path, layer.data, {"name": layer.name})
        except (OSError, ValueError) as exc:
            _notify.notify_in(self.export_status, f"Cannot save {layer.name}: {exc}")
            return None
        _notify.notify_in(self.export_status, f"{layer.name} saved to {written}", "info")
        return written

