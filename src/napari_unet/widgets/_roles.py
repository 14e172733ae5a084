"""Roles of the layers the plugin creates, kept in layer metadata instead of name suffixes.

Every layer the plugin adds carries ``metadata["napari_unet_role"]`` (one of the names below).
Layer pickers use it to leave the plugin's previews out, so a user's layer that happens to be
named "... probability" is still offered as an image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

#: the metadata key of a layer's role
ROLE_KEY = "napari_unet_role"

PROBABILITY = "probability"  # cell probability of a prediction (Image)
INSTANCES = "instances"  # predicted objects (Labels)
DEFORMED = "deformed"  # augmentation preview of an image or labels layer
DISPLACEMENT = "displacement"  # augmentation preview's displacement arrows (Vectors)
WEIGHTS = "weights"  # loss weight map preview (Image)
OBJECT_SIZE = "object size"  # circle of the expected object diameter (Shapes)

#: derived views of another layer: never offered as an input image
PREVIEW_ROLES = frozenset({PROBABILITY, DEFORMED, WEIGHTS})

_L = TypeVar("_L")


def layer_role(layer: Any) -> str | None:
    """The role the plugin gave ``layer`` when it created it; None for the user's layers."""
    metadata = getattr(layer, "metadata", None)
    role = metadata.get(ROLE_KEY) if isinstance(metadata, Mapping) else None
    return role if isinstance(role, str) else None


def role_metadata(role: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``metadata`` with ``role`` set: the ``metadata=`` of a layer being created."""
    return {**(metadata or {}), ROLE_KEY: role}


def set_role(layer: Any, role: str) -> None:
    """Mark an existing layer the plugin now writes into with ``role``."""
    layer.metadata[ROLE_KEY] = role


def is_preview(layer: Any) -> bool:
    """True for a plugin-made view of another layer (probability, deformed, weights)."""
    return layer_role(layer) in PREVIEW_ROLES


def without_previews(layers: Iterable[_L]) -> list[_L]:
    """``layers`` without the plugin's previews: the candidates for an input image."""
    return [layer for layer in layers if not is_preview(layer)]
