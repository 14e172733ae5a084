"""Messages that stay: the last error or warning in the widget's status line, in plain words."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QLabel

from napari_unet.widgets import _notify
from napari_unet.widgets import train as train_mod
from napari_unet.widgets.train import TrainWidget


@pytest.fixture
def shown(monkeypatch):
    """Collect notifications by level instead of showing them."""
    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for level in seen:
        monkeypatch.setattr(_notify, f"notify_{level}", seen[level].append)
    return seen


def test_notify_in_notifies_and_keeps_the_message(qtbot, shown):
    label = QLabel()
    qtbot.addWidget(label)
    _notify.notify_in(label, "Cannot train: no Labels layer")
    assert shown["error"] == ["Cannot train: no Labels layer"]
    assert label.text() == "Cannot train: no Labels layer" == label.toolTip()
    _notify.notify_in(label, "careful", "warning")
    assert shown["warning"] == ["careful"] and label.text() == "careful"

    class MagicLabel:  # a magicgui Label has a value, not setText
        value = ""

    magic = MagicLabel()
    _notify.notify_in(magic, "done", "info")
    assert magic.value == "done" and shown["info"] == ["done"]


def test_through_napari_notifications(qtbot, monkeypatch):
    """Without patches, the message goes to napari's notification manager."""
    from napari.utils.notifications import notification_manager

    received = []
    monkeypatch.setattr(notification_manager, "dispatch", received.append)
    label = QLabel()
    qtbot.addWidget(label)
    _notify.notify_in(label, "no image", "warning")
    assert [n.message for n in received] == ["no image"]


def test_train_without_labels_says_what_is_missing(make_napari_viewer, shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="img")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.start_training(start=False) is None
    message = shown["error"][-1]
    assert "no Labels layer" in message and "''" not in message
    assert widget.status.text() == message  # stays in the widget's status line


def test_train_without_image_says_what_is_missing(make_napari_viewer, shown):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.start_training(start=False) is None
    assert "no image layer" in shown["error"][-1] and "File > Open" in widget.status.text()


def test_a_removed_layer_is_named(make_napari_viewer, shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64)), name="img")
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="lab")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.add_pair()
    viewer.layers.remove("lab")
    assert widget.start_training(start=False) is None
    assert "the labels layer 'lab' was removed" in widget.status.text()


def test_data_warnings_stay_beside_the_data(make_napari_viewer, qtbot, shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((96, 96), np.float32), name="img")  # an empty (constant) image
    labels = np.zeros((96, 96), np.uint8)
    labels[10:20, 10:20] = 3
    labels[40:50, 40:50] = 1
    viewer.add_labels(labels, name="lab")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.source_combo.setCurrentIndex(train_mod.SOURCE_NEW)
    widget.depth.setValue(2)
    widget.width.setValue(4)
    widget.length.setValue(1)
    widget.batch_size.setValue(1)
    widget.patch_size.setValue(32)
    widget.device_combo.setCurrentText("cpu")
    worker = widget.start_training(start=False)
    assert worker is not None, shown
    assert shown["warning"] and "constant" in widget.notes.text()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "constant" in widget.notes.text()  # still there after training
