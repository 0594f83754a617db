"""Arguments and helpers shared by several verbs."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

from ..core.checks import (
    INT64,
    Range,
    defaults,
    documented,
    field_types,
    from_options,
    option_flags,
    option_name,
)
from ..core.errors import did_you_mean, one_line

C = TypeVar("C")


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose refusal is one line: the problem and where the usage is, exit
    status 2, as every other refusal of the CLI (a verb's usage runs to thirty lines, above the
    one that says what is wrong). Its sub-commands' parsers are of this class too (argparse makes
    them of their parent's class).

    An option must be typed whole: argparse's prefix matching would take a typo for another option
    (`--mode x` for `--model x`) and run with it, where the refusal names the option meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, one_line(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """argparse's refusal of a value outside an argument's choices (a verb, a method, an
        option's value), naming the choice nearest to a mistyped one."""
        if action.choices is not None and value not in action.choices:
            hint = did_you_mean(value, map(str, action.choices)) if isinstance(value, str) else ""
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint} (choose from {choices})")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's, but a word no option takes is refused by the verb it was given to (its
        prog, its --help), naming that verb's option nearest to it: argparse's own refusal comes
        from the top-level parser, which knows none of the verb's options. An option before any verb
        (`ticketlab --vers`) is refused as such, not as a missing verb."""
        first = (sys.argv[1:] if args is None else list(args))[:1]
        if first and first[0].startswith("-") and first[0].split("=")[0] not in self._option_string_actions:
            self.error(f"unrecognized arguments: {first[0]}{_hint([first[0]], self)}")
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            verb = _chosen_verb(self, parsed)
            verb.error(f"unrecognized arguments: {' '.join(extra)}{_hint(extra, verb)}")
        return parsed


def _hint(extra: list[str], parser: argparse.ArgumentParser) -> str:
    """ " (did you mean '--X'?)" for the first option among `extra`, with the option of `parser`
    (as its --help shows them) it most likely meant, else ""."""
    typed = next((a.split("=")[0] for a in extra if a.startswith("--") and a != "--"), None)
    shown = [
        s
        for a in parser._actions
        if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        for s in a.option_strings
    ]
    return did_you_mean(typed, shown) if typed else ""


def _chosen_verb(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost sub-command's parser `parsed` went through (`search tamt`'s), else `parser`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
            if chosen is not None:
                return _chosen_verb(chosen, parsed)
    return parser


def option_of(parser: argparse.ArgumentParser, field: str) -> str | None:
    """The option of `parser` (or of its sub-commands) that sets config field `field`, as typed
    (`--steps`); None where no option sets it. A refusal naming the field then names the option."""
    spelled = "--" + field.replace("_", "-")
    for action in parser._actions:
        if action.option_strings and (action.dest == field or spelled in action.option_strings):
            return spelled if spelled in action.option_strings else action.option_strings[0]
        if isinstance(action, argparse._SubParsersAction):
            found = next(filter(None, (option_of(sub, field) for sub in action.choices.values())), None)
            if found:
                return found
    return None


def add_model_argument(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--model",
        required=required,
        metavar="PATH_OR_ID",
        help="pre-trained model: a local directory (offline) or a hub id (online)",
    )


def add_head_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--head",
        choices=["auto", "mlm", "seq-cls", "qa", "base"],
        default="auto",
        help="head to load the model with (auto: the one in its config)",
    )


def add_targets_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--targets",
        default=None,
        metavar="REGEX",
        help="prunable weights as a regex over module names relative to the encoder "
        "(default: word embeddings + Q, K, V, attention output, FFN in/out of every layer and the "
        "pooler where the checkpoint has one, as TAMT; Chen et al.'s global ranking, prune "
        "--ranking global and IMP --variant chen, leaves the word embeddings dense)",
    )


def finite_float(value: str) -> float:
    """argparse type of every float option: `float` accepts 'nan' and 'inf', which no setting means."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {value!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return v


def int_value(value: str) -> int:
    """argparse type of an integer option (the parse that `at_least` and `within` build on): what
    no 64-bit integer holds is refused, as every config refuses it (a pool of 10**20 processes
    cannot be sized, nor a step count of that many stored)."""
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if not -INT64 <= v < INT64:
        raise argparse.ArgumentTypeError(f"must fit in 64 bits (below 2**63), got {value[:40]!r}")
    return v


def at_least(low: int) -> Callable[[str], int]:
    """argparse type of an integer option with a floor (`--jobs 0` was taken as 1, `--retries -1`
    and `--max-runs 0` as given): refused when parsed, before any work."""

    def parse(value: str) -> int:
        v = int_value(value)
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value!r}")
        return v

    return parse


def positive_float(value: str) -> float:
    """A finite number > 0 (a negative --stale-after took over every run another machine held)."""
    v = finite_float(value)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return v


def within(rng: Range, kind: Callable[[str], Any] = finite_float) -> Callable[[str], Any]:
    """argparse type of a number option with the bounds `rng` states (`--mem 1e30` was planned as
    asked): refused when parsed, before any work."""

    def parse(value: str) -> Any:
        v = kind(value)
        if not rng.holds(v):
            raise argparse.ArgumentTypeError(f"expected a number {rng}, got {value!r}")
        return v

    return parse


