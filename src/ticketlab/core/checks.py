"""Type and range checks for dataclasses: configs, and what is filled from files (mask configs, tasks).

A file a user receives may hold anything: `"targets": 123` or `"labels": 5` must be refused when the
file is read, in one line naming the field, not as a TypeError three calls later. `check_fields`
checks every field of a dataclass instance against its annotation.

A config is checked when it is built (`check_config` in its `__post_init__`), so a value the run
would refuse is refused before any work: the annotation says the type (an int field refuses "16"
and 1.5, bool is not an int, a float must be finite) and, through `Annotated`, the range:
`lr: PositiveFloat | None`, `warmup_ratio: Fraction`. The checks are the annotations, not code per
config, and a sweep spec naming a key can map the failing field (`FieldError.field`) back to it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from .errors import ConfigError, printable


@dataclass(frozen=True)
class Range:
    """Bounds of a number field, put in its annotation: `Annotated[float, Range(gt=0)]`."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, v: float) -> bool:
        return (
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
        )

    def __str__(self) -> str:
        low, high = (self.ge, "[") if self.ge is not None else (self.gt, "(")
        top, close = (self.le, "]") if self.le is not None else (self.lt, ")")
        if top is None:
            return f"{'>=' if high == '[' else '>'} {_num(low)}"
        if low is None:
            return f"{'<=' if close == ']' else '<'} {_num(top)}"
        return f"in {high}{_num(low)}, {_num(top)}{close}"


def _num(x: float | None) -> str:
    """A bound as written: 4294967296 whole, 0.001 short."""
    return str(int(x)) if isinstance(x, int) else f"{x:g}"


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - argparse's name for it
    *,
    factory: Any = dataclasses.MISSING,
    flag: str | tuple[str, ...] | None = None,
    metavar: str | None = None,
    choices: Sequence[Any] | None = None,
    **more: Any,
) -> Any:
    """A config field with its command-line description, e.g.
    `lr: PositiveFloat | None = option(None, "learning rate", metavar="LR")`.

    `flag`: the option's spelling(s) when not `--field-name` (a bool field that defaults to True is
    given as its negation, e.g. `progress` as `--no-progress`); `choices`: for a `str` field whose
    values are checked in code rather than by a `Literal`; `more`: further metadata for other readers.
    """
    cli = {"help": help, "flag": flag, "metavar": metavar, "choices": choices}
    metadata = {k: v for k, v in cli.items() if v} | more
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


def negated(f: dataclasses.Field) -> bool:
    """A bool that is on by default is switched off by its option (`progress` by `--no-progress`)."""
    return f.default is True


def option_flags(f: dataclasses.Field) -> list[str]:
    """The command-line spellings of a config field's option, the first one its own."""
    flag = f.metadata.get("flag") or f"--{'no-' if negated(f) else ''}{f.name.replace('_', '-')}"
    return [flag] if isinstance(flag, str) else list(flag)


def option_name(f: dataclasses.Field) -> str:
    """The name of a field's option, as the CLI's namespace and a sweep spec know it: argparse's
    own, from its first spelling (`train_head` is `freeze_head`: a field's name and its option's
    may differ, and specs and the CLI use the option's)."""
    return option_flags(f)[0].lstrip("-").replace("-", "_")


def option_names(config: type) -> frozenset[str]:
    """The option names of a config dataclass's fields (`option_name`): its settings in a sweep spec."""
    return frozenset(option_name(f) for f in dataclasses.fields(config))


def documented(config_cls: type | None) -> list[dataclasses.Field]:
    """The fields of config dataclass `config_cls` that carry help (`option(...)`): the options a
    verb offers for it and the settings a sweep spec may give it ([] for no config)."""
    return [f for f in dataclasses.fields(config_cls) if "help" in f.metadata] if config_cls else []


