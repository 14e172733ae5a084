"""The engine (``napari_unet.core``) imports with neither Qt nor napari installed."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
for name in ("qtpy", "napari", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6"):
    sys.modules[name] = None  # any import of them raises ImportError
import napari_unet.core as core
for info in pkgutil.iter_modules(core.__path__):
    importlib.import_module(f"napari_unet.core.{info.name}")
import napari_unet.cli, napari_unet.scaleout
print("ok")
"""


def test_core_and_cli_import_without_qt_or_napari():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
