"""Overlap-tile prediction: tiled == whole image, shapes, small images, streaming, callbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_unet.core.device import available_devices, free_device_memory, resolve_device
from napari_unet.core.model import UNet
from napari_unet.core.normalize import percentile_normalize
from napari_unet.core.tiling import (
    FLIP_DIMS,
    PredictionCancelled,
    flip_average,
    iter_tiles,
    predict_region,
    predict_tiled,
    reflect_indices,
    tile_shape,
)

BIG = 100_000  # a tile size larger than any test image: one tile covers everything


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread is faster, and far faster when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(seed: int = 0, **kwargs) -> UNet:
    """A tiny network in eval mode with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    cfg = {"depth": 2, "base_channels": 4, "norm": "batch"} | kwargs
    model = UNet(**cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def image(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 1000 + 100).astype(np.float32)


def reference(model: UNet, img: np.ndarray) -> np.ndarray:
    """Whole-image prediction written independently: np.pad(reflect) + one forward pass."""
    x = percentile_normalize(img, 1.0, 99.8)
    ny, nx = img.shape
    ctx = model.context
    if model.padding == "valid":
        h, w = model.valid_input_shape((ny, nx))
        pads = ((ctx, h - ny - ctx), (ctx, w - nx - ctx))
    else:
        m = model.shape_multiple
        h, w = (-(-n // m) * m for n in (ny, nx))
        pads = ((ctx, h - ny + ctx), (ctx, w - nx + ctx))
    padded = np.pad(x, pads, mode="reflect")
    with torch.no_grad():
        logits = model(torch.from_numpy(padded)[None, None])
    probs = torch.softmax(logits, 1)[0].numpy()
    if model.padding == "same":
        probs = probs[:, ctx:, ctx:]
    return probs[:, :ny, :nx]


def small_tile(model: UNet, out: int = 24) -> int:
    """A tile with an output of ``out`` px (rounded up to shape_multiple): forces many tiles."""
    m = model.shape_multiple
    out = -(-out // m) * m
    return (
        model.valid_input_shape((out, out))[0]
        if model.padding == "valid"
        else 2 * model.context + out
    )


@pytest.mark.parametrize("shape", [(37, 53), (150, 97)])
@pytest.mark.parametrize(
    "cfg",
    [{}, {"upsampling": "bilinear"}, {"depth": 3, "norm": None}],
)
def test_valid_tiled_equals_whole_image(shape, cfg):
    model = make_model(**cfg)
    img = image(shape)
    calls = []
    tiled = predict_tiled(
        model,
        img,
        tile_size=small_tile(model),
        device="cpu",
        progress=lambda d, t: calls.append((d, t)),
    )
    whole = predict_tiled(model, img, tile_size=BIG, device="cpu")
    ref = reference(model, img)
    assert tiled.dtype == np.float32 and tiled.shape == (2, *shape)
    assert calls[-1][1] >= 4 and calls[-1][0] == calls[-1][1]  # many tiles
    assert ref[1].std() > 1e-3  # the network output is not trivially constant
    np.testing.assert_allclose(whole, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    np.testing.assert_allclose(tiled.sum(0), 1.0, atol=1e-5)


@pytest.mark.parametrize("cfg", [{}, {"padding": "same", "depth": 3}])
def test_flip_average_is_flip_equivariant(cfg):
    """The flip-averaged prediction of a flipped tile is the flipped prediction; one pass
    of a random network is not."""
    model = make_model(**cfg)
    side = small_tile(model, 40)
    x = torch.from_numpy(percentile_normalize(image((2, 1, side, side)), 1.0, 99.8))
    with torch.no_grad():
        avg = flip_average(model, x)
        plain = torch.softmax(model(x), 1)
        for dims in FLIP_DIMS[1:]:
            flipped = flip_average(model, torch.flip(x, dims))
            torch.testing.assert_close(flipped, torch.flip(avg, dims), atol=1e-5, rtol=0)
            once = torch.softmax(model(torch.flip(x, dims)), 1)
            assert (once - torch.flip(plain, dims)).abs().max() > 1e-3
    torch.testing.assert_close(avg.sum(1), torch.ones_like(avg[:, 0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(37, 53), (150, 97)])
def test_flip_averaged_tiles_equal_the_whole_image(shape):
    """Averaging over flips tile by tile keeps tiled == whole-image, and changes the result."""
    model = make_model()
    img = image(shape)
    tiled = predict_tiled(model, img, tile_size=small_tile(model), device="cpu", flips=True)
    whole = predict_tiled(model, img, tile_size=BIG, device="cpu", flips=True)
    once = predict_tiled(model, img, tile_size=BIG, device="cpu")
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    assert np.abs(whole - once).max() > 1e-3


@pytest.mark.parametrize("cfg", [{}, {"upsampling": "bilinear", "depth": 3}])
def test_same_padding_tiles_keep_centres(cfg):
    model = make_model(padding="same", **cfg)
    img = image((150, 97), seed=1)
    tiled = predict_tiled(model, img, tile_size=small_tile(model), batch_size=3, device="cpu")
    whole = predict_tiled(model, img, tile_size=BIG, device="cpu")
    np.testing.assert_allclose(whole, reference(model, img), atol=1e-5, rtol=0)
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


def test_same_padding_halo_is_needed():
    """Without the halo, tile borders would show: the halo is not a no-op."""
    model = make_model(padding="same")
    img = image((64, 64), seed=2)
    whole = predict_tiled(model, img, tile_size=BIG, device="cpu")
    x = torch.from_numpy(percentile_normalize(img))[None, None]
    with torch.no_grad():  # four 32x32 tiles without overlap
        parts = [
            torch.softmax(model(x[..., a : a + 32, b : b + 32]), 1)
            for a in (0, 32)
            for b in (0, 32)
        ]
    naive = torch.cat([torch.cat(parts[:2], -1), torch.cat(parts[2:], -1)], -2)[0].numpy()
    assert np.abs(naive - whole).max() > 1e-3


@given(
    ny=st.integers(1, 60),
    nx=st.integers(1, 60),
    extra=st.integers(0, 40),
    batch=st.integers(1, 5),
)
def test_tiling_property(ny, nx, extra, batch):
    model = make_model(depth=2, base_channels=2)
    img = image((ny, nx), seed=ny * 100 + nx)
    tiled = predict_tiled(
        model, img, tile_size=small_tile(model, 8) + extra, batch_size=batch, device="cpu"
    )
    whole = predict_tiled(model, img, tile_size=BIG, device="cpu")
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


def test_tiles_cover_the_image_exactly_once():
    model = make_model()
    covered = np.zeros((150, 97), int)
    for (iy, ix), dst, src in iter_tiles(model, (150, 97), tile_size=small_tile(model)):
        covered[dst] += 1
        assert iy % model.shape_multiple == (-model.context) % model.shape_multiple
        assert src[0].stop - src[0].start == dst[0].stop - dst[0].start
        assert ix + model.context + src[1].start == dst[1].start  # output sits context px in
    assert (covered == 1).all()
    assert tile_shape(model, (150, 97), tile_size=BIG) == model.valid_input_shape((150, 97))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 7), (20, 3)])
def test_images_smaller_than_a_tile(shape):
    model = make_model()
    img = image(shape)
    out = predict_tiled(model, img, device="cpu")
    assert out.shape == (2, *shape) and np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    # a constant image normalizes to zeros, whatever its value
    flat = predict_tiled(model, np.full(shape, 7.0), device="cpu")
    np.testing.assert_allclose(flat, predict_tiled(model, np.zeros(shape), device="cpu"), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(-30, 30), st.integers(1, 40))
def test_reflect_indices_match_numpy_pad(size, start, length):
    """Any window, repeated mirroring included (tiling and the training patch sampler)."""
    pad = 100
    padded = np.pad(np.arange(size), pad, mode="reflect" if size > 1 else "edge")
    np.testing.assert_array_equal(
        reflect_indices(start, length, size), padded[start + pad : start + pad + length]
    )


def test_stack_is_predicted_slice_by_slice():
    model = make_model()
    stack = image((3, 40, 30))
    stack[1] *= 5  # different intensity scale per slice: normalized per slice
    out = predict_tiled(model, stack, device="cpu", tile_size=small_tile(model))
    assert out.shape == (3, 2, 40, 30)
    for z in range(3):
        np.testing.assert_allclose(out[z], predict_tiled(model, stack[z], device="cpu"), atol=1e-5)
    np.testing.assert_allclose(out[1], out[1], atol=0)


def test_channels_layouts():
    model = make_model(in_channels=2)
    img = image((2, 33, 41))
    first = predict_tiled(model, img, device="cpu")
    last = predict_tiled(model, np.moveaxis(img, 0, -1), channel_axis=-1, device="cpu")
    assert first.shape == (2, 33, 41)
    np.testing.assert_allclose(first, last, atol=1e-6)
    stack = predict_tiled(model, np.stack([img, img[:, ::-1]]), device="cpu")
    assert stack.shape == (2, 2, 33, 41)
    np.testing.assert_allclose(stack[0], first, atol=1e-5)
    with pytest.raises(ValueError, match="model expects 2 channels"):
        predict_tiled(model, image((3, 33, 41)), device="cpu")
    with pytest.raises(ValueError, match="channel_axis=-1"):
        predict_tiled(model, image((33, 41, 2)), device="cpu")
    with pytest.raises(ValueError, match="model expects 2 channels, image has 3"):
        predict_tiled(model, image((33, 41, 3)), channel_axis=-1, device="cpu")


def test_channel_normalization_is_per_channel():
    model = make_model(in_channels=2)
    img = image((2, 30, 30))
    scaled = img * np.array([1.0, 50.0], dtype=np.float32)[:, None, None] + 3
    np.testing.assert_allclose(
        predict_tiled(model, img, device="cpu"),
        predict_tiled(model, scaled, device="cpu"),
        atol=1e-4,
    )


def test_rgb_is_ambiguous_for_a_one_channel_model():
    model = make_model()
    rgb = (image((30, 40, 3)) % 255).astype(np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        predict_tiled(model, rgb, device="cpu")
    grey_model = make_model(in_channels=3)
    assert predict_tiled(grey_model, rgb, channel_axis=-1, device="cpu").shape == (2, 30, 40)


def test_bad_inputs():
    model = make_model()
    bad = image((30, 30))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(model, bad, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(model, bad, norm_range=(0, 1), device="cpu")
    with pytest.raises(ValueError, match="tile_size must be at least 44"):
        predict_tiled(model, image((100, 100)), tile_size=43, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        predict_tiled(model, image((10, 10)), batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        predict_tiled(model, np.zeros(5), device="cpu")
    with pytest.raises(ValueError, match="not available|unknown device"):
        predict_tiled(model, image((10, 10)), device="tpu")


def test_normalization_options():
    model = make_model()
    img = image((50, 60))
    base = predict_tiled(model, img, device="cpu")
    # affine intensity changes do not matter with percentile normalization
    np.testing.assert_allclose(predict_tiled(model, img * 3 + 7, device="cpu"), base, atol=1e-4)
    lo, hi = 200.0, 900.0
    with_range = predict_tiled(model, img, norm_range=(lo, hi), device="cpu")
    manual = predict_tiled(model, (img - lo) / (hi - lo), normalize=False, device="cpu")
    np.testing.assert_allclose(with_range, manual, atol=1e-5)
    assert np.abs(with_range - base).max() > 1e-4
    model.metadata["normalization"] = {"low": 10.0, "high": 90.0}
    lo, hi = np.percentile(img, [10.0, 90.0])
    np.testing.assert_allclose(
        predict_tiled(model, img, device="cpu"),
        predict_tiled(model, img, norm_range=(lo, hi), device="cpu"),
        atol=1e-5,
    )


def test_progress_and_cancel():
    model = make_model()
    img = image((120, 120))
    calls = []
    predict_tiled(model, img, tile_size=small_tile(model), batch_size=2, device="cpu",
                  progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    total = calls[0][1]
    assert [d for d, _ in calls] == list(range(2, total + 1, 2)) + ([total] if total % 2 else [])
    seen = []

    def cancel() -> bool:
        return len(seen) >= 1

    with pytest.raises(PredictionCancelled):
        predict_tiled(model, img, tile_size=small_tile(model), batch_size=2, device="cpu",
                      progress=lambda d, t: seen.append(d), cancel=cancel)  # fmt: skip
    assert seen == [2]
    assert issubclass(PredictionCancelled, RuntimeError)


def test_model_state_is_restored():
    model = make_model().train()
    predict_tiled(model, image((20, 20)), device="cpu")
    assert model.training
    with pytest.raises(PredictionCancelled):
        predict_tiled(model, image((20, 20)), device="cpu", cancel=lambda: True)
    assert model.training and next(model.parameters()).device.type == "cpu"
    # batch-norm statistics were not updated by prediction
    before = model.down[0][1].running_mean.clone()
    predict_tiled(model, image((20, 20)), device="cpu")
    torch.testing.assert_close(model.down[0][1].running_mean, before)


class LazyArray:
    """An array-like that records the size of every read (like a zarr array)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.reads: list[int] = []

    def __getitem__(self, key):
        block = self.data[key]
        self.reads.append(block.size)
        return block


def test_region_prediction_streams_and_matches_whole():
    model = make_model()
    img = image((160, 120))
    nr = (150.0, 1000.0)
    whole = predict_tiled(model, img, norm_range=nr, tile_size=small_tile(model, 32), device="cpu")
    lazy = LazyArray(img)
    tile = small_tile(model) + 16
    part = predict_region(
        model, lazy, (slice(37, 151), (5, 77)), norm_range=nr, tile_size=tile, device="cpu"
    )
    np.testing.assert_allclose(part, whole[:, 37:151, 5:77], atol=1e-5)
    assert max(lazy.reads) <= tile * tile  # never more than one tile at a time
    lazy.reads.clear()
    out = np.zeros((2, 160, 120), np.float32)
    predict_tiled_lazy = predict_region(
        model, lazy, norm_range=nr, tile_size=tile, device="cpu", out=out
    )
    assert predict_tiled_lazy is out and max(lazy.reads) <= tile * tile
    np.testing.assert_allclose(out, whole, atol=1e-5)
    with pytest.raises(ValueError, match="region"):
        predict_region(model, img, (slice(10, 5), slice(0, 5)), device="cpu")
    with pytest.raises(ValueError, match="out has shape"):
        predict_region(model, img, None, device="cpu", out=np.zeros((2, 3, 3), np.float32))


def test_devices():
    assert "cpu" in available_devices()
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in available_devices()
    assert resolve_device(torch.device("cpu")).type == "cpu"
    for absent in {"cuda", "mps"} - set(available_devices()):
        with pytest.raises(ValueError, match="available: cpu"):
            resolve_device(absent)
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError):
        resolve_device(3)  # type: ignore[arg-type]
    free_device_memory("cpu")
    free_device_memory(None)
