"""No test compares a wall-clock value: two records made in different seconds differ, so such a test
passes or fails by how fast the machine runs it (two mask configs compared with their creation times
fail where the seconds turn between them, as on a fresh clone's slow first `make test`).

Two checks, one per way such a comparison is written:
- by name: every comparison in tests/ is read (`ast`), and one that involves a creation time, a
  run time or a clock call fails here, naming the file and line;
- whole records: conftest stamps every mask config one second after the one before, so a test that
  compares two records with their `created` fails every time; `conftest.record` leaves it out.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import ticketlab
from conftest import WALL_CLOCK, record

TESTS = Path(__file__).resolve().parent

# Names of wall-clock values (fields, keys, variables) and of the calls that read a clock.
CLOCK_NAMES = {*WALL_CLOCK, "started", "heartbeat", "elapsed", "duration", "seconds", "took"}
CLOCK_SUFFIXES = ("time_s", "wall_s", "_seconds", "_elapsed", "_duration")
CLOCK_CALLS = {"time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "now"}
TIMEOUT = "deadline"  # a test's own time limit on a wait (`while time.monotonic() < deadline`) is no result


def _names(node: ast.AST) -> set[str]:
    """The wall-clock names a comparison's operands mention: variables, attributes, string keys, and
    clock calls (`time.time()`, `datetime.now()`)."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in CLOCK_CALLS:
                names.add(f"{called}()")
        elif isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.isidentifier():
            names.add(sub.value)  # rec["created"], .get("wall_s")
    return names


def _is_clock(name: str) -> bool:
    return name in CLOCK_NAMES or name.endswith(("()", *CLOCK_SUFFIXES))


def clock_comparisons(source: str, filename: str = "<test>") -> list[str]:
    """'file:line: names' of every comparison in `source` that involves a wall-clock value."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare) or all(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            continue  # membership (`"time_s" in metrics`) asks whether it is recorded, not its value
        names = _names(node)
        if any(TIMEOUT in n for n in names):
            continue
        clock = sorted(n for n in names if _is_clock(n))
        if clock:
            found.append(f"{filename}:{node.lineno}: compares {', '.join(clock)}")
    return found


def test_no_test_compares_a_wall_clock_value():
    found = [
        hit for path in sorted(TESTS.glob("*.py")) for hit in clock_comparisons(path.read_text(), path.name)
    ]
    assert not found, "tests compare wall-clock values (a busy machine changes them):\n" + "\n".join(found)


def test_the_check_finds_clock_comparisons_however_written():
    source = textwrap.dedent(
        """
        assert a.created == b.created
        assert rec.provenance["wall_s"] >= 0
        assert tamt.metrics["time_s"] > 0
        assert time.perf_counter() - t0 < 5
        assert config.search.get("search_time_s") == other
        while time.monotonic() < deadline:  # a timeout on a wait: allowed
            pass
        assert cli_config.method == result.config.method  # no clock: allowed
        assert "time_s" in metrics and now == options(parser)  # recorded; a variable named now: allowed
        """
    )
    found = clock_comparisons(source)
    assert [hit.split(":")[1] for hit in found] == ["2", "3", "4", "5", "6"], found


def test_records_made_in_one_test_never_share_a_creation_time(tiny_bert_dir, tmp_path):
    """The old test_prune's comparison (`cli_config.to_dict() == result.config.to_dict()`) passed
    whenever both calls fell in one second: here it fails every time; `record` compares the rest."""
    made = [
        ticketlab.prune(ticketlab.PruneConfig(str(tiny_bert_dir), "random", 0.6, tmp_path / n, seed=3))
        for n in ("one", "two")
    ]
    first, second = (m.config for m in made)
    assert first.to_dict() != second.to_dict() and record(first) == record(second)
