"""Weight-map preview: equals the core weight map and follows parameter and label edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.labels import split_labels
from napari_unet.core.synthetic import make_cells, sparse_annotation
from napari_unet.core.weights import weight_map
from napari_unet.widgets import _notify
from napari_unet.widgets.weightmap_preview import WeightMapWidget, compute_weights


@pytest.fixture
def sparse():
    _, labels = make_cells((64, 64), n_cells=8, seed=2, touching=0.8)
    return sparse_annotation(labels, n_cells=4, seed=0)


def _expected(labels, w0, sigma, dense):
    instances, mask = split_labels(labels, dense=dense)
    return weight_map(instances, w0, sigma, labeled_mask=mask)


def test_values_equal_core_and_follow_parameters(make_napari_viewer, qtbot, sparse):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(sparse.shape, np.float32), name="img")
    lab = viewer.add_labels(sparse, name="lab")
    widget = WeightMapWidget(viewer)
    assert widget._labels_combo.value is lab
    # the first map comes by itself, after the debounce
    qtbot.waitUntil(lambda: "lab weights" in viewer.layers, timeout=3000)
    layer = viewer.layers["lab weights"]
    np.testing.assert_allclose(layer.data, _expected(sparse, 10.0, 5.0, False))
    assert layer.colormap.name == "magma"
    # weights sit just below the labels and the labels stay selected for painting
    assert viewer.layers.index(layer) == viewer.layers.index(lab) - 1
    assert viewer.layers.selection.active is lab
    assert np.all(layer.data[sparse == 0] == 0)  # unlabeled pixels do not count

    widget._w0.value = 20.0
    widget._sigma.value = 3.0
    qtbot.waitUntil(lambda: np.allclose(layer.data, _expected(sparse, 20.0, 3.0, False)),
                    timeout=3000)
    widget._dense.value = True
    qtbot.waitUntil(lambda: np.allclose(layer.data, _expected(sparse, 20.0, 3.0, True)),
                    timeout=3000)
    assert np.all(layer.data > 0)  # dense: every pixel counts
    assert viewer.layers["lab weights"] is layer and len(viewer.layers) == 3


def test_label_edits_are_debounced(make_napari_viewer, qtbot, sparse):
    viewer = make_napari_viewer()
    lab = viewer.add_labels(sparse, name="lab")
    widget = WeightMapWidget(viewer)
    layer = widget.refresh()
    n = widget.n_updates
    # a burst of edits (as during a paint stroke) gives one recomputation
    for x in range(10):
        lab.data_setitem((np.array([1]), np.array([x])), 1)
    lab.paint((40, 40), 2 + int(sparse.max()))
    assert widget.n_updates == n  # nothing yet: still waiting for quiet
    qtbot.waitUntil(lambda: widget.n_updates == n + 1, timeout=3000)
    qtbot.wait(300)
    assert widget.n_updates == n + 1
    np.testing.assert_allclose(layer.data, _expected(lab.data, 10.0, 5.0, False))


def test_switching_layers_and_bad_labels(make_napari_viewer, qtbot, monkeypatch, sparse):
    messages = []
    monkeypatch.setattr(_notify, "notify_error", messages.append)
    viewer = make_napari_viewer()
    first = viewer.add_labels(sparse, name="a")
    widget = WeightMapWidget(viewer)
    widget.refresh()
    second = viewer.add_labels(sparse.copy(), name="b")
    widget._labels_combo.value = second
    qtbot.waitUntil(lambda: "b weights" in viewer.layers, timeout=3000)
    n = widget.n_updates
    first.data_setitem((np.array([0]), np.array([0])), 1)  # no longer watched
    qtbot.wait(350)
    assert widget.n_updates == n

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
    n = widget.n_updates
    widget.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    lab.data_setitem((np.array([0]), np.array([0])), 1)  # no error, no recomputation
    viewer.add_labels(sparse, name="other")
    qtbot.wait(350)
    assert widget.n_updates == n


def test_compute_weights_stack_is_per_slice(sparse):
    stack = np.stack([sparse, np.zeros_like(sparse), sparse[::-1]])
    out = compute_weights(stack, 8.0, 4.0, dense=False)
    np.testing.assert_allclose(out[0], _expected(sparse, 8.0, 4.0, False))
    assert np.all(out[1] == 0)
    np.testing.assert_allclose(out[2], _expected(sparse[::-1], 8.0, 4.0, False))
