"""What `--help` says: each search method's own description, examples that print as they run, the
multi-process claim as it holds, and a negated flag's help saying what the flag does."""

from __future__ import annotations

import argparse
import re

import pytest

from test_cli_options import parsers
from ticketlab.cli import build_parser


def _help(name: str) -> str:
    return parsers()[name].format_help()


def test_each_search_method_has_its_own_description():
    tamt, imp = _help("search tamt"), _help("search imp")
    assert "ticketlab search tamt: task-agnostic mask training" in tamt and "iterative magnitude" not in tamt
    assert "ticketlab search imp: iterative magnitude pruning" in imp and "task-agnostic mask" not in imp
    assert "ticketlab search imp --model" in imp and "ticketlab search tamt --model" not in imp
    assert "Run the same command again" in tamt and "Run the same command again" in imp  # what they share


def test_the_verb_list_names_every_registered_method(capsys):
    """`ticketlab --help`'s lines of prune and search name each method the registry holds for them."""
    from ticketlab.cli import main
    from ticketlab.methods.registry import methods

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for verb in ("prune", "search"):
        line = re.search(rf"{verb} +(.*?\))", listed).group(1)
        assert set(re.findall(r"[\w-]+", line)) >= set(methods(verb)), (verb, line)


def test_the_sweep_help_names_every_method_a_spec_may_name():
    from ticketlab.studies.sweep.methods import sweep_methods

    said = set(re.findall(r"[\w+-]+", " ".join(_help("sweep").split())))
    swept = {name for name, m in sweep_methods().items() if m.not_swept is None}
    assert swept <= said, swept - said


def test_no_help_wraps_a_command_line_into_a_run_of_spaces(monkeypatch):
    """A backslash at a line's end in a docstring joins the lines: the command printed as
    `--no_python       ticketlab` or `--out exported/omp-2-4       --semi-structured`."""
    monkeypatch.setenv("COLUMNS", "200")  # lines as written, not wrapped
    helps = {name: p.format_help() for name, p in parsers().items()}
    helps["search"] = build_parser()._subparsers._group_actions[0].choices["search"].format_help()
    wrapped = {n: m.group(0) for n, h in helps.items() if (m := re.search(r"\S {3,}(--\w|ticketlab)", h))}
    assert not wrapped


def test_help_fits_the_terminal_and_its_commands_still_paste(monkeypatch):
    """In an 80-column terminal every line of every `--help` fits, but argparse's usage groups it
    cannot break (`[--kinds {winning,random,losing} [...]]`); a wrapped paragraph keeps its words
    and a wrapped command line is continued with a backslash."""
    monkeypatch.setenv("COLUMNS", "80")
    for name, parser in parsers().items():
        for line in parser.format_help().splitlines():
            assert len(line) <= 80 or re.fullmatch(r" +\[.*\]", line), f"{name}: {line}"
    monkeypatch.setenv("COLUMNS", "200")
    wide = parsers()["export"].format_help()
    monkeypatch.setenv("COLUMNS", "80")
    narrow = parsers()["export"].format_help()
    assert [w for w in wide.split() if w != "\\"] == [w for w in narrow.split() if w != "\\"]
    assert "ticketlab export --model models/minilm-mlm --mask masks/omp-2-4 \\\n      --out" in narrow


def test_a_wrapped_one_line_entry_continues_under_its_text():
    """`  omp        one-shot ...` wrapped in 80 columns goes on under "one-shot", not 4 columns in."""
    from ticketlab.cli.help_format import wrap_text

    entry = "  omp        one-shot magnitude pruning: keep the largest |W| (TAMT's default ranking is local)"
    assert wrap_text(entry, 80) == [
        "  omp        one-shot magnitude pruning: keep the largest |W| (TAMT's default",
        "             ranking is local)",
    ]
    words = "  " + "word " * 20  # no term: 4 columns in
    assert wrap_text(words, 40)[1].startswith("      word")
    long_term = "  " + "t" * 30 + "  " + "word " * 10  # a term past half the width: 4 columns in
    assert wrap_text(long_term, 40)[1].startswith("      word")


def test_search_help_does_not_promise_the_same_mask_from_several_processes_with_dropout():
    for name in ("search tamt", "search imp"):
        text = " ".join(_help(name).split())
        assert "the result is the same" not in text
        assert "with dropout (BERT's 0.1) each process draws its own dropout masks" in text
        assert "close to one process's but not the same" in text


