"""Preview of the U-Net loss weight map of a labels layer, computed when the user asks.

The map shows where the loss will push hardest: the narrow gaps between touching cells (border
term ``w0 exp(-(d1 + d2)^2 / (2 sigma^2))``) and the rarer of the two classes. It is made by a
button, never on every paint stroke, and shown with additive blending below the labels, so the
image stays visible (weight 0 adds nothing); a legend and a colour bar say what it shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton

from napari_unet.core.weights import describe_weights, labels_weight_map
from napari_unet.widgets import _layers, _notify, _roles
from napari_unet.widgets._layers import connect_layer_list, layer_choices

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

_LABEL_EVENTS = ("data", "paint", "labels_update")
#: colour map, blending and opacity of the preview layer: it adds light, it never covers
COLORMAP = "magma"
BLENDING = "additive"
OPACITY = 0.8
LEGEND = (
    "Bright = high loss weight: the gaps between touching cells (border term "
    "w0·exp(-(d1+d2)²/2σ²), d1, d2 = distances to the two nearest cells) and the rarer "
    "class. Black = weight 0: unlabeled pixels, ignored by training."
)
COLORBAR_SIZE = (160, 12)


def colorbar_pixmap(colormap: str = COLORMAP, size: tuple[int, int] = COLORBAR_SIZE) -> Any:
    """A horizontal gradient of ``colormap`` (low left, high right) as a QPixmap."""
    from napari.utils.colormaps import ensure_colormap
    from qtpy.QtGui import QImage, QPixmap

    width, height = size
    rgba = ensure_colormap(colormap).map(np.linspace(0.0, 1.0, width))
    row = (np.clip(rgba, 0.0, 1.0) * 255).round().astype(np.uint8)
    pixels = np.ascontiguousarray(np.broadcast_to(row[None], (height, width, 4)))
    image = QImage(pixels.data, width, height, 4 * width, QImage.Format.Format_RGBA8888)
    return QPixmap.fromImage(image.copy())


class WeightMapWidget(Container):
    """Pick a labels layer and w0/sigma, press the button: the loss weights are shown."""

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
        self._button = PushButton(text="Show weight map")
        self._button.tooltip = (
            "Compute the loss weights of the labels now and show them over the image "
            "(additive: the image stays visible)"
        )
        self._legend = Label(value=LEGEND)
        self._bar_low = Label(value="0")
        self._bar = Label(value="")
        self._bar_high = Label(value="")
        self._colorbar = Container(layout="horizontal", labels=False,
                                   widgets=[self._bar_low, self._bar, self._bar_high])
        self._colorbar.margins = (0, 0, 0, 0)
        self._colorbar.visible = False
        self._status = Label(value="")
        super().__init__(
            widgets=[self._labels_combo, self._w0, self._sigma, self._dense, self._button,
                     self._legend, self._colorbar, self._status],
        )
        for label in (self._legend, self._status):
            _layers.wrap_label(label)
        self._bar.native.setPixmap(colorbar_pixmap())
        self._watched: Labels | None = None
        self._shown: Image | None = None
        self.n_updates = 0
        self.stale = False

        connect_layer_list(napari_viewer, self.reset_choices)
        self._labels_combo.changed.connect(self._watch)
        for widget in (self._w0, self._sigma, self._dense):
            widget.changed.connect(self._mark_stale)
        self._button.changed.connect(self.refresh)
        self.native.destroyed.connect(self._cleanup)
        self._watch()

    def _cleanup(self, *_: Any) -> None:
        """The Qt widget is gone: stop following the viewer and the labels."""
        connect_layer_list(self._viewer, self.reset_choices, disconnect=True)
        self._unwatch()

    # -- layer tracking -----------------------------------------------------------------
    def _watch(self, *_: Any) -> None:
        """Note edits of the selected labels layer (to say the map is out of date), no more."""
        layer = self._labels_combo.value
        if layer is self._watched:
            return
        self._unwatch()
        self._watched = layer
        if layer is not None:
            for name in _LABEL_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self._mark_stale)
        self._mark_stale()

    def _unwatch(self) -> None:
        if self._watched is not None:
            for name in _LABEL_EVENTS:
                emitter = getattr(self._watched.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self._mark_stale)
        self._watched = None

    def _mark_stale(self, *_: Any) -> None:
        """Labels or settings changed after a map was shown: say so, recompute nothing."""
        if self._shown is None or self._shown not in self._viewer.layers:
            return
        if not self.stale:
            self.stale = True
            self._button.text = "Update weight map"
            self._status.value = "Labels or settings changed: press Update weight map."

    # -- public API -------------------------------------------------------------------------
    def refresh(self, *_: Any) -> Image | None:
        """Compute and show the weight map now; returns the layer (None on bad input)."""
        layer = self._labels_combo.value
        if layer is None:
            _notify.notify_error("Weight map: choose a labels layer first.")
            return None
        labels = np.asarray(layer.data)
        dense = bool(self._dense.value)
        try:
            weights = labels_weight_map(labels, float(self._w0.value),
                                        float(self._sigma.value), dense)
        except ValueError as err:
            _notify.notify_error(f"Weight map: {err}")
            return None
        self.n_updates += 1
        top = max(float(weights.max()) if weights.size else 0.0, 1e-3)
        name = f"{layer.name} weights"
        is_new = name not in self._viewer.layers
        active = self._viewer.layers.selection.active
        out = _layers.add_or_update_image(
            self._viewer, weights, name, like=layer, role=_roles.WEIGHTS, colormap=COLORMAP,
            contrast_limits=[0.0, top], blending=BLENDING, opacity=OPACITY,
        )
        if is_new:
            # just below the labels (painting stays on top), the selection stays for painting
            layers = self._viewer.layers
            layers.move(layers.index(out), layers.index(layer))
            if active is not None:
                layers.selection.active = active
        colorbar = getattr(out, "colorbar", None)  # napari >= 0.6: a colour bar on the canvas
        if colorbar is not None:
            colorbar.visible = True
        self._shown = out
        self.stale = False
        self._button.text = "Update weight map"
        self._bar_high.value = f"{top:.1f}"
        self._colorbar.visible = True
        self._status.value = describe_weights(weights, labels, dense)
        return out

