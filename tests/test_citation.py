"""What a user cites: CITATION.cff at the repository's root (Citation File Format 1.2.0, ticketlab's
version as pyproject.toml gives it, the three papers as references), the site's Citing page with
the same papers as BibTeX, and the README pointing at both."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]


def cff() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def bibtex() -> dict[str, dict[str, str]]:
    """The Citing page's BibTeX entries: key -> field -> value (braces and line breaks dropped)."""
    text = (ROOT / "docs" / "citing.md").read_text(encoding="utf-8")
    entries = {}
    for key, body in re.findall(r"^@\w+\{(\w+),\n(.*?)^\}", text, flags=re.M | re.S):
        fields = re.findall(r"^\s*(\w+)\s*=\s*\{(.*?)\},?\s*$(?=\n\s*\w+\s*=|\n?\Z)", body, flags=re.M | re.S)
        entries[key] = {k: " ".join(v.replace("{", "").replace("}", "").split()) for k, v in fields}
    return entries


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_citation_cff_is_valid_cff_with_the_project_version():
    record = cff()
    assert record["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "version", "type", "license"):
        assert record.get(key), key
    assert record["version"] == version()
    assert record["type"] == "software" and record["license"] == "Apache-2.0"
    for author in record["authors"]:
        assert author.get("name") or author.get("family-names"), author
    references = record["references"]
    assert len(references) == 5  # TAMT, Chen et al., super tickets, Wanda, SparseGPT
    for ref in references:
        assert ref["type"] == "conference-paper" and isinstance(ref["year"], int), ref["title"]
        assert ref["authors"] and all(a["family-names"] and a["given-names"] for a in ref["authors"])


def test_the_citing_page_gives_the_same_papers_and_version_as_the_cff():
    entries = bibtex()
    assert set(entries) == {
        *("liu2022tamt", "chen2020lottery", "liang2021super", "sun2024wanda", "frantar2023sparsegpt"),
        "ticketlab",
    }
    assert entries["ticketlab"]["version"] == version()
    papers = {" ".join(ref["title"].split()): ref for ref in cff()["references"]}
    assert {e["title"] for k, e in entries.items() if k != "ticketlab"} == set(papers)
    for key, entry in entries.items():
        if key != "ticketlab":
            ref = papers[entry["title"]]
            assert entry["year"] == str(ref["year"]), key
            authors = [f"{a['family-names']}, {a['given-names']}" for a in ref["authors"]]
            assert entry["author"].split(" and ") == authors, key
    venues = {key: entry.get("booktitle", "") for key, entry in entries.items()}
    assert "(NAACL)" in venues["liu2022tamt"] and "(NeurIPS)" in venues["chen2020lottery"]
    assert "(ACL-IJCNLP)" in venues["liang2021super"] and "(ICLR)" in venues["sun2024wanda"]
    assert "(ICML)" in venues["frantar2023sparsegpt"]


def test_the_titles_are_the_papers_own():
    """Each title as the papers in ../shared/papers give it (a title, or a reference to it); the
    one-shot methods' papers, which are not there, as their guide names them."""
    if not (SHARED / "papers").is_dir():
        pytest.skip("../shared/papers is absent")
    text = " ".join(p.read_text(encoding="utf-8") for p in (SHARED / "papers").glob("*.md"))
    text = " ".join(text.split()).lower()
    guide = " ".join((ROOT / "docs" / "how-to" / "one-shot.md").read_text(encoding="utf-8").split()).lower()
    for ref in cff()["references"]:
        title = " ".join(ref["title"].split()).lower()
        assert title in (guide if ref["year"] >= 2023 else text), ref["title"]


def test_the_readme_and_the_site_point_at_both():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/citing.md)" in readme and "(CITATION.cff)" in readme
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    assert {"Citing": "citing.md"} in nav
