"""Synthetic cells are reproducible, varied, and their annotation follows the sparse convention."""

import numpy as np
from scipy import ndimage as ndi

from napari_unet.core.synthetic import make_cells, sparse_annotation


def test_make_cells_is_seeded_and_labels_match_bright_regions():
    image, labels = make_cells((128, 160), 12, seed=3)
    again, labels_again = make_cells((128, 160), 12, seed=3)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert image.shape == labels.shape == (128, 160)
    assert labels.max() == 12
    assert image[labels > 0].mean() > 2.5 * image[labels == 0].mean()
    touching = ndi.binary_dilation(labels == 1) & (labels > 1)
    assert labels.dtype == np.int32 and touching.dtype == bool


def test_sparse_annotation_keeps_few_cells_and_paints_background_off_cells():
    _, labels = make_cells((128, 128), 10, seed=0)
    sparse = sparse_annotation(labels, n_cells=3, seed=1)
    cells = np.unique(sparse[sparse >= 2])
    np.testing.assert_array_equal(cells, [2, 3, 4])
    assert not (labels[sparse == 1] > 0).any()  # background never painted on a cell
    for cell in cells:
        original = np.unique(labels[sparse == cell])
        assert original.size == 1 and original[0] > 0