def finite_floats(parser: argparse.ArgumentParser) -> None:
    """Make every `type=float` option of `parser` and its sub-commands a `finite_float`: a nan or inf
    option is refused when parsed, whatever verb declares it (help and defaults unchanged)."""
    for action in parser._actions:
        if action.type is float:
            action.type = finite_float
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                finite_floats(sub)


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str) -> None:
    """`old`, a former spelling of the option `new` of `p`: still parsed as `new` (scripts keep
    working), left out of --help, and each use says in one line on stderr to write `new`."""
    target = next(a for a in p._actions if new in a.option_strings)

    class Alias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"{parser.prog}: note: {old} is deprecated, write {new}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    p.add_argument(
        old,
        action=Alias,
        dest=target.dest,
        default=target.default,
        type=target.type,
        choices=target.choices,
        metavar=target.metavar,
        help=argparse.SUPPRESS,
    )


def add_pattern_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pattern",
        metavar="N:M",
        help="keep N of every M consecutive weights along the input dimension (e.g. 2:4, which "
        "sparse tensor cores run); implies the sparsity 1 - N/M",
    )


def sparsity_arg(value: str) -> float:
    """argparse type: a fraction in [0, 1); '70%%' is accepted too."""
    try:
        s = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= s < 1.0:
        raise argparse.ArgumentTypeError(f"sparsity must be in [0, 1) (e.g. 0.7 for 70% zeros), got {value}")
    return s


# --------------------------------------------------------------------------- config fields <-> options
#
# A verb declares the options of its config's fields with `add_config_arguments` and builds the
# config with `config_from_args`, both from the same list of field names: the flag, type, choices,
# help and default come from the dataclass (`core.checks.option`), so they are written once and the
# Python API and the CLI cannot drift apart. Ranges are not checked by argparse: the config refuses a
# bad value itself, with the message the API gives.


def _shape(tp: Any) -> dict[str, Any]:
    """argparse's type / nargs / choices / action for a field annotation: `X | None` is X, a range
    (`Annotated`) is the config's to check, a Literal gives choices, a list nargs='+', a bool a
    flag; str (or a path) is argparse's default type."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _shape(args[0])
    if origin in (Union, types.UnionType):  # the first member that is not None is the option's
        return _shape(next(a for a in args if a is not type(None)))
    if origin is Literal:
        return {**_shape(type(args[0])), "choices": list(args)}
    if origin in (list, tuple, Sequence):
        return {**_shape(args[0] if args else str), "nargs": "+"}
    if tp is bool:
        return {"action": "store_true"}
    return {"type": tp if tp in (int, float) else None}


def _help(text: str | None, default: Any) -> str | None:
    """The field's help with its default appended (unless the text already says what it is), and
    `%` escaped: argparse would read it as a format."""
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    if default not in (None, dataclasses.MISSING) and not isinstance(default, bool) and default != []:
        if not text:
            text = f"default: {shown}"
        elif "default" not in text:
            text = f"{text} (default: {shown})"
    return text.replace("%", "%%") if text else None


def documented_fields(cls: type) -> list[str]:
    """The fields of config dataclass `cls` that carry help: the options a verb offers for it."""
    return [f.name for f in documented(cls)]


def add_config_arguments(
    group: Any, cls: type, fields: Iterable[str], *, unset: bool = False, **overrides: dict[str, Any]
) -> None:
    """Add an option for each of `fields` of config dataclass `cls` to `group` (a parser, argument
    group or mutually exclusive group). `overrides[name]`: `add_argument` keywords of one verb where
    it differs (its documented default, a parsing type such as '100,200'); a field without a default
    is a required option. `unset`: each option None until given (its default shown in its help), so
    that a verb can tell a given value from the default."""
    by_name, hints, default_of = {f.name: f for f in dataclasses.fields(cls)}, field_types(cls), defaults(cls)
    for name in fields:
        f = by_name[name]
        kw = _shape(hints[name])
        meta = {k: f.metadata[k] for k in ("metavar", "choices") if k in f.metadata}
        kw.update(meta, dest=option_name(f), help=f.metadata.get("help"))
        default = default_of[name]
        if default is dataclasses.MISSING:
            kw["required"] = True
        elif kw.get("action") != "store_true":  # a flag's value is False until given
            kw["default"] = default
        kw.update(overrides.get(name, {}))
        kw["help"] = _help(kw["help"], kw.get("default"))
        if unset:
            kw["default"] = None
        group.add_argument(*option_flags(f), **kw)


def config_from_args(cls: type[C], args: argparse.Namespace, fields: Iterable[str], **given: Any) -> C:
    """`cls` built from the parsed options of `fields` (declared by `add_config_arguments`, or by
    hand under the field's name) and the `given` values, which the verb sets itself and which win."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    values = {option_name(by_name[name]): getattr(args, option_name(by_name[name])) for name in fields}
    return cls(**{**from_options(cls, values), **given})


def data_dir_of(args: argparse.Namespace) -> str | None:
    """--data-dir, else the folder of a task.json (it sits with its data)."""
    if args.data_dir is None and args.task is not None and args.task.endswith(".json"):
        return str(Path(args.task).parent)
    return args.data_dir
