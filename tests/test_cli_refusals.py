"""Every refusal of the command line is one line that names what the user typed, exit status 2.

argparse's own refusals (an unknown method, a value out of range) and the configs' (a missing step
count, a learning rate out of range) read the same way: the option as typed, not a config field
or thirty lines of usage above the problem.
"""

from __future__ import annotations

import pytest

from conftest import error_line
from ticketlab.cli import main


def argparse_refusal(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize(
    "argv, says",
    [
        ([], "ticketlab: error: the following arguments are required: VERB (see ticketlab --help)"),
        (["nosuch"], "ticketlab: error: argument VERB: invalid choice: 'nosuch'"),
        (["prune", "nosuch"], "ticketlab prune: error: argument method: invalid choice: 'nosuch'"),
        (["prune", "omp", "--sparsity", "1.5"], "ticketlab prune: error: argument --sparsity: sparsity must"),
        (["search", "tamt", "--sparsity", "1.5"], "ticketlab search tamt: error: argument --sparsity:"),
        (["sweep", "--launcher", "nosuch"], "ticketlab sweep: error: argument --launcher: invalid choice"),
    ],
)
def test_an_option_argparse_refuses_is_one_line(capsys, argv, says):
    line = argparse_refusal(capsys, *argv)
    assert line.startswith(says)
    assert line.endswith(f"(see {says.split(': error')[0]} --help)")


@pytest.mark.parametrize(
    "argv, typed, meant",
    [
        (["finetune", "--model", "m", "--out", "o", "--task", "sst2", "--mode", "x"], "--mode", "--model"),
        (["prune", "omp", "--model", "m", "--out", "o", "--sparsit", "0.7"], "--sparsit", "--sparsity"),
        (["sweep", "spec.yaml", "--dry"], "--dry", "--dry-run"),
        (["--vers"], "--vers", "--version"),  # before any verb: refused as an option, not a missing verb
        # a prefix names an option it begins, not difflib's nearest (`--seed`)
        (
            ["search", "tamt", "--model", "m", "--out", "o", "--sparsity", "0.7", "--sched", "9"],
            "--sched",
            "--schedule-steps",
        ),
        (["finetune", "--model", "m", "--out", "o", "--task", "sst2", "--max", "3"], "--max", "--max-steps"),
    ],
)
def test_an_option_typed_in_part_is_refused_naming_the_whole(capsys, argv, typed, meant):
    """A prefix of one option is not taken for it: a typo of one option (`--mode`) would otherwise
    run as another (`--model`)."""
    line = argparse_refusal(capsys, *argv)
    assert f"unrecognized arguments: {typed}" in line and f"did you mean '{meant}'?" in line


def test_a_refused_setting_is_named_as_its_option(tiny_bert_dir, tmp_path, capsys):
    model, out = ["--model", str(tiny_bert_dir)], ["--out", str(tmp_path / "o")]
    line = error_line(capsys, "search", "tamt", *model, "--sparsity", "0.7", *out)
    assert line == "ticketlab search: error: --steps required (or the paper's budget: paper, --paper)"
    line = error_line(capsys, "search", "tamt", *model, "--sparsity", "0.7", "--paper", *out)
    assert line.startswith("ticketlab search: error: --corpus required")
    line = error_line(capsys, "finetune", *model, "--task", "sst2", "--lr", "-1", *out)
    assert line == "ticketlab finetune: error: --lr must be in (0, 10], got -1.0"
    assert not (tmp_path / "o").exists()


def test_a_trained_head_and_ignoring_it_are_refused_together(tiny_bert_dir, tmp_path, capsys):
    corpus = tmp_path / "dev.txt"
    corpus.write_text("the cat runs .\n" * 8)
    argv = ["evaluate-pretrain", "--model", str(tiny_bert_dir), "--corpus", str(corpus)]
    line = error_line(capsys, *argv, "--mlm-head", "trained", "--ignore-mlm-head")
    assert "mlm_head trained and ignore_mlm_head contradict each other" in line


def test_imp_asks_for_its_steps_and_offers_no_paper_budget(capsys):
    """IMP has no paper budget: its --steps is required by the parser, and neither its options nor
    its refusal offer TAMT's --paper."""
    line = argparse_refusal(capsys, "search", "imp", "--model", "m", "--sparsity", "0.7", "--out", "o")
    assert "required: --steps" in line and "paper" not in line
    with pytest.raises(SystemExit):
        main(["search", "imp", "--help"])
    assert "[--paper]" not in capsys.readouterr().out  # not among its options
    with pytest.raises(SystemExit):
        main(["search", "tamt", "--help"])
    assert "[--paper]" in capsys.readouterr().out
