"""Sample data appears in napari and follows the label conventions."""

import numpy as np

from napari_unet._sample_data import synthetic_cells, synthetic_cells_sparse


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


def test_sample_opens_in_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "cells")
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]
    assert viewer.layers["cells labels"].data.max() >= 20
