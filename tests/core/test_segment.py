"""Prediction at the model's object scale: alignment at any scale, size estimate, colour."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.model import UNet
from napari_unet.core.scale import object_diameter
from napari_unet.core.segment import (
    Annotations,
    estimate_diameter,
    guess_channel_axis,
    label_probability,
    min_size_for,
    model_threshold,
    predict_foreground,
    prepare_image,
    segment,
    to_single_channel,
)
from napari_unet.core.synthetic import disc_grid, make_cells
from napari_unet.core.training import train_to_completion


@pytest.mark.parametrize("diameter", [8.9, 17.9, 40.0, 100.0])
def test_prediction_stays_aligned_with_the_image_at_any_scale(identity, diameter):
    model = UNet(depth=1, base_channels=4)
    yy, xx = np.mgrid[:150, :170]
    image = np.exp(-((yy - 61.3) ** 2 + (xx - 97.8) ** 2) / (2 * 9.0**2)).astype(np.float32)
    fg, factor = predict_foreground(model, image, diameter=diameter)
    assert fg.shape == image.shape
    assert factor == pytest.approx(17.9 / diameter, rel=0.01) or factor == 1.0
    w = fg - fg.min()
    centre = [(yy * w).sum() / w.sum(), (xx * w).sum() / w.sum()]
    assert np.allclose(centre, [61.3, 97.8], atol=0.5)


def test_real_network_output_has_the_image_shape_at_any_scale():
    model = UNet(depth=2, base_channels=4).eval()
    image = np.random.default_rng(0).random((3, 70, 90)).astype(np.float32)  # a stack
    for diameter in (6.0, 50.0):
        fg, factor = predict_foreground(model, image, diameter=diameter)
        assert fg.shape == image.shape and factor != 1.0
        assert np.all((fg >= 0) & (fg <= 1))


def test_size_estimate_finds_large_objects(identity):
    labels = disc_grid((512, 512), radius=22, spacing=70)
    image = (labels > 0).astype(np.float32)
    model = UNet(depth=1, base_channels=4)
    estimate = estimate_diameter(model, image)
    assert estimate == pytest.approx(object_diameter(labels), rel=0.2)
    seg = segment(model, image, diameter="auto")
    assert seg.factor == pytest.approx(17.9 / estimate, rel=0.01)
    assert seg.instances.max() == labels.max()
    assert seg.min_size == min_size_for(seg.factor) > 30


def test_training_on_large_objects_shrinks_them_and_predicts_on_the_original_grid():
    image, labels = make_cells((96, 96), n_cells=5, seed=1)
    big = np.kron(image, np.ones((4, 4))).astype(np.float32)
    big_labels = np.kron(labels, np.ones((4, 4), dtype=labels.dtype))
    model = UNet(depth=1, base_channels=4)
    train_to_completion(model, big, big_labels, steps=2, dense=True, seed=0, patch_size=32)
    scale = model.metadata["scale"]
    assert scale["data_diameter"] == pytest.approx(object_diameter(big_labels), rel=1e-6)
    assert scale["object_diameter"] == pytest.approx(40.0, rel=0.05)
    assert model.metadata["training"]["scale_factor"] < 1.0
    seg = segment(model, big)
    assert seg.probability.shape == big.shape
    assert seg.factor == pytest.approx(model.metadata["training"]["scale_factor"], rel=0.02)


def _he_like(shape=(64, 64)):
    """Purple (hematoxylin) nuclei on pink (eosin) tissue, RGB uint8."""
    labels = disc_grid(shape, radius=8, spacing=30)
    rgb = np.empty((*shape, 3), dtype=np.uint8)
    rgb[...] = (230, 170, 200)
    rgb[labels > 0] = (90, 60, 150)
    return rgb, labels


def test_colour_images_are_converted_for_a_single_channel_model():
    rgb, labels = _he_like()
    h = to_single_channel(np.moveaxis(rgb, -1, 0), "hematoxylin")
    assert h.shape == labels.shape
    assert h[labels > 0].mean() > h[labels == 0].mean()  # nuclei bright, as in fluorescence
    grey = to_single_channel(np.moveaxis(rgb, -1, 0), "grey")
    assert grey[labels > 0].mean() < grey[labels == 0].mean()
    one = UNet(depth=1, base_channels=4)
    arr, axis = prepare_image(rgb, -1, one)
    assert arr.shape == labels.shape and axis is None
    three = UNet(in_channels=3, depth=1, base_channels=4)
    arr, axis = prepare_image(rgb, -1, three)
    assert arr.shape == (3, *labels.shape) and axis == -3
    with pytest.raises(ValueError, match="channel"):
        prepare_image(rgb[..., 0], None, three)
    with pytest.raises(ValueError, match="colour conversion"):
        to_single_channel(np.moveaxis(rgb, -1, 0), "sepia")


def test_guess_channel_axis_reads_rgb_shapes_only():
    assert guess_channel_axis((100, 120, 3)) == -1
    assert guess_channel_axis((100, 120, 4), (100, 120)) == -1
    assert guess_channel_axis((3, 100, 120)) is None
    assert guess_channel_axis((100, 120)) is None
    assert guess_channel_axis((100, 120, 3), (100, 120, 3)) is None


def test_a_single_channel_model_fine_tunes_on_rgb_and_records_the_conversion():
    rgb, labels = _he_like((96, 96))
    model = UNet(depth=1, base_channels=4)
    model.metadata["training"] = {"steps": 1}  # a trained model: fine-tuning
    train_to_completion(model, rgb, labels, steps=2, dense=True, seed=0, patch_size=32,
                        channel_axis=-1)
    assert model.metadata["channel_conversion"] == "hematoxylin"
    seg = segment(model, rgb, channel_axis=-1)
    assert seg.instances.shape == labels.shape


def test_threshold_defaults_to_the_models_calibrated_one():
    model = UNet(depth=1, base_channels=4)
    assert model_threshold(model) == 0.8
    model.metadata["threshold"] = 0.3
    assert model_threshold(model) == 0.3


def test_border_class_marks_where_cells_meet():
    from napari_unet.core.patches import class_target

    labels = np.zeros((12, 12), np.int32)
    labels[2:10, 2:6] = 1
    labels[2:10, 6:10] = 2
    target = class_target(labels, 3)
    assert set(np.unique(target)) == {0, 1, 2}
    assert np.all(target[4:8, 5:7] == 2)  # the shared edge, both sides
    assert np.all(target[4:8, 3] == 1) and target[0, 0] == 0
    assert np.array_equal(class_target(labels, 2), (labels > 0).astype(np.int64))


def test_interior_seeds_split_touching_irregular_cells():
    from napari_unet.core.instances import label_instances, label_with_interior

    # two touching L-shaped cells: one foreground blob, two interiors apart by a border
    truth = np.zeros((60, 60), np.int32)
    truth[10:50, 10:20] = 1
    truth[40:50, 20:45] = 1
    truth[10:40, 20:30] = 2
    truth[10:20, 30:50] = 2
    fg = (truth > 0).astype(np.float32)
    interior = np.zeros_like(fg)
    for k in (1, 2):
        cell = truth == k
        from scipy import ndimage as ndi

        interior[ndi.binary_erosion(cell, iterations=2)] = 1.0
    labels = label_with_interior(fg, interior, 0.5, 20)
    assert labels.max() == 2
    for k in (1, 2):
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        assert counts.max() / counts.sum() > 0.9
    assert label_instances(fg, 0.5, 20, split_touching=False).max() == 1


def test_three_class_network_trains_and_segments():
    image, labels = make_cells((96, 96), n_cells=6, seed=3)
    model = UNet(n_classes=3, depth=1, base_channels=4)
    train_to_completion(model, image, labels, steps=2, dense=True, seed=0, patch_size=32)
    seg = segment(model, image)
    assert seg.interior is not None and seg.interior.shape == image.shape
    assert seg.instances.shape == image.shape


def test_fine_tuning_a_model_without_a_data_scale_keeps_estimating_it():
    """Fine-tuned from the nuclei model (no recorded data size), predictions estimate the size
    per image ("auto"); given a diameter, or from a model that records one, the size is kept."""
    from napari_unet.core.scale import default_diameter
    from napari_unet.models import load_pretrained

    image, labels = make_cells((96, 96), n_cells=5, seed=1)
    start = load_pretrained("nuclei")
    assert default_diameter(start) == "auto"
    train_to_completion(start, image, labels, steps=1, dense=True, seed=0, patch_size=32)
    assert "data_diameter" not in start.metadata["scale"]
    assert default_diameter(start) == "auto"
    given = load_pretrained("nuclei")
    train_to_completion(given, image, labels, steps=1, dense=True, seed=0, patch_size=32,
                        diameter=12.0)
    assert given.metadata["scale"]["data_diameter"] == 12.0
    assert default_diameter(given) is None
    again = load_pretrained("nuclei")
    again.metadata["scale"]["data_diameter"] = 17.9
    train_to_completion(again, image, labels, steps=1, dense=True, seed=0, patch_size=32)
    assert again.metadata["scale"]["data_diameter"] == pytest.approx(object_diameter(labels))
    new = UNet(depth=1, base_channels=4)
    assert default_diameter(new) == "auto"  # untrained: nothing recorded yet
    train_to_completion(new, image, labels, steps=1, dense=True, seed=0, patch_size=32)
    assert default_diameter(new) is None


def test_labels_follow_the_annotations_of_a_sparse_or_dense_layer():
    yy, xx = np.mgrid[:64, :96]
    left, right = (yy - 32) ** 2 + (xx - 30) ** 2 <= 81, (yy - 32) ** 2 + (xx - 47) ** 2 <= 196
    far = (yy - 10) ** 2 + (xx - 85) ** 2 <= 36
    fg = np.where(left | right | far, 0.95, 0.05).astype(np.float32)  # the pair merges
    assert label_probability(fg, 0.5, 30).max() == 2
    sparse = np.zeros(fg.shape, np.int32)
    sparse[left] = 2  # the user's cell
    sparse[far] = 1  # the user removed this object
    out = label_probability(fg, 0.5, 30, annotations=Annotations.of(sparse))
    assert out[far].max() == 0 and out[32, 30] != out[32, 47] and out.max() == 2
    dense = Annotations.of(np.where(left, 1, 0), dense=True)
    assert dense.background is None  # a dense layer's 0 does not hide the network's answer
    out = label_probability(fg, 0.5, 30, annotations=dense)
    assert out[far].max() > 0 and out[32, 30] != out[32, 47]
    with pytest.raises(ValueError, match="2D map"):
        label_probability(fg[None], 0.5, 30, annotations=Annotations.of(sparse))
