"""The plugin uses napari's public API only: private names go away without a deprecation."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_unet"

#: private napari attributes the plugin once read (napari says they go in 0.10)
PRIVATE_ATTRIBUTES = {"_qt_window", "_qt_viewer", "qt_viewer", "_type_string"}


def _private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari._"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("napari._")]
    return found


def test_the_plugin_reads_no_private_napari_names():
    found = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path in sorted(SRC.rglob("*.py"))
        for line, name in _private_uses(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not found, "private napari API used:\n" + "\n".join(found)


def test_the_check_finds_a_private_use():
    assert _private_uses(ast.parse("w = viewer.window._qt_window\nfrom napari._qt import x"))
