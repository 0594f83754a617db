"""The import rule, over the whole package: a module imports what it needs at the top; an
import inside a function, or an `importlib.import_module` call inside one, is one of the few lazy
boundaries (light modules that `import ticketlab`, `ticketlab --help` and `VERB --help` read must not
pay for torch), each saying why (`# lazy: <why>` on its line or the one above): at most one in each
method's registration (`methods/NAME/register.py`: the function it registers imports the method when
it first runs, as `--help` reads the registration), at most 15 elsewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ticketlab"
REGISTRATION = re.compile(r"methods/\w+/register\.py")  # a method folder's registration


def _lazy_boundaries(path: Path, root: Path = SRC) -> dict[str, str]:
    """`file:line` -> the line and the one above it, for every import statement and every
    `importlib.import_module(...)` call inside a function of `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: set[int] = set()
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                is_call = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
                if isinstance(node, (ast.Import, ast.ImportFrom)) or is_call:
                    found.add(node.lineno)
    rel = path.relative_to(root)
    return {f"{rel}:{n}": "\n".join(lines[max(0, n - 2) : n]) for n in sorted(found)}


def _all_boundaries() -> dict[str, str]:
    return {k: v for path in sorted(SRC.rglob("*.py")) for k, v in _lazy_boundaries(path).items()}


def test_at_most_15_lazy_boundaries_each_saying_why():
    found = _all_boundaries()
    registrations = [k.split(":")[0] for k in found if REGISTRATION.fullmatch(k.split(":")[0])]
    assert len(registrations) == len(set(registrations)), sorted(registrations)  # one per method
    assert len(found) - len(registrations) <= 15, sorted(found)
    assert all("# lazy: " in text for text in found.values()), {
        k: v for k, v in found.items() if "# lazy: " not in v
    }


def test_the_walk_sees_both_kinds_of_boundary(tmp_path):
    """The walk finds an import statement and an import_module call inside functions, not at the top."""
    (tmp_path / "m.py").write_text(
        "import os\nimport importlib\n\ndef f():\n    import json  # lazy: a reason\n"
        "\ndef g():\n    return importlib.import_module('json')\n"
    )
    found = {k.split(":")[1]: v for k, v in _lazy_boundaries(tmp_path / "m.py", tmp_path).items()}
    assert sorted(found) == ["5", "8"] and "# lazy: " in found["5"] and "# lazy: " not in found["8"]
