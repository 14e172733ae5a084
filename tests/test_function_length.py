"""No function in src/ is longer than 60 lines: each does one job a newcomer can read whole."""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 60
SRC = Path(__file__).resolve().parents[1] / "src"


def _long_functions() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    where = path.relative_to(SRC)
                    found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_src_is_found():
    assert any(SRC.rglob("*.py"))


def test_no_function_over_60_lines():
    long = _long_functions()
    assert not long, f"functions over {MAX_LINES} lines (split them): " + "; ".join(long)
