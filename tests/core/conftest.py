"""Shared fixtures of the core tests: a stand-in network, cells with debris."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core import tiling
from napari_unet.core.synthetic import make_cells


@pytest.fixture
def identity(monkeypatch):
    """A 'network' whose cell probability is the normalized image itself."""

    def fake(model, image, *, channel_axis=None, normalize=True, **kwargs):
        x = np.asarray(image, dtype=np.float32)
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
        return np.stack([1 - x, x], axis=-3)

    monkeypatch.setattr(tiling, "predict_tiled", fake)


@pytest.fixture
def debris() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic cells and a bright sharp-edged square (debris) away from them: (image, square)."""
    image, truth = make_cells((128, 128), n_cells=6, seed=1, touching=0.0)
    image = image.astype(np.float32)
    square = np.zeros(truth.shape, bool)
    free = [(y, x) for y in range(0, 110, 4) for x in range(0, 110, 4)
            if not truth[y:y + 14, x:x + 14].any()]
    y, x = free[0]
    square[y + 2:y + 12, x + 2:x + 12] = True
    image[square] = image.max()
    return image, square