def test_no_pooler_help_says_what_the_flag_does():
    for name in ("prune", "search tamt"):
        action = next(a for a in parsers()[name]._actions if "--no-pooler" in a.option_strings)
        assert action.help.startswith("leave the pooler dense (not pruned)"), (name, action.help)


def test_autocast_is_mixed_precision_in_every_verb_and_pretrains_old_name_still_parses(capsys):
    shown = {
        (name, s)
        for name, p in parsers().items()
        for a in p._actions
        if a.help != argparse.SUPPRESS
        for s in a.option_strings
        if "precision" in s
    }
    assert {s for _, s in shown} == {"--mixed-precision"} and ("pretrain", "--mixed-precision") in shown
    argv = ["pretrain", "--corpus", "c.txt", "--steps", "3", "--out", "o"]
    assert build_parser(only="pretrain").parse_args([*argv, "--precision", "bf16"]).mixed_precision == "bf16"
    assert (
        capsys.readouterr().err.strip()
        == "ticketlab pretrain: note: --precision is deprecated, write --mixed-precision"
    )
    assert (
        build_parser(only="pretrain").parse_args([*argv, "--mixed-precision", "no"]).mixed_precision == "no"
    )
    assert "--precision" not in parsers()["pretrain"].format_help() and not capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, verb, told",
    [
        (
            ["pretrain", "--corpus", "c.txt", "--steps", "3", "--out", "o", "--mixed-precison", "bf16"],
            "pretrain",
            "unrecognized arguments: --mixed-precison bf16 (did you mean '--mixed-precision'?)",
        ),
        (
            ["finetune", "--model", "m", "--task", "sst2", "--out", "o", "--warmup-raito=0.1"],
            "finetune",
            "unrecognized arguments: --warmup-raito=0.1 (did you mean '--warmup-ratio'?)",
        ),
        (
            ["search", "tamt", "--model", "m", "--out", "o", "--stesp", "3"],
            "search tamt",  # the method's options, not search's (--help alone)
            "unrecognized arguments: --stesp 3 (did you mean '--steps'?)",
        ),
        (
            ["finetune", "--model", "m", "--task", "sst2", "--out", "o", "stray"],
            "finetune",
            "unrecognized arguments: stray",
        ),
    ],
)
def test_an_unknown_option_is_refused_by_its_verb_with_the_nearest_one(argv, verb, told, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser(only=argv[0]).parse_args(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"ticketlab {verb}: error: {told} (see ticketlab {verb} --help)"


@pytest.mark.parametrize(
    "argv, told",
    [
        (["serach"], "ticketlab: error: argument VERB: invalid choice: 'serach' (did you mean 'search'?)"),
        (
            ["prune", "opm"],
            "ticketlab prune: error: argument method: invalid choice: 'opm' (did you mean 'omp'?)",
        ),
        (
            ["search", "tamt", "--objective", "kdd"],
            "ticketlab search tamt: error: argument --objective: invalid choice: 'kdd' (did you mean 'kd'?)",
        ),
    ],
)
def test_a_mistyped_choice_is_refused_with_the_nearest_one(argv, told, capsys):
    """A verb, a method and an option's value: every argument with choices goes through one check."""
    with pytest.raises(SystemExit) as exit_:
        build_parser(only=argv[0]).parse_args(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(told + " (choose from ")


def test_finetune_help_documents_the_task_json_format_it_reads(tmp_path):
    """The task.json example and the field names in `finetune --help` are what the reader takes."""
    import dataclasses
    import json

    from ticketlab.tasks.metrics import GLUE_METRIC_NAMES
    from ticketlab.tasks.registry import TaskSpec, read_task_file

    text = _help("finetune")
    start = text.index("Your own task:")
    example = text[text.index("{", start) : text.index("}}", start) + 2]
    (tmp_path / "task.json").write_text(example)
    spec = read_task_file(tmp_path / "task.json")
    assert spec.files["train"] == "train.csv" and spec.labels == ("neg", "pos")
    paragraph = text[start : text.index("\n\n", start)]
    named = {"text_b", "kind", "labels", "metrics", "main_metric", "header", "lr", "batch_size"}
    named |= {"max_length", "epochs", "eval_every", "files", "text_a", "label", "id"}
    assert named <= {f.name for f in dataclasses.fields(TaskSpec)}
    assert all(name in paragraph for name in named) and json.loads(example)["id"] == "reviews"
    assert all(metric in paragraph for metric in GLUE_METRIC_NAMES)
