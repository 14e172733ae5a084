"""Sample data appears in napari and follows the label conventions; the real samples ship."""

import numpy as np
import pytest

from napari_unet._sample_data import (
    SAMPLES_DIR,
    dsb2018_nuclei,
    synthetic_cells,
    synthetic_cells_sparse,
    usiigaci_cells,
)


def test_sample_layers_have_matching_shapes_and_conventions():
    (image, _, image_type), (labels, _, labels_type) = synthetic_cells()
    assert (image_type, labels_type) == ("image", "labels")
    assert image.shape == labels.shape == (256, 256)
    assert image.dtype == np.float32 and np.isfinite(image).all()
    assert labels.max() >= 20  # many cells, some touching
    (_, _, _), (sparse, _, _) = synthetic_cells_sparse()
    cells = np.unique(sparse[sparse >= 2])
    assert 1 <= cells.size <= 6
    assert (sparse == 1).sum() > 500  # painted background
    assert (sparse == 0).mean() > 0.5  # most of the image is left unlabeled


@pytest.mark.parametrize(
    ("sample", "shape", "dtype", "n_objects"),
    [(dsb2018_nuclei, (256, 320), np.uint8, 58), (usiigaci_cells, (512, 512), np.uint16, 31)],
)
def test_real_samples_load_with_their_labels(sample, shape, dtype, n_objects):
    (image, image_kw, image_type), (labels, labels_kw, labels_type) = sample()
    assert (image_type, labels_type) == ("image", "labels")
    assert image.shape == labels.shape == shape and image.dtype == dtype
    assert float(image.std()) > 1.0  # a real picture, not a constant
    assert labels.dtype == np.int32  # painting new ids never wraps around
    ids = np.unique(labels)
    assert ids[0] == 0 and ids.size - 1 == n_objects and ids[-1] == n_objects  # ids 1..n
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() >= 10 and 0.05 < (labels > 0).mean() < 0.6
    assert "ground truth" in labels_kw["name"] and "source" in labels_kw["metadata"]
    assert labels_kw["opacity"] < 1  # the image shows through the labels


def test_real_samples_are_small_and_credited():
    files = [p for p in SAMPLES_DIR.iterdir() if p.suffix in (".png", ".tif")]
    assert len(files) == 4
    assert sum(p.stat().st_size for p in files) < 1_000_000
    credits = (SAMPLES_DIR / "README.md").read_text()
    for needed in ("CC0", "Caicedo", "MIT License", "Okinawa Institute", "Tsai"):
        assert needed in credits


def test_sample_opens_in_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "cells")
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]
    assert viewer.layers["cells labels"].data.max() >= 20
    viewer.layers.clear()
    viewer.open_sample("napari-unet", "nuclei_dsb2018")
    assert [layer.name for layer in viewer.layers] == [
        "nuclei (DSB2018)", "nuclei ground truth (complete labels)"]
    viewer.layers.clear()
    viewer.open_sample("napari-unet", "cells_usiigaci")
    labels = viewer.layers["cells ground truth (complete labels)"]
    assert labels.data.shape == viewer.layers["cells (Usiigaci phase contrast)"].data.shape
