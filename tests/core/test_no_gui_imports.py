"""The engine (``napari_unet.core``) imports with neither Qt nor napari installed."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, importlib.abc, pkgutil, sys

BLOCKED = {"qtpy", "napari", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6"}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the engine must not import it")
        return None


sys.meta_path.insert(0, Block())
import napari_unet.core as core
names = [info.name for info in pkgutil.iter_modules(core.__path__)]
for name in names:
    importlib.import_module(f"napari_unet.core.{name}")
import napari_unet.cli
assert "scaleout" in names, names
print("ok", len(names))
"""


def test_core_and_cli_import_without_qt_or_napari():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("ok")
