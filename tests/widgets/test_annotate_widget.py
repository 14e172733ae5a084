"""Click-to-annotate widget: simulated clicks edit the annotation layer, undo reverts them."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils._test_utils import read_only_mouse_event
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)
from scipy import ndimage as ndi

from napari_unet.core.annotate import BACKGROUND_RING_PX
from napari_unet.core.synthetic import make_cells
from napari_unet.widgets import _notify
from napari_unet.widgets.annotate import AnnotateWidget, click_action

SCALE = (2.0, 2.0)


@pytest.fixture
def scene():
    """Image, truth, and a prediction that misses cell ``missed`` and has a false positive."""
    image, truth = make_cells((96, 96), n_cells=8, seed=3, touching=0.0)
    ids = [i for i in range(1, truth.max() + 1) if np.any(truth == i)]
    missed, kept = ids[0], ids[1]
    pred = np.where(truth == missed, 0, truth).astype(np.int32)
    free = ndi.distance_transform_edt(truth == 0) > 8
    cy, cx = np.argwhere(free)[len(np.argwhere(free)) // 2]
    yy, xx = np.ogrid[:96, :96]
    false_pos = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 16) & free
    pred[false_pos] = truth.max() + 1
    prob = np.where(pred > 0, 0.9, 0.05).astype(np.float32)
    return {"image": image, "truth": truth, "pred": pred, "prob": prob, "missed": missed,
            "kept": kept, "false_pos": false_pos}


@pytest.fixture
def setup(make_napari_viewer, scene):
    viewer = make_napari_viewer()
    viewer.add_image(scene["image"], name="img", scale=SCALE)
    viewer.add_image(scene["prob"], name="img probability", scale=SCALE)
    viewer.add_labels(scene["pred"], name="img instances", scale=SCALE)
    widget = AnnotateWidget(viewer)
    layer = widget.new_annotation_layer()
    widget._mode.value = True
    return viewer, widget, layer


def _world(point):
    return tuple(float(p) * s for p, s in zip(point, SCALE, strict=True))


def _click(layer, point, modifiers=(), drag_to=None):
    """Press and release on ``layer`` the way napari's canvas dispatches them."""
    pos = np.array([100.0, 100.0])
    press = read_only_mouse_event(type="mouse_press", button=1, position=_world(point),
                                  modifiers=list(modifiers), pos=pos)
    mouse_press_callbacks(layer, press)
    if drag_to is not None:
        move = read_only_mouse_event(type="mouse_move", button=1, is_dragging=True,
                                     position=_world(drag_to), pos=pos + 30)
        mouse_move_callbacks(layer, move)
    release = read_only_mouse_event(type="mouse_release", button=1, position=_world(point),
                                    modifiers=list(modifiers), pos=pos)
    mouse_release_callbacks(layer, release)


def _centre(mask):
    return tuple(int(round(c)) for c in ndi.center_of_mass(mask))


def test_defaults_and_modifiers(setup):
    viewer, widget, layer = setup
    assert widget._image_combo.value is viewer.layers["img"]
    assert widget._pred_combo.value is viewer.layers["img instances"]
    assert widget._prob_combo.value is viewer.layers["img probability"]
    assert widget._labels_combo.value is layer and layer.name == "img annotations"
    assert layer.data.shape == (96, 96) and not layer.data.any()
    assert tuple(layer.scale) == SCALE
    assert viewer.layers.selection.active is layer and layer.mode == "pan_zoom"
    assert click_action([]) == "add"
    assert click_action(["Alt"]) == click_action(["Shift"]) == "remove"
    assert click_action(["Control"]) == click_action(["Meta"]) == "accept"


def test_click_adds_missed_cell_and_undo_reverts(setup, scene):
    _, widget, layer = setup
    cell = scene["truth"] == scene["missed"]
    _click(layer, _centre(cell))
    added = layer.data >= 2
    assert np.unique(layer.data).tolist() == [0, 1, 2]
    iou = (added & cell).sum() / (added | cell).sum()
    assert iou >= 0.8, iou  # the cell's own boundary (0.95 here)
    # a background ring around it (its border), off the predicted objects
    ring = layer.data == 1
    near = ndi.binary_dilation(added, iterations=BACKGROUND_RING_PX) & ~added
    assert ring.any() and np.all(near[ring]) and not np.any(ring & (scene["pred"] > 0))
    assert widget.corrections == 1 and "1" in widget._count_label.value
    snapshot = layer.data.copy()
    layer.undo()  # cell and ring are one step
    assert not layer.data.any()
    layer.redo()
    assert np.array_equal(layer.data, snapshot)


