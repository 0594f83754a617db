"""User-facing errors.

Anything a user can cause (a wrong path, a corrupt file, a bad sparsity) raises a `TicketlabError`
whose message names the file or value and the problem. The CLI prints that message alone, without a
traceback, and exits non-zero: one line always (`one_line` escapes what would break it). Programming
errors stay ordinary exceptions.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable


class TicketlabError(Exception):
    """An error caused by the user's input; its message is meant to be read, not debugged."""


class MaskFileError(TicketlabError):
    """A mask file is missing, corrupt, truncated or of an unknown format."""


class MaskMismatchError(TicketlabError):
    """A mask does not fit a model: other weight names or shapes, or other base weights."""


class DataError(TicketlabError):
    """A data file is missing, malformed or lacks a column or label."""


class ConfigError(TicketlabError):
    """A configuration value is out of range or inconsistent."""


_PLAIN = (MaskFileError, MaskMismatchError, DataError, ConfigError, TicketlabError)  # one message each


def prefixed(error: TicketlabError, where: str) -> TicketlabError:
    """`error`'s message after `where` (the file or pair it came from), of its class or the nearest
    plain one above it (a `FieldError` becomes a `ConfigError`: its field is not the caller's), so
    that Python code catching a `DataError` still catches it once it names its file."""
    plain = next(c for c in type(error).__mro__ if c in _PLAIN)
    return plain(f"{where}: {error}")


# Bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069): a name that displays as
# another one ("evil\u202egnp.exe").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unprintable(c: str) -> bool:
    """A character no name may show: C0 and C1 controls (NUL, newlines, escapes, NEL U+0085, CSI
    U+009B), the line and paragraph separators U+2028/U+2029 (Python's `splitlines` and many
    terminals break a line there), lone surrogates (an undecodable byte), and bidi controls."""
    return c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs")


def one_line(text: str) -> str:
    """`text` with every character `unprintable` finds written as its escape (`\\n`, `\\u2028`): a
    message that quotes a name read from a file stays one line and shows what the name holds."""
    if not any(unprintable(c) for c in text):
        return text
    return "".join(ascii(c)[1:-1] if unprintable(c) else c for c in text)


def printable(value: str, what: str, error: type[TicketlabError] = ConfigError) -> str:
    """`value`, refused in one line where it holds a character `unprintable` finds. The one check of
    a user's string that reaches a terminal, a log or a report (a name, an endpoint, a label, a
    path): a newline forges a heading or a log line there, an escape clears the screen, a bidi
    control shows other text than the file holds."""
    if any(unprintable(c) for c in value):
        raise error(
            f"{what} '{one_line(value[:80])}': holds a newline or control character (or a line "
            "separator or bidi control), which would forge or hide text where it is shown"
        )
    return value


def printable_strings(tree: object, where: str, error: type[TicketlabError] = ConfigError) -> None:
    """`printable` on every string of a parsed file (keys and values of its mappings and lists, at
    any depth), each named by `where` and its place (`spec.yaml: endpoint.name`)."""
    todo: list[tuple[object, str]] = [(tree, where)]
    while todo:  # a loop, not recursion: a file's depth is the file's to choose
        value, at = todo.pop()
        if isinstance(value, str):
            printable(value, at, error)
        elif isinstance(value, dict):
            for k, v in value.items():
                key = printable(k, f"{at}: a key", error) if isinstance(k, str) else str(k)
                todo.append((v, f"{at}.{key}" if at != where else f"{at}: {key}"))
        elif isinstance(value, (list, tuple)):
            todo.extend((v, f"{at}[{i}]") for i, v in enumerate(value))


def nearest(word: str, options: Iterable[str]) -> str | None:
    """What `word` most likely meant, for a message to name: among the options it begins (a word typed
    in part, `--sched` for `--schedule-steps`) the nearest by difflib's ratio, else the option nearest
    it by that ratio (at least 0.6), else None."""
    options = list(options)
    begun = [o for o in options if o.startswith(word) and o != word] if len(word.lstrip("-")) > 1 else []
    if begun:
        return difflib.get_close_matches(word, begun, n=1, cutoff=0)[0]
    close = difflib.get_close_matches(word, options, n=1)
    return close[0] if close else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """The tail of a refusal of an unknown key, method or command-line option: " (did you mean 'X'?)"
    with the option `nearest` to `word`, else ""."""
    close = nearest(word, options)
    return f" (did you mean '{close}'?)" if close else ""
