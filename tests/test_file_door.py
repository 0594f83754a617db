"""core/files/ is the one door: every module of ticketlab reads and writes files through it (its
checks: regular files, owned outputs, atomic writes), or names why a call may bypass it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ticketlab"
DOOR = SRC / "core" / "files"  # the package whose modules are the door
# Calls that read or write a file by themselves: the same by any other name of a module's own import.
FILE_METHODS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "fdopen"}
FILE_FUNCTIONS = {"open", "load_file", "save_file", "safe_open", "fdopen"}
FILE_MODULE_CALLS = {
    "np.load",
    "numpy.load",
    "np.save",
    "numpy.save",
    "torch.load",
    "torch.save",
    "json.load",
}
# Readers that take a path where a check through core/files/ precedes them (module, call: why).
ALLOWED = {
    ("cli/__init__.py", "os.open"): "os.devnull opened to discard what a closed pipe would have read",
    ("models/load.py", "AutoConfig.from_pretrained"): "check_source ran check_folder on the model folder",
    ("models/load.py", "auto_class(head).from_pretrained"): "check_source ran check_folder first",
    ("models/load.py", "AutoTokenizer.from_pretrained"): "check_source ran check_folder first",
    ("masks/peft_tickets.py", "peft.PeftModel.from_pretrained"): "check_folder on the adapter folder first",
    ("studies/store.py", "sqlite3.connect"): "the store file passed check_regular first",
    ("studies/store_schema.py", "sqlite3.connect"): "a store copied: its source passed check_regular first",
    ("train/checkpoint.py", "torch.save"): "into bytes in memory, which atomic_write_bytes writes",
    ("train/checkpoint.py", "torch.load"): "from bytes in memory, which read_own read (open_own's checks)",
}
PATH_READERS = {"from_pretrained", "from_file", "connect"}  # third-party readers given a path


def _door_names(tree: ast.Module) -> set[str]:
    """The names a module imports from core/files/ (its own file functions are those)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and "files" in (node.module or "").split(".")[-2:]:
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def _file_calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    door, found = _door_names(tree), []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f, call = node.func, ast.unparse(node.func)
        if isinstance(f, ast.Name):
            bad = f.id in FILE_FUNCTIONS | FILE_METHODS and f.id not in door
        elif isinstance(f, ast.Attribute):
            bad = call in FILE_MODULE_CALLS or f.attr in FILE_METHODS or f.attr in PATH_READERS
            bad = bad or f.attr in FILE_FUNCTIONS
        else:
            bad = False
        if bad:
            found.append((node.lineno, call))
    return found


def test_every_file_is_read_and_written_through_core_files():
    """Every read and write of src/ goes through core/files/'s checked functions (a regular file,
    opened without waiting, of a bounded size); a reader that takes a path only after a check there,
    each listed with its reason. Calls, not text: a comment naming open( does not count."""
    seen, bad = set(), []
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(DOOR):
            continue
        rel = path.relative_to(SRC).as_posix()
        for line, call in _file_calls(path):
            if (rel, call) in ALLOWED:
                seen.add((rel, call))
            else:
                bad.append(f"src/ticketlab/{rel}:{line}: {call}(")
    assert not bad, "file access outside core/files/:\n" + "\n".join(bad)
    assert seen == set(ALLOWED), f"exceptions no longer needed: {set(ALLOWED) - seen}"


def test_the_door_package_names_every_public_name_of_its_modules():
    """`from ticketlab.core.files import X` gives the object its module defines, for every public name
    a module of the package defines (none left out, none pointing elsewhere)."""
    import importlib

    import ticketlab.core.files as door

    defined = {}
    for path in sorted(DOOR.glob("[!_]*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                names = []
            defined |= {name: path.stem for name in names if not name.startswith("_")}
    assert defined == door._WHERE
    for name, module in defined.items():
        assert getattr(door, name) is getattr(importlib.import_module(f"{door.__name__}.{module}"), name)


def test_the_door_scan_sees_each_kind_of_file_call(tmp_path):
    """What the scan above counts (so that it can fail): each form, and not a comment or a door call."""
    sample = tmp_path / "m.py"
    sample.write_text(
        "import json, numpy as np, torch\nfrom ..core.files.inputs import read_text\n"
        "open('a')\nPath('a').open()\nPath('a').read_text()\nnp.load('a')\ntorch.load('a')\n"
        "json.load(f)\nload_file('a')\nsafe_open('a', 'pt')\nx.write_bytes(b'')\n"
        "read_text('a')  # open('b') in a comment\n"
    )
    calls = [call for _, call in _file_calls(sample)]
    assert calls == [
        "open",
        "Path('a').open",
        "Path('a').read_text",
        "np.load",
        "torch.load",
        "json.load",
        "load_file",
        "safe_open",
        "x.write_bytes",
    ]
