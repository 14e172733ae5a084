"""Painting that explains itself: new cell / background buttons and keys, the convention shown,
background named and grey, and a first stroke with napari's defaults trains without an error."""

from __future__ import annotations

import numpy as np
import pytest
from app_model.types import KeyBinding
from skimage.draw import disk

from napari_unet.core.labels import CONVENTION_METADATA
from napari_unet.core.synthetic import make_cells
from napari_unet.widgets import _notify
from napari_unet.widgets import train as train_mod
from napari_unet.widgets.paint import (
    BACKGROUND_GREY,
    BACKGROUND_KEY,
    NEW_CELL_KEY,
    PaintWidget,
)
from napari_unet.widgets.train import TrainWidget


@pytest.fixture
def notes(monkeypatch):
    """Collect notifications by level instead of showing them."""
    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for level in seen:
        monkeypatch.setattr(_notify, f"notify_{level}", seen[level].append)
    return seen


def _viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    image, _ = make_cells((96, 96), n_cells=10, seed=0)
    viewer.add_image(image, name="img")
    return viewer


def test_buttons_keys_convention_and_background_colour(make_napari_viewer, notes):
    viewer = _viewer(make_napari_viewer)
    widget = PaintWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert "0 unlabeled" in widget.convention.text() and "1 background" in widget.convention.text()
    assert widget.convention.isVisibleTo(widget)
    layer = viewer.add_labels(np.zeros((96, 96), np.uint16), name="lab")
    # an empty layer: the first stroke paints a cell, not background
    assert layer.selected_label == 2 and layer.metadata[CONVENTION_METADATA] == "sparse"
    assert np.allclose(layer.colormap.map(np.array([1]))[0], BACKGROUND_GREY)
    assert layer.colormap.map(np.array([0]))[0][3] == 0  # unlabeled stays transparent
    layer.data[5:9, 5:9] = 2
    layer.data[20:24, 20:24] = 1
    assert "background" in layer.get_status((21, 21))["value"]
    widget.background_button.click()
    assert layer.selected_label == 1 and layer.mode == "paint"
    widget.new_cell_button.click()
    assert layer.selected_label == 3
    assert "label 3" in widget.status.text()
    # the same through the keys bound on the layer (public KeymapProvider.bind_key)
    layer.keymap[KeyBinding.from_str(BACKGROUND_KEY.upper())](layer)
    assert layer.selected_label == 1
    layer.data[30:33, 30:33] = 3
    layer.keymap[KeyBinding.from_str(NEW_CELL_KEY.upper())](layer)
    assert layer.selected_label == 4
    assert notes["error"] == [] and notes["warning"] == []


def test_complete_labels_keep_their_colours(make_napari_viewer):
    viewer = _viewer(make_napari_viewer)
    _, truth = make_cells((96, 96), n_cells=10, seed=0)
    layer = viewer.add_labels(truth, name="ground truth")
    colormap = layer.colormap
    widget = PaintWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert layer.colormap is colormap and CONVENTION_METADATA not in layer.metadata
    assert widget.new_cell() == int(truth.max()) + 1


def test_new_cell_without_labels_layer_adds_one_on_the_image(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    widget = PaintWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.new_cell() is None and "Open an image" in widget.status.text()
    viewer.add_image(np.zeros((40, 50)), name="img", scale=(2.0, 2.0))
    assert widget.new_cell() == 2
    layer = viewer.layers["img labels"]
    assert layer.data.shape == (40, 50) and tuple(layer.scale) == (2.0, 2.0)
    assert viewer.layers.selection.active is layer


def _paint_disk(layer, centre, radius, label=1):
    """Paint as napari's brush does: set the data in a disk and refresh."""
    rr, cc = disk(centre, radius, shape=layer.data.shape)
    layer.data[rr, cc] = label
    layer.refresh()


def test_first_stroke_with_napari_defaults_trains_without_error(make_napari_viewer, qtbot,
                                                                notes):
    """napari's new Labels layer paints label 1: read as cells (one per blob, a background
    ring around each), said in the widget, and Train starts and finishes without an error."""
    viewer = _viewer(make_napari_viewer)
    layer = viewer.add_labels(np.zeros((96, 96), np.uint16))  # napari's defaults, no plugin
    assert layer.selected_label == 1
    _, truth = make_cells((96, 96), n_cells=10, seed=0)
    for cell in (1, 2):
        centre = [int(round(c)) for c in np.argwhere(truth == cell).mean(axis=0)]
        _paint_disk(layer, centre, 4, layer.selected_label)
    before = layer.data.copy()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.source_combo.setCurrentIndex(train_mod.SOURCE_NEW)
    widget.depth.setValue(2)
    widget.width.setValue(4)
    widget.length.setValue(3)
    widget.batch_size.setValue(2)
    widget.patch_size.setValue(32)
    widget.augment.setChecked(False)
    widget.device_combo.setCurrentText("cpu")
    widget.image_combo.setCurrentText("img")
    widget.labels_combo.setCurrentText(layer.name)
    worker = widget.start_training(start=False)
    assert worker is not None, notes
    assert "read as 2 cell(s)" in widget.notes.text()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert notes["error"] == [], notes
    assert "done" in widget.status.text()
    assert np.array_equal(layer.data, before)  # the user's layer is untouched


def test_background_painted_on_purpose_is_not_read_as_cells(make_napari_viewer, notes):
    viewer = _viewer(make_napari_viewer)
    widget = PaintWidget(viewer)
    viewer.window.add_dock_widget(widget)
    layer = viewer.add_labels(np.zeros((96, 96), np.uint16), name="lab")
    widget.background()
    _paint_disk(layer, (20, 20), 5, layer.selected_label)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    train.source_combo.setCurrentIndex(train_mod.SOURCE_NEW)
    train.labels_combo.setCurrentText("lab")
    assert train.start_training(start=False) is None
    assert "no cells labeled" in notes["error"][-1]
    assert "no cells labeled" in train.status.text()  # the message stays in the widget
