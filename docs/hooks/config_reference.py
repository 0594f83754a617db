"""MkDocs hook: the configs' reference, every field of every verb's config with its type, default and
help, generated from the dataclasses when the site is built.

A config's field carries the command line's help in its metadata (`core.checks.option`); a field the
command line declares by hand (`--model`, `--targets`) takes its help from that option of the verb's
parser, and a field with no option (`SearchConfig.method`) from the comment beside it in the source.
The page exists only in the build (`reference/configs.md`), so it cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import tokenize
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from mkdocs.structure.files import File, Files

SRC = str(Path(__file__).resolve().parents[2] / "src")
PAGE = "reference/configs.md"

# Each config, by its import path, and the command-line parsers that fill it ("search tamt": the
# sub-command). A registered method's config not listed here is added with its own sub-command.
CONFIGS = {
    "ticketlab.verbs.prune:PruneConfig": ["prune"],
    "ticketlab.verbs.search:SearchConfig": ["search tamt", "search imp"],
    "ticketlab.methods.tamt.config:TamtConfig": ["search tamt"],
    "ticketlab.methods.imp.config:ImpConfig": ["search imp"],
    "ticketlab.verbs.evaluate_pretrain:PretrainEvalConfig": ["evaluate-pretrain"],
    "ticketlab.verbs.finetune_config:FinetuneConfig": ["finetune"],
    "ticketlab.verbs.export:ExportConfig": ["export"],
    "ticketlab.verbs.compact:CompactConfig": ["compact"],
    "ticketlab.verbs.info:InfoConfig": ["info"],
    "ticketlab.verbs.compare:CompareConfig": ["compare"],
    "ticketlab.verbs.compare_runs:CompareRunsConfig": ["compare"],
    "ticketlab.lm.pretrain_config:PretrainConfig": ["pretrain"],
    "ticketlab.studies.super_config:SuperConfig": ["super"],
    "ticketlab.studies.mtl_config:MtlConfig": ["mtl"],
    "ticketlab.studies.adapt_config:AdaptConfig": ["adapt"],
    "ticketlab.methods.sparsegpt.config:SparseGptConfig": ["prune"],
}


def _this_checkout() -> None:
    """Import ticketlab from this checkout (as `cli_reference` does: MkDocs restores `sys.path`
    after loading a hook, so this runs in each event, before the first import)."""
    if sys.path[0] != SRC:
        sys.path.insert(0, SRC)


def configs() -> dict[type, list[str]]:
    """Each config class -> the names of the parsers that fill it."""
    _this_checkout()
    import importlib

    from ticketlab.methods.registry import methods

    found = {}
    for path, parsers in CONFIGS.items():
        module, _, name = path.partition(":")
        found[getattr(importlib.import_module(module), name)] = parsers
    for name, method in methods().items():
        if dataclasses.is_dataclass(method.config) and method.config not in found:
            found[method.config] = [f"{method.verb} {name}"] if method.verb else []  # a sweep's only
    return found


def named_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser by name; a verb with methods as one parser per method ('search tamt')."""
    _this_checkout()
    from ticketlab.cli import build_parser

    found = {}
    for name, p in build_parser()._subparsers._group_actions[0].choices.items():
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        found.update({f"{name} {m}": sp for m, sp in subs[0].choices.items()} if subs else {name: p})
    return found


def type_text(tp: Any) -> str:
    """An annotation as a reader wants it: `int >= 1 | None`, `"local" | "global"`, `list[str]`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        ranges = [str(r) for r in tp.__metadata__ if type(r).__name__ == "Range"]
        return " ".join([type_text(args[0]), *ranges])
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_text(a) for a in args))
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in args)
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{'list' if name == 'Sequence' else name}[{', '.join(type_text(a) for a in args)}]"
    if isinstance(tp, type):
        return "path" if tp.__name__ == "PathLike" else tp.__name__
    return str(tp).replace("typing.", "")


def default_text(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`"
    return "required" if f.default is dataclasses.MISSING else f"`{f.default!r}`"


def comments(cls: type) -> dict[str, str]:
    """A field's comment in the class's source: the one on its line, else the comment lines just
    above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    by_line = {
        t.start[0] - 1: t.string.lstrip("#").strip()
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    }
    found = {}
    for i, line in enumerate(lines):
        if (m := re.match(r"    (\w+)\s*:", line)) is None:
            continue
        above = []
        for k in range(i - 1, -1, -1):  # the comment-only lines right above the field
            if k not in by_line or not lines[k].lstrip().startswith("#"):
                break
            above.insert(0, by_line[k])
        inline = by_line.get(i) if not line.lstrip().startswith("#") else None
        if inline or above:
            found[m[1]] = inline or " ".join(above)
    return found


def option_help(f: dataclasses.Field, parsers: list[argparse.ArgumentParser]) -> tuple[str, str]:
    """The option that sets field `f` on the command line and its help, from the first parser that
    has it ('', '' where none does)."""
    from ticketlab.core.checks import option_flags, option_name

    for parser in parsers:
        for action in parser._actions:
            positional = not action.option_strings and action.dest == option_name(f)
            if positional or option_flags(f)[0] in action.option_strings:
                spelling = action.dest.upper() if positional else action.option_strings[0]
                return spelling, (action.help or "").replace("%%", "%")
    return "", ""


def config_section(cls: type, parser_names: list[str], parsers: dict[str, argparse.ArgumentParser]) -> str:
    """One config's table: field, type, default, command-line option, help."""
    from ticketlab.core.checks import field_types

    hints, notes = field_types(cls), comments(cls)
    own = [parsers[n] for n in parser_names if n in parsers]
    via = ", ".join(f"`ticketlab {n}`" for n in parser_names)
    via = f"On the command line: {via}." if via else "No command-line verb of its own."
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # the dataclass's own signature: its module's docstring says more
        doc = sys.modules[cls.__module__].__doc__ or ""
    doc = inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ")
    rows = [
        f"## `{cls.__name__}`",
        "",
        f"`{cls.__module__}.{cls.__name__}`: {doc} {via}",
        "",
        "| field | type | default | option | help |",
        "|---|---|---|---|---|",
    ]
    for f in dataclasses.fields(cls):
        spelling, cli_help = option_help(f, own)
        text = f.metadata.get("help") or cli_help or notes.get(f.name, "")
        kind = type_text(hints[f.name]).replace("|", "\\|")  # not as code: a table shows `\\|` there
        option = f"`{spelling}`" if spelling else ""
        rows.append(f"| `{f.name}` | {kind} | {default_text(f)} | {option} | {_cell(text)} |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    """Help text as one table cell: one line; outside code, pipes escaped (inside code a table would
    show the backslash) and angle brackets too (`<unk>` would be read as an HTML tag)."""
    parts = " ".join(text.split()).split("`")
    plain = {"|": "\\|", "<": "&lt;", ">": "&gt;"}
    return "`".join(p if i % 2 else p.translate(str.maketrans(plain)) for i, p in enumerate(parts))


def config_page() -> str:
    parsers = named_parsers()
    intro = [
        "# Configs",
        "",
        "Every field of every verb's config dataclass: its type (with its range), its default, the",
        "command-line option that sets it and its help (generated from the dataclasses when the site is",
        "built). A config is checked when it is built: a value out of its type or range raises",
        "`ticketlab.core.errors.ConfigError` naming the field. The narrative is",
        "[The Python API](python-api.md).",
        "",
    ]
    sections = [config_section(cls, names, parsers) for cls, names in configs().items()]
    return "\n".join([*intro, *sections])


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, PAGE, content=config_page()))
    return files
