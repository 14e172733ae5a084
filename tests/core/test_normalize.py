"""Percentile normalization and channel-axis handling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_unet.core.normalize import (
    percentile_normalize,
    percentile_range,
    to_channels_first,
)


def test_percentiles_map_to_zero_and_one():
    img = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    out = percentile_normalize(img, 1.0, 99.0)
    lo, hi = np.percentile(img, [1.0, 99.0])
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, (img - lo) / (hi - lo), atol=1e-6)
    assert out.min() < 0 < 1 < out.max()  # outside the percentiles: not clipped
    assert img.dtype == np.uint16 and img[0, 0] == 0  # input untouched


def test_constant_image_gives_zeros():
    for value in (0.0, 5.0, -3.5):
        out = percentile_normalize(np.full((4, 5), value, np.float32))
        assert np.all(out == 0) and np.isfinite(out).all()
    rgb = np.zeros((6, 6, 2), np.uint8)
    rgb[..., 1] = np.arange(36).reshape(6, 6)
    out = percentile_normalize(rgb, channel_axis=-1)
    assert np.all(out[..., 0] == 0) and out[..., 1].max() > 0.9


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad):
    img = np.ones((5, 5))
    img[2, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        percentile_normalize(img)
    with pytest.raises(ValueError, match="NaN or infinite"):
        percentile_range(img)


def test_bad_arguments():
    with pytest.raises(ValueError, match="low < high"):
        percentile_range(np.ones((3, 3)), 50, 10)
    with pytest.raises(ValueError, match="numeric"):
        percentile_normalize(np.array([["a"]]))
    with pytest.raises(ValueError, match="empty"):
        percentile_range(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="3 channels"):
        percentile_normalize(np.ones((3, 4, 4)), channel_axis=0, norm_range=([0, 1], [1, 2]))
    with pytest.raises(ValueError, match="finite"):
        percentile_normalize(np.ones((3, 3)), norm_range=(0, np.nan))


def test_per_channel_and_norm_range():
    rng = np.random.default_rng(0)
    base = rng.random((20, 30))
    img = np.stack([base, base * 100 + 7, base * 0.01], axis=-1)  # (Y, X, C)
    out = percentile_normalize(img, channel_axis=-1)
    assert out.shape == img.shape
    for c in range(3):
        np.testing.assert_allclose(out[..., c], out[..., 0], atol=1e-4)
    lo, hi = percentile_range(img, channel_axis=2)
    assert lo.shape == hi.shape == (3,)
    np.testing.assert_allclose(lo[1], lo[0] * 100 + 7)
    fixed = percentile_normalize(img, channel_axis=-1, norm_range=(0.0, 2.0))
    np.testing.assert_allclose(fixed, img / 2, rtol=1e-6, atol=1e-6)
    per = percentile_normalize(img, channel_axis=-1, norm_range=([0, 7, 0], [1, 107, 0.01]))
    np.testing.assert_allclose(per[..., 1], base, atol=1e-5)
    lo0, hi0 = percentile_range(base)
    assert lo0.shape == () and float(lo0) == pytest.approx(np.percentile(base, 1.0))


def test_large_images_are_subsampled_accurately():
    rng = np.random.default_rng(1)
    img = rng.gamma(2.0, 100.0, size=(2100, 2100)).astype(np.float32)  # > 4M pixels
    lo, hi = percentile_range(img, 1.0, 99.8)
    exact_lo, exact_hi = np.percentile(img, [1.0, 99.8])
    assert float(lo) == pytest.approx(exact_lo, rel=0.02)
    assert float(hi) == pytest.approx(exact_hi, rel=0.02)


@given(
    scale=st.floats(0.01, 1000.0),
    offset=st.floats(-1000.0, 1000.0),
    seed=st.integers(0, 10),
)
def test_affine_invariance(scale, offset, seed):
    img = np.random.default_rng(seed).random((16, 16))
    a = percentile_normalize(img)
    b = percentile_normalize(img * scale + offset)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_to_channels_first():
    img = np.zeros((4, 5, 6, 3))
    assert to_channels_first(img, -1).shape == (4, 3, 5, 6)
    assert to_channels_first(img, 0).shape == (5, 4, 6, 3)
    assert to_channels_first(img, None) is img
    assert np.shares_memory(to_channels_first(img, 3), img)
    with pytest.raises(ValueError, match="out of range"):
        to_channels_first(img, 4)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        to_channels_first(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="integer"):
        to_channels_first(img, 1.5)  # type: ignore[arg-type]
