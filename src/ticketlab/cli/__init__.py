"""`ticketlab <verb>`: one module per verb in this package, named with its help line in `VERBS`.

A verb module defines `add_arguments(parser)` and `run(args) -> int`. Only the module of the verb
being run is imported (`ticketlab --help` lists the table), so it costs milliseconds, not the seconds
torch and transformers take to import. User errors
(`TicketlabError`), and file-system errors that name their path, print one line to stderr and exit 2;
Ctrl-C exits 130 and SIGTERM 143 (`terminate.py`), each saying how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from .. import __version__
from ..core.checks import FieldError
from ..core.errors import TicketlabError, one_line, printable
from ..core.memory import keep_freed_memory
from ..data.sources import check_corpus_source, check_data_dir
from ..masks.names import check_mask_source
from ..methods.registry import methods
from ..models.source import check_source
from ..studies.records import store_in, study_in
from .common import Parser, finite_floats, option_of
from .help_format import HelpFormatter
from .terminate import Terminated, pass_on, sigterm_interrupts


@dataclass(frozen=True)
class Verb:
    """A verb: its name, its line in `ticketlab --help`, and its module in this package."""

    name: str
    template: str  # its line; "{methods}" stands for the names of the methods registered for it
    module_name: str

    def module(self) -> ModuleType:
        # lazy: only the verb being run is imported, so `ticketlab --help` costs no torch
        return importlib.import_module(f"{__name__}.{self.module_name}")

    @property
    def help(self) -> str:
        """Its line in `ticketlab --help`, naming the methods the registry holds for it (a method
        registered later is listed without an edit here; the registry's modules import no torch)."""
        if "{methods}" not in self.template:
            return self.template
        return self.template.format(methods=", ".join(methods(self.name)))


# verb: (its module in this package, its line in `ticketlab --help`), in the order `--help` lists them.
# A new verb is a module here and a row here.
_TABLE = {
    "prune": ("prune", "one-shot pruning ({methods}) of a pre-trained model into a mask directory"),
    "search": ("search", "search a mask by training ({methods}) on MLM, KD or a task"),
    "finetune": (
        "finetune",
        "fine-tune a (model, mask) on a GLUE task, SQuAD or your own (task.json); best and final dev scores",
    ),
    "super": (
        "super_tickets",
        "super tickets: importance, winning/random/losing structured tickets, rewinding, selection",
    ),
    "mtl": ("mtl", "ticket sharing: multi-task learning where each task updates only its structured ticket"),
    "importance": (
        "importance",
        "ticket importance across tasks and each task's share per unit, from super-ticket studies",
    ),
    "adapt": (
        "adapt",
        "domain adaptation: a super ticket and its full model from task A fine-tuned on fractions of B",
    ),
    "evaluate-pretrain": (
        "evaluate_pretrain",
        "MLM dev loss/accuracy and KD dev loss of a model and its subnetworks",
    ),
    "info": ("info", "summarise a mask directory (method, base model, per-matrix sparsity)"),
    "compare": ("compare", "Jaccard similarities of masks, or a table of fine-tuning runs"),
    "export": ("export", "write a plain HF checkpoint of a masked model (zeros in place)"),
    "push": ("push", "upload a mask directory to the hub (org/repo or org/repo/sub/folder)"),
    "compact": ("compact", "remove a structured ticket's pruned heads and FFN units: a smaller model"),
    "sweep": (
        "sweep",
        "run a sweep spec (methods x sparsities x seeds x tasks), resumable, into a results store",
    ),
    "report": ("report", "write the markdown report, figures and CSV tables of a sweep"),
    "pretrain": (
        "pretrain",
        "pre-train a small BERT with masked-LM from scratch, or go on pre-training a checkpoint (--init)",
    ),
    "demo": (
        "demo",
        "run the whole pipeline offline on a synthetic language and print the report's main table",
    ),
}
VERBS = {name: Verb(name, help, module) for name, (module, help) in _TABLE.items()}


def verbs() -> dict[str, Verb]:
    """Every verb, in `--help` order."""
    return dict(VERBS)


def _verb_modules() -> dict[str, ModuleType]:
    """Every verb's module, imported (for tests and tools that inspect them all)."""
    return {name: verb.module() for name, verb in VERBS.items()}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or with `only`, one where only that verb's module is imported and
    its options added (the others are listed with their help line: all `--help` needs)."""
    parser = Parser(
        prog="ticketlab",
        description="Find, train and transfer lottery tickets (sparse subnetworks) in pre-trained models.",
    )
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, verb in VERBS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=verb.help)
            continue
        module = verb.module()
        p = sub.add_parser(
            name,
            help=verb.help,
            description=(module.__doc__ or verb.help).strip(),
            formatter_class=HelpFormatter,
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
    parser = build_parser(only=_verb_of(argv))
    args = parser.parse_args(argv)
    keep_freed_memory()  # this process is ours: large tensors freed each step stay for the next
    try:
        with sigterm_interrupts():  # a scheduler's stop takes Ctrl-C's path
            return _run(args, argv, parser)
    except Terminated:  # wherever it arrived, the handler is restored
        _say_how_to_resume(args.verb, "terminated (SIGTERM)")
        return pass_on()


def _run(args: argparse.Namespace, argv: Sequence[str], parser: argparse.ArgumentParser) -> int:
    try:
        for value in argv:  # a name or path given here reaches the terminal, logs and reports
            printable(value, "command-line argument")
        _check_inputs(args)
        return int(args._run(args) or 0)
    except TicketlabError as e:  # one line, whatever a name quoted in it holds
        print(one_line(f"ticketlab {args.verb}: error: {_as_typed(e, parser)}"), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ticketlab info MASK | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 0
    except OSError as e:  # disk full, read-only, no permission where no writer said so itself
        if e.filename is None:
            raise
        print(one_line(f"ticketlab {args.verb}: error: {e.filename}: {e.strerror or e}"), file=sys.stderr)
        return 2
    except Terminated:
        raise
    except KeyboardInterrupt:
        _say_how_to_resume(args.verb, "interrupted")
        return 130


def _say_how_to_resume(verb: str, how: str) -> None:
    print(f"ticketlab {verb}: {how}; finished work is saved, run the same command to resume", file=sys.stderr)


def _tokenizer(path: str) -> None:
    check_source(path, needs="*token*")  # a tokenizer's files, or a model directory holding them


def _mask_or_run(path: str) -> None:
    """compare's DIR: a mask directory (local or on the hub) or a fine-tuning run folder."""
    check_mask_source(path, what="mask directory or run folder")


# The arguments that name an input, by their name in every verb, and how each is checked before the
# verb runs: a mistyped path is refused in one line, not after the verb's module has imported torch
# (seconds). A hub id passes, to be fetched (or refused) where it is read. Every verb's argument of
# one of these names is of that kind (`tests/test_startup.py` holds each to its metavar).
INPUTS: dict[str, Callable[[str], object]] = {
    "model": check_source,  # --model, export's --base: a model directory or a hub id
    "base": check_source,
    "tokenizer": _tokenizer,  # pretrain's
    "init_model": check_source,  # pretrain's --init MODEL (TAMT's --init omp|random is no input)
    "mask": check_mask_source,  # --mask, info's and push's MASK_DIR; evaluate-pretrain's several
    "tickets": check_mask_source,  # mtl's structured tickets
    "masks": _mask_or_run,  # compare's DIRs
    "study": study_in,  # adapt's and importance's super-ticket studies
    "studies": study_in,
    "sweep_dir": store_in,  # report's SWEEP_DIR, sweep --status DIR
    "status": store_in,
    "data_dir": check_data_dir,  # a task's data: a GLUE root or the task's folder
    "corpus": check_corpus_source,  # text files, folders, saved datasets, hub:NAME
    "dev": check_corpus_source,
    "dev_corpus": check_corpus_source,  # demo's
}


def _check_inputs(args: argparse.Namespace) -> None:
    for name, check in INPUTS.items():
        value = getattr(args, name, None)
        for one in value if isinstance(value, list) else [] if value is None else [value]:
            check(one)


def _as_typed(e: TicketlabError, parser: argparse.ArgumentParser) -> str:
    """The refusal as the command line reads: a config field's value refused under the name of the
    option that set it (`--steps required`, not `steps required`)."""
    flag = option_of(parser, e.field) if isinstance(e, FieldError) else None
    return f"{flag} {e.problem}" if flag else str(e)


if __name__ == "__main__":
    sys.exit(main())
