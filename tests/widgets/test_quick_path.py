"""The quick path: fresh napari to a first overlay on the real sample in at most 5 clicks,
with no dialog and no error or warning notification on the way."""

from __future__ import annotations

import time

import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtWidgets import QApplication, QDialog

from napari_unet.demo import DOCK
from napari_unet.widgets.dock import DockWidget

SAMPLE = ("napari-unet", "nuclei_dsb2018")
IMAGE = "nuclei (DSB2018)"


@pytest.fixture
def notifications():
    """Every notification napari shows during the test."""
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def _dialogs() -> list[QDialog]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()]


def test_five_clicks_from_fresh_napari_to_an_overlay(make_napari_viewer, qtbot, notifications):
    clicks: list[str] = []
    viewer = make_napari_viewer(show=True)

    clicks += ["File > Open Sample", "U-Net segmentation > Nuclei, fluorescence (DSB2018)"]
    viewer.open_sample(*SAMPLE)  # what that menu item runs (the npe2 sample contribution)
    assert IMAGE in viewer.layers

    clicks += ["Plugins", f"U-Net segmentation > {DOCK}"]
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", DOCK)
    assert isinstance(dock, DockWidget)
    assert dock.tabs.tabText(dock.tabs.currentIndex()) == "Data"  # the button is in front
    qtbot.waitUntil(dock.quick_button.isVisible, timeout=5_000)
    assert dock.quick_button.isEnabled()

    clicks += [dock.quick_button.text()]
    start = time.perf_counter()
    dock.quick_button.click()
    worker = dock.predict.worker
    assert worker is not None
    qtbot.waitUntil(lambda: dock.predict.worker is None, timeout=120_000)
    seconds = time.perf_counter() - start

    overlay = viewer.layers[f"{IMAGE} instances"]
    assert overlay.data.max() >= 10, "the sample's nuclei are found"
    assert overlay.data.shape == viewer.layers[IMAGE].data.shape[:2]
    assert dock.predict.status.text() == "done"
    assert len(clicks) <= 5, clicks
    assert _dialogs() == []
    bad = [n for n in notifications if n.severity >= NotificationSeverity.WARNING]
    assert bad == [], [n.message for n in bad]
    print(f"overlay {seconds:.1f} s after the click")
    assert seconds < 60, seconds
