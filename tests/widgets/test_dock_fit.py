"""The one dock on a 1366x768 screen: every tab fits its width (no text cut at the right edge)."""

from __future__ import annotations

from napari_unet.demo import DOCK
from napari_unet.widgets.dock import MAX_WIDTH, TABS

SCREEN = (1366, 768)


def test_no_tab_scrolls_sideways_on_a_small_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-unet", "nuclei_dsb2018")
    viewer.window.resize(*SCREEN)
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-unet", DOCK)
    window = dock_widget.window()
    qtbot.wait(50)
    assert dock_widget.width() <= MAX_WIDTH + 40  # the canvas keeps most of the window
    for title in TABS:
        widget.show_tab(title)
        qtbot.wait(20)
        area = widget.tabs.currentWidget()
        page = area.widget()
        assert not area.horizontalScrollBar().isVisible(), (title, page.minimumSizeHint())
        assert page.size().width() >= page.minimumSizeHint().width(), title  # Train has .width
        assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1], title
