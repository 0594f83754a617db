"""One method registry: what registering a method gives (report order, plot colour, CLI)."""

from __future__ import annotations

from ticketlab.experiments.methods import METHODS, MethodSpec, method_color, report_order


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
