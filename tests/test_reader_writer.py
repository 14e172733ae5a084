"""The plugin's reader claims only zarr folders; its writers round-trip labels and overwrite
what napari's Save dialog confirmed, atomically."""

import numpy as np
import pytest

from napari_unet._reader import napari_get_reader
from napari_unet._writer import write_image, write_labels
from napari_unet.core.io import read_image, write_array


def _compatible_readers(path):
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    return {reader.plugin_name for reader in pm.iter_compatible_readers([str(path)])}


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_labels_round_trip(tmp_path, suffix):
    labels = np.zeros((40, 50), dtype=np.int32)
    labels[5:15, 5:15] = 3
    labels[20:30, 20:45] = 700  # needs 16 bits
    [written] = write_labels(str(tmp_path / f"cells_labels{suffix}"), labels, {})
    back = read_image(written)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.uint16


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_writing_labels_twice_overwrites_with_the_second_data(tmp_path, suffix):
    target = tmp_path / f"labels{suffix}"
    first = np.ones((6, 7), dtype=np.int32)
    second = np.zeros((6, 7), dtype=np.int32)
    second[2:4, 1:5] = 300
    write_labels(str(target), first, {})
    [written] = write_labels(str(target), second, {})  # the Save dialog confirmed the overwrite
    np.testing.assert_array_equal(read_image(written), second)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left behind


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "labels.png"
    write_labels(str(target), np.full((4, 4), 2, dtype=np.int32), {})
    before = target.read_bytes()
    with pytest.raises(ValueError, match="16-bit PNG"):
        write_labels(str(target), np.full((4, 4), 70000, dtype=np.int64), {})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.png"]


def test_png_refuses_ids_it_cannot_hold(tmp_path):
    labels = np.array([[0, 70000]], dtype=np.int64)
    with pytest.raises(ValueError, match="16-bit PNG"):
        write_array(tmp_path / "big.png", labels)
    assert not any(tmp_path.iterdir())


def test_image_writer_writes_numpy(tmp_path):
    image = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    [written] = write_image(str(tmp_path / "stack"), image, {})
    assert written.endswith(".npy")
    np.testing.assert_array_equal(read_image(written), image)


@pytest.mark.parametrize("name", ["cells.png", "cells.tif", "cells.jpg", "cells.npy", "a.txt"])
def test_reader_leaves_files_to_napari(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    assert napari_get_reader(str(path)) is None
    assert "napari-unet" not in _compatible_readers(path)  # napari opens it without asking


def test_reader_opens_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "big.zarr"
    array = zarr.open(str(path), mode="w", shape=(64, 64), chunks=(32, 32), dtype="u2")
    array[:] = 7
    assert "napari-unet" in _compatible_readers(path)
    [(data, meta, layer_type)] = napari_get_reader(str(path))(str(path))
    assert layer_type == "image" and data.shape == (64, 64) and int(data[3, 3]) == 7
    assert not isinstance(data, np.ndarray)  # lazy: never loaded whole

    labels_path = tmp_path / "cells_labels.zarr"
    labels = zarr.open(str(labels_path), mode="w", shape=(8, 8), chunks=(8, 8), dtype="u2")
    labels[:] = 3
    [(_, meta, layer_type)] = napari_get_reader(str(labels_path))(str(labels_path))
    assert layer_type == "labels" and meta["name"] == "cells_labels"


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
    assert read_image(path).dtype == np.uint8  # the smallest type that holds the ids
    layer.data = labels * 2
    assert layer.save(str(path), plugin="napari-unet")  # as after the dialog's "Replace?"
    np.testing.assert_array_equal(read_image(path), labels * 2)
    # a name napari's own labels writer cannot write goes to this plugin without asking
    assert layer.save(str(tmp_path / "mask.npy"))
    np.testing.assert_array_equal(read_image(tmp_path / "mask.npy"), labels * 2)
