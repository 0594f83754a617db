"""How `--help` shows a verb's description: as written where it fits the terminal, wrapped where
it does not (`HelpFormatter`, `wrap_text`)."""

from __future__ import annotations

import argparse
import re
import textwrap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """A verb's description as written (its paragraphs, lists and example lines) where it fits the
    terminal, and wrapped where it does not: `--help` in an 80-column terminal, and the site's
    command-line reference, stay as wide as they are asked to be. A paragraph at the margin is
    filled again; an indented entry is filled under its own indents; a command line is broken before
    an option and continued with ` \\`, so that it still pastes into a shell."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(indent + line for line in wrap_text(text, width))


# An indented line that is a command to paste into a shell (environment variables first, if any).
COMMAND = re.compile(r"\s+([A-Z_]+=\S* )*(ticketlab|accelerate|torchrun|python|sbatch) ")


def wrap_text(text: str, width: int) -> list[str]:
    """`text`'s lines, as `HelpFormatter` wraps them to `width` columns: each block as written if it
    fits, else wrapped."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line, j = lines[i], i + 1
        margin = _margin(line)
        if COMMAND.match(line):  # a command and its continuation lines
            while j < len(lines) and lines[j - 1].endswith(" \\"):
                j += 1
            wrap = _command(lines[i:j], width)
        elif line.strip() and margin == 0:  # a paragraph; a list item starts one of its own
            while j < len(lines) and lines[j].strip() and _margin(lines[j]) == 0:
                if lines[j].startswith(("- ", "* ")):
                    break
                j += 1
            wrap = _words(lines[i:j], width, "", "")
        elif line.strip():  # an indented entry: its line and the more deeply indented ones after it
            while j < len(lines) and _margin(lines[j]) > margin and not COMMAND.match(lines[j]):
                j += 1
            hang = _margin(lines[i + 1]) if j > i + 1 else _hang(line, margin, width)
            wrap = _words(lines[i:j], width, line[:margin], " " * hang)
        else:
            wrap = [line]
        out += lines[i:j] if max(len(row) for row in lines[i:j]) <= width else wrap
        i = j
    return out


def _hang(line: str, margin: int, width: int) -> int:
    """Where a one-line entry's wrapped lines start: under its text where it is a term and its text
    (`  omp        one-shot ...`) and that leaves half the width, else 4 columns in."""
    term = re.match(r"\s*\S+\s{2,}(?=\S)", line)
    return len(term[0]) if term and len(term[0]) <= width // 2 else margin + 4


def _margin(line: str) -> int:
    return len(line) - len(line.lstrip()) if line.strip() else 0


def _words(rows: list[str], width: int, first: str, then: str) -> list[str]:
    text = " ".join(row.strip() for row in rows)
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=then,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _command(rows: list[str], width: int) -> list[str]:
    """A command, broken before an option or a trailing `# comment` (an option stays with its values,
    unless they alone are too long) and continued with ` \\`; its continuation lines four columns in."""
    margin = rows[0][: _margin(rows[0])]
    text = " ".join(row.strip().removesuffix(" \\").strip() for row in rows)
    room = width - len(margin) - 6  # what a continuation line holds
    parts = [
        p for part in re.split(r" +(?=--|# )", text) for p in ([part] if len(part) <= room else part.split())
    ]
    out = [margin]
    for part in parts:
        if out[-1].strip() and len(out[-1]) + 1 + len(part) + 2 > width:
            out.append(margin + "    ")
        out[-1] += part if not out[-1].strip() else " " + part
    return [row + " \\" for row in out[:-1]] + out[-1:]
