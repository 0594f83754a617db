"""One method registry: what registering a method gives (report order, plot colour, CLI)."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from accelerate import Accelerator

from sweep_fakes import base_spec_dict
from ticketlab.cli import build_parser, main
from ticketlab.cli.search import search_config
from ticketlab.core.checks import FieldError, option
from ticketlab.core.errors import ConfigError
from ticketlab.methods import TamtConfig
from ticketlab.methods.registry import Method, load, register_method
from ticketlab.studies import expand, spec_from_dict
from ticketlab.studies.sweep.jobs import SearchJob
from ticketlab.studies.sweep.methods import method_color, report_order, sweep_methods
from ticketlab.verbs.search import SearchConfig, search


def test_report_order_and_colours_come_from_the_registry(monkeypatch):
    # the order and colours reports had before they were read from the registry, then the structured
    # tickets (winning, random, losing) and the one-shot methods on calibration data (Wanda, SparseGPT)
    # in named colours outside matplotlib's cycle
    paper = ["full", "omp", "random", "imp", "tamt-mlm", "tamt-kd", "tamt-mlm+kd"]
    assert report_order() == [*paper, "st-winning", "st-random", "st-losing", "wanda", "sparsegpt"]
    assert [method_color(m, []) for m in paper] == [f"C{i}" for i in range(7)]
    named = ["navy", "goldenrod", "darkgreen", "teal", "darkviolet"]
    assert [method_color(m, []) for m in report_order()[7:]] == named
    # a label without a colour follows by position in the cycle (the named colours take no place in it)
    assert method_color("tamt-kd/random-init", ["full", "st-winning", "tamt-kd/random-init"]) == "C7"

    mine = Method("mine", None, None, "a registered method", verb=None, color="C9")
    monkeypatch.setitem(load(), "mine", mine)
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
    for check in ("check_model", "load_tokenizer"):  # the toys read no model and no tokenizer
        monkeypatch.setattr(f"ticketlab.methods.search_inputs.{check}", lambda model: None)
    ran = []
    toy = Method("toy", ToyConfig, lambda config, acc: ran.append(config.method), "a toy search")
    monkeypatch.setitem(load(), "toy", toy)
    argv = ["search", "toy", "--model", "m", "--sparsity", "40%", "--steps", "3", "--corpus", "c.txt"]
    args = build_parser().parse_args([*argv, "--out", str(tmp_path / "out"), "--depth", "5", "--greedy"])
    config = search_config(args)
    assert config.verb == "toy" and config.method == ToyConfig(0.4, depth=5, greedy=True)
    assert config.steps == 3 and config.corpus == ["c.txt"]

    search(config, accelerator=Accelerator(cpu=True))
    assert ran == [config.method]
    with pytest.raises(ConfigError, match="IMP only"):  # a task is for the methods that say so
        SearchConfig(model="m", method=ToyConfig(0.5), steps=3, out=tmp_path / "o", task="sst2")
    with pytest.raises(ConfigError, match="method must be ImpConfig or TamtConfig or ToyConfig"):
        SearchConfig(model="m", method=5, steps=3, out=tmp_path / "o", corpus=["c.txt"])


# --------------------------------------------------------------------------- a third search method

WORDS = "the a cat dog bird man woman king queen runs sees likes eats good bad big small red blue .".split()


@dataclasses.dataclass
class KdMasksConfig:
    """A third search method, registered by a test: mask training on KD from a random mask, under its
    own config (TAMT underneath)."""

    sparsity: float
    targets: str | None = None
    seed: int = 0
    alpha: float = option(2.0, "initial score α·φ of the random mask's kept weights")


def kd_masks(interrupt_at: list[int]) -> Method:
    """The method; its loss raises KeyboardInterrupt at the call numbers in `interrupt_at`."""
    from ticketlab.methods import TamtConfig, search_tamt
    from ticketlab.methods import search_inputs as api
    from ticketlab.models.load import load_tokenizer

    calls = []

    def run(config: SearchConfig, acc: Accelerator):
        m = config.method
        tamt = TamtConfig(
            m.sparsity, objective="kd", init="random", alpha=m.alpha, seed=m.seed, targets=m.targets
        )
        model, _, _ = api.load_mlm_model(config, need_head=False)
        objective = api.lm_objective(config, load_tokenizer(config.model), acc, "kd", mlm_eval=False)
        loss = objective.loss_fn

        def flaky(model, batch):
            calls.append(1)
            if len(calls) in interrupt_at:
                raise KeyboardInterrupt
            return loss(model, batch)

        objective.loss_fn = flaky
        lr = config.lr or 1e-2
        options = api.run_options(config, lr, acc)
        return search_tamt(model, objective, tamt, config.train_config(lr), config.out, **options)

    return Method(
        "kd-masks", KdMasksConfig, run, "KD mask training from a random mask", sparse_throughout=True
    )


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(60)) + "\n")
    return path


def test_a_third_search_method_works_end_to_end(monkeypatch, tmp_path, tiny_bert_dir, corpus, capsys):
    """Registering a search method is all it takes: `search` runs it, resumes it after an interrupt
    (its own settings recorded and checked), `ticketlab search NAME` offers it, and a sweep plans,
    configures and runs it under its name, reports listing it after TAMT in the cycle's next colour."""
    cut = [5]  # during step 5 of 6: the last checkpoint is step 4
    method = kd_masks(cut)
    monkeypatch.setitem(load(), method.name, method)  # so that it is removed afterwards
    assert register_method(method) is load()["kd-masks"]
    common = dict(model=str(tiny_bert_dir), corpus=[corpus], steps=6, max_length=16, batch_size=4)
    config = SearchConfig(
        method=KdMasksConfig(0.5), out=tmp_path / "cut", save_every=2, **common, progress=False
    )
    with pytest.raises(KeyboardInterrupt):
        search(config)
    resumed = search(config)
    assert resumed.train.resumed_from == 4
    whole = search(dataclasses.replace(config, out=tmp_path / "whole"))
    assert resumed.mask == whole.mask and resumed.mask.sparsity == pytest.approx(0.5, abs=1e-3)
    recorded = json.loads((tmp_path / "cut/run/settings.json").read_text())
    assert recorded["method"] == "kd-masks" and recorded["alpha"] == 2.0 and "objective" not in recorded
    with pytest.raises(ConfigError, match="differs in: alpha 2.0 -> 3.0"):
        search(dataclasses.replace(config, method=KdMasksConfig(0.5, alpha=3.0)))

    # the command line: its options, and the finished search is not repeated
    flags = ["--model", str(tiny_bert_dir), "--corpus", str(corpus), "--sparsity", "0.5", "--steps", "6"]
    flags += ["--max-length", "16", "--batch-size", "4", "--no-progress", "--out", str(tmp_path / "cut")]
    parsed = search_config(build_parser().parse_args(["search", "kd-masks", *flags, "--alpha", "3"]))
    assert parsed.method == KdMasksConfig(0.5, alpha=3.0) and parsed.steps == 6
    assert main(["search", "kd-masks", *flags, "--save-every", "2"]) == 0
    assert "finished before" in capsys.readouterr().out

    # a sweep: its name in a spec, its setting in the run's identity, its config built by the plan
    assert report_order()[-1] == "kd-masks" and method_color("kd-masks", []) == "C7"
    assert (
        sweep_methods()["kd-masks"].settings >= {"alpha", "lr", "targets"}
        and "ranking" not in sweep_methods()["kd-masks"].settings
    )
    d = base_spec_dict(tmp_path / "sweep")
    d["methods"] = ["full", {"kd-masks": {"alpha": 3.0}}]
    d["search_curve"] = {"steps": [2], "sparsities": [0.5]}
    spec = spec_from_dict(d, base_dir=tmp_path / "sweep")
    runs = [r for r in expand(spec) if r.kind == "search"]
    assert {r.config["method"] for r in runs} == {"kd-masks"} and len(runs) == 2 * 3  # 2 sparsities, 3 seeds
    assert all(r.config["settings"]["alpha"] == 3.0 and r.config["save_at"] in ([], [2]) for r in runs)
    job = SearchJob(
        str(tiny_bert_dir), "kd-masks", 0.5, 1, 3, [2], {"alpha": 3.0, "max_length": 16, "batch_size": 4},
        {"train": [str(corpus)]}, tmp_path / "swept", tmp_path / "work",
    )  # fmt: skip
    assert sweep_methods()["kd-masks"].configure(job).method == KdMasksConfig(0.5, seed=1, alpha=3.0)
    cut.clear()
    out = sweep_methods()["kd-masks"].search(job)
    assert out.steps == 3 and [i["step"] for i in out.intermediate] == [2]


