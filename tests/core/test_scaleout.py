"""Streaming zarr prediction and multi-file prediction equal the in-memory path."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")

from napari_unet.core import scaleout  # noqa: E402
from napari_unet.core.checkpoint import save_model  # noqa: E402
from napari_unet.core.instances import DEFAULT_MIN_SIZE, label_instances  # noqa: E402
from napari_unet.core.io import read_image, write_array  # noqa: E402
from napari_unet.core.model import UNet  # noqa: E402
from napari_unet.core.scaleout.chunks import clean_mask  # noqa: E402
from napari_unet.core.synthetic import make_cells  # noqa: E402
from napari_unet.core.tiling import predict_tiled  # noqa: E402


@pytest.fixture(scope="module")
def model():
    """A tiny untrained network: any deterministic model tests the streaming arithmetic.

    One torch thread: many small tiles run faster without thread hand-offs.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield UNet(depth=2, base_channels=4).eval()
    torch.set_num_threads(threads)


def _zarr(path, image, chunks=64):
    arr = zarr.open_array(
        store=str(path), mode="w", shape=image.shape, chunks=(chunks, chunks), dtype=image.dtype
    )
    arr[:] = image
    return arr


def _reference(model, image, norm_range, threshold, min_distance=None):
    fg = predict_tiled(model, image, norm_range=norm_range, tile_size=128)[1]
    return fg, label_instances(fg, threshold, DEFAULT_MIN_SIZE, min_distance=min_distance)


def _threshold(model, image, norm_range):
    """A threshold that makes ~30 % of the image foreground for the untrained network."""
    fg = predict_tiled(model, image, norm_range=norm_range, tile_size=128)[1]
    return float(np.quantile(fg, 0.7))


def _assert_same_objects(ref: np.ndarray, out: np.ndarray, chunk: int) -> None:
    """Foreground identical; objects away from chunk borders identical up to id permutation.

    An object whose component stays 5 px away from every chunk border lies inside its chunk's
    label window, so it must come out exactly (guaranteed); objects cut by a border are only
    guaranteed to be identical when they fit inside the label halo, so most of them must match.
    """
    from scipy import ndimage as ndi

    np.testing.assert_array_equal(out > 0, ref > 0)
    boxes = ndi.find_objects(ref)
    interior = matched = total = 0
    for rid, box in enumerate(boxes, start=1):
        if box is None:
            continue
        total += 1
        ids = np.unique(out[box][ref[box] == rid])
        same = ids.size == 1 and np.array_equal(out == ids[0], ref == rid)
        matched += same
        (y0, y1), (x0, x1) = ((sl.start - 5, sl.stop + 5) for sl in box)
        inside = y0 // chunk == (y1 - 1) // chunk and x0 // chunk == (x1 - 1) // chunk
        connected = ndi.label(ref[box] == rid, structure=np.ones((3, 3)))[1] == 1
        if inside and connected and y0 >= 0 and x0 >= 0:
            interior += 1
            assert same, f"object {rid} in {box} differs"
    assert interior > 0.3 * total and matched > 0.9 * total


