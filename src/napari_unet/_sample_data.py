"""Sample data for File > Open Sample: real images shipped in ``samples/``, and synthetic cells.

The real samples (see ``samples/README.md`` for sources, licenses and citations) are what a
biologist judges the tool on; the synthetic ones are generated in code for tests and the demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .core.synthetic import make_cells, sparse_annotation

SAMPLE_SHAPE = (256, 256)
SAMPLE_CELLS = 28
SAMPLES_DIR = Path(__file__).parent / "samples"

LayerData = tuple[Any, dict, str]

#: file names, layer names and credit of the real samples (``samples/README.md`` has the rest)
DSB2018_NUCLEI = {
    "image": "dsb2018_nuclei.png",
    "labels": "dsb2018_nuclei_labels.png",
    "image_name": "nuclei (DSB2018)",
    "labels_name": "nuclei ground truth (complete labels)",
    "source": "2018 Data Science Bowl (BBBC038v1), image 9ebcfaf2322932d4; CC0. "
              "Caicedo et al., Nature Methods 16:1247-1253 (2019)",
}
USIIGACI_CELLS = {
    "image": "usiigaci_cells.tif",
    "labels": "usiigaci_cells_labels.png",
    "image_name": "cells (Usiigaci phase contrast)",
    "labels_name": "cells ground truth (complete labels)",
    "source": "Usiigaci (oist/Usiigaci), set29 crop; MIT, (c) 2018 Okinawa Institute of "
              "Science & Technology. Tsai et al., SoftwareX 9:230-237 (2019)",
}


def synthetic_cells() -> list[LayerData]:
    """A synthetic fluorescence image and its complete instance labels (0 = background)."""
    image, labels = make_cells(SAMPLE_SHAPE, SAMPLE_CELLS, seed=1)
    return [
        (image, {"name": "cells"}, "image"),
        (labels, {"name": "cells labels"}, "labels"),
    ]


def synthetic_cells_sparse() -> list[LayerData]:
    """The same image with what a user paints in a minute: a few cells and some background.

    Sparse convention: 0 = unlabeled, 1 = background, 2, 3, ... = cells.
    """
    image, labels = make_cells(SAMPLE_SHAPE, SAMPLE_CELLS, seed=1)
    annotation = sparse_annotation(labels, n_cells=6, seed=0)
    return [
        (image, {"name": "cells"}, "image"),
        (annotation, {"name": "annotation"}, "labels"),
    ]


def dsb2018_nuclei() -> list[LayerData]:
    """A real fluorescence nuclei image (DSB2018, 256x320, 58 nuclei) and its instance labels."""
    return _real_sample(DSB2018_NUCLEI)


def usiigaci_cells() -> list[LayerData]:
    """Real phase-contrast cells (Usiigaci, 512x512 crop, 31 cells) and their instance labels."""
    return _real_sample(USIIGACI_CELLS)


def _real_sample(spec: dict[str, str]) -> list[LayerData]:
    """Read a shipped image and its labels; labels become int32 so painting new ids never wraps."""
    from .core.io import read_image

    image = np.asarray(read_image(SAMPLES_DIR / spec["image"]))
    labels = np.asarray(read_image(SAMPLES_DIR / spec["labels"])).astype(np.int32)
    metadata = {"source": spec["source"]}
    return [
        (image, {"name": spec["image_name"], "metadata": metadata}, "image"),
        (labels, {"name": spec["labels_name"], "metadata": metadata, "opacity": 0.5}, "labels"),
    ]
