"""Live preview of the U-Net loss weight map of a labels layer.

While the user paints, the map shows where the loss will push hardest: the narrow gaps between
touching cells (``w0``, ``sigma``) and the class balance of the painted pixels. Recomputation is
debounced with a QTimer so painting stays fluid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton
from qtpy.QtCore import QTimer

from napari_unet.widgets import _layers, _notify
from napari_unet.widgets.augment_preview import connect_layer_list, layer_choices

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

#: milliseconds without a change before the weight map is recomputed
DEBOUNCE_MS = 200
_LABEL_EVENTS = ("data", "paint", "labels_update")


def compute_weights(labels: np.ndarray, w0: float, sigma: float, dense: bool) -> np.ndarray:
    """Weight map of a label image in the training convention (2D, or a stack slice by slice)."""
    from napari_unet.core.labels import split_labels
    from napari_unet.core.weights import weight_map

    instances, mask = split_labels(labels, dense=dense)
    if instances.ndim < 2:
        raise ValueError(f"labels must be at least 2D, got shape {instances.shape}")
    if instances.ndim == 2:
        return weight_map(instances, w0, sigma, labeled_mask=mask)
    out = np.zeros(instances.shape, dtype=np.float32)
    for idx in np.ndindex(*instances.shape[:-2]):
        if mask[idx].any():
            out[idx] = weight_map(instances[idx], w0, sigma, labeled_mask=mask[idx])
    return out


class WeightMapWidget(Container):
    """Pick a labels layer and w0/sigma; the weight map follows the labels as you paint."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._labels_combo = ComboBox(
            label="labels", choices=lambda _w: layer_choices(self._viewer, "labels"),
            tooltip="Labels layer (sparse: 0 unlabeled, 1 background, >= 2 cells)",
        )
        self._w0 = FloatSpinBox(
            label="w0", value=10.0, min=0.0, max=100.0, step=1.0,
            tooltip="Amplitude of the border term between touching cells",
        )
        self._sigma = FloatSpinBox(
            label="sigma (px)", value=5.0, min=0.5, max=50.0, step=0.5,
            tooltip="Width of the border term in pixels",
        )
        self._dense = CheckBox(
            text="labels are complete (0 = background)", value=False,
            tooltip="Dense labels: every pixel counts; otherwise 0 = unlabeled (weight 0)",
        )
        self._button = PushButton(text="Update now")
        self._status = Label(value="")
        super().__init__(
            widgets=[self._labels_combo, self._w0, self._sigma, self._dense, self._button,
                     self._status],
        )
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh)
        self._watched: Labels | None = None
        self.n_updates = 0

        connect_layer_list(napari_viewer, self.reset_choices)
        self._labels_combo.changed.connect(self._watch)
        for widget in (self._w0, self._sigma, self._dense):
            widget.changed.connect(self.schedule)
        self._button.changed.connect(self.refresh)
        self.native.destroyed.connect(self._cleanup)
        self._watch()

    def _cleanup(self, *_: Any) -> None:
        """The Qt widget is gone: stop following the viewer and the labels."""
        self._timer.stop()
        connect_layer_list(self._viewer, self.reset_choices, disconnect=True)
        self._unwatch()

    # -- layer tracking -----------------------------------------------------------------
    def _watch(self, *_: Any) -> None:
        """Follow the selected labels layer's edits (and stop following the previous one)."""
        layer = self._labels_combo.value
        if layer is self._watched:
            return
        self._unwatch()
        self._watched = layer
        if layer is not None:
            for name in _LABEL_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self.schedule)
            self.schedule()

    def _unwatch(self) -> None:
        if self._watched is not None:
            for name in _LABEL_EVENTS:
                emitter = getattr(self._watched.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self.schedule)
        self._watched = None

    def schedule(self, *_: Any) -> None:
        """Recompute after ``DEBOUNCE_MS`` of quiet (each new change restarts the wait)."""
        self._timer.start()

    # -- public API -------------------------------------------------------------------------
    def refresh(self, *_: Any) -> Image | None:
        """Recompute and show the weight map now; returns the layer (None on bad input)."""
        self._timer.stop()
        layer = self._labels_combo.value
        if layer is None:
            return None
        try:
            weights = compute_weights(np.asarray(layer.data), float(self._w0.value),
                                      float(self._sigma.value), bool(self._dense.value))
        except ValueError as err:
            _notify.notify_error(f"Weight map: {err}")
            return None
        self.n_updates += 1
        top = float(weights.max()) if weights.size else 0.0
        counted = weights[weights > 0]
        self._status.value = (
            f"max {top:.2f}, mean over labeled px {counted.mean():.2f}" if counted.size
            else "no labeled pixels (weight 0 everywhere)"
        )
        name = f"{layer.name} weights"
        is_new = name not in self._viewer.layers
        active = self._viewer.layers.selection.active
        out = _layers.add_or_update_image(
            self._viewer, weights, name, like=layer, colormap="magma",
            contrast_limits=[0.0, max(top, 1e-3)],
        )
        if is_new:
            # keep painting on the labels: weights go just below them, the selection stays
            layers = self._viewer.layers
            layers.move(layers.index(out), layers.index(layer))
            if active is not None:
                layers.selection.active = active
        return out
