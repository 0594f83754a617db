"""The documentation site: the generated command-line reference (a page per verb, holding the
`--help` the command line prints, sub-commands included, as wide as a terminal), and the site as
`make docs` builds it (strict), once per session into a temporary folder: a search that works from
a folder on disk, pages that fetch nothing from the network, and what the home page and the README
say alike."""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ticketlab.cli import VERBS, build_parser

pytest.importorskip("mkdocs")
ROOT = Path(__file__).resolve().parents[1]


def hook(name: str = "cli_reference"):
    path = ROOT / "docs" / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
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
    for path, page in pages.items():  # no code block wider than the page: argparse's usage groups aside
        for block in re.findall(r"```text\n(.*?)```", page, flags=re.S):
            for line in block.splitlines():
                assert len(line) <= int(module.WIDTH) or re.fullmatch(r" +\[.*\]", line), f"{path}: {line}"
    search = pages["reference/cli/search.md"]
    assert "## `ticketlab search tamt`" in search and "## `ticketlab search imp`" in search
    assert all(f"[`{name}`]({name}.md)" in pages["reference/cli/index.md"] for name in VERBS)


def test_the_nav_lists_every_verb():
    config = {"nav": yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]}
    nav = hook().on_config(config)["nav"]
    reference = next(item["Reference"] for item in nav if "Reference" in item)
    command_line = next(item["Command line"] for item in reference if "Command line" in item)
    assert [next(iter(i.values())) for i in command_line[1:]] == [f"reference/cli/{v}.md" for v in VERBS]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it (strict), into a temporary folder."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = tmp_path_factory.mktemp("site")
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(out), strict=True))
    return out


def test_search_works_from_a_folder_on_disk(site):
    """Opened from disk (file://), a page may load a script but not fetch JSON, nor start a Worker:
    the index is written as a script too, and every page loads the Worker shim from the site itself,
    before Material's bundle; pages link to files (`how-to/gpus.html`), not to folders."""
    script = (site / "search" / "search_index.js").read_text(encoding="utf-8")
    assert script.startswith("var __index = ")
    index = json.loads(script.removeprefix("var __index = "))
    assert index == json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    assert any(doc["location"].startswith("how-to/gpus.html") for doc in index["docs"])
    pages = sorted(set(site.rglob("*.html")) - {site / "404.html"})  # a server's page: root-relative links
    assert len(pages) > 40
    for page in pages:
        html = page.read_text(encoding="utf-8")
        scripts = re.findall(r'<script src="([^"]+)"', html)
        assert scripts and not [s for s in scripts if "://" in s or s.startswith("//")], page
        shim = [i for i, s in enumerate(scripts) if s.endswith("assets/javascripts/iframe-worker-shim.js")]
        bundle = [i for i, s in enumerate(scripts) if "/javascripts/bundle." in f"/{s}"]
        assert shim and bundle and shim[0] < bundle[0], page
        assert (page.parent / scripts[shim[0]]).resolve() == site / "assets/javascripts/iframe-worker-shim.js"
        assert not re.findall(r'<link[^>]+href="(?:https?:)?//', html), page  # no fonts or styles fetched
    assert 'href="how-to/gpus.html"' in (site / "index.html").read_text(encoding="utf-8")


def test_no_code_on_the_site_shows_an_escaping_backslash(site):
    """`omp\\|random` in a table cell's code shows its backslash on the site (GitHub hides it)."""
    shown = [
        (page.relative_to(site), code)
        for page in site.rglob("*.html")
        for code in re.findall(r"<code>([^<]*)</code>", page.read_text(encoding="utf-8"))
        if "\\|" in code
    ]
    assert not shown


def test_the_home_page_and_the_readme_give_the_demo_the_same_time():
    def said(path: Path) -> str:
        text = " ".join(path.read_text(encoding="utf-8").split())
        return re.search(r"prints the report's main table \((about [^;]+);", text).group(1)

    assert said(ROOT / "README.md") == said(ROOT / "docs" / "index.md")


def test_what_the_tutorial_writes_is_ignored_by_git():
    """The folders the tutorial's commands and code write, run from the repository root as the page
    says, are in .gitignore: `git status` stays clean after following it."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    text = (ROOT / "docs" / "tutorials" / "first-ticket.md").read_text(encoding="utf-8")
    written = set(re.findall(r"--out ([\w.-]+)/", text))
    written |= set(re.findall(r'write_dataset\(.*, "([\w.-]+)"\)', text))
    assert {"data", "masks", "runs", "tickets"} <= written
    for folder in sorted(written):
        check = subprocess.run(["git", "check-ignore", "-q", f"{folder}/x"], cwd=ROOT)
        assert check.returncode == 0, f"{folder}/ is not ignored"


def test_the_gpu_guide_installs_a_cuda_build_the_makefile_keeps():
    """The GPU guide's CUDA install: PyTorch's CUDA index, into the project's .venv, at the version
    the Makefile pins (a CUDA wheel `X+cuNNN` satisfies `torch==X`, so `make` keeps it)."""
    guide = (ROOT / "docs" / "how-to" / "gpus.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"pip install --quiet torch==(\S+)", makefile)[1]
    install = r"\.venv/bin/pip install torch==(\S+) --index-url https://download\.pytorch\.org/whl/(cu\d+)"
    version, cuda = re.search(install, guide).groups()
    assert version == pinned
    assert f"{version}+{cuda} True" in guide and "make test" in guide


def test_the_configs_page_lists_every_field_with_its_type_default_and_help(site):
    """The Python API's configs, every field in its order with its type, default and help: the help
    the command line prints for it where it has an option, else the comment beside it."""
    from ticketlab import FinetuneConfig, ImpConfig, PruneConfig, SearchConfig, TamtConfig

    configs = hook("config_reference").configs()
    assert {PruneConfig, SearchConfig, FinetuneConfig, TamtConfig, ImpConfig} <= set(configs)
    page = (site / "reference" / "configs.html").read_text(encoding="utf-8")
    cell = r"<td>(.*?)</td>\s*"
    for cls in configs:
        section = page.split(f'<h2 id="{cls.__name__.lower()}">', 1)[1].split("<h2", 1)[0]
        rows = re.findall(r"<tr>\s*<td><code>(\w+)</code></td>\s*" + cell * 4 + "</tr>", section, flags=re.S)
        assert [r[0] for r in rows] == [f.name for f in dataclasses.fields(cls)], cls.__name__
        for f, (name, kind, default, _, help_text) in zip(dataclasses.fields(cls), rows, strict=True):
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", help_text)).split())
            assert kind and text, f"{cls.__name__}.{name}: no type or no help"
            if f.metadata.get("help"):
                assert text == " ".join(f.metadata["help"].replace("`", "").split()), f"{cls.__name__}.{name}"
            shown = html.unescape(re.sub(r"<[^>]+>", "", default))
            if f.default is not dataclasses.MISSING:
                assert shown == repr(f.default), f"{cls.__name__}.{name}"
    prune = page.split('<h2 id="pruneconfig">', 1)[1]
    assert "<td>float in [0, 1) | None</td>" in prune  # sparsity: its range, and None
