"""The one dock: every step in a tab, each scrollable, small enough for a 1366x768 screen."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QScrollArea

from napari_unet.demo import DOCK
from napari_unet.widgets.dock import TABS, DockWidget
from napari_unet.widgets.paint import PaintWidget
from napari_unet.widgets.predict import PredictWidget
from napari_unet.widgets.train import TrainWidget

SCREEN = (1366, 768)


def test_dock_holds_every_step_in_scrollable_tabs(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = DockWidget(viewer)
    viewer.window.add_dock_widget(dock)  # docked, Qt owns and deletes it with the viewer
    assert [dock.tabs.tabText(i) for i in range(dock.tabs.count())] == list(TABS)
    for i in range(dock.tabs.count()):
        assert isinstance(dock.tabs.widget(i), QScrollArea)
    assert isinstance(dock.paint, PaintWidget) and isinstance(dock.train, TrainWidget)
    assert isinstance(dock.predict, PredictWidget)
    hint = dock.minimumSizeHint()
    assert hint.height() <= 600, hint
    assert hint.width() <= 500, hint
    # the data tab starts with painting, the convention visible
    data_page = dock.tabs.widget(0).widget()
    assert dock.paint.parent() is data_page
    assert "1 background" in dock.paint.convention.text()


def test_dock_opens_from_the_plugins_menu_and_fits_a_small_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-unet", "nuclei_dsb2018")
    viewer.window.resize(*SCREEN)
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-unet", DOCK)
    window = dock_widget.window()  # napari's main window: the dock's top-level Qt widget
    qtbot.wait(50)
    assert isinstance(widget, DockWidget)
    for title in TABS:  # no tab makes the window grow
        widget.show_tab(title)
        qtbot.wait(10)
        assert window.height() <= SCREEN[1], (title, window.height())
        assert window.width() <= SCREEN[0], (title, window.width())
    assert dock_widget.minimumSizeHint().height() <= 600


def test_export_tab_saves_labels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    dock = DockWidget(viewer)
    viewer.window.add_dock_widget(dock)  # docked, Qt owns and deletes it with the viewer
    assert dock.labels_to_export() is None
    viewer.add_labels(np.arange(12, dtype=np.int64).reshape(3, 4), name="lab")
    layer = dock.labels_to_export()
    written = dock.save_labels_to(layer, str(tmp_path / "lab.tif"))
    assert written is not None and "saved" in dock.export_status.text()
    from napari_unet.core.io import read_image

    saved = read_image(written)
    assert np.array_equal(saved, layer.data) and saved.dtype == np.uint8
