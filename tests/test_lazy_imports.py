"""Issue 38's import rule: a heavy module imports what it needs at the top; an import inside a function
is one of the few lazy boundaries of a light module, each saying why with `# lazy: <why>`.

Pinned here for the packages methods, verbs, demo and cli (the other packages' helpers pin theirs;
the cli modules of the studies come with them)."""

from __future__ import annotations

import ast
from pathlib import Path

import ticketlab

ROOT = Path(ticketlab.__file__).parent
PACKAGES = ("methods", "verbs", "demo", "cli")
# the cli modules of the studies (sweep, report, super tickets, ticket sharing, adaptation, importance)
STUDY_CLI = {"sweep", "report", "super_tickets", "mtl", "adapt", "importance"}


def _inner_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import statement inside a function of `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = set()
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.add((node.lineno, lines[node.lineno - 1]))
    return sorted(found)


def test_imports_inside_functions_are_the_lazy_boundaries():
    inner = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if package == "cli" and path.stem in STUDY_CLI:
                continue
            for line, text in _inner_imports(path):
                inner[f"{path.relative_to(ROOT)}:{line}"] = text
    # one per verb whose config `VERB --help` reads (prune, evaluate-pretrain; search: its config's
    # training settings and its function); the registry's is `importlib`, not a statement
    assert len(inner) <= 4, inner
    assert all("# lazy: " in text for text in inner.values()), inner