@dataclasses.dataclass
class RenamedConfig:
    """A method config whose option is not its field's name (as TAMT's `train_head` is `freeze_head`)."""

    sparsity: float
    rounds: int = option(1, "warm-up rounds", flag="--warmup-rounds")

    def __post_init__(self):
        if self.rounds < 1:
            raise FieldError("rounds", f"must be >= 1, got {self.rounds}", self.rounds)


def test_a_spec_error_names_the_option_a_registered_method_renamed(monkeypatch, tmp_path):
    """A bad value of a renamed option is refused naming the spec key that gave it (its option name,
    `core.checks.option_name`), for a registered method as for TAMT's `freeze_head`."""
    method = Method("renamed", RenamedConfig, lambda config, acc: None, "renamed option")
    monkeypatch.setitem(load(), method.name, method)
    d = base_spec_dict(tmp_path)
    d["methods"] = ["full", {"renamed": {"warmup_rounds": 0}}]
    with pytest.raises(ConfigError, match=r"methods\.renamed\.warmup_rounds: must be >= 1, got 0"):
        spec_from_dict(d, base_dir=tmp_path)
    d["methods"] = ["full", "tamt-mlm"]
    d["search"]["freeze_head"] = "yes"  # TAMT's train_head, by its option's name
    with pytest.raises(ConfigError, match=r"search\.freeze_head: "):
        spec_from_dict(d, base_dir=tmp_path)


