"""MkDocs hook: the command-line reference, one page per verb, generated from `ticketlab.cli`'s parsers.

The pages are built from the same argparse parsers `ticketlab VERB --help` prints, when the site is
built, so the reference cannot drift from the code. They exist only in the build (no file is written
into `docs/`); `reference/cli/index.md` lists the verbs with their one-line help.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _this_checkout() -> None:
    """Import ticketlab from this checkout, whichever one the environment has installed: the site
    documents the code beside it. (MkDocs restores `sys.path` after loading a hook, so this runs
    in each event, before the first import.)"""
    if sys.path[0] != SRC:
        sys.path.insert(0, SRC)


CLI_DIR = "reference/cli"
# argparse wraps help to $COLUMNS (and `cli.help_format.HelpFormatter` the verbs' descriptions): the same
# pages everywhere, as wide as a terminal's 80 columns, which the site's text column holds unscrolled.
WIDTH = "80"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return "```text\n" + parser.format_help().rstrip() + "\n```\n"
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def verb_page(name: str, parser: argparse.ArgumentParser, summary: str) -> str:
    """One verb's page: its one-line summary, its `--help`, and each sub-command's (`search tamt`)."""
    page = f"# `ticketlab {name}`\n\n{summary}\n\n{_help(parser)}"
    for sub, sub_parser in _subparsers(parser).items():
        page += f"\n## `ticketlab {name} {sub}`\n\n{_help(sub_parser)}"
    return page


def cli_pages() -> dict[str, str]:
    """Page path (relative to the docs folder) -> markdown, for the index and every verb."""
    _this_checkout()
    from ticketlab.cli import VERBS, build_parser

    parser = build_parser()
    parser.prog = "ticketlab"
    verbs = _subparsers(parser)
    index = [
        "# Command line",
        "",
        "Every verb's options, as `ticketlab VERB --help` prints them (generated from the parsers when",
        "the site is built).",
        "",
        _help(parser),
        "| verb | what it does |",
        "|---|---|",
    ]
    pages = {}
    for name, sub in verbs.items():
        summary = VERBS[name].help
        index.append(f"| [`{name}`]({name}.md) | {summary} |")
        pages[f"{CLI_DIR}/{name}.md"] = verb_page(name, sub, summary)
    pages[f"{CLI_DIR}/index.md"] = "\n".join(index) + "\n"
    return pages


def on_files(files: Files, config) -> Files:
    for path, content in cli_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_config(config):
    """List every verb's page under the nav's "Command line" entry, so a new verb needs no nav edit."""
    _this_checkout()
    from ticketlab.cli import VERBS

    def expand(items: list) -> list:
        for i, item in enumerate(items):
            if isinstance(item, dict):
                ((title, value),) = item.items()
                if value == f"{CLI_DIR}/index.md":
                    verbs = [{f"ticketlab {name}": f"{CLI_DIR}/{name}.md"} for name in VERBS]
                    items[i] = {title: [{"Overview": value}, *verbs]}
                elif isinstance(value, list):
                    expand(value)
        return items

    config["nav"] = expand(config["nav"])
    return config