def from_options(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of `config_cls` given by option `values` (by `option_name`), as keyword arguments:
    `{"freeze_head": True}` is `train_head=False`. A value that is not a bool is passed on for the
    config to refuse by its field's name."""
    fields = {option_name(f): f for f in dataclasses.fields(config_cls)}
    return {
        fields[k].name: (not v) if negated(fields[k]) and isinstance(v, bool) else v
        for k, v in values.items()
    }


def not_result(config_cls: type) -> tuple[str, ...]:
    """The fields of a config dataclass marked `result=False` (`option(..., result=False)`): they do
    not change what a run computes (a progress bar, a checkpoint interval), so a run's identity, which
    guards its directory and names its row, leaves them out (`core.digest.run_identity`)."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("result") is False)


def defaults(config_cls: Any) -> dict[str, Any]:
    """Each field's default of a config dataclass (or instance); `dataclasses.MISSING` where a field
    has none. A factory's default is a new value each call, as the dataclass makes it."""
    return {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(config_cls)
    }


def required(cls: Any) -> list[str]:
    """The fields of dataclass `cls` that have no default: those a file read back must hold."""
    return [name for name, default in defaults(cls).items() if default is dataclasses.MISSING]


def changed(config: Any, names: Sequence[str]) -> list[str]:
    """Those of fields `names` of a config dataclass instance not at their defaults, in that order:
    options that mean something only beside another one (a timing's batch without the timing)."""
    default = defaults(config)
    return [n for n in names if getattr(config, n) != default[n]]


# The ranges configs use (a field `x: PositiveInt | None = None` may also be null).
PositiveInt = Annotated[int, Range(ge=1)]  # steps, sizes, counts, intervals
NonNegInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]  # learning rates, epochs, budgets
NonNegFloat = Annotated[float, Range(ge=0)]  # weight decay, clipping norms
Fraction = Annotated[float, Range(ge=0, lt=1)]  # [0, 1): sparsity, warm-up ratio, dev share
OpenFraction = Annotated[float, Range(gt=0, lt=1)]  # (0, 1): a part that leaves something on both sides
Probability = Annotated[float, Range(ge=0, le=1)]
BlockLength = Annotated[int, Range(ge=8)]  # tokens per block: [CLS], [SEP] and a few words
SEED_RANGE = Range(ge=0, lt=2**32)  # what numpy's generator takes (torch's take more)
Seed = Annotated[int, SEED_RANGE]
# A learning rate: 10 is far above any the papers use (scores: 1e-2 at most; weights: 1e-3) and far
# below what overflows float32 in an optimizer step (`--lr 1e38`: a RuntimeError mid-run).
LearningRate = Annotated[float, Range(gt=0, le=10)]
# AdamW's decay: 1 is a hundred times the papers' 0.01; `1e308` times a learning rate overflowed.
WeightDecay = Annotated[float, Range(ge=0, le=1)]
# A duration of one run or piece: a year is more than any (`--time-budget 1e308` overflowed the step
# count it sets).
Seconds = Annotated[float, Range(gt=0, le=366 * 24 * 3600)]
Minutes = Annotated[float, Range(gt=0, le=366 * 24 * 60)]
# Passes over a training set: 10000 is far beyond any fine-tuning (the papers: 3-20); 1e300 passes
# made a step count no integer of the loop holds.
Epochs = Annotated[float, Range(gt=0, le=10_000)]
# What one run may ask a scheduler for (a sweep's resources, its --mem and --time): the largest nodes
# hold a few TB, and Slurm's longest limits are counted in days. Above them a typo (`--mem 1e30`)
# would be asked for, not refused.
# What one Slurm run may ask for: at least a megabyte of memory (sbatch's unit), at most what a
# node has (64 TB; 4096 CPUs; 64 GPUs): a value past these is a typo that would queue forever.
MEM_GB_RANGE = Range(ge=0.001, le=65536)
CPUS_RANGE = Range(ge=1, le=4096)
GPUS_RANGE = Range(ge=0, le=64)
TIME_MIN_RANGE = Range(ge=1, le=366 * 24 * 60)
INT64 = 2**63  # every integer a config holds fits torch's, numpy's and SQLite's 64-bit integers


class FieldError(ConfigError):
    """A config field with a wrong value: `field` names it (a spec maps it back to its key), `problem`
    says what is wrong ('must be >= 1, got 0')."""

    def __init__(self, field: str, problem: str, value: Any = None):
        super().__init__(f"{field} {problem}")
        self.field, self.problem, self.value = field, problem, value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of dataclass `cls`'s fields, `Annotated` ranges included."""
    return _hints(cls)


