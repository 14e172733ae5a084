import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_unet.core.augment import (
    elastic_deform,
    field_from_control,
    max_displacement,
    random_augment,
    random_displacement_field,
)


def _smooth_image(shape=(48, 56), seed=0):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 2).astype(np.float32)


def _blob_labels(shape=(48, 56), seed=0, dtype=np.int32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, dtype=dtype)
    for i in range(1, 6):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 64] = i * 7
    return lab


def test_sigma_zero_is_identity():
    img, lab = _smooth_image(), _blob_labels()
    out, out_lab, field = elastic_deform(img, lab, sigma=0.0, seed=3, return_field=True)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, img, atol=1e-5)
    np.testing.assert_array_equal(out_lab, lab)
    assert field.shape == (2, 48, 56)
    assert not field.any()


def test_same_seed_same_output_and_different_seed_differs():
    img, lab = _smooth_image(), _blob_labels()
    a, la = elastic_deform(img, lab, sigma=6.0, seed=11)
    b, lb = elastic_deform(img, lab, sigma=6.0, seed=11)
    c = elastic_deform(img, sigma=6.0, seed=12)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert np.abs(a - c).max() > 1e-3
    # an explicit Generator is equivalent to the seed
    d = elastic_deform(img, sigma=6.0, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a, d)


def test_constant_field_is_an_integer_shift():
    # equal control displacements -> the interpolated field is constant: a pure translation
    control = np.empty((2, 3, 3))
    control[0], control[1] = 3.0, -2.0
    field = field_from_control((40, 50), control)
    np.testing.assert_allclose(field[0], 3.0, atol=1e-5)
    np.testing.assert_allclose(field[1], -2.0, atol=1e-5)


def test_field_passes_through_control_points():
    rng = np.random.default_rng(5)
    control = rng.normal(0, 4, (2, 3, 3))
    # control points sit at rows 0, 20, 40 and columns 0, 30, 60
    field = field_from_control((41, 61), control)
    np.testing.assert_allclose(field[:, ::20, ::30], control, atol=1e-4)


def test_image_and_labels_use_the_same_field():
    lab = _blob_labels()
    # deforming the label image itself with order 0 as "image" must give the deformed labels
    img_out, lab_out = elastic_deform(lab.astype(np.float32), lab, sigma=8.0, seed=2, order=0)
    np.testing.assert_array_equal(img_out.astype(np.int32), lab_out)
    assert (lab_out != lab).any()


def test_matches_elasticdeform_package():
    elasticdeform = pytest.importorskip("elasticdeform")
    img, lab = _smooth_image(), _blob_labels()
    rng = np.random.default_rng(0)
    _, _, field = elastic_deform(img, lab, sigma=5.0, rng=rng, return_field=True)
    control = np.random.default_rng(0).standard_normal((2, 3, 3)) * 5.0
    ours_img, ours_lab = elastic_deform(
        img, lab, sigma=5.0, rng=np.random.default_rng(0), mode="mirror"
    )
    ref_img, ref_lab = elasticdeform.deform_grid([img, lab], control, order=[3, 0], mode="mirror")
    np.testing.assert_allclose(ours_img, ref_img, atol=1e-4)
    assert np.mean(ours_lab != ref_lab) < 1e-3  # only possible rounding ties differ
    np.testing.assert_allclose(field, field_from_control(img.shape, control), atol=1e-5)


def test_multichannel_every_channel_gets_the_same_field():
    img = _smooth_image()
    stacked = np.stack([img, 2 * img, img + 1], axis=-1)  # (Y, X, C)
    out = elastic_deform(stacked, sigma=5.0, seed=4, channel_axis=-1)
    single = elastic_deform(img, sigma=5.0, seed=4)
    assert out.shape == stacked.shape
    np.testing.assert_allclose(out[..., 0], single, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], 2 * single, atol=1e-4)
    np.testing.assert_allclose(out[..., 2], single + 1, atol=1e-4)


