"""Augmentation preview widget: shows exactly the core deformation, in place, beside the input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.augment import elastic_deform
from napari_unet.core.synthetic import make_cells
from napari_unet.widgets import _notify
from napari_unet.widgets.augment_preview import AugmentPreviewWidget, field_vectors


@pytest.fixture
def cells():
    return make_cells((64, 80), n_cells=6, seed=1)


def _widget(viewer, seed=5):
    widget = AugmentPreviewWidget(viewer)
    widget._random_seed.value = False
    widget._seed.value = seed
    return widget


def test_preview_matches_core_and_updates_in_place(make_napari_viewer, cells):
    image, labels = cells
    viewer = make_napari_viewer()
    img_layer = viewer.add_image(image, name="img", scale=(2.0, 2.0))
    lab_layer = viewer.add_labels(labels, name="lab", scale=(2.0, 2.0))
    widget = _widget(viewer)
    assert widget._image_combo.value is img_layer
    assert widget._labels_combo.value is lab_layer
    widget._grid.value, widget._sigma.value = 4, 6.0

    out = widget.new_sample()
    exp_img, exp_lab, exp_field = elastic_deform(image, labels, grid=4, sigma=6.0, seed=5,
                                                 return_field=True)
    np.testing.assert_allclose(viewer.layers["img deformed"].data, exp_img)
    np.testing.assert_array_equal(viewer.layers["lab deformed"].data, exp_lab)
    vectors = viewer.layers["img displacement"].data
    np.testing.assert_allclose(vectors, field_vectors(exp_field))
    # placed right of the original, same scale, not overlapping it
    preview = out["image"]
    assert preview.scale[-1] == 2.0
    assert preview.translate[-1] > 80 * 2.0
    assert viewer.layers["lab deformed"].translate[-1] == preview.translate[-1]
    assert viewer.layers["img displacement"].translate[-1] == preview.translate[-1]
    # nothing is drawn over the original: every preview layer lies right of it
    right_edge = img_layer.extent.world[1][-1]
    for name in ("img deformed", "lab deformed", "img displacement"):
        assert viewer.layers[name].extent.world[0][-1] > right_edge, name
    assert img_layer.visible and img_layer.opacity == 1

    n_layers = len(viewer.layers)
    widget._random_seed.value = True
    out2 = widget.new_sample()
    assert len(viewer.layers) == n_layers
    assert out2["image"] is preview
    assert not np.allclose(preview.data, exp_img)  # a new random draw
    # the seed used is shown, so the draw can be reproduced
    again = elastic_deform(image, grid=4, sigma=6.0, seed=int(widget._seed.value))
    np.testing.assert_allclose(preview.data, again)


def test_nothing_is_drawn_until_the_button(make_napari_viewer, qtbot, cells):
    image, labels = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    lab = viewer.add_labels(labels, name="lab")
    widget = _widget(viewer)
    lab.paint((10, 10), 1)
    widget._sigma.value = 3.0
    qtbot.wait(100)
    assert [layer.name for layer in viewer.layers] == ["img", "lab"]
    assert "deformation" in widget._legend.value


def test_rgb_and_multichannel(make_napari_viewer):
    rng = np.random.default_rng(0)
    viewer = make_napari_viewer()
    rgb = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    viewer.add_image(rgb, name="rgb", rgb=True)
    widget = _widget(viewer, seed=3)
    widget._labels_combo.value = None
    out = widget.new_sample()
    layer = out["image"]
    assert layer.rgb and layer.data.shape == (40, 50, 3) and layer.data.dtype == np.uint8
    expected = elastic_deform(rgb, seed=3, channel_axis=-1)
    np.testing.assert_array_equal(layer.data, expected.astype(np.uint8))
    assert widget.new_sample()["image"] is layer

    multi = rng.random((2, 40, 50)).astype(np.float32)
    viewer.add_image(multi, name="multi", metadata={"channel_axis": 0})
    widget._image_combo.value = viewer.layers["multi"]
    out = widget.new_sample()
    expected = elastic_deform(multi, seed=3, channel_axis=0)
    np.testing.assert_allclose(out["image"].data, expected)


def test_stack_uses_displayed_slice(make_napari_viewer):
    rng = np.random.default_rng(1)
    stack = rng.random((3, 32, 40)).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 2)
    widget = _widget(viewer, seed=9)
    widget._show_field.value = False
    out = widget.new_sample()
    np.testing.assert_allclose(out["image"].data, elastic_deform(stack[2], seed=9))
    assert "field" not in out and "stack displacement" not in viewer.layers


def test_bad_input_notifies_and_adds_nothing(make_napari_viewer, monkeypatch):
    messages = []
    monkeypatch.setattr(_notify, "notify_error", messages.append)
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert widget.new_sample() is None  # no image layer at all
    viewer.add_image(np.zeros((30, 30), np.float32), name="img")
    viewer.add_labels(np.zeros((20, 20), np.int32), name="lab")
    widget._labels_combo.value = viewer.layers["lab"]
    assert widget.new_sample() is None
    assert len(messages) == 2 and "shape" in messages[1]
    assert [layer.name for layer in viewer.layers] == ["img", "lab"]


def test_field_vectors_subsample():
    field = np.zeros((2, 32, 48), np.float32)
    field[0] = 1.5
    field[1, :, 24:] = -2.0
    vec = field_vectors(field, step=8)
    assert vec.shape == (4 * 6, 2, 2)
    assert np.all(vec[:, 0, 0] % 8 == 4) and np.all(vec[:, 1, 0] == 1.5)
    np.testing.assert_array_equal(vec[:, 1, 1], np.where(vec[:, 0, 1] >= 24, -2.0, 0.0))
    with pytest.raises(ValueError, match="shape"):
        field_vectors(np.zeros((3, 4, 4)))
