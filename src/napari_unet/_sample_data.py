"""Sample data for File > Open Sample: synthetic cells generated in code (no download)."""

from __future__ import annotations

from typing import Any

from .core.synthetic import make_cells, sparse_annotation

SAMPLE_SHAPE = (256, 256)
SAMPLE_CELLS = 28


def synthetic_cells() -> list[tuple[Any, dict, str]]:
    """A synthetic fluorescence image and its complete instance labels (0 = background)."""
    image, labels = make_cells(SAMPLE_SHAPE, SAMPLE_CELLS, seed=1)
    return [
        (image, {"name": "cells"}, "image"),
        (labels, {"name": "cells labels"}, "labels"),
    ]


def synthetic_cells_sparse() -> list[tuple[Any, dict, str]]:
    """The same image with what a user paints in a minute: a few cells and some background.

    Sparse convention: 0 = unlabeled, 1 = background, 2, 3, ... = cells.
    """
    image, labels = make_cells(SAMPLE_SHAPE, SAMPLE_CELLS, seed=1)
    annotation = sparse_annotation(labels, n_cells=6, seed=0)
    return [
        (image, {"name": "cells"}, "image"),
        (annotation, {"name": "annotation"}, "labels"),
    ]
