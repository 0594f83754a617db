"""Type checks for dataclasses filled from files (mask configs, task specs).

A file a user receives may hold anything: `"targets": 123` or `"labels": 5` must be refused when the
file is read, in one line naming the field, not as a TypeError three calls later. `check_fields`
checks every field of a dataclass instance against its annotation.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _ok(value: Any, tp: Any) -> bool:
    """True when `value` is of type `tp` (the annotation forms our dataclasses use)."""
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    origin, args = get_origin(tp), get_args(tp)
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
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
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
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "an object"
    return getattr(tp, "__name__", str(tp))


def check_fields(obj: Any) -> str | None:
    """The first field of dataclass `obj` whose value does not fit its annotation, as a message."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in hints and not _ok(value, hints[f.name]):
            return f"{f.name} must be {describe(hints[f.name])}, got {value!r}"
    return None
