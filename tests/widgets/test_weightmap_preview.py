"""Weight-map preview: made on demand, equal to the core weight map, and never hides the image."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.labels import split_labels
from napari_unet.core.synthetic import make_cells, sparse_annotation
from napari_unet.core.weights import weight_map
from napari_unet.widgets import _notify
from napari_unet.widgets.weightmap_preview import (
    LEGEND,
    WeightMapWidget,
    colorbar_pixmap,
)


@pytest.fixture
def cells():
    return make_cells((64, 64), n_cells=8, seed=2, touching=0.8)


@pytest.fixture
def sparse(cells):
    return sparse_annotation(cells[1], n_cells=4, seed=0)


def _expected(labels, w0, sigma, dense):
    instances, mask = split_labels(labels, dense=dense)
    return weight_map(instances, w0, sigma, labeled_mask=mask)


def _paint(layer, value=1):
    layer.data_setitem((np.array([1, 1]), np.array([1, 2])), value)
    layer.paint((40, 40), value)


def test_opening_and_painting_add_no_layer(make_napari_viewer, qtbot, cells, sparse):
    viewer = make_napari_viewer()
    viewer.add_image(cells[0], name="img")
    lab = viewer.add_labels(sparse, name="lab")
    widget = WeightMapWidget(viewer)
    assert widget._labels_combo.value is lab
    assert widget._colorbar.native.isHidden()  # no map, no scale
    _paint(lab)
    qtbot.wait(400)
    assert [layer.name for layer in viewer.layers] == ["img", "lab"]
    assert widget.n_updates == 0


def test_button_shows_translucent_map_below_labels(make_napari_viewer, qtbot, cells, sparse):
    viewer = make_napari_viewer()
    img = viewer.add_image(cells[0], name="img")
    lab = viewer.add_labels(sparse, name="lab")
    widget = WeightMapWidget(viewer)
    widget._button.native.click()  # a real click on the button
    layer = viewer.layers["lab weights"]
    np.testing.assert_allclose(layer.data, _expected(sparse, 10.0, 5.0, False))
    assert layer.colormap.name == "magma"
    # it adds light to the image, it never covers it
    assert layer.blending == "additive" and layer.opacity < 1
    assert img.visible and img.opacity == 1  # the image itself is left as it was
    assert viewer.layers.index(img) < viewer.layers.index(layer)
    # just below the labels, and the labels stay selected for painting
    assert viewer.layers.index(layer) == viewer.layers.index(lab) - 1
    assert viewer.layers.selection.active is lab
    assert np.all(layer.data[sparse == 0] == 0)  # unlabeled pixels do not count
    assert layer.contrast_limits == [0.0, pytest.approx(float(layer.data.max()))]
    assert layer.colorbar.visible
    # the widget says in words what the colours mean, and shows the scale
    assert widget._legend.value == LEGEND and "touching cells" in LEGEND
    assert "max" not in widget._status.value and "cells ×" in widget._status.value
    assert not widget._colorbar.native.isHidden()  # shown once there is a map
    assert widget._bar_high.value == f"{float(layer.data.max()):.1f}"
    assert not widget._bar.native.pixmap().isNull()


def test_edits_mark_the_map_stale_until_the_button(make_napari_viewer, qtbot, sparse):
    viewer = make_napari_viewer()
    lab = viewer.add_labels(sparse, name="lab")
    widget = WeightMapWidget(viewer)
    layer = widget.refresh()
    before = layer.data.copy()
    _paint(lab, 2 + int(sparse.max()))
    widget._w0.value = 20.0
    qtbot.wait(400)
    assert widget.n_updates == 1 and widget.stale
    np.testing.assert_array_equal(layer.data, before)  # nothing recomputed by itself
    assert "Update" in widget._status.value and widget._button.text == "Update weight map"

    widget._sigma.value = 3.0
    widget._dense.value = True
    assert widget.refresh() is layer and not widget.stale
    np.testing.assert_allclose(layer.data, _expected(lab.data, 20.0, 3.0, True))
    assert np.all(layer.data > 0)  # dense: every pixel counts
    assert len(viewer.layers) == 2


def test_switching_layers_and_bad_labels(make_napari_viewer, monkeypatch, sparse):
    messages = []
    monkeypatch.setattr(_notify, "notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.add_labels(sparse, name="a")
    widget = WeightMapWidget(viewer)
    widget.refresh()
    second = viewer.add_labels(sparse.copy(), name="b")
    widget._labels_combo.value = second
    assert "b weights" not in viewer.layers  # a new choice alone computes nothing
    widget.refresh()
    assert "b weights" in viewer.layers and "a weights" in viewer.layers

    bad = viewer.add_labels(np.full((8, 8), -1, dtype=np.int32), name="c")
    widget._labels_combo.value = bad
    assert widget.refresh() is None
    assert messages and "negative" in messages[-1]
    assert "c weights" not in viewer.layers


def test_closed_widget_stops_following(make_napari_viewer, qtbot, sparse):
    from qtpy.QtCore import QCoreApplication, QEvent

    viewer = make_napari_viewer()
    lab = viewer.add_labels(sparse, name="lab")
    widget = WeightMapWidget(viewer)
    widget.refresh()
    widget.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    lab.data_setitem((np.array([0]), np.array([0])), 1)  # no error
    viewer.add_labels(sparse, name="other")
    qtbot.wait(100)
    assert widget.n_updates == 1


def test_colorbar_is_a_horizontal_gradient(qtbot):
    assert colorbar_pixmap().width() > colorbar_pixmap().height() > 0
