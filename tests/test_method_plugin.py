"""Adding a method is adding one file: a module written into `ticketlab/methods/registered/` (and no
other file edited) is a `ticketlab prune` sub-command, a sweep method that plans and runs, and a
method the report lists in its colour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sweep_fakes as fakes
import ticketlab.methods.registered
from ticketlab.cli import main
from ticketlab.methods import registry
from ticketlab.studies import expand, run_sweep
from ticketlab.studies.report import write_report
from ticketlab.studies.sweep.methods import method_color, report_order, sweep_methods

NAME = "anti-omp"  # the toy method
MODULE = "test_made_anti_omp"  # its file, written by this test and removed after it
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


@pytest.fixture()
def toy_file(monkeypatch):
    """The toy's module in the package of registered methods; the registry reads the package again."""
    path = Path(ticketlab.methods.registered.__path__[0]) / f"{MODULE}.py"
    path.unlink(missing_ok=True)  # left by a run of this test that was killed
    full = f"{registry.PACKAGE}.{MODULE}"
    monkeypatch.setitem(registry.load(), NAME, None)  # the registry as it was before: after the test too
    monkeypatch.setitem(sys.modules, full, None)  # its module forgotten after the test
    del sys.modules[full], registry.load()[NAME]
    path.write_text(TOY)
    monkeypatch.setattr(registry, "_loaded", False)  # the registry's next use imports the new module
    try:
        yield path
    finally:
        path.unlink()


def test_a_method_in_one_new_file_is_everywhere(toy_file, tmp_path, tiny_bert_dir, capsys):
    # the command line: a fresh interpreter finds it (as a launched worker does), torch-free
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200"}  # lines argparse does not wrap
    probe = "from ticketlab.cli import main; import sys\ntry: main()\n"
    probe += "except SystemExit: print('torch' in sys.modules)"
    argv = [sys.executable, "-c", probe, "prune", "--help"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "{anti-omp,omp,random}" in done.stdout and "anti-omp: keep the smallest |W|" in done.stdout
    assert done.stdout.split()[-1] == "False"  # no torch for --help
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "{anti-omp,omp,random}" in capsys.readouterr().out

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
