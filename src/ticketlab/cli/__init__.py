"""`ticketlab <verb>`: one module per verb in this package, discovered automatically.

A verb module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. User errors
(`TicketlabError`), and file-system errors that name their path, print one line to stderr and exit 2;
Ctrl-C exits 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import TicketlabError
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
    "compact",
    "sweep",
    "report",
    "pretrain",
    "demo",
]


def _verb_modules() -> dict[str, object]:
    verbs = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "run"):
            verbs[getattr(module, "VERB", info.name.replace("_", "-"))] = module
    return dict(
        sorted(verbs.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0]))
    )


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ticketlab",
        description="Find, train and transfer lottery tickets (sparse subnetworks) in pre-trained models.",
    )
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, module in _verb_modules().items():
        p = sub.add_parser(
            verb,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    finite_floats(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except TicketlabError as e:
        print(f"ticketlab {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ticketlab info MASK | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 0
    except OSError as e:  # disk full, read-only, no permission where no writer said so itself
        if e.filename is None:
            raise
        print(f"ticketlab {args.verb}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"ticketlab {args.verb}: interrupted; finished work is saved, run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
