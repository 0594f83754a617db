"""The documentation site's generated command-line reference: a page per verb, holding the `--help`
the command line prints, sub-commands included (`make docs` builds the site itself, strict)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from ticketlab.cli import VERBS, build_parser

pytest.importorskip("mkdocs")
ROOT = Path(__file__).resolve().parents[1]


def hook():
    path = ROOT / "docs" / "hooks" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_verb_has_its_help_as_a_page(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    module = hook()
    pages = module.cli_pages()
    assert set(pages) == {"reference/cli/index.md", *(f"reference/cli/{v}.md" for v in VERBS)}
    assert os.environ["COLUMNS"] == "80", "the hook changed the environment"
    monkeypatch.setenv("COLUMNS", module.WIDTH)  # the width the pages are written at
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    for name, sub in verbs.items():
        assert sub.format_help().rstrip() in pages[f"reference/cli/{name}.md"], name
    search = pages["reference/cli/search.md"]
    assert "## `ticketlab search tamt`" in search and "## `ticketlab search imp`" in search
    assert all(f"[`{name}`]({name}.md)" in pages["reference/cli/index.md"] for name in VERBS)


def test_the_nav_lists_every_verb():
    config = {"nav": yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]}
    nav = hook().on_config(config)["nav"]
    reference = next(item["Reference"] for item in nav if "Reference" in item)
    command_line = next(item["Command line"] for item in reference if "Command line" in item)
    assert [next(iter(i.values())) for i in command_line[1:]] == [f"reference/cli/{v}.md" for v in VERBS]
