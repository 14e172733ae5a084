"""The plugin's reader and writer round-trip images and labels without loss or overwriting."""

import numpy as np
import pytest

from napari_unet._reader import napari_get_reader
from napari_unet._writer import write_image, write_labels
from napari_unet.core.io import read_image, write_array


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_labels_round_trip(tmp_path, suffix):
    labels = np.zeros((40, 50), dtype=np.int32)
    labels[5:15, 5:15] = 3
    labels[20:30, 20:45] = 700  # needs 16 bits
    [written] = write_labels(str(tmp_path / f"cells_labels{suffix}"), labels, {})
    back = read_image(written)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.uint16
    reader = napari_get_reader(written)
    [(data, meta, layer_type)] = reader(written)
    assert layer_type == "labels"
    np.testing.assert_array_equal(data, labels)


def test_writer_never_overwrites(tmp_path):
    target = tmp_path / "labels.tif"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_labels(str(target), np.ones((4, 4), dtype=np.int32), {})
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]  # no temporary left behind


def test_png_refuses_ids_it_cannot_hold(tmp_path):
    labels = np.array([[0, 70000]], dtype=np.int64)
    with pytest.raises(ValueError, match="16-bit PNG"):
        write_array(tmp_path / "big.png", labels)
    assert not any(tmp_path.iterdir())


def test_image_round_trip_and_reader_choices(tmp_path):
    image = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    [written] = write_image(str(tmp_path / "stack.tif"), image, {})
    [(data, meta, layer_type)] = napari_get_reader(written)(written)
    assert layer_type == "image" and not meta["rgb"]
    np.testing.assert_array_equal(data, image)
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None


def test_reader_opens_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    array = zarr.open(
        str(tmp_path / "big.zarr"), mode="w", shape=(64, 64), chunks=(32, 32), dtype="u2"
    )
    array[:] = 7
    [(data, meta, layer_type)] = napari_get_reader(str(tmp_path / "big.zarr"))(
        str(tmp_path / "big.zarr")
    )
    assert layer_type == "image" and data.shape == (64, 64) and int(data[3, 3]) == 7


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="cannot read"):
        read_image(bad)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_save_layers_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = np.zeros((32, 32), dtype=np.int32)
    labels[4:9, 4:9] = 5
    layer = viewer.add_labels(labels, name="mask")
    path = tmp_path / "mask.png"
    assert layer.save(str(path), plugin="napari-unet")
    np.testing.assert_array_equal(read_image(path), labels)
