"""The import-layer contract of pyproject.toml ([tool.importlinter]): layers call downward only, and
independent siblings never import each other (../shared/DESIGN.md, "Layers of the code")."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib.util import resolve_name
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_call_downward_only():
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def _imports() -> dict[str, set[str]]:
    """Each ticketlab module's ticketlab imports, top-level, inside functions and under `if
    TYPE_CHECKING:` (a reader follows those too); `from pkg import Name` of a lazy package (`_WHERE`,
    `_LAZY`: `ticketlab.core.lazy`) is an import of the module that defines Name."""
    src = ROOT / "src"
    paths = (src / "ticketlab").rglob("*.py")
    files = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p for p in paths}
    trees = {name: ast.parse(path.read_text()) for name, path in files.items()}
    lazy = {}
    for name, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) in ("_WHERE", "_LAZY"):
                where = ast.literal_eval(node.value)
                lazy[name] = {k: resolve_name(v if v[0] == "." else "." + v, name) for k, v in where.items()}

    def targets(name: str, node: ast.ImportFrom) -> set[str]:
        package = name if files[name].name == "__init__.py" else name.rpartition(".")[0]
        base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
        found = set()
        for alias in node.names:
            whole = f"{base}.{alias.name}"
            found.add(whole if whole in files else lazy.get(base, {}).get(alias.name, base))
        return found

    graph = {}
    for name, tree in trees.items():
        todo, found = list(ast.iter_child_nodes(tree)), set()
        while todo:
            node = todo.pop()
            if isinstance(node, ast.ImportFrom):
                found |= targets(name, node)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            todo.extend(ast.iter_child_nodes(node))
        # a package's __init__ naming its own modules is no circle
        graph[name] = {t for t in found if t in files and t != name and not t.startswith(name + ".")}
    return graph


def test_no_import_circles_counting_imports_inside_functions():
    """A module never imports, at any depth of a function, one that imports it back (the piece both
    need moves down instead)."""
    graph = _imports()
    # what it must see: an import inside a function, through a lazy package (`from ..masks import load_mask`)
    assert len(graph) > 100 and "ticketlab.masks.io" in graph["ticketlab.verbs.prune"]
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            assert name != start, f"{start} imports itself back"
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])


def test_the_methods_shared_machinery_imports_no_method():
    """`methods/` is one folder per method (`tamt/`, `imp/`, `wanda/`...) beside the machinery they
    share (its own modules: ranking, the search runner, the shared settings): no shared module
    imports a method's folder, which would make it that method's."""
    methods = ROOT / "src" / "ticketlab" / "methods"
    folders = {f"ticketlab.methods.{p.parent.name}" for p in methods.glob("*/__init__.py")}
    shared = {f"ticketlab.methods.{p.stem}" for p in methods.glob("*.py") if p.stem != "__init__"}
    assert {
        "ticketlab.methods.tamt",
        "ticketlab.methods.imp",
    } <= folders and "ticketlab.methods.ranking" in shared
    graph = _imports()
    found = {
        (module, target)
        for module in shared
        for target in graph[module]
        if any(target == f or target.startswith(f + ".") for f in folders)
    }
    assert not found, sorted(found)
