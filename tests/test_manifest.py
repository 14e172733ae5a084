"""The npe2 manifest loads and every contributed widget opens in a real viewer."""

import npe2
import pytest

from napari_unet.demo import DOCK, WIDGETS

MANIFEST = npe2.PluginManifest.from_distribution("napari-unet")
WIDGET_NAMES = [widget.display_name for widget in MANIFEST.contributions.widgets]


def test_manifest_is_valid_and_complete():
    assert MANIFEST.name == "napari-unet"
    assert set(WIDGET_NAMES) == set(WIDGETS)
    assert WIDGET_NAMES[0] == DOCK  # the one dock comes first in the Plugins menu
    assert MANIFEST.contributions.readers and MANIFEST.contributions.writers
    assert {s.key for s in MANIFEST.contributions.sample_data} == {
        "nuclei_dsb2018", "cells_usiigaci", "cells", "cells_sparse"}
    # napari reads TIFF/PNG/JPEG/NumPy itself: claiming them would ask "Choose reader" each time
    [reader] = MANIFEST.contributions.readers
    assert reader.filename_patterns == ["*.zarr"]
    for command in MANIFEST.contributions.commands:
        assert command.python_name, command.id


def test_every_command_resolves_to_a_callable():
    for command in MANIFEST.contributions.commands:
        assert callable(_resolve(command.python_name))


def _resolve(python_name: str):
    import importlib

    module_name, attribute = python_name.split(":")
    return getattr(importlib.import_module(module_name), attribute)


@pytest.mark.parametrize("widget_name", WIDGET_NAMES)
def test_widget_opens_from_the_manifest(make_napari_viewer, widget_name):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "cells_sparse")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", widget_name)
    assert dock is not None and widget is not None
    assert getattr(widget, "native", widget).isEnabled()
    viewer.window.remove_dock_widget(dock)
