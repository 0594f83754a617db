"""What a user reads names nothing only the project's own history explains: no issue numbers, and no
paths outside the repository (`../shared/...`), in the README, the site's pages, the source's strings
and comments, and every `--help` text. The study records under docs/results keep their paths (they
record where their runs read their inputs), but name no issue numbers either: a record says what a
rule, default or change is, in its pages and specs. Nor does the rest the repository ships (tests,
benchmarks, examples, the recipes: the studies' scripts, the models' cards and scripts, the package
files). The models' cards and scripts, what a user of a shipped model reads, name no commit, no
development machine's paths (`../shared/...`, a worktree) and no issue either: a card names the study
folder under docs/results and its corpora by what they are and where they come from."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ticketlab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
RECORD_TEXT = {".md", ".sh", ".py", ".yaml"}  # what a record's reader reads; not its outputs and logs
ISSUE = re.compile(r"\bissues?[ -]?#?[0-9]", re.IGNORECASE)  # issue 34, Issue #34, issues 33, issue-36
OUTSIDE = re.compile(r"\.\./shared\b")
# A commit hash: 7 to 40 hex digits with a letter and a digit among them (230e2d4), not a word or a number
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
WORKTREE = re.compile(r"/work/|\bworktree\b", re.IGNORECASE)  # the development machine's checkouts
AN_ISSUE = re.compile(r"\bissues?\b", re.IGNORECASE)  # "the issue's target": a reader cannot know which


def user_pages() -> list[Path]:
    """README.md and the site's markdown pages, study records under docs/results left out."""
    docs = [p for p in (ROOT / "docs").rglob("*.md") if "results" not in p.relative_to(ROOT / "docs").parts]
    return [ROOT / "README.md", *sorted(docs)]


def study_records() -> list[Path]:
    """The study records' pages (generated reports included), scripts and specs under docs/results."""
    return sorted(p for p in RESULTS.rglob("*") if p.suffix in RECORD_TEXT and p.is_file())


def offending_lines(path: Path, pattern: re.Pattern[str]) -> list[str]:
    lines = enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
    return [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for i, line in lines if pattern.search(line)]


def help_texts() -> dict[str, str]:
    """`ticketlab --help`, every verb's, and every sub-command's (`search tamt`), by command."""
    texts = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        texts[name] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, sub_parser in action.choices.items():
                    walk(f"{name} {sub}", sub_parser)

    walk("ticketlab", build_parser())
    return texts


@pytest.mark.parametrize("pattern", [ISSUE, OUTSIDE], ids=["issue-numbers", "outside-paths"])
def test_pages_name_no_internal_references(pattern):
    pages = user_pages()
    assert ROOT / "docs" / "tutorials" / "first-ticket.md" in pages
    found = [line for page in pages for line in offending_lines(page, pattern)]
    assert not found, "\n".join(found)


def test_study_records_name_no_issue_numbers():
    records = study_records()
    assert {
        RESULTS / "index.md",
        RESULTS / "bert-mini-ref" / "spec.yaml",
    } <= set(records)
    found = [line for record in records for line in offending_lines(record, ISSUE)]
    assert not found, "\n".join(found)


def shipped_text() -> list[Path]:
    """The other text the repository ships: tests (this file's sample strings left out), benchmarks,
    examples, the recipes, the models' cards and scripts, the package description and the Makefile."""
    folders = [ROOT / d for d in ("tests", "benchmarks", "examples", "recipes", "models")]
    found = [p for d in folders for p in d.rglob("*") if p.suffix in RECORD_TEXT | {".toml"} and p.is_file()]
    found += [ROOT / "PYPI.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    return sorted(p for p in found if p != Path(__file__).resolve())


def test_shipped_text_names_no_issue_numbers():
    texts = shipped_text()
    expected = {ROOT / "models" / "minilm-mlm" / "check_accuracy.py", ROOT / "benchmarks" / "peer_tamt.py"}
    expected |= {ROOT / "recipes" / "score-dtype" / "recheck.sh", ROOT / "recipes" / "family.py"}
    assert expected | {ROOT / "tests" / "conftest.py"} <= set(texts)
    assert Path(__file__).resolve() not in texts
    found = [line for text in texts for line in offending_lines(text, ISSUE)]
    assert not found, "\n".join(found)


def model_text() -> list[Path]:
    """The shipped models' cards and scripts (models/*/README.md, models/*/*.py)."""
    return sorted(p for p in (ROOT / "models").rglob("*") if p.suffix in {".md", ".py"} and p.is_file())


@pytest.mark.parametrize(
    "pattern",
    [ISSUE, OUTSIDE, COMMIT, WORKTREE, AN_ISSUE],
    ids=["issue-numbers", "outside-paths", "commits", "worktrees", "issues"],
)
def test_model_cards_name_no_development_history(pattern):
    texts = model_text()
    card = ROOT / "models" / "minilm-mlm"
    assert {card / "README.md", card / "check_accuracy.py"} <= set(texts)
    found = [line for text in texts for line in offending_lines(text, pattern)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("pattern", [ISSUE, OUTSIDE], ids=["issue-numbers", "outside-paths"])
def test_source_names_no_internal_references(pattern):
    sources = sorted((ROOT / "src").rglob("*.py"))
    assert len(sources) > 100
    found = [line for source in sources for line in offending_lines(source, pattern)]
    assert not found, "\n".join(found)


def test_help_names_no_internal_references():
    texts = help_texts()
    assert {"ticketlab search tamt", "ticketlab finetune", "ticketlab demo"} <= set(texts)
    found = [f"{command}: {m[0]!r}" for command, text in texts.items() for m in [ISSUE.search(text)] if m]
    found += [f"{command}: {m[0]!r}" for command, text in texts.items() for m in [OUTSIDE.search(text)] if m]
    assert not found, "\n".join(found)


def test_the_patterns_find_what_they_look_for():
    """The patterns themselves: a line with an issue number or a path outside is found, others not."""
    assert ISSUE.search("ticketlab before Issue 34") and OUTSIDE.search("--model ../shared/models/x")
    assert ISSUE.search("as issue #36 asked") and ISSUE.search("(issues 33 and 34)")
    assert not ISSUE.search("an issue of taste, 34 runs") and not OUTSIDE.search("models/minilm-mlm")
    assert not ISSUE.search("pytorch/pytorch#153825, an upstream report") and not ISSUE.search("tissue 3")
    assert ISSUE.search("ticketlab's issue-36 study") and AN_ISSUE.search("The issue's target was 40%")
    assert COMMIT.search("at commit 230e2d4") and WORKTREE.search("(worktree `/work/study-36`)")
    assert not COMMIT.search("4,000 steps, 1536x384, decade, 20261123") and not AN_ISSUE.search("tissue")
