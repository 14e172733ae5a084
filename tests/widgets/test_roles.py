"""Layer roles: the plugin's layers are recognised by metadata, never by their names."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.widgets import _notify, _roles
from napari_unet.widgets.annotate import AnnotateWidget
from napari_unet.widgets.augment_preview import AugmentPreviewWidget
from napari_unet.widgets.predict import PredictWidget, show_prediction
from napari_unet.widgets.train import TrainWidget
from napari_unet.widgets.weightmap_preview import WeightMapWidget


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    for name in ("notify_error", "notify_warning", "notify_info"):
        monkeypatch.setattr(_notify, name, lambda msg: None)


def _items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def _names(choices) -> list[str]:
    return [name for name, _layer in choices]


def test_layer_role_reads_the_metadata():
    class Fake:
        metadata = {_roles.ROLE_KEY: _roles.WEIGHTS}

    assert _roles.layer_role(Fake()) == "weights"
    assert _roles.layer_role(object()) is None
    assert _roles.role_metadata("deformed", {"channel_axis": 0}) == {
        "channel_axis": 0, "napari_unet_role": "deformed"}


def test_plugin_layers_carry_their_role(make_napari_viewer):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.random.default_rng(0).random((32, 32)), name="img")
    lab = viewer.add_labels(np.pad(np.full((8, 8), 2), 12), name="lab")
    show_prediction(viewer, img, np.zeros((32, 32), np.float32), np.zeros((32, 32), np.int32))
    assert _roles.layer_role(viewer.layers["img probability"]) == _roles.PROBABILITY
    assert _roles.layer_role(viewer.layers["img instances"]) == _roles.INSTANCES
    augment = AugmentPreviewWidget(viewer)
    augment._image_combo.value, augment._labels_combo.value = img, lab
    out = augment.new_sample()
    assert _roles.layer_role(out["image"]) == _roles.DEFORMED
    assert _roles.layer_role(out["labels"]) == _roles.DEFORMED
    assert _roles.layer_role(out["field"]) == _roles.DISPLACEMENT
    weights = WeightMapWidget(viewer)
    weights._labels_combo.value = lab
    assert _roles.layer_role(weights.refresh()) == _roles.WEIGHTS
    assert _roles.layer_role(img) is None and _roles.layer_role(lab) is None


def test_user_layers_named_like_previews_are_offered(make_napari_viewer):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((16, 16)), name="img")
    viewer.add_image(np.zeros((16, 16)), name="my probability")
    viewer.add_image(np.zeros((16, 16)), name="cells weights")
    viewer.add_labels(np.zeros((16, 16), int), name="lab deformed")
    show_prediction(viewer, img, np.zeros((16, 16), np.float32), np.zeros((16, 16), np.int32))
    viewer.add_image(np.zeros((16, 16)), name="x",
                     metadata=_roles.role_metadata(_roles.DEFORMED))
    user_images = ["img", "my probability", "cells weights"]

    predict, train = PredictWidget(viewer), TrainWidget(viewer)
    assert _items(predict.image_combo) == user_images
    assert _items(train.image_combo) == user_images
    assert "lab deformed" in _items(train.labels_combo)
    annotate = AnnotateWidget(viewer)
    assert _names(annotate._image_choices()) == user_images
    assert _names(annotate._labels_choices()) == ["lab deformed", "img instances"]
    augment = AugmentPreviewWidget(viewer)
    assert _names(augment._choices("image")) == [*user_images, "img probability"]
    assert _names(augment._choices("labels")) == ["lab deformed", "img instances"]


def test_only_previews_are_still_offered_to_predict(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16)), name="p",
                     metadata=_roles.role_metadata(_roles.PROBABILITY))
    assert _items(PredictWidget(viewer).image_combo) == ["p"]


def test_rewritten_user_layer_takes_the_role(make_napari_viewer):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((16, 16)), name="img")
    mine = viewer.add_image(np.ones((16, 16)), name="img probability")
    show_prediction(viewer, img, np.zeros((16, 16), np.float32), np.zeros((16, 16), np.int32))
    assert viewer.layers["img probability"] is mine  # updated in place
    assert _roles.layer_role(mine) == _roles.PROBABILITY


@pytest.mark.parametrize("widget_class", [PredictWidget, TrainWidget])
def test_pickers_follow_a_renamed_layer(make_napari_viewer, widget_class):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((16, 16)), name="before")
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget)
    assert _items(widget.image_combo) == ["before"]
    layer.name = "after"
    assert _items(widget.image_combo) == ["after"]
    assert widget.image_combo.currentText() == "after"
