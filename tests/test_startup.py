"""Start-up: `ticketlab --help` and `ticketlab info` import only what they use (no timing asserts:
which heavy packages a fresh interpreter has loaded is what decides the time)."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import ticketlab
import ticketlab.cli
from ticketlab.cli import main

HEAVY = ("torch", "transformers", "sklearn", "scipy", "matplotlib", "accelerate", "datasets")


def loaded_after(code: str, *argv: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter has imported after running `code`."""
    probe = (
        f"import json, sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_help_imports_no_heavy_package():
    assert loaded_after("from ticketlab.cli import main; main()", "--help") == set()


# `VERB [SUB] --help` of every verb (prune's and search's options are below their sub-command).
VERB_HELP = [
    [verb, *sub, "--help"]
    for verb in ticketlab.cli.verbs()
    for sub in {"prune": [["omp"]], "search": [["tamt"], ["imp"]]}.get(verb, [[]])
]


@pytest.mark.parametrize("argv", VERB_HELP, ids=" ".join)
def test_verb_help_imports_no_heavy_package(argv):
    """A verb's options are parsed before torch, transformers or scipy is imported (lazy start-up:
    its module imports them when it runs); `--help` prints and exits without them."""
    assert loaded_after("from ticketlab.cli import main; main()", *argv) == set(), argv


def test_verb_help_probe_sees_a_heavy_import():
    """The probe above would see torch if a verb's parser imported it."""
    assert loaded_after("import ticketlab.methods.tamt.search") >= {"torch"}


def test_import_ticketlab_imports_no_heavy_package():
    assert loaded_after("import ticketlab") == set()


def test_info_reads_a_mask_without_transformers(tiny_bert_dir, tmp_path, capsys):
    mask = tmp_path / "mask"
    argv = ["prune", "random", "--model", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(mask)]
    assert main(argv) == 0
    capsys.readouterr()
    code = "from ticketlab.cli import main; assert main() == 0"
    assert loaded_after(code, "info", str(mask)) == {"torch"}  # a mask file is tensors


def test_every_public_name_resolves():
    for name in ticketlab.__all__:
        assert getattr(ticketlab, name) is getattr(
            importlib.import_module(f"ticketlab.{ticketlab._LAZY[name]}"), name
        ), name
    assert set(dir(ticketlab)) >= set(ticketlab.__all__)
    assert set(ticketlab.__all__) == set(ticketlab._LAZY)  # every lazy export is public, and listed


def test_finetune_stays_the_function_when_its_module_is_imported():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ticketlab, importlib; importlib.import_module('ticketlab.verbs.finetune');"
            "print(callable(ticketlab.finetune), type(ticketlab.finetune).__name__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["True", "function"]


def test_no_lazy_export_is_named_like_a_submodule():
    """Importing `pkg.x` binds the module `x` on `pkg`: an export named `x` would turn into the
    module (`masks.compact` did, until its module became `masks/compacted.py`)."""
    lazy = {"ticketlab": ticketlab._LAZY}
    for name in ("masks", "methods", "studies", "core.files"):
        lazy[f"ticketlab.{name}"] = importlib.import_module(f"ticketlab.{name}")._WHERE
    for package, where in lazy.items():
        submodules = {info.name for info in pkgutil.iter_modules(importlib.import_module(package).__path__)}
        assert not submodules & set(where), package
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ticketlab.masks.compacted as m, ticketlab.masks as p; print(p.compact is m.compact)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["True"]


def test_every_verb_module_is_in_the_verb_table():
    """`ticketlab.cli.VERBS` names the verbs (no discovery): a module of the package without a row
    would be a verb no command line reaches."""
    helpers = {"common", "help_format", "terminate"}  # the parser's pieces, its help's layout, SIGTERM's path
    modules = {info.name for info in pkgutil.iter_modules(ticketlab.cli.__path__)} - helpers
    assert {verb.module_name for verb in ticketlab.cli.VERBS.values()} == modules
    assert list(ticketlab.cli.VERBS)[:3] == ["prune", "search", "finetune"]  # `--help` lists them first


def test_python_dash_m_runs_the_cli():
    """`python -m ticketlab` is the console script (where it is not on PATH): same parser, same exit
    codes."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "ticketlab", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ticketlab ")
    bad = subprocess.run(
        [sys.executable, "-m", "ticketlab", "info", "/no/such/mask"], capture_output=True, text=True
    )
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == "ticketlab info: error: /no/such/mask: mask directory not found"
    )


def test_tamt_objectives_are_the_losses():
    """`TamtConfig.objective` is spelt out in the torch-free `methods.tamt.config`: the same names as
    the losses of `objectives`."""
    from typing import get_args

    from ticketlab.lm import objectives
    from ticketlab.methods.tamt import config as configs

    assert get_args(configs.Objective) == get_args(objectives.Objective) == objectives.OBJECTIVES


def test_torch_free_settings_import_no_heavy_package():
    """`PretrainConfig`, the demo's budgets and the tokenizer kinds live in torch-free modules that
    `pretrain --help` and `demo --help` read (and only there: no module re-exports them)."""
    assert loaded_after("import ticketlab.lm.pretrain_config, ticketlab.demo.config") == set()
    assert loaded_after("import ticketlab.data.tokenizer_kinds") == set()


# A mistyped path, refused by a verb before torch is imported: the user reads the line at once.
MISTYPED = [
    line.split()
    for line in (
        "sweep nowhere/spec.yaml --out nowhere/sweep",
        "report nowhere/sweep",
        "report sweep --spec nowhere/spec.yaml",  # a sweep directory, a mistyped spec
        "prune omp --model ./nowhere/model --sparsity 0.5 --out nowhere/mask",
        "search tamt --model ./nowhere/model --sparsity 0.5 --out nowhere/m --corpus c.txt",
        "finetune --model ./nowhere/model --task sst2 --out nowhere/ft",
        "evaluate-pretrain --model ./nowhere/model --corpus c.txt",
        "compact --model c.txt --mask m --out nowhere/c",  # a file, not a model directory
        "info ./nowhere/mask",
        "export --model model --mask ./nowhere/mask --out o",  # a model, a mistyped mask
        "evaluate-pretrain --mask ./nowhere/a ./nowhere/b --corpus c.txt",
        "mtl --model model --tasks sst2 cola --tickets ./nowhere/a ./nowhere/b --out o",
        "importance ./nowhere/study --out o",
        "adapt ./nowhere/study --task sst2 --out o",
        "sweep --status ./nowhere/sweep",
        "compare model ./nowhere/run",
        "pretrain --corpus c.txt --tokenizer ./nowhere/tok --steps 3 --out o",
        "pretrain --corpus c.txt --init ./nowhere/model --steps 3 --out o",
        "finetune --model model --task sst2 --data-dir ./nowhere/glue --out o",
        "prune wanda --model model --sparsity 0.5 --corpus c.txt ./nowhere/c.txt --out o",
    )
]


@pytest.mark.parametrize("argv", MISTYPED, ids=lambda a: a[0])
def test_a_mistyped_path_is_refused_before_torch_loads(argv, tmp_path, monkeypatch):
    """The refusal is the one line (exit 2) naming the path, and no heavy package was imported for it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("a line of text\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "results.sqlite").write_bytes(b"")
    code = "from ticketlab.cli import main; sys.exit(main())"
    assert loaded_after(code, *argv) == set(), argv
    r = subprocess.run([sys.executable, "-m", "ticketlab", *argv], capture_output=True, text=True)
    assert (
        r.returncode == 2
        and ("nowhere/" in r.stderr or "c.txt" in r.stderr)
        and len(r.stderr.strip().splitlines()) == 1
    ), r.stderr


# The metavar of each kind of input `cli.INPUTS` checks by name.
KINDS = {
    "model": {"PATH_OR_ID"},
    "base": {"PATH_OR_ID"},
    "tokenizer": {"DIR"},
    "init_model": {"MODEL"},
    "mask": {"MASK_DIR", "TICKET_DIR"},
    "tickets": {"TICKET"},
    "masks": {"DIR"},
    "data_dir": {"DIR"},
    "corpus": {"PATH"},
    "dev": {"PATH"},
    "dev_corpus": {"PATH"},
    "study": {"STUDY"},
    "studies": {"STUDY"},
    "sweep_dir": {"SWEEP_DIR"},
    "status": {"DIR"},
}


def _actions(parser, verb=""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{verb} {name}".strip())
        else:
            yield verb, action


def test_every_argument_checked_by_its_name_is_an_input_of_that_kind():
    """`cli.INPUTS` checks a verb's argument by its name alone: one of those names given to an output
    or to another kind of input (a new verb's `--mask OUT`) would be refused as a missing input."""
    from ticketlab.cli import INPUTS, build_parser

    assert set(KINDS) == set(INPUTS)
    named = [(verb, a) for verb, a in _actions(build_parser()) if a.dest in INPUTS]
    assert len(named) >= 20  # every verb's --model and mask, and the studies' directories
    wrong = [(verb, a.dest, a.metavar) for verb, a in named if a.metavar not in KINDS[a.dest]]
    assert not wrong, wrong


def test_super_refuses_a_mask_before_looking_for_it(capsys):
    """`super` takes finetune's options but no mask: the option is refused as it is parsed, whatever
    the path, and left out of the help."""
    with pytest.raises(SystemExit) as e:
        main(["super", "--model", "m", "--mask", "./nowhere", "--task", "sst2", "--out", "o"])
    assert e.value.code == 2 and "--mask: super tickets start from the full model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["super", "--help"])
    assert "--mask MASK_DIR" not in capsys.readouterr().out
