"""One method registry: what registering a method gives (report order, plot colour, CLI)."""

from __future__ import annotations

import dataclasses

import pytest
from accelerate import Accelerator

from ticketlab.api import SEARCH_METHODS, SearchConfig, SearchMethod, search
from ticketlab.cli import build_parser
from ticketlab.cli.search import search_config
from ticketlab.errors import ConfigError
from ticketlab.experiments.methods import METHODS, MethodSpec, method_color, report_order
from ticketlab.validation import option


def test_report_order_and_colours_come_from_the_registry(monkeypatch):
    # the order and colours reports had before they were read from the registry
    assert report_order() == ["full", "omp", "random", "imp", "tamt-mlm", "tamt-kd", "tamt-mlm+kd"]
    assert [method_color(m, []) for m in report_order()] == [f"C{i}" for i in range(7)]
    # a method without a colour follows by position, as a variant label does
    assert method_color("st-random", ["full", "st-winning", "st-random"]) == "C8"
    assert method_color("tamt-kd/random-init", ["tamt-kd/random-init"]) == "C7"

    monkeypatch.setitem(METHODS, "mine", MethodSpec("mine", None, "a registered method", color="C9"))
    assert report_order()[-1] == "mine" and method_color("mine", []) == "C9"
    assert method_color("tamt-kd/random-init", ["tamt-kd/random-init"]) == "C8"  # after the 8 with one


@dataclasses.dataclass
class ToyConfig:
    sparsity: float
    targets: str | None = None
    depth: int = option(3, "how deep the toy looks")
    greedy: bool = option(False, "take the first mask found")


def test_a_registered_search_method_is_a_search_subcommand(monkeypatch, tmp_path):
    """`ticketlab search NAME` for every registered search method, its options its config's
    documented fields; `search()` runs the method's function."""
    ran = []
    toy = SearchMethod("toy", ToyConfig, lambda config, acc: ran.append(config.method), "a toy search")
    monkeypatch.setitem(SEARCH_METHODS, "toy", toy)
    argv = ["search", "toy", "--model", "m", "--sparsity", "40%", "--steps", "3", "--corpus", "c.txt"]
    args = build_parser().parse_args([*argv, "--out", str(tmp_path / "out"), "--depth", "5", "--greedy"])
    config = search_config(args)
    assert config.verb == "toy" and config.method == ToyConfig(0.4, depth=5, greedy=True)
    assert config.steps == 3 and config.corpus == ["c.txt"]

    search(config, accelerator=Accelerator(cpu=True))
    assert ran == [config.method]
    with pytest.raises(ConfigError, match="IMP only"):  # a task is for the methods that say so
        SearchConfig(model="m", method=ToyConfig(0.5), steps=3, out=tmp_path / "o", task="sst2")
    with pytest.raises(ConfigError, match="method must be TamtConfig or ImpConfig or ToyConfig"):
        SearchConfig(model="m", method=5, steps=3, out=tmp_path / "o", corpus=["c.txt"])
