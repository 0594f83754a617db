"""Every option of every verb keeps working: its spelling and its default are pinned here.

`cli_options.json` holds each verb's spellings and defaults as users' scripts know them, whatever
generates the parser (`cli.common.add_config_arguments` from the config dataclasses). An option may
gain an alias or a verb a new option; a pinned spelling may not disappear and its default may not
change (rename a flag by keeping the old spelling as an alias: `cli.common.add_deprecated_alias`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from ticketlab.cli import build_parser
from ticketlab.cli.common import add_config_arguments, config_from_args
from ticketlab.core.checks import option

PINNED: dict[str, dict] = json.loads((Path(__file__).parent / "cli_options.json").read_text())


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Each verb's parser; a verb with methods (search) as one parser per method ('search tamt')."""
    found = {}
    for name, p in build_parser()._subparsers._group_actions[0].choices.items():
        methods = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        found.update({f"{name} {m}": sp for m, sp in methods[0].choices.items()} if methods else {name: p})
    return found


def options(p: argparse.ArgumentParser) -> dict[str, object]:
    """Each spelling of each option (`<dest>` for a positional) -> the parser's default for it."""
    found = {}
    for a in p._actions:
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            for spelling in a.option_strings or [f"<{a.dest}>"]:
                found[spelling] = json.loads(json.dumps(p.get_default(a.dest)))  # tuples as lists
    return found


@pytest.mark.parametrize("verb", sorted(PINNED))
def test_pinned_options_keep_their_spelling_and_default(verb):
    live = parsers()
    assert verb in live, f"verb {verb!r} disappeared"
    now = options(live[verb])
    gone = sorted(set(PINNED[verb]) - set(now))
    assert not gone, f"{verb}: options disappeared: {gone} (keep old spellings as aliases)"
    changed = {k: (v, now[k]) for k, v in PINNED[verb].items() if now[k] != v}
    assert not changed, f"{verb}: defaults changed (pinned, now): {changed}"


def test_every_verb_is_pinned():
    assert set(parsers()) == set(PINNED)


@dataclasses.dataclass
class Toy:
    name: str = option(help="a name", metavar="NAME")
    size: int | None = option(None, "how many")
    rate: float = option(0.5, "a rate")
    kind: str = option("a", "which", choices=("a", "b"))
    tags: list[str] = option(factory=lambda: ["x"], help="tags")
    verbose: bool = option(False, "say more")
    progress: bool = option(True, "no progress bar")
    check: bool = option(True, "skip the check", flag=("--skip-check", "--no-check"))


def test_config_options_from_the_dataclass():
    """Type, choices, nargs, required and default come from the field; a bool that is on by default
    is switched off by its flag; a verb's override wins; the config comes back whole."""
    p = argparse.ArgumentParser()
    names = [f.name for f in dataclasses.fields(Toy)]
    add_config_arguments(p, Toy, names, rate={"default": 0.25})
    by_flag = {s: a for a in p._actions for s in a.option_strings}
    assert by_flag["--name"].required and by_flag["--name"].metavar == "NAME"
    assert by_flag["--size"].type is int and by_flag["--rate"].type is float
    assert by_flag["--kind"].choices == ("a", "b") and by_flag["--tags"].nargs == "+"
    assert by_flag["--rate"].help == "a rate (default: 0.25)"
    assert by_flag["--no-check"] is by_flag["--skip-check"]

    args = p.parse_args(["--name", "n"])
    assert config_from_args(Toy, args, names) == Toy("n", rate=0.25)
    args = p.parse_args("--name n --size 3 --kind b --tags p q --verbose --no-progress --no-check".split())
    assert config_from_args(Toy, args, names, size=4) == Toy(
        "n", size=4, rate=0.25, kind="b", tags=["p", "q"], verbose=True, progress=False, check=False
    )
    assert args.no_progress is True and args.skip_check is True  # the attributes flags always had
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "n", "--kind", "c"])