def _ok(value: Any, tp: Any) -> bool:
    """True when `value` is of type `tp` (the annotation forms our dataclasses use)."""
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:  # the type part; the range is `_out_of_range`'s
        return _ok(value, args[0])
    if origin in (Union, types.UnionType):
        return any(_ok(value, a) for a in args)
    if origin is Literal:
        return value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:  # a path given in code is fine too
        return isinstance(value, (str, os.PathLike))
    if origin in (list, tuple, Sequence) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_ok(v, a) for v, a in zip(value, args, strict=True))
        return all(_ok(v, args[0]) for v in value) if args else True
    if origin is dict and isinstance(value, dict):
        return not args or all(_ok(k, args[0]) and _ok(v, args[1]) for k, v in value.items())
    if origin is None and isinstance(tp, type):
        return isinstance(value, tp)
    return False


def describe(tp: Any) -> str:
    """A short reading of an annotation: 'a string or a list of strings'."""
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    origin, args = get_origin(tp), get_args(tp)
    if tp in names:
        return names[tp]
    if origin is Annotated:
        return describe(args[0])
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "an object"
    return getattr(tp, "__name__", str(tp))


def _out_of_range(value: Any, tp: Any) -> Range | None:
    """The `Range` of annotation `tp` that `value` (already of type `tp`) breaks, if any."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return next((r for r in tp.__metadata__ if isinstance(r, Range) and not r.holds(value)), None)
    if origin in (Union, types.UnionType):  # the first member the value is of decides
        return next((_out_of_range(value, a) for a in args if _ok(value, a)), None)
    if origin in (list, tuple, Sequence) and args and args[-1] is not Ellipsis and len(args) == 1:
        return next((r for v in value if (r := _out_of_range(v, args[0])) is not None), None)
    return None


def value_problem(cls: type, name: str, value: Any) -> str | None:
    """Why `value` cannot be field `name` of dataclass `cls` (its annotation, range, 64 bits), or None."""
    tp = _hints(cls)[name]
    if not _ok(value, tp):
        return f"must be {describe(tp)}, got {_short(value)}"
    bound = _out_of_range(value, tp)
    if bound is not None:
        return f"must be {bound}, got {_short(value)}"
    if (big := _too_big(value)) is not None:
        return f"must fit in 64 bits (below 2**63), got {_short(big)}"
    return None


def field_problem(obj: Any) -> tuple[str, str, Any] | None:
    """(name, problem, value) of the first field of dataclass `obj` that does not fit its annotation."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in hints and (problem := value_problem(type(obj), f.name, getattr(obj, f.name))):
            return f.name, problem, getattr(obj, f.name)
    return None


def is_int(value: Any) -> bool:
    """An integer, not a bool: `True` is an int to Python, and never a count, a step or a seed here."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (`true` in a spec is no sparsity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _too_big(value: Any) -> int | None:
    """An integer in `value` (or in its lists and mappings) beyond 64 bits, if any: a step count or
    a seed of 10**20 would pass a `>= 1` check and fail in torch or SQLite mid-run."""
    if is_int(value):
        return value if not -INT64 <= value < INT64 else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return next((big for v in items if (big := _too_big(v)) is not None), None)


def _short(value: Any) -> str:
    """`repr(value)`, a 5000-digit number cut to a readable length."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4300 digits: Python refuses to write it out
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def check_fields(obj: Any) -> str | None:
    """The first field of dataclass `obj` whose value does not fit its annotation, as a message."""
    problem = field_problem(obj)
    return f"{problem[0]} {problem[1]}" if problem else None


def check_one_of(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Refuse a value that is none of `choices` (a setting checked in code, not by a `Literal`)."""
    choices = list(choices)
    if value not in choices:
        raise FieldError(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}", value)


def check_distinct(name: str, values: Sequence[Any]) -> None:
    """Refuse an empty list, or one that names something twice (seeds, tasks, ticket kinds)."""
    if not values or len(set(values)) != len(values):
        raise FieldError(name, f"must be distinct and non-empty, got {list(values)}", values)


def check_config(obj: Any) -> None:
    """Raise a `FieldError` for the first field of config `obj` that does not fit its annotation:
    what every config's `__post_init__` calls first, so its own checks see well-typed values. A name
    or path holding a newline or control character is refused (`errors.printable`), from Python as
    on the command line: it would reach terminals, logs and the files a run writes (a mask's base)."""
    problem = field_problem(obj)
    if problem:
        raise FieldError(*problem)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for text in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(text, (str, os.PathLike)):
                printable(os.fspath(text), f.name)
