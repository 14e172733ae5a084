"""Object scale: diameters, resampling that keeps alignment, and the model's recorded scale."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_unet.core.model import UNet
from napari_unet.core.scale import (
    DEFAULT_DIAMETER,
    MAX_FACTOR,
    TRAIN_DIAMETER,
    data_diameter,
    diameter_circle,
    model_diameter,
    object_diameter,
    resample,
    scale_factor,
    scaled_shape,
    training_factor,
)


def _disc_labels(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return out


def _centroid(weights: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[: weights.shape[0], : weights.shape[1]]
    total = weights.sum()
    return np.array([(yy * weights).sum() / total, (xx * weights).sum() / total])


def test_object_diameter_of_discs_is_their_diameter():
    labels = _disc_labels((200, 200), [(40, 40), (120, 60), (150, 150)], radius=15)
    assert object_diameter(labels) == pytest.approx(30.0, rel=0.03)
    assert object_diameter(np.zeros((10, 10), int)) is None


@settings(max_examples=25, deadline=None)
@given(
    factor=st.floats(0.2, 4.0),
    cy=st.floats(20, 60),
    cx=st.floats(20, 80),
    height=st.integers(80, 120),
)
def test_resample_and_back_keeps_shape_and_position(factor, cy, cx, height):
    yy, xx = np.mgrid[:height, :100]
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2)).astype(np.float32)
    small = resample(blob, scaled_shape(blob.shape, factor))
    back = resample(small, blob.shape)
    assert back.shape == blob.shape
    assert np.allclose(_centroid(back), [cy, cx], atol=0.5)


def test_resample_labels_nearest_keeps_ids_and_leading_axes():
    labels = np.stack([_disc_labels((60, 60), [(30, 30)], 10)] * 2)
    out = resample(labels, (120, 120), order=0)
    assert out.shape == (2, 120, 120)
    assert out.dtype == labels.dtype
    assert set(np.unique(out)) == {0, 1}


def test_scale_factor_from_metadata_and_given_diameter():
    model = UNet(depth=1, base_channels=4)
    assert model_diameter(model) == DEFAULT_DIAMETER
    assert scale_factor(model, None) == 1.0  # nothing recorded: as it is
    model.metadata["scale"] = {"object_diameter": 20.0, "data_diameter": 50.0}
    assert data_diameter(model) == 50.0
    assert scale_factor(model, None) == pytest.approx(0.4)
    assert scale_factor(model, 10.0) == pytest.approx(2.0)
    assert scale_factor(model, 20.5) == 1.0  # within tolerance of 1: no resampling
    assert scale_factor(model, 1e6) == pytest.approx(1 / MAX_FACTOR)
    with pytest.raises(ValueError, match="diameter"):
        scale_factor(model, -3.0)


def test_training_factor_shrinks_large_objects_only_for_new_networks():
    assert training_factor(20.0, None) == 1.0
    assert training_factor(4 * TRAIN_DIAMETER, None) == pytest.approx(0.25)
    assert training_factor(9.0, 18.0) == pytest.approx(2.0)  # fine-tune: to the model's size
    assert training_factor(None, 18.0) == 1.0


def test_diameter_circle_has_the_diameter():
    (cy, cx), (ry, rx) = diameter_circle((300, 400), 40.0)
    assert ry == rx == 20.0
    assert cy - ry >= 0 and cx - rx >= 0