def test_alt_click_rejects_and_ctrl_click_accepts(setup, scene):
    _, widget, layer = setup
    _click(layer, _centre(scene["false_pos"]), ["Alt"])
    assert np.array_equal(layer.data == 1, scene["false_pos"])
    assert set(np.unique(layer.data)) == {0, 1}
    kept = scene["pred"] == scene["kept"]
    _click(layer, _centre(kept), ["Control"])
    np.testing.assert_array_equal(layer.data == 2, kept)
    # Shift-click on the accepted cell turns it into background
    _click(layer, _centre(kept), ["Shift"])
    assert np.all(layer.data[kept] == 1)
    assert widget.corrections == 3
    for _ in range(3):
        layer.undo()
    assert not layer.data.any()


def test_drag_and_paint_mode_do_not_annotate(setup, scene):
    _, widget, layer = setup
    point = _centre(scene["truth"] == scene["missed"])
    _click(layer, point, drag_to=(point[0] + 10, point[1]))  # a pan
    assert not layer.data.any()
    layer.mode = "paint"
    assert widget.handle_click is not None
    widget._mode.value = False  # callback detached
    layer.mode = "pan_zoom"
    _click(layer, point)
    assert not layer.data.any() and widget.corrections == 0
    widget._mode.value = True
    _click(layer, point)
    assert layer.data.any()
    # closing the widget detaches the click handler
    from qtpy.QtCore import QCoreApplication, QEvent

    widget.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert widget._on_mouse not in layer.mouse_drag_callbacks


def test_bad_input_notifies_and_leaves_layers(setup, make_napari_viewer, monkeypatch, scene):
    viewer, widget, layer = setup
    messages = []
    monkeypatch.setattr(_notify, "notify_error", messages.append)
    viewer.add_labels(np.zeros((10, 10), np.int32), name="small")
    widget._pred_combo.value = viewer.layers["small"]
    _click(layer, _centre(scene["false_pos"]), ["Alt"])
    assert messages and "shape" in messages[-1]
    widget._pred_combo.value = None
    _click(layer, _centre(scene["truth"] == scene["kept"]), ["Control"])
    assert "prediction" in messages[-1]
    assert not layer.data.any() and widget.corrections == 0
    assert widget.handle_click((-50.0, 10.0)) is None  # beside the image: ignored
    assert len(messages) == 2

    empty = AnnotateWidget(make_napari_viewer())
    assert empty.handle_click((1.0, 1.0)) is None
    assert empty.new_annotation_layer() is None
    assert empty.retrain() is None
    assert len(messages) == 5


def test_from_prediction_and_auto_retrain_count(setup, scene, monkeypatch):
    viewer, widget, _ = setup
    layer = widget.new_annotation_layer(from_prediction=True)
    assert widget._labels_combo.value is layer
    np.testing.assert_array_equal(layer.data, np.where(scene["pred"] > 0, scene["pred"] + 1, 1))
    from napari_unet.widgets.paint import is_explained

    grey = np.asarray(layer.colormap.map(np.array([1])))[0]  # background as on a painted layer
    assert is_explained(layer) and np.allclose(grey[:3], grey[0])
    calls = []
    monkeypatch.setattr(AnnotateWidget, "retrain", lambda self, **kw: calls.append(kw))
    widget._auto.value = 2
    _click(layer, _centre(scene["false_pos"]), ["Alt"])
    assert not calls
    _click(layer, _centre(scene["truth"] == scene["missed"]))
    assert len(calls) == 1 and widget.corrections == 2


def test_stack_click_edits_only_that_slice(make_napari_viewer, scene):
    viewer = make_napari_viewer()
    stack = np.stack([scene["image"]] * 3)
    viewer.add_image(stack, name="stack")
    widget = AnnotateWidget(viewer)
    widget._prob_combo.value = None
    layer = widget.new_annotation_layer()
    assert layer.data.shape == stack.shape
    cell = scene["truth"] == scene["missed"]
    assert widget.handle_click((1.0, *_centre(cell))) == "add"
    assert layer.data[1].any() and not layer.data[0].any() and not layer.data[2].any()
    layer.undo()
    assert not layer.data.any()