@dataclasses.dataclass
class TamtVariantConfig(TamtConfig):
    """A registered method's config that subclasses TAMT's."""

    extra: int = option(1, "a setting of its own")


def test_a_method_whose_config_subclasses_another_is_its_own(monkeypatch, tmp_path):
    """`SearchConfig` picks the method registered for its config's own type, not the first whose
    config it is an instance of (TAMT for a `TamtConfig` subclass)."""
    for check in ("check_model", "load_tokenizer"):  # the toys read no model and no tokenizer
        monkeypatch.setattr(f"ticketlab.methods.search_inputs.{check}", lambda model: None)
    ran = []
    variant = Method("tamt-variant", TamtVariantConfig, lambda c, acc: ran.append(c.verb), "a variant")
    monkeypatch.setitem(load(), variant.name, variant)
    config = SearchConfig(
        model="m", method=TamtVariantConfig(0.5), steps=3, out=tmp_path / "o", corpus=["c.txt"]
    )
    assert config.search_method is variant and config.verb == "tamt-variant"
    search(config, accelerator=Accelerator(cpu=True))
    assert ran == ["tamt-variant"]
    tamt = SearchConfig(model="m", method=TamtConfig(0.5), steps=3, out=tmp_path / "t", corpus=["c.txt"])
    assert tamt.verb == "tamt"


WORKER_METHOD = """
import dataclasses
from ticketlab.methods.registry import Method, register_method


@dataclasses.dataclass
class CarriedConfig:
    sparsity: float


def run(config, acc):
    raise AssertionError("not run here")


METHOD = register_method(Method("carried", CarriedConfig, run, "a method registered at import of its module"))
"""


def test_a_pickled_sweep_work_has_a_method_its_module_registers(tmp_path, monkeypatch):
    """A launched worker (a fresh interpreter unpickling the sweep's `Work`) knows a search method
    registered at import of its module: unpickling imports the module (its config and function are
    pickled by module path), and importing it registers the method. No pickling machinery."""
    import importlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    import cloudpickle  # submitit's: what launchers send a worker

    from ticketlab.studies.sweep.work import Work

    (tmp_path / "carried_method.py").write_text(WORKER_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(load(), "carried", None)  # the module's registration is undone afterwards
    monkeypatch.setitem(sys.modules, "carried_method", None)  # and the module forgotten
    del sys.modules["carried_method"]
    module = importlib.import_module("carried_method")
    assert load()["carried"] is module.METHOD and "carried" in sweep_methods()
    spec = spec_from_dict(base_spec_dict(tmp_path / "sweep"), base_dir=tmp_path / "sweep")
    (tmp_path / "work.pkl").write_bytes(
        cloudpickle.dumps(Work(spec, tmp_path / "sweep", sweep_methods(), None, None))
    )

    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(tmp_path)])}
    code = (
        "import pickle, sys; from ticketlab.methods.registry import methods; "
        "assert 'carried' not in methods(); "
        "work = pickle.load(open(sys.argv[1], 'rb')); spec = work.methods['carried']; "
        "print(spec.name, methods()['carried'].config.__module__, list(work.methods)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "work.pkl")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["carried", "carried_method", "full"]


def test_a_registered_method_is_a_function_that_imports_its_method_when_it_runs(tiny_bert_dir):
    """A registration stays light (`--help` reads it): it registers a function, which imports the
    method's implementation on its first call and runs it; anything else is refused."""
    import subprocess
    import sys

    import torch

    from ticketlab.methods.omp.prune import omp_mask
    from ticketlab.methods.registry import methods
    from ticketlab.models.load import load_model

    with pytest.raises(ConfigError, match="'by-ref': run must be a function or None, got 'json:dumps'"):
        Method("by-ref", None, "json:dumps", "a function by its module's name", verb="prune")
    code = (
        "import sys; from ticketlab.methods.registry import methods; m = methods().values();"
        "print('torch' in sys.modules, all(callable(x.run) for x in m if x.run is not None))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]  # registered without torch
    model = load_model(str(tiny_bert_dir), head="base")
    registered, direct = methods()["omp"].run(model, 0.5), omp_mask(model, 0.5)
    assert registered.keys() == direct.keys()
    assert all(torch.equal(registered[k], direct[k]) for k in direct)


def test_a_unit_methods_sweep_settings_are_its_configs_options():
    """A unit method's config is built from a spec's settings: its settings are its config's options,
    read from the config; a second list beside the config is refused when it registers."""

    @dataclasses.dataclass(frozen=True)
    class Units:
        draw_rule: str = "exact"

    unit = dict(verb=None, pattern="units")
    assert Method("unit-a", Units, lambda *a: None, "h", **unit).unit_settings == {"draw_rule"}
    bare = Method("unit-b", None, lambda *a: None, "h", sweep_settings=frozenset({"n"}), **unit)
    assert bare.unit_settings == {"n"}
    with pytest.raises(ConfigError, match="give sweep_settings only to a method without one"):
        Method("unit-c", Units, lambda *a: None, "h", sweep_settings=frozenset({"draw"}), **unit)