def test_field_statistics_follow_sigma():
    fields = np.stack(
        [random_displacement_field((9, 9), 3, 4.0, np.random.default_rng(i)) for i in range(300)]
    )
    corner = fields[:, :, 0, 0]  # control values themselves: N(0, 4^2)
    assert abs(corner.std() - 4.0) < 0.4
    assert abs(corner.mean()) < 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": np.zeros((2, 8, 8))},  # stack without channel_axis
        {"image": np.zeros((8, 8)), "labels": np.zeros((8, 9))},
        {"image": np.zeros((8, 8)), "sigma": -1.0},
        {"image": np.zeros((8, 8)), "grid": 0},
        {"image": np.zeros((8, 8)), "seed": 1, "rng": np.random.default_rng(1)},
        {"image": np.zeros((8, 8)), "mode": "wrap-around"},
        {"image": np.zeros((8, 8), dtype=bool)},
    ],
)
def test_bad_input_raises(kwargs):
    with pytest.raises(ValueError):
        elastic_deform(**kwargs)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    sigma=st.floats(0.0, 15.0),
    grid=st.integers(2, 5),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64]),
    mode=st.sampled_from(["reflect", "mirror", "nearest", "constant"]),
    seed=st.integers(0, 2**31),
)
def test_labels_keep_dtype_and_values(h, w, sigma, grid, dtype, mode, seed):
    rng = np.random.default_rng(seed)
    lab = rng.choice(np.array([0, 3, 9, 200], dtype=dtype), size=(h, w))
    img = rng.random((h, w)).astype(np.float32)
    out, out_lab = elastic_deform(img, lab, grid=grid, sigma=sigma, seed=seed, mode=mode)
    assert out.shape == (h, w) and out_lab.shape == (h, w)
    assert out_lab.dtype == lab.dtype
    assert set(np.unique(out_lab)) <= set(np.unique(lab)) | ({0} if mode == "constant" else set())
    assert np.all(np.isfinite(out))


def test_random_augment_keeps_image_and_labels_aligned():
    lab = _blob_labels((32, 32))
    img = np.stack([lab.astype(np.float32), np.ones((32, 32), np.float32)])
    for seed in range(8):
        rng = np.random.default_rng(seed)
        out, out_lab, extra = random_augment(
            img, lab, rng, elastic=False, intensity=0.0, weights=lab.copy()
        )
        np.testing.assert_array_equal(out[0], out_lab)
        np.testing.assert_array_equal(extra, out_lab)
        assert out.dtype == np.float32 and out.shape == (2, 32, 32)


def test_random_augment_elastic_moves_extras_with_labels():
    lab = _blob_labels((40, 40))
    img = _smooth_image((40, 40))[None]
    mask = (lab > 0).astype(np.uint8)
    out, out_lab, (m1, m2) = random_augment(
        img, lab, np.random.default_rng(1), elastic=True, sigma=8.0, weights=[lab, mask]
    )
    np.testing.assert_array_equal(m1, out_lab)
    np.testing.assert_array_equal(m2, (out_lab > 0).astype(np.uint8))
    assert set(np.unique(out_lab)) <= set(np.unique(lab))


def test_random_augment_is_seedable_and_jitters_intensity():
    img = _smooth_image((24, 24))[None]
    lab = _blob_labels((24, 24))
    a = random_augment(img, lab, np.random.default_rng(7), intensity=0.2)
    b = random_augment(img, lab, np.random.default_rng(7), intensity=0.2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # no geometric change, only intensity: a monotone map of the original values
    out, out_lab = random_augment(
        img,
        lab,
        np.random.default_rng(3),
        elastic=False,
        flips=False,
        rotations=False,
        intensity=0.2,
    )
    np.testing.assert_array_equal(out_lab, lab)
    assert not np.allclose(out, img)
    order = np.argsort(img.ravel())
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6) or np.all(
        np.diff(out.ravel()[order]) <= 1e-6
    )


def test_random_augment_non_square_keeps_shape():
    img = np.zeros((1, 16, 24), np.float32)
    lab = np.zeros((16, 24), np.int32)
    for seed in range(6):
        out, out_lab = random_augment(img, lab, np.random.default_rng(seed))
        assert out.shape == (1, 16, 24) and out_lab.shape == (16, 24)


def test_random_augment_validates():
    with pytest.raises(ValueError):
        random_augment(np.zeros((8, 8)), np.zeros((8, 8)), np.random.default_rng(0))
    with pytest.raises(ValueError):
        random_augment(np.zeros((1, 8, 8)), np.zeros((8, 7)), np.random.default_rng(0))
    with pytest.raises(ValueError):
        random_augment(np.zeros((1, 8, 8)), np.zeros((8, 8)), np.random.default_rng(0), elastic=1.5)


def test_max_displacement_is_the_longest_vector():
    field = np.zeros((2, 4, 5), np.float32)
    field[:, 1, 2] = (3.0, 4.0)
    field[:, 3, 0] = (-1.0, 1.0)
    assert max_displacement(field) == pytest.approx(5.0)
    assert max_displacement(np.zeros((2, 0, 0))) == 0.0