def test_corrections_then_retrain_changes_prediction(setup, scene, qtbot):
    import torch

    from napari_unet.core.model import UNet
    from napari_unet.widgets._session import get_session
    from napari_unet.widgets.predict import predict_layer

    viewer, widget, layer = setup
    torch.manual_seed(0)
    session = get_session(viewer)
    session.set_model(UNet(in_channels=1, depth=2, base_channels=4, padding="same"), "new")
    session.train_settings.update(patch_size=32, batch_size=2, learning_rate=1e-2, seed=0)
    worker = predict_layer(
        viewer, viewer.layers["img"], session.model, threshold=0.5, start=False
    )
    with qtbot.waitSignal(worker.finished, timeout=30000):
        worker.start()
    before = viewer.layers["img probability"].data.copy()
    old_model = session.model

    _click(layer, _centre(scene["truth"] == scene["missed"]))
    _click(layer, _centre(scene["false_pos"]), ["Alt"])
    assert widget.corrections == 2
    results = []
    worker = widget.retrain(steps=3, start=False, on_finished=results.append)
    assert worker is not None and "training" in widget._count_label.value
    assert widget.retrain() is None  # one training at a time
    with qtbot.waitSignal(worker.finished, timeout=60000):
        worker.start()
    qtbot.waitUntil(lambda: bool(results), timeout=60000)  # the follow-up prediction has finished
    assert results == [True]
    assert session.model is not old_model
    after = viewer.layers["img probability"].data
    assert after.shape == before.shape and not np.allclose(after, before)
    assert widget.corrections == 0 and widget.worker is None


def test_retrain_shows_progress_and_cancel_keeps_the_last_step(setup, scene, qtbot):
    """Retrain runs like Train: progress bar, live loss and Cancel; a cancelled retrain keeps
    the model of its last finished step, predicts with it and gives the buttons back."""
    import torch

    from napari_unet.core.model import UNet
    from napari_unet.widgets._session import get_session
    from napari_unet.widgets.train import TrainWidget

    viewer, widget, layer = setup
    train_widget = TrainWidget(viewer)
    torch.manual_seed(0)
    session = get_session(viewer)
    old_model = UNet(in_channels=1, depth=2, base_channels=4, padding="same")
    session.set_model(old_model, "new")
    session.train_settings.update(patch_size=32, batch_size=2, learning_rate=1e-2, seed=0)
    before = viewer.layers["img probability"].data.copy()
    _click(layer, _centre(scene["truth"] == scene["missed"]))
    _click(layer, _centre(scene["false_pos"]), ["Alt"])
    results = []
    worker = widget.retrain(steps=100_000, start=False, on_finished=results.append)
    assert worker is not None
    assert widget._cancel_button.enabled and not widget._retrain_button.enabled
    assert not train_widget.train_button.isEnabled()
    assert "Retrain (Annotate)" in train_widget.train_button.toolTip()
    display = widget._display
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
        qtbot.waitUntil(lambda: len(display.loss_plot.values) >= 2, timeout=60_000)
        assert display.progress_bar.maximum() == 100_000
        assert display.progress_bar.value() >= 2 and "step" in display.status.text()
        widget.cancel()
        assert not widget._cancel_button.enabled
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)  # the prediction has finished too
    steps = len(display.loss_plot.values)
    assert results == [False] and 2 <= steps < 100_000
    assert display.progress_bar.value() == steps
    assert session.model is not old_model
    assert session.source == f"trained (stopped at step {steps})"
    assert session.model.metadata["training"]["steps_completed"] == steps
    changed = [not torch.equal(value, old_model.state_dict()[name])
               for name, value in session.model.state_dict().items()
               if value.is_floating_point()]
    assert any(changed)
    after = viewer.layers["img probability"].data
    assert after.shape == before.shape and not np.allclose(after, before)  # predicted
    assert f"cancelled at step {steps}" in display.status.text()
    assert widget._retrain_button.enabled and not widget._cancel_button.enabled
    assert train_widget.train_button.isEnabled() and widget.worker is None
    assert widget.corrections == 2  # not fully retrained: the corrections still count
