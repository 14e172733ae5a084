"""Shared fixtures of the core tests: a stand-in network."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core import tiling


@pytest.fixture
def identity(monkeypatch):
    """A 'network' whose cell probability is the normalized image itself."""

    def fake(model, image, *, channel_axis=None, normalize=True, **kwargs):
        x = np.asarray(image, dtype=np.float32)
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
        return np.stack([1 - x, x], axis=-3)

    monkeypatch.setattr(tiling, "predict_tiled", fake)
