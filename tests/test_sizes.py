"""Sizes a reader can hold in their head: every module of src/ at most 400 lines, every function at
most 60 (counted from its first decorator to its last line, docstring and comments included)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _lines(node: ast.AST) -> int:
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return node.end_lineno - start + 1


def oversized(root: Path) -> list[str]:
    """Each module of `root` over MAX_FILE_LINES and each function (a method, a nested one) over
    MAX_FUNCTION_LINES, as `path: N lines` and `path:line name: N lines`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        if (n := len(text.splitlines())) > MAX_FILE_LINES:
            found.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _lines(node) > MAX_FUNCTION_LINES:
                found.append(f"{rel}:{node.lineno} {node.name}: {_lines(node)} lines")
    return found


def test_modules_and_functions_stay_short():
    bad = oversized(SRC)
    assert not bad, f"over {MAX_FILE_LINES} lines a module or {MAX_FUNCTION_LINES} a function:\n" + "\n".join(
        bad
    )


def test_the_size_scan_counts_decorators_nested_functions_and_long_modules(tmp_path):
    """What the scan counts (so that it can fail): a decorated function by its decorators too, a
    function nested in a method, and a module by its lines."""
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 2))  # 58 lines
    (tmp_path / "short.py").write_text(f"@decorator\ndef fits():\n{body}")  # 60 lines
    (tmp_path / "long.py").write_text(f"@decorator\n@another\ndef over():\n{body}")  # 61
    inner = "".join("        " + line + "\n" for line in f"def inner():\n{body}    return 1".splitlines())
    (tmp_path / "nested.py").write_text(f"class C:\n    def method(self):\n{inner}")  # 61 and 60
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    assert oversized(tmp_path) == [
        "big.py: 401 lines",
        "long.py:3 over: 61 lines",
        "nested.py:2 method: 61 lines",
    ]
