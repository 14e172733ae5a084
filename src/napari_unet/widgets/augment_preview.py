"""Preview of the elastic deformation used as training augmentation.

Shows what the network will see: the deformed image (and labels) placed to the right of the
originals, plus the displacement field as arrows, so the user can pick a grid size and a
displacement strength that still look like plausible cells.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox

from napari_unet.widgets import _layers, _notify, _roles
from napari_unet.widgets._layers import connect_layer_list, layer_choices

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Vectors

#: gap between the original and the preview, as a fraction of the image width
PREVIEW_GAP = 0.05
#: about this many arrows along the longer side of the displacement field
ARROWS_PER_SIDE = 12
LEGEND = (
    "Right of the original: one random elastic deformation, as training shows the network "
    "(your image is not changed). Gold arrows: where each pixel takes its content from."
)


def field_vectors(field: np.ndarray, step: int | None = None) -> np.ndarray:
    """Napari vectors ``(N, 2, 2)`` for a displacement field ``(2, Y, X)`` on a subsampled grid.

    Each arrow starts at an output pixel and points by ``(dy, dx)``: to where the deformed
    image takes its content from in the original.
    """
    field = np.asarray(field, dtype=np.float32)
    if field.ndim != 3 or field.shape[0] != 2:
        raise ValueError(f"displacement field must have shape (2, Y, X), got {field.shape}")
    height, width = field.shape[1:]
    if step is None:
        step = max(1, int(round(max(height, width) / ARROWS_PER_SIDE)))
    ys = np.arange(step // 2, height, step)
    xs = np.arange(step // 2, width, step)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    starts = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float32)
    directions = field[:, yy.ravel(), xx.ravel()].T
    return np.stack([starts, directions], axis=1)


def preview_translate(layer: Image | Labels, width_px: int, like: Image | None = None) -> list:
    """World translate that puts ``layer`` just right of the image ``like`` (or of itself)."""
    ref = like if like is not None else layer
    shift = (1.0 + PREVIEW_GAP) * width_px * float(ref.scale[-1])
    translate = [float(t) for t in layer.translate]
    translate[-1] = float(ref.translate[-1]) + shift
    return translate


class AugmentPreviewWidget(Container):
    """Pick an image (and labels), set the deformation, press "New sample" to see one draw."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image_combo = ComboBox(
            label="image", choices=lambda _w: self._choices("image"),
            tooltip="Image layer to deform",
        )
        self._labels_combo = ComboBox(
            label="labels", choices=lambda _w: self._choices("labels"), nullable=True,
            tooltip="Optional labels deformed with the same field (nearest neighbour)",
        )
        self._grid = SpinBox(
            label="grid", value=3, min=2, max=32,
            tooltip="Control points per axis of the coarse random displacement grid",
        )
        self._sigma = FloatSpinBox(
            label="displacement std (px)", value=10.0, min=0.0, max=100.0, step=1.0,
            tooltip="Standard deviation of the random displacement at each grid point",
        )
        self._seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self._random_seed = CheckBox(
            text="random seed", value=True,
            tooltip="Draw a new seed for every sample (the seed used is shown in the box)",
        )
        self._show_field = CheckBox(text="show displacement arrows", value=True)
        self._button = PushButton(text="New sample")
        self._button.tooltip = "Draw one deformation and show it beside the image"
        self._legend = Label(value=LEGEND)
        self._status = Label(value="")
        super().__init__(
            widgets=[
                self._image_combo, self._labels_combo, self._grid, self._sigma, self._seed,
                self._random_seed, self._show_field, self._button, self._legend, self._status,
            ],
        )
        for label in (self._legend, self._status):
            _layers.wrap_label(label)
        self._seed.enabled = not self._random_seed.value
        self._random_seed.changed.connect(lambda v: setattr(self._seed, "enabled", not v))
        self._button.changed.connect(self.new_sample)
        reset = _reset_weakly(self)  # holds the widget weakly: no cycle through Qt's signal
        connect_layer_list(napari_viewer, reset)
        self.native.destroyed.connect(
            lambda *_: connect_layer_list(napari_viewer, reset, disconnect=True))
        self._rng = np.random.default_rng()
        self._pick_default_labels()

    def _choices(self, kind: str) -> list[tuple[str, Any]]:
        """The layers of ``kind`` to deform: not the previews this widget made."""
        return [c for c in layer_choices(self._viewer, kind)
                if _roles.layer_role(c[1]) != _roles.DEFORMED]

    def _pick_default_labels(self) -> None:
        choices = self._choices("labels")
        if choices and self._labels_combo.value is None:
            self._labels_combo.value = choices[0][1]

    # -- public API (also used by tests and the screenshot script) -------------------------
    def new_sample(self, *_: Any) -> dict[str, Any] | None:
        """Draw one deformation and show it; returns the preview layers (None on bad input)."""
        image_layer = self._image_combo.value
        labels_layer = self._labels_combo.value
        if image_layer is None:
            _notify.notify_error("Augmentation preview: choose an image layer first.")
            return None
        if self._random_seed.value:
            self._seed.value = int(self._rng.integers(0, 2**31 - 1))
        try:
            return self._show_sample(image_layer, labels_layer, int(self._seed.value))
        except (ValueError, TypeError) as err:
            _notify.notify_error(f"Augmentation preview: {err}")
            return None

    def _show_sample(self, image_layer: Image, labels_layer: Labels | None, seed: int) -> dict:
        from napari_unet.core.augment import elastic_deform, max_displacement

        image, channel_axis = _layers.image_layer_data(image_layer)
        spatial = _layers.spatial_shape(image, channel_axis)
        labels = None
        if labels_layer is not None:
            labels = np.asarray(labels_layer.data)
            if labels.shape != spatial:
                raise ValueError(
                    f"labels {labels_layer.name!r} have shape {labels.shape} but image "
                    f"{image_layer.name!r} has shape {spatial} (without channels)"
                )
        if len(spatial) < 2:
            raise ValueError(f"image {image_layer.name!r} must be at least 2D, got {spatial}")
        image, channel_axis, labels = self._current_plane(image_layer, image, channel_axis,
                                                          labels)
        result = elastic_deform(
            image, labels, grid=int(self._grid.value), sigma=float(self._sigma.value),
            seed=seed, channel_axis=channel_axis, return_field=True,
        )
        deformed, field = result[0], result[-1]
        width = spatial[-1]
        n_layers = len(self._viewer.layers)
        out: dict[str, Any] = {"image": self._show_image(image_layer, deformed, channel_axis,
                                                         width)}
        if labels is not None and labels_layer is not None:
            out["labels"] = _layers.add_or_update_labels(
                self._viewer, np.asarray(result[1]), f"{labels_layer.name} deformed",
                like=labels_layer, role=_roles.DEFORMED, scale=list(labels_layer.scale)[-2:],
                translate=preview_translate(labels_layer, width, like=image_layer)[-2:],
                opacity=labels_layer.opacity, colormap=labels_layer.colormap,
            )
        field_name = f"{image_layer.name} displacement"
        if self._show_field.value:
            out["field"] = self._show_field_layer(image_layer, field, width)
        elif field_name in self._viewer.layers:
            self._viewer.layers.remove(field_name)
        self._status.value = f"seed {seed}: max |displacement| {max_displacement(field):.1f} px"
        if len(self._viewer.layers) > n_layers:
            self._viewer.reset_view()  # first preview: fit the originals and the preview
        return out

    def _current_plane(self, layer: Image, image: np.ndarray, channel_axis: int | None,
                       labels: np.ndarray | None) -> tuple:
        """The displayed 2D plane of a stack (Z/T leading axes); 2D data passes through."""
        n_lead = image.ndim - (channel_axis is not None) - 2
        if n_lead <= 0:
            return image, channel_axis, labels
        point = list(layer.world_to_data(self._viewer.dims.point))
        if channel_axis is not None and not layer.rgb:
            del point[channel_axis % image.ndim]
            image = np.moveaxis(image, channel_axis, n_lead)
            channel_axis = 0
        spatial = _layers.spatial_shape(image, None if channel_axis is None else n_lead)
        lead = tuple(int(np.clip(round(p), 0, n - 1))
                     for p, n in zip(point[:n_lead], spatial[:n_lead], strict=True))
        image = image[lead]
        if labels is not None:
            labels = labels[lead]
        return image, channel_axis, labels

    def _show_image(self, layer: Image, deformed: np.ndarray, channel_axis: int | None,
                    width: int) -> Image:
        """Show the deformed plane right of ``layer``; channels (non-RGB) go first."""
        name = f"{layer.name} deformed"
        new = name not in self._viewer.layers
        deformed = np.asarray(deformed)
        scale = list(layer.scale)[-2:]
        translate = preview_translate(layer, width)[-2:]
        kwargs: dict[str, Any] = {"contrast_limits": list(layer.contrast_limits)}
        if layer.rgb:
            deformed = deformed.astype(layer.data.dtype, copy=False)
            if not new and _layers.is_kind(self._viewer.layers[name], "image") and getattr(
                self._viewer.layers[name], "rgb", False
            ):
                # add_or_update_image compares ndim with the data's (RGB layers have one less)
                out = self._viewer.layers[name]
                out.data, out.scale, out.translate = deformed, scale, translate
                _roles.set_role(out, _roles.DEFORMED)
                return out
            kwargs["rgb"] = True
        else:
            kwargs["colormap"] = layer.colormap
            if channel_axis is not None:
                deformed = np.moveaxis(deformed, channel_axis, 0)
                kwargs["metadata"] = {"channel_axis": 0}
                scale, translate = [1.0, *scale], [0.0, *translate]
        return _layers.add_or_update_image(self._viewer, deformed, name, like=layer,
                                           role=_roles.DEFORMED, scale=scale,
                                           translate=translate, **kwargs)

    def _show_field_layer(self, layer: Image, field: np.ndarray, width: int) -> Vectors:
        name = f"{layer.name} displacement"
        vectors = field_vectors(field)
        scale = list(layer.scale)[-2:]
        translate = preview_translate(layer, width)[-2:]
        if name in self._viewer.layers and _layers.is_kind(self._viewer.layers[name], "vectors"):
            vlayer = self._viewer.layers[name]
            vlayer.data = vectors
            vlayer.scale, vlayer.translate = scale, translate
            return vlayer
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        return self._viewer.add_vectors(
            vectors, name=name, scale=scale, translate=translate, edge_width=1.2,
            edge_color="gold", vector_style="arrow", length=1.0, opacity=0.8,
            metadata=_roles.role_metadata(_roles.DISPLACEMENT),
        )


def _reset_weakly(widget: Container) -> Callable[..., None]:
    """A plain function calling ``widget.reset_choices()`` while the widget lives."""
    wref = weakref.ref(widget)

    def reset(*_: Any) -> None:
        w = wref()
        if w is not None:
            w.reset_choices()

    return reset
