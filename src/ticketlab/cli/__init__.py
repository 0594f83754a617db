"""`ticketlab <verb>`: one module per verb in this package, discovered automatically.

A verb module defines `HELP` (one line, a string literal), `add_arguments(parser)` and
`run(args) -> int`; `VERB` (a string literal) when its name is not the module's. Only the module of
the verb being run is imported: the verb list of `ticketlab --help` is read from the modules' sources
(their `VERB` and `HELP`), so it costs milliseconds, not the seconds torch and transformers take to
import. User errors
(`TicketlabError`), and file-system errors that name their path, print one line to stderr and exit 2;
Ctrl-C exits 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from ..core.errors import TicketlabError, one_line
from .common import finite_floats

# Verbs in the order `--help` lists them; verbs not named here follow alphabetically.
ORDER = [
    "prune",
    "search",
    "finetune",
    "super",
    "mtl",
    "importance",
    "adapt",
    "evaluate-pretrain",
    "info",
    "compare",
    "export",
    "push",
    "compact",
    "sweep",
    "report",
    "pretrain",
    "demo",
]


@dataclass(frozen=True)
class Verb:
    """A verb as its module's source declares it, found without importing the module."""

    name: str
    help: str
    module_name: str

    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)


def _literals(module_name: str) -> dict[str, str]:
    """The module-level `NAME = "string"` assignments of a module's source (not executed)."""
    spec = importlib.util.find_spec(module_name)
    source = spec.loader.get_source(module_name) if spec and spec.loader else None
    found = {}
    for node in ast.parse(source or "").body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def verbs() -> dict[str, Verb]:
    """Every verb module of this package with a `HELP`, in `--help` order."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module_name = f"{__name__}.{info.name}"
        literals = _literals(module_name)
        if "HELP" in literals:
            name = literals.get("VERB", info.name.replace("_", "-"))
            found[name] = Verb(name, literals["HELP"], module_name)
    return dict(
        sorted(found.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0]))
    )


def _verb_modules() -> dict[str, ModuleType]:
    """Every verb's module, imported (for tests and tools that inspect them all)."""
    return {name: verb.module() for name, verb in verbs().items()}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or with `only`, one where only that verb's module is imported and
    its options added (the others are listed with their help line: all `--help` needs)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ticketlab",
        description="Find, train and transfer lottery tickets (sparse subnetworks) in pre-trained models.",
    )
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, verb in verbs().items():
        if only is not None and name != only:
            sub.add_parser(name, help=verb.help)
            continue
        module = verb.module()
        p = sub.add_parser(
            name,
            help=verb.help,
            description=(module.__doc__ or verb.help).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    finite_floats(parser)
    return parser


def _verb_of(argv: Sequence[str]) -> str:
    """The verb named on a command line: its first word that is not an option (the top level has
    only --help and --version); an unknown word or none is argparse's to report."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only=_verb_of(argv)).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except TicketlabError as e:  # one line, whatever a name quoted in it holds
        print(one_line(f"ticketlab {args.verb}: error: {e}"), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ticketlab info MASK | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 0
    except OSError as e:  # disk full, read-only, no permission where no writer said so itself
        if e.filename is None:
            raise
        print(one_line(f"ticketlab {args.verb}: error: {e.filename}: {e.strerror or e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"ticketlab {args.verb}: interrupted; finished work is saved, run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