def test_zarr_equals_in_memory_with_bounded_memory(tmp_path, model):
    image, _ = make_cells((1024, 1024), 300, seed=2)
    src = _zarr(tmp_path / "big.zarr", image)
    norm_range = scaleout.estimate_norm_range(src)
    thr = _threshold(model, image, norm_range)
    budget_mb = 3.5  # the float32 image alone is 4 MB
    assert image.nbytes > budget_mb * 2**20
    # warm-up: one-time imports (scipy.sparse, skimage, ...) are not the streaming's memory
    scaleout.predict_zarr(model, image[:64, :64], tmp_path / "warm.zarr", label_halo=16)
    tracemalloc.start()
    info = scaleout.predict_zarr(
        model,
        str(tmp_path / "big.zarr"),
        tmp_path / "out.zarr",
        chunk=512,
        threshold=thr,
        memory_budget_mb=budget_mb,
        probabilities=tmp_path / "prob.zarr",
        tile_size=64,
        batch_size=1,
        label_halo=16,
        device="cpu",
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info["chunk"] < 512 and info["n_chunks"] > 4
    assert peak < image.nbytes, f"peak {peak / 2**20:.2f} MB not below the image size"
    fg, ref = _reference(model, image, norm_range, thr, info["min_distance"])
    prob = zarr.open_array(str(tmp_path / "prob.zarr"), mode="r")[:]
    np.testing.assert_allclose(prob, fg, atol=1e-5)
    out = read_image(tmp_path / "out.zarr")[:]
    assert out.shape == image.shape and out.dtype == np.uint32
    _assert_same_objects(ref, out, info["chunk"])
    # the default marker spacing counts only components that fit in a label window; this
    # untrained network makes blobs larger than a window, so it is below the whole-image value
    whole = _whole_image_min_distance(fg, thr, DEFAULT_MIN_SIZE)
    assert 2.0 <= info["min_distance"] <= whole, (info["min_distance"], whole)


def _whole_image_min_distance(fg: np.ndarray, threshold: float, min_size: int) -> float:
    """label_instances' default marker spacing: half the median inscribed radius of the cells."""
    from scipy import ndimage as ndi

    mask = clean_mask(fg, threshold, min_size)
    comp, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    peaks = ndi.maximum(ndi.distance_transform_edt(mask), comp, index=np.arange(1, n + 1))
    return max(2.0, 0.5 * float(np.median(peaks)))


def test_budget_too_small_and_existing_dest(tmp_path, model):
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="too small"):
        scaleout.predict_zarr(model, image, tmp_path / "o.zarr", memory_budget_mb=0.01)
    (tmp_path / "o.zarr").mkdir()
    with pytest.raises(FileExistsError):
        scaleout.predict_zarr(model, image, tmp_path / "o.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]  # nothing left behind


def test_failure_leaves_nothing(tmp_path, model):
    image = np.zeros((3, 64, 64), np.float32)  # 3 channels for a 1-channel model
    with pytest.raises(ValueError, match="2D image"):
        scaleout.predict_zarr(model, image, tmp_path / "o.zarr")
    calls = []

    def stop(done, total):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scaleout.predict_zarr(
            model, np.ones((128, 128), np.float32), tmp_path / "o.zarr", chunk=32, progress=stop
        )
    assert calls == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_predict_files_equals_per_file(tmp_path, model):
    ckpt = save_model(model, tmp_path / "m.pt")
    folder = tmp_path / "in"
    images = []
    for i, suffix in enumerate([".tif", ".npy", ".png"]):
        img, _ = make_cells((96, 96), 6, seed=10 + i)
        img = (img * 255).astype(np.uint8) if suffix == ".png" else img
        write_array(folder / f"im{i}{suffix}", img)
        images.append(img)
    outs = scaleout.predict_files(
        ckpt,
        sorted(folder.iterdir()),
        tmp_path / "out",
        fmt="png",
        tile_size=128,
        threshold=0.5,
        min_size=5,
    )
    assert [p.name for p in outs] == ["im0.png", "im1.png", "im2.png"]
    for img, out in zip(images, outs, strict=True):
        fg = predict_tiled(model, img, tile_size=128, flips=True)[1]  # the default
        expected = label_instances(fg, 0.5, 5)
        got = read_image(out)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(FileExistsError):
        scaleout.predict_files(ckpt, [folder / "im0.tif"], tmp_path / "out", fmt="png")


@pytest.mark.parametrize("processes", [False])
def test_local_cluster_equals_local(tmp_path, model, processes):
    """A dask LocalCluster (threads: processes=False, to start fast) gives identical outputs."""
    distributed = pytest.importorskip("distributed")
    image, _ = make_cells((256, 192), 40, seed=5)
    _zarr(tmp_path / "big.zarr", image)
    write_array(tmp_path / "small.tif", image[:96, :96])
    ckpt = save_model(model, tmp_path / "m.pt")
    thr = _threshold(model, image, scaleout.estimate_norm_range(image))
    kw = dict(fmt="tif", tile_size=128, chunk=64, threshold=thr, device="cpu")
    inputs = [tmp_path / "big.zarr", tmp_path / "small.tif"]
    local = scaleout.predict_files(ckpt, inputs, tmp_path / "local", **kw)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = scaleout.predict_files(ckpt, inputs, tmp_path / "remote", client=client, **kw)
    for a, b in zip(local, remote, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(np.asarray(read_image(a)), np.asarray(read_image(b)))
    assert int(np.asarray(read_image(local[0])).max()) > 3


def test_pipelined_folder_equals_sequential_and_raises_a_labelling_error(tmp_path, model,
                                                                         monkeypatch):
    folder = tmp_path / "in"
    for i in range(3):
        write_array(folder / f"im{i}.tif", make_cells((96, 96), 6, seed=20 + i)[0])
    inputs = sorted(folder.iterdir())
    kw = dict(tile_size=128, threshold=0.5, min_size=5, device="cpu")
    ticks: list = []
    piped = scaleout.predict_files(model, inputs, tmp_path / "piped",
                                   progress=lambda d, n: ticks.append((d, n)), **kw)
    plain = scaleout.predict_files(model, inputs, tmp_path / "plain", pipeline=False, **kw)
    for a, b in zip(piped, plain, strict=True):
        np.testing.assert_array_equal(read_image(a), read_image(b))
    assert ticks == [(1, 3), (2, 3), (3, 3)]

    calls = {"n": 0}
    real = scaleout.files.write_file_labels

    def fails_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("labelling failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(scaleout.files, "write_file_labels", fails_on_second)
    with pytest.raises(ValueError, match="labelling failed"):
        scaleout.predict_files(model, inputs, tmp_path / "failed", **kw)


def test_a_model_changed_between_calls_predicts_with_its_new_weights(tmp_path):
    """The folded inference copy made for a UNet is remade when its weights change in place
    (an optimizer step, load_state_dict), for folders and for zarr images."""
    torch.manual_seed(1)
    net = UNet(depth=2, base_channels=4).eval()
    image = make_cells((96, 96), 6, seed=30)[0]
    write_array(tmp_path / "im.tif", image)
    _zarr(tmp_path / "im.zarr", image.astype(np.float32), chunks=96)
    kw = dict(tile_size=128, device="cpu", probabilities=True, threshold=0.5, min_size=5)

    def probabilities(tag):
        outs = scaleout.predict_files(net, [tmp_path / "im.tif"], tmp_path / tag, **kw)
        prob = read_image(outs[0].parent / "probabilities" / outs[0].name)
        scaleout.predict_zarr(net, tmp_path / "im.zarr", tmp_path / f"{tag}.zarr",
                              probabilities=tmp_path / f"{tag}_p.zarr", chunk=96,
                              threshold=0.5, min_size=5, tile_size=128, device="cpu")
        return np.asarray(prob), np.asarray(zarr.open_array(str(tmp_path / f"{tag}_p.zarr")))

    before = probabilities("a")
    with torch.no_grad():
        net.head.bias.add_(torch.tensor([2.0, -2.0]))  # pushes every pixel to background
    after = probabilities("b")
    for old, new in zip(before, after, strict=True):
        assert new.mean() < old.mean() - 0.1
    flipped = predict_tiled(net, image, tile_size=128, flips=True)  # files: the default
    np.testing.assert_allclose(after[0], 1.0 - flipped[0], atol=1e-5)
