"""Add-or-update helpers for result layers, and extraction of image data from layers.

Re-running a prediction must refresh the overlay in place (same name) instead of piling up
duplicate layers, and overlays must align with their image (same scale and translate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.core.segment import Annotations

from ._roles import role_metadata, set_role

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Layer


def is_kind(layer: Any, kind: str) -> bool:
    """True when ``layer`` is a napari layer of type ``kind`` ("image", "labels", "vectors"...).

    Uses the public layer classes (``napari.layers.Labels`` ...), not napari's private
    ``Layer._type_string``.
    """
    import napari.layers

    cls = getattr(napari.layers, kind.capitalize(), None)
    return isinstance(cls, type) and isinstance(layer, cls)


def wrap_label(label: Any) -> None:
    """Let a magicgui Label wrap its text to the dock's width instead of widening the dock."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)


def _geometry(like: Layer | None, ndim: int) -> dict[str, Any]:
    """Scale/translate of ``like`` fitted to ``ndim`` axes (spatial axes are last).

    An RGB layer's scale already excludes its colour axis; extra leading axes get scale 1.
    """
    if like is None:
        return {}
    scale = list(like.scale)
    translate = list(like.translate)
    if len(scale) >= ndim:
        return {"scale": scale[-ndim:], "translate": translate[-ndim:]}
    pad = ndim - len(scale)
    return {"scale": [1.0] * pad + scale, "translate": [0.0] * pad + translate}


def _add_or_update(viewer: napari.viewer.Viewer, kind: str, data: np.ndarray, name: str,
                   like: Layer | None, role: str | None = None, **kwargs: Any) -> Layer:
    existing = viewer.layers[name] if name in viewer.layers else None
    rgb = bool(kwargs.get("rgb", getattr(existing, "rgb", False))) and kind == "image"
    ndim = np.ndim(data) - (1 if rgb else 0)  # an RGB layer's colour axis is not a dimension
    geometry = _geometry(like, ndim)
    if existing is not None:
        layer = existing
        if is_kind(layer, kind) and layer.ndim == ndim:
            layer.data = data
            for key, value in {**geometry, **kwargs}.items():
                if key in ("scale", "translate", "opacity", "visible", "blending", "colormap",
                           "contrast_limits"):
                    setattr(layer, key, value)
            if role is not None:
                set_role(layer, role)
            return layer
        viewer.layers.remove(layer)
    if role is not None:  # set before the layer is inserted, for the pickers that refresh then
        kwargs["metadata"] = role_metadata(role, kwargs.get("metadata"))
    add = viewer.add_image if kind == "image" else viewer.add_labels
    return add(data, name=name, **{**geometry, **kwargs})


def add_or_update_image(viewer: napari.viewer.Viewer, data: np.ndarray, name: str,
                        like: Layer | None = None, *, role: str | None = None,
                        **kwargs: Any) -> Image:
    """Show ``data`` as image layer ``name``: replace its data if it exists, else add it.

    ``role``: the layer's ``_roles`` role (``metadata["napari_unet_role"]``).
    """
    return _add_or_update(viewer, "image", data, name, like, role, **kwargs)


def add_or_update_labels(viewer: napari.viewer.Viewer, data: np.ndarray, name: str,
                         like: Layer | None = None, *, role: str | None = None,
                         **kwargs: Any) -> Labels:
    """Show ``data`` as labels layer ``name``: replace its data if it exists, else add it.

    ``role``: the layer's ``_roles`` role (``metadata["napari_unet_role"]``).
    """
    return _add_or_update(viewer, "labels", data, name, like, role, **kwargs)


def image_layer_data(layer: Image) -> tuple[np.ndarray, int | None]:
    """Return ``(array, channel_axis)`` of an image layer.

    RGB(A) layers have their colours on the last axis (``channel_axis=-1``). A multichannel layer
    kept as one layer can declare its channel axis in ``layer.metadata["channel_axis"]``;
    otherwise the image is single-channel (``None``). Multiscale layers use the full resolution.
    """
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    array = np.asarray(data)
    if getattr(layer, "rgb", False):
        return array, -1
    channel_axis = layer.metadata.get("channel_axis") if layer.metadata else None
    if channel_axis is not None:
        channel_axis = int(channel_axis)
        if not -array.ndim <= channel_axis < array.ndim:
            raise ValueError(
                f"layer {layer.name!r}: metadata channel_axis={channel_axis} is out of range "
                f"for data of shape {array.shape}"
            )
    return array, channel_axis


def spatial_shape(array: np.ndarray, channel_axis: int | None) -> tuple[int, ...]:
    """Shape of ``array`` without its channel axis (stack axes kept)."""
    shape = list(array.shape)
    if channel_axis is not None:
        del shape[channel_axis]
    return tuple(shape)


def layer_choices(viewer: napari.viewer.Viewer, kind: str) -> list[tuple[str, Any]]:
    """``(name, layer)`` pairs of the viewer's layers of type ``kind`` ("image", "labels")."""
    return [(layer.name, layer) for layer in viewer.layers if is_kind(layer, kind)]


#: the layer list's events after which layer pickers are refilled (a renamed layer must show
#: its new name and be found by it)
_LIST_EVENTS = ("inserted", "removed", "moved", "reordered", "renamed")


def layer_list_events(viewer: napari.viewer.Viewer) -> tuple[Any, ...]:
    """The layer list's emitters after which the layer pickers are refilled."""
    events = viewer.layers.events
    return tuple(e for e in (getattr(events, n, None) for n in _LIST_EVENTS) if e is not None)


def connect_layer_list(viewer: napari.viewer.Viewer, callback: Any,
                       disconnect: bool = False) -> None:
    """Call ``callback`` whenever layers are added, removed, moved, reordered or renamed."""
    for emitter in layer_list_events(viewer):
        if disconnect:
            emitter.disconnect(callback)
        else:
            emitter.connect(callback)


def plane_annotations(labels_layer: Any, dense: bool) -> Annotations | None:
    """The edits of a 2D annotation layer, which a prediction after a retrain or Live follows;
    None for a stack (the network's own answer)."""
    data = np.asarray(labels_layer.data)
    return Annotations.of(data, dense) if data.ndim == 2 else None
