"""Painting that explains itself: "new cell" and "background" buttons, keys and the convention.

The plugin reads labels in the sparse convention: 0 unlabeled (ignored), 1 background, every
id >= 2 one cell. napari's own default label is 1, so this widget gives the background its
name and a grey colour, offers a button (and key) for each role, and sets an empty layer's
label to the first cell id so that a first stroke paints a cell.  Only empty layers are
explained (and marked sparse in their metadata): a layer of complete labels keeps its colours,
and one painted only with napari's default label 1 is read as cells by Train
(``core.labels.read_default_label``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_unet.core.labels import (
    BACKGROUND_LABEL,
    CONVENTION,
    CONVENTION_METADATA,
    has_labels,
    next_cell_id,
)

from . import _notify
from ._qt import calls_weakly

if TYPE_CHECKING:
    import napari

FIRST_CELL = BACKGROUND_LABEL + 1
NEW_CELL_KEY = "n"
BACKGROUND_KEY = "g"
BACKGROUND_GREY = (0.55, 0.55, 0.55, 1.0)
_COLOURED_IDS = 256  # ids given their own colour at once; more are added as they are used


def label_colormap(n_ids: int = _COLOURED_IDS) -> Any:
    """napari's cyclic colours for the cells, grey for background (1), 0 transparent."""
    from napari.utils.colormaps import DirectLabelColormap
    from napari.utils.colormaps import label_colormap as cyclic

    ids = np.arange(FIRST_CELL, FIRST_CELL + int(n_ids))
    colours = cyclic(49).map(ids)
    color_dict: dict[int | None, Any] = {
        int(i): tuple(c) for i, c in zip(ids, colours, strict=True)}
    color_dict.update({None: (1.0, 0.8, 0.0, 1.0), 0: (0.0, 0.0, 0.0, 0.0),
                       BACKGROUND_LABEL: BACKGROUND_GREY})
    return DirectLabelColormap(color_dict=color_dict)


def is_explained(layer: Labels) -> bool:
    """True when ``layer`` is marked as painted in the sparse convention (1 = background)."""
    return (layer.metadata or {}).get(CONVENTION_METADATA) == "sparse"


def explain_layer(layer: Labels, sparse_labels: bool = False) -> bool:
    """Name and colour the roles on an empty ``layer`` (1 grey, "background" on hover).

    The first stroke then paints a cell (label 2) and the layer is marked sparse. Returns
    False, changing nothing, for a layer that already holds labels, unless the caller says
    they are in the sparse convention (``sparse_labels``, e.g. made from a prediction).
    """
    if is_explained(layer):
        return True
    if has_labels(layer.data) and not sparse_labels:
        return False
    top = int(np.max(layer.data)) if np.size(layer.data) else 0
    layer.colormap = label_colormap(top + _COLOURED_IDS)
    layer.features = {"index": [0, BACKGROUND_LABEL], "role": ["unlabeled", "background"]}
    layer.metadata = {**(layer.metadata or {}), CONVENTION_METADATA: "sparse"}
    layer.bind_key(NEW_CELL_KEY, _key_action(select_new_cell), overwrite=True)
    layer.bind_key(BACKGROUND_KEY, _key_action(select_background), overwrite=True)
    if layer.selected_label == BACKGROUND_LABEL:
        layer.selected_label = FIRST_CELL
    return True


def select_new_cell(layer: Labels) -> int:
    """Make ``layer`` paint a new cell (the next unused id >= 2); return that id."""
    new = next_cell_id(layer.data)
    colours = getattr(layer.colormap, "color_dict", None)
    if is_explained(layer) and colours and new > max(k for k in colours if k is not None):
        layer.colormap = label_colormap(new + _COLOURED_IDS)
    layer.selected_label = new
    layer.mode = "paint"
    return new


def select_background(layer: Labels) -> int:
    """Make ``layer`` paint background (label 1); return 1."""
    layer.selected_label = BACKGROUND_LABEL
    layer.mode = "paint"
    return BACKGROUND_LABEL


class PaintWidget(QWidget):
    """Buttons and keys to paint a new cell or background, and the label convention."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.new_cell_button = QPushButton(f"new cell ({NEW_CELL_KEY.upper()})")
        self.new_cell_button.setToolTip("paint the next cell with an id not used yet (2, 3, …)")
        self.background_button = QPushButton(f"background ({BACKGROUND_KEY.upper()})")
        self.background_button.setToolTip("paint what is not a cell (label 1, grey)")
        self.convention = QLabel(CONVENTION)
        self.convention.setWordWrap(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_cell_button)
        buttons.addWidget(self.background_button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.convention)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.new_cell_button.clicked.connect(lambda *_: self.new_cell())
        self.background_button.clicked.connect(lambda *_: self.background())
        self._on_inserted = calls_weakly(self, "_layer_inserted")
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        self.destroyed.connect(_make_cleanup(napari_viewer, self._on_inserted))
        for layer in list(napari_viewer.layers):
            self._layer_inserted(layer)

    def _layer_inserted(self, event: Any) -> None:
        """Explain each empty Labels layer that enters the viewer (colours, names, keys)."""
        layer = getattr(event, "value", event)
        if isinstance(layer, Labels):
            explain_layer(layer)

    def target_layer(self) -> Labels | None:
        """The selected Labels layer, else the top one; a new one on the image if there is none."""
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels):
            return active
        labels = [lay for lay in self.viewer.layers if isinstance(lay, Labels)]
        if labels:
            return labels[-1]
        images = [lay for lay in self.viewer.layers if isinstance(lay, Image)]
        if not images:
            return None
        image = active if isinstance(active, Image) else images[0]
        shape = image.data.shape[:-1] if image.rgb else image.data.shape
        layer = self.viewer.add_labels(np.zeros(shape, dtype=np.uint16),
                                       name=f"{image.name} labels", scale=image.scale,
                                       translate=image.translate)
        return layer

    def _apply(self, action: Callable[[Labels], int], what: str) -> int | None:
        layer = self.target_layer()
        if layer is None:
            _notify.notify_in(self.status, "Open an image first (File > Open, or a sample)",
                              "warning")
            return None
        if not explain_layer(layer):
            layer.bind_key(NEW_CELL_KEY, _key_action(select_new_cell), overwrite=True)
            layer.bind_key(BACKGROUND_KEY, _key_action(select_background), overwrite=True)
        label = action(layer)
        self.viewer.layers.selection.active = layer
        self.status.setText(f"painting {what} (label {label}) on {layer.name!r}")
        return label

    def new_cell(self) -> int | None:
        """Set the target layer's label to a new cell id; return it (None: no layer)."""
        return self._apply(select_new_cell, "a new cell")

    def background(self) -> int | None:
        """Set the target layer's label to background (1); return it (None: no layer)."""
        return self._apply(select_background, "background")


def _key_action(action: Callable[[Labels], int]) -> Callable[[Labels], None]:
    """A key binding calling ``action`` on the layer it is pressed on."""

    def press(layer: Labels) -> None:
        action(layer)

    return press


def _make_cleanup(viewer: napari.viewer.Viewer, callback: Callable[..., None],
                  ) -> Callable[..., None]:
    """Callback for ``destroyed``: stop following the layer list."""
    events = viewer.layers.events

    def cleanup(*_: Any) -> None:
        events.inserted.disconnect(callback)

    return cleanup
