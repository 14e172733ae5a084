"""Live mode in a real window: clicks enter training at once, the overlay refreshes, Pause,
Stop predicts the whole image, and no other training can start meanwhile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from napari.utils._test_utils import read_only_mouse_event
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
from scipy import ndimage as ndi

from napari_unet.core.model import UNet
from napari_unet.core.synthetic import make_cells
from napari_unet.widgets._session import get_session
from napari_unet.widgets.annotate import AnnotateWidget
from napari_unet.widgets.live import LIVE_OWNER, visible_region
from napari_unet.widgets.train import TrainWidget


@pytest.fixture
def live_setup(make_napari_viewer):
    image, truth = make_cells((96, 96), n_cells=8, seed=3, touching=0.0)
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="img")
    widget = AnnotateWidget(viewer)
    layer = widget.new_annotation_layer()
    widget._mode.value = True
    torch.manual_seed(0)
    get_session(viewer).set_model(UNet(in_channels=1, depth=2, base_channels=4,
                                       padding="same"), "new")
    return viewer, widget, layer, truth


def _click(layer, point, modifiers=()):
    """A press and release on the layer, as napari's canvas dispatches them."""
    pos = np.array([100.0, 100.0])
    for kind, callbacks in (("mouse_press", mouse_press_callbacks),
                            ("mouse_release", mouse_release_callbacks)):
        event = read_only_mouse_event(type=kind, button=1, position=tuple(map(float, point)),
                                      modifiers=list(modifiers), pos=pos)
        callbacks(layer, event)


def _centre(mask):
    return tuple(int(round(c)) for c in ndi.center_of_mass(mask))


def test_live_learns_clicks_refreshes_pauses_and_stops(live_setup, qtbot):
    viewer, widget, layer, truth = live_setup
    train_widget = TrainWidget(viewer)
    layer.data[:6, :6] = 1  # some background painted before Live starts
    live = widget.start_live(start_thread=False)
    assert live is not None
    live.refresh_s = 0.2
    assert get_session(viewer).training == LIVE_OWNER
    assert widget.retrain() is None and not widget._retrain_button.enabled
    assert not train_widget.train_button.isEnabled()
    assert widget._pause_button.enabled
    worker = live.worker
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
        qtbot.waitUntil(lambda: "no cells" in widget._display.status.text(), timeout=10_000)
        assert live.trainer.steps == 0  # only background so far: it waits, no error
        _click(layer, _centre(truth == 1))  # an added cell enters the training set
        qtbot.waitUntil(lambda: live.trainer.corrections >= 1, timeout=5_000)
        qtbot.waitUntil(lambda: live.trainer.steps >= 2, timeout=20_000)
        qtbot.waitUntil(lambda: live.overlays >= 1, timeout=20_000)
        assert "img probability" in viewer.layers and "img instances" in viewer.layers
        widget.toggle_pause()
        assert widget._pause_button.text == "Resume"
        qtbot.wait(300)
        paused_at = live.trainer.steps
        qtbot.wait(300)
        assert live.trainer.steps <= paused_at + 1
        widget.toggle_pause()
        qtbot.waitUntil(lambda: live.trainer.steps > paused_at + 1, timeout=20_000)
        _click(layer, _centre(truth == 2))  # a second cell, then Ctrl+Z: its training undone
        qtbot.waitUntil(lambda: live.trainer.corrections >= 2, timeout=5_000)
        layer.undo()
        qtbot.waitUntil(lambda: live.trainer.undone == 1, timeout=10_000)
        qtbot.waitUntil(lambda: "undone" in widget._display.status.text(), timeout=10_000)
        assert live.trainer.corrections == 1
        widget._live_box.value = False  # stop
    qtbot.waitUntil(lambda: getattr(widget, "predict_worker", None) is not None, timeout=10_000)
    qtbot.waitUntil(lambda: not widget.predict_worker.is_running, timeout=30_000)
    session = get_session(viewer)
    assert session.training is None and session.source.startswith("live-trained")
    assert widget.live is None and widget._retrain_button.enabled
    assert session.model.metadata["training"]["live"]["corrections"] >= 1


def test_visible_region_follows_the_camera(live_setup, qtbot):
    viewer, _, _, _ = live_setup
    image = viewer.layers["img"]
    camera = viewer.camera if not hasattr(viewer, "scene") else viewer.scene.camera
    camera.zoom = camera.zoom * 4
    camera.center = (20, 20)
    qtbot.wait(50)
    rows, cols = visible_region(image)
    assert 0 <= rows.start < 20 < rows.stop < 96 and 0 <= cols.start < 20 < cols.stop < 96


def test_live_without_model_says_so(make_napari_viewer, monkeypatch):
    from napari_unet.widgets import _notify

    messages = []
    monkeypatch.setattr(_notify, "notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = AnnotateWidget(viewer)
    widget.new_annotation_layer()
    assert widget.start_live() is None
    assert "no model" in messages[-1] and widget._live_box.value is False
    assert get_session(viewer).training is None


def test_overlay_status_warns_when_most_cells_are_lost():
    from napari_unet.widgets.live import Overlay, overlay_status

    region = (slice(0, 4), slice(0, 4))
    blank = np.zeros((4, 4), np.float32)
    fine = Overlay(region, blank, blank.astype(np.int32), 10, 0.5, kept=0.9)
    assert "overlay refreshed" in overlay_status(fine, 1)
    lost = Overlay(region, blank, blank.astype(np.int32), 10, 0.5, kept=0.1)
    assert "only 10%" in overlay_status(lost, 1)
