"""Adding a method is adding one folder: a package among `ticketlab/methods/`'s folders whose
`register` module registers it (and no other file edited) is a `ticketlab prune` or `ticketlab search`
sub-command (a search method with options of its own), a sweep method that plans and runs, and a
method the report lists in its colour. The tests write the folder into a temporary directory added to
the package's path, never into the source tree: the tests running beside them (pytest's other
workers) list and import `src/`, and would meet it there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sweep_fakes as fakes
import ticketlab.methods
from ticketlab.cli import main
from ticketlab.methods import registry
from ticketlab.studies import expand, run_sweep
from ticketlab.studies.report import write_report
from ticketlab.studies.sweep.methods import method_color, report_order, sweep_methods

NAME = "anti-omp"  # the toy method
MODULE = "test_made_anti_omp"  # its folder, written by this test into a directory of its own
TOY = '''"""A toy one-shot method: keep the weights of *smallest* |W| (OMP's opposite)."""

from ticketlab.methods.registry import Method, register_method


def anti_omp(model, sparsity, *, ranking="local", targets=None, seed=None, pattern=None):
    import torch  # when it runs: `--help` lists the method without torch

    from ticketlab.masks import dense_weight, find_targets
    from ticketlab.methods.ranking import keep_top

    with torch.no_grad():
        scores = {k: -dense_weight(m).abs() for k, m in find_targets(model, targets).items()}
        return keep_top(scores, sparsity, ranking, pattern).cpu()


register_method(
    Method("anti-omp", None, anti_omp, "keep the smallest |W|", verb="prune", seeded=False, color="C9")
)
'''


def _installed(monkeypatch, plugins: Path, name: str, module: str, text: str):
    """`text` as the `register` module of a new method folder `module` of `ticketlab.methods`, in
    `plugins` (added to the package's path), registering `name`; the registry reads the package
    again, and is as it was after the test."""
    folder = plugins / module
    monkeypatch.setattr(ticketlab.methods, "__path__", [*ticketlab.methods.__path__, str(plugins)])
    full = f"{registry.FOLDERS}.{module}.{registry.FOLDER_MODULE}"
    monkeypatch.setitem(registry.load(), name, None)  # the registry as it was before: after the test too
    for forgotten in (full, full.rpartition(".")[0]):  # its modules forgotten after the test
        monkeypatch.setitem(sys.modules, forgotten, None)
        del sys.modules[forgotten]
    del registry.load()[name]
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text('"""A method written by a test."""\n')
    (folder / f"{registry.FOLDER_MODULE}.py").write_text(text)
    monkeypatch.setattr(registry, "_loaded", False)  # the registry's next use imports the new module
    return folder


def _probe(plugins: Path) -> str:
    """A fresh interpreter's command line (as a launched worker's) with `plugins` on the methods'
    path; it prints whether torch was imported."""
    head = f"import ticketlab.methods; ticketlab.methods.__path__.append({str(plugins)!r})\n"
    run = "from ticketlab.cli import main; import sys\ntry: main()\n"
    return head + run + "except SystemExit: print('torch' in sys.modules)"


@pytest.fixture()
def toy_file(monkeypatch, tmp_path):
    return _installed(monkeypatch, tmp_path / "plugins", NAME, MODULE, TOY)


SEARCH_NAME = "toy-search"  # a toy search method: a config of its own, TAMT's search function
SEARCH_MODULE = "test_made_toy_search"
TOY_SEARCH = '''"""A toy search method: TAMT under another name, with one setting of its own."""

from dataclasses import dataclass

from ticketlab.core.checks import option
from ticketlab.methods.tamt.config import TamtConfig
from ticketlab.methods.registry import Method, register_method
from ticketlab.methods.tamt.register import search_from_config


@dataclass
class ToySearchConfig(TamtConfig):
    toy_knob: int = option(3, "a setting only this method has")


register_method(
    Method(
        "toy-search",
        ToySearchConfig,
        search_from_config,
        "a toy search method (TAMT under another name)",
        color="C8",
    )
)
'''


@pytest.fixture()
def toy_search_file(monkeypatch, tmp_path):
    return _installed(monkeypatch, tmp_path / "plugins", SEARCH_NAME, SEARCH_MODULE, TOY_SEARCH)


def test_a_method_in_one_new_file_is_everywhere(toy_file, tmp_path, tiny_bert_dir, capsys):
    # the command line: a fresh interpreter finds it (as a launched worker does), torch-free
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200"}  # lines argparse does not wrap
    argv = [sys.executable, "-c", _probe(toy_file.parent), "prune", "--help"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (
        "{anti-omp,omp,random,sparsegpt,wanda}" in done.stdout
        and "anti-omp: keep the smallest |W|" in done.stdout
    )
    assert done.stdout.split()[-1] == "False"  # no torch for --help
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "{anti-omp,omp,random,sparsegpt,wanda}" in capsys.readouterr().out

    # the Python verb and the CLI run it
    out = tmp_path / "anti"
    assert main(["prune", NAME, "--model", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(out)]) == 0
    assert "anti-omp: 50.00%" in capsys.readouterr().out

    # a sweep: planned under its name (deterministic: one mask), run, and reported in its colour
    assert sweep_methods()[NAME].seeded is False
    small = {**fakes.SMALL, "methods": ["full", "omp", NAME]}
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **small)
    planned = [r for r in expand(spec) if r.config.get("method") == NAME]
    assert {r.kind for r in planned} == {"search", "finetune"} and sum(
        r.kind == "search" for r in planned
    ) == 1
    result = run_sweep(
        spec,
        tmp_path / "sweep",
        finetune=fakes.fake_finetune,
        pretrain_eval=fakes.fake_pretrain_eval,
        log=print,
    )
    assert result.ok
    assert report_order()[-1] == NAME and method_color(NAME, []) == "C9"
    report = write_report(tmp_path / "sweep")
    table = report.main_table
    assert NAME in table and table.index("omp") < table.index(NAME)


def test_a_search_method_in_one_new_file_is_everywhere(toy_search_file, tmp_path, tiny_bert_dir, capsys):
    # `ticketlab search --help` lists it and its sub-command has its own option, torch-free
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200"}
    probe = _probe(toy_search_file.parent)
    listed = subprocess.run(
        [sys.executable, "-c", probe, "search", "--help"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert (
        re.search(rf"{SEARCH_NAME}\s+a toy search method", listed.stdout)
        and listed.stdout.split()[-1] == "False"
    )
    own = subprocess.run(
        [sys.executable, "-c", probe, "search", SEARCH_NAME, "--help"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "--toy-knob TOY_KNOB" in own.stdout and "a setting only this method has" in own.stdout

    # the CLI runs it: a mask at the sparsity asked for
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat and the dog ran to the park\n" * 40)
    out = tmp_path / "toy"
    argv = [
        "search",
        SEARCH_NAME,
        "--model",
        str(tiny_bert_dir),
        "--corpus",
        str(corpus),
        "--sparsity",
        "0.5",
    ]
    argv += ["--steps", "2", "--max-length", "16", "--batch-size", "4", "--dev-blocks", "1", "--no-progress"]
    assert main([*argv, "--toy-knob", "5", "--out", str(out)]) == 0
    assert (out / "masks.safetensors").is_file()

    # a sweep: one search per seed (a search method is seeded), listed after the built-in ones
    assert sweep_methods()[SEARCH_NAME].seeded and sweep_methods()[SEARCH_NAME].uses_corpus
    small = {**fakes.SMALL, "methods": ["full", "omp", SEARCH_NAME]}
    spec = fakes.make_spec(tmp_path / "spec", tiny_bert_dir, **small)
    searches = [r for r in expand(spec) if r.kind == "search" and r.config.get("method") == SEARCH_NAME]
    assert sorted(r.config["seed"] for r in searches) == [0, 1]
    assert report_order()[-1] == SEARCH_NAME and method_color(SEARCH_NAME, []) == "C8"
