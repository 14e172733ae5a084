"""Starting models shipped with the package (no download): weights live next to this file.

``PRETRAINED`` maps a display name to a checkpoint file in this package; the provenance of each
model (data, license, recipe, validation scores) is in its ``metadata["provenance"]`` and in
``README.md`` here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_unet.core.model import UNet

__all__ = ["DEFAULT_PRETRAINED", "PRETRAINED", "load_pretrained", "pretrained_path"]

PRETRAINED: dict[str, str] = {"nuclei, fluorescence": "nuclei_fluo.pt"}
DEFAULT_PRETRAINED = "nuclei, fluorescence"


def pretrained_path(name: str = DEFAULT_PRETRAINED) -> Path:
    """Path of the checkpoint file of the starting model ``name`` (one of ``PRETRAINED``)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown starting model {name!r}; available: {sorted(PRETRAINED)}")
    resource = resources.files(__name__).joinpath(PRETRAINED[name])
    path = Path(str(resource))
    if not path.is_file():
        raise ValueError(f"the starting model file {path} is missing from the installation")
    return path


def load_pretrained(name: str = DEFAULT_PRETRAINED) -> UNet:
    """Load the starting model ``name`` as a :class:`~napari_unet.core.model.UNet` (CPU, eval)."""
    from napari_unet.core.checkpoint import load_model

    model = load_model(pretrained_path(name))
    model.eval()
    return model
