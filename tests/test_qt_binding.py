"""The plugin runs on Qt 6: napari 0.9 deprecates PyQt5 and shows a warning toast for it."""

from __future__ import annotations


def test_the_installed_qt_binding_is_qt6():
    import qtpy

    assert qtpy.QT6, f"Qt binding {qtpy.API_NAME}: install the test extra (PyQt6)"
