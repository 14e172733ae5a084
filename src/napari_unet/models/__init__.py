"""Starting models shipped with the package (no download): weights live next to this file.

``PRETRAINED`` maps a short name (``nuclei``, ``phase-cells``, ``em-cells``, ``he-nuclei``) to
a checkpoint file in this package; ``ALIASES`` holds older display names ("nuclei,
fluorescence").  :func:`starting_models` lists them with a one-line description each.  The
provenance of each model (data, license, recipe, validation scores) is in its
``metadata["provenance"]`` and in ``README.md`` here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_unet.core.model import UNet

__all__ = [
    "ALIASES",
    "DEFAULT_PRETRAINED",
    "DESCRIPTIONS",
    "PRETRAINED",
    "load_pretrained",
    "pretrained_path",
    "resolve_name",
    "starting_models",
]

PRETRAINED: dict[str, str] = {
    "nuclei": "nuclei_fluo.pt",
    "phase-cells": "phase_cells.pt",
    "em-cells": "em_cells.pt",
    "he-nuclei": "he_nuclei.pt",
}
DESCRIPTIONS: dict[str, str] = {
    "nuclei": "nuclei in fluorescence images (DSB2018 fluorescence, 1 channel; CC0 data)",
    "phase-cells": "whole cells in phase contrast (Usiigaci T98G, 1 channel, border class; "
    "MIT data)",
    "em-cells": "cell interiors vs membranes in electron microscopy (ssTEM Drosophila VNC, "
    "1 channel; CC BY-NC-SA 3.0 data: non-commercial use)",
    "he-nuclei": "nuclei in H&E / brightfield colour images (DSB2018 colour, RGB; CC0 data)",
}
#: other names accepted for a starting model (older display names)
ALIASES: dict[str, str] = {"nuclei, fluorescence": "nuclei"}
DEFAULT_PRETRAINED = "nuclei"


def resolve_name(name: str) -> str:
    """The short name of the starting model ``name`` (a short name or an alias)."""
    key = ALIASES.get(name, name)
    if key not in PRETRAINED:
        raise ValueError(
            f"unknown starting model {name!r}; available: {', '.join(PRETRAINED)}"
        )
    return key


def pretrained_path(name: str = DEFAULT_PRETRAINED) -> Path:
    """Path of the checkpoint file of the starting model ``name`` (see ``PRETRAINED``)."""
    resource = resources.files(__name__).joinpath(PRETRAINED[resolve_name(name)])
    path = Path(str(resource))
    if not path.is_file():
        raise ValueError(f"the starting model file {path} is missing from the installation")
    return path


def starting_models(installed: bool = True) -> dict[str, str]:
    """Short name -> one-line description of each starting model (``installed``: files present)."""
    folder = Path(str(resources.files(__name__)))
    return {
        name: DESCRIPTIONS[name]
        for name, file in PRETRAINED.items()
        if not installed or (folder / file).is_file()
    }


def load_pretrained(name: str = DEFAULT_PRETRAINED) -> UNet:
    """Load the starting model ``name`` as a :class:`~napari_unet.core.model.UNet` (CPU, eval)."""
    from napari_unet.core.checkpoint import load_model

    model = load_model(pretrained_path(name))
    model.eval()
    return model
