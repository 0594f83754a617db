"""The sweep spec reader and every string a user hands ticketlab (a spec, a mask or task file, a
command-line argument, a config from Python): nothing in them expands without bound, draws as
something else, or drives the terminal. Every case is one line naming the file and the problem,
before anything is created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import sweep_fakes as fakes
from conftest import error_line, run
from test_runner import write_sst2
from ticketlab.core.errors import ConfigError
from ticketlab.studies import run_sweep
from ticketlab.studies.report import write_report

# --------------------------------------------------------------------------- the spec reader


def _spec(root: Path, model: Path, extra: str = "", **overrides) -> Path:
    """A valid spec file (fake tasks over the tiny model) with `extra` YAML text appended; a top-level
    key `extra` sets is left out of the rest (a key given twice is refused)."""
    d = fakes.spec_dict(root, model, pretrain_eval=None, search_curve=None, data_curve=None, **overrides)
    d.pop("name")
    for line in extra.splitlines():
        if line[:1].isalpha():
            d.pop(line.split(":")[0], None)
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(d) + extra)
    return path


# Aliases of aliases: nine levels of nine make 9**9 names (80 s, then MemoryError); three here, harmless
# to the old reader, which took them as the sweep's name.
BOMB = ", ".join(
    ["&b0 [lol, lol, lol]", *(f"&b{i} [*b{i - 1}, *b{i - 1}, *b{i - 1}]" for i in (1, 2)), "*b2"]
)


@pytest.mark.parametrize(
    "where",
    [
        f"name: [{BOMB}]\n",  # a name
        "finetune: {steps: 5, lr: &lr 1.0e-3}\nsearch: {steps: 20, lr: *lr}\n",  # a learning rate
        "resources: {default: {slurm: &s {qos: high}}, search: {slurm: *s}}\n",  # Slurm options
    ],
    ids=["name", "lr", "slurm"],
)
def test_yaml_anchors_and_aliases_are_refused_when_the_spec_is_read(where, tiny_bert_dir, tmp_path, capsys):
    spec = _spec(tmp_path, tiny_bert_dir, where)  # a key given twice: the alias is refused first
    for dry in ([], ["--dry-run"]):
        line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", *dry)
        assert f"{spec}: invalid YAML at line" in line and "anchors and aliases" in line
        assert not (tmp_path / "out").exists()


def test_numbers_beyond_what_a_setting_holds_are_one_line(tiny_bert_dir, tmp_path, capsys):
    """A 5000-digit seed in a spec, a seed of 10**20 on the command line, a learning rate of 1e38."""
    spec = _spec(tmp_path, tiny_bert_dir, f"seeds: {{search: [0], finetune: [{'9' * 5000}]}}\n")
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert "a number of 5000 digits" in line and str(spec) in line
    spec = _spec(tmp_path / "s2", tiny_bert_dir, seeds={"search": [0], "finetune": [10**20]})
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert "seeds.finetune: 100000000000000000000 is out of range: must be in [0, 4294967296)" in line

    data = tmp_path / "glue"
    write_sst2(data)
    finetune = [
        "finetune",
        "--model",
        tiny_bert_dir,
        "--task",
        "sst2",
        "--data-dir",
        data,
        "--max-length",
        32,
    ]
    line = error_line(capsys, *finetune, "--seeds", "100000000000000000000", "--out", tmp_path / "f1")
    assert "seed must be in [0, 4294967296), got 100000000000000000000" in line
    line = error_line(capsys, *finetune, "--lr", "1e38", "--out", tmp_path / "f2")
    assert "lr must be in (0, 10], got 1e+38" in line
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog .\n" * 20)
    search = ["search", "tamt", "--model", tiny_bert_dir, "--corpus", corpus, "--sparsity", 0.5, "--steps", 2]
    line = error_line(capsys, *search, "--lr", "1e38", "--out", tmp_path / "s")
    assert "lr must be in (0, 10], got 1e+38" in line
    assert not any((tmp_path / d).exists() for d in ("f1", "f2", "s"))


@pytest.mark.parametrize("steps", ["0", "-3", "1e30", "1.0e+30", "100000000000000000000000000000"])
def test_the_dry_run_refuses_the_step_counts_a_run_refuses(steps, tiny_bert_dir, tmp_path, capsys):
    spec = _spec(tmp_path, tiny_bert_dir, f"search: {{steps: {steps}}}\n", search=None)
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert "search.steps" in line and not (tmp_path / "out").exists()
    # given for one method: the refusal names the method's key
    spec = _spec(tmp_path / "m", tiny_bert_dir, methods={"omp": {}, "tamt-mlm": {"steps": 0}})
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert "methods.tamt-mlm.steps: a positive step budget is required by tamt-mlm, got 0" in line
    # and where no method of the sweep searches with steps, a step count is still a step count
    spec = _spec(tmp_path / "n", tiny_bert_dir, f"search: {{steps: {steps}}}\n", search=None, methods=["omp"])
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert "search.steps: a positive step budget or null" in line and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("batch_size: 0", "search.batch_size: must be >= 1, got 0"),
        ("max_length: -4", "search.max_length: must be >= 8, got -4"),
        ("lr: fast", "search.lr: must be a number or null, got 'fast'"),
    ],
)
def test_a_search_setting_no_method_of_the_sweep_reads_is_still_checked(
    setting, message, tiny_bert_dir, tmp_path, capsys
):
    """A sweep of OMP alone refuses `search: {batch_size: 0}` as a sweep that searches would."""
    spec = _spec(tmp_path, tiny_bert_dir, f"search: {{{setting}}}\n", search=None, methods=["full", "omp"])
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert message in line and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, said",
    [
        ("pretrain_eval: false\n", "pretrain_eval: a mapping ({}: the defaults), or left out; got False"),
        ("name: [x, y]\n", "name: expected a string, got ['x', 'y']"),  # no folder "['x', 'y']"
        ("name: ../up\n", "name '../up'"),
        ("output: 5\n", "output: expected a path, got 5"),
        ("recipes: [corpus.txt]\n", "a report recipe is a Python file"),  # not after every run
        ("recipes: [bad.py]\n", "bad.py, line 1: not valid Python"),
    ],
    ids=["pretrain-eval-false", "name-list", "name-up", "output-int", "recipe-text", "recipe-syntax"],
)
def test_a_value_of_the_wrong_kind_is_refused_when_the_spec_is_read(
    extra, said, tiny_bert_dir, tmp_path, capsys
):
    (tmp_path / "bad.py").write_text("def (:\n")
    spec = _spec(tmp_path, tiny_bert_dir, extra)
    line = error_line(capsys, "sweep", spec, "--dry-run")
    assert f"{spec}: " in line and said in line


def test_a_label_matplotlib_reads_as_math_is_drawn_as_written(tiny_bert_dir, tmp_path):
    """`sst$x^^y$` is a valid file name; mathtext cannot parse it: the report draws it as text."""
    label = "sst$x^^y$"
    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        tasks={label: {"task": "a", "data": "data/a"}},
        methods=["full", "omp"],
        sparsities=[0.5],
        seeds={"search": [0], "finetune": [0]},
        pretrain_eval=None,
        search_curve=None,
        data_curve=None,
    )
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    report = write_report(tmp_path / "sweep")
    assert "fig3_score_vs_sparsity.png" in report.figures and label in report.path.read_text()


# --------------------------------------------------------------------------- control characters


@pytest.mark.parametrize(
    "extra",
    [
        'endpoint: {name: "avg\\u2066 of a and b", tasks: [a, b]}\n',  # an endpoint's name: a bidi isolate
        'corpus: {train: "c\\u0085## Verdict.txt", dev: corpus.txt}\n',  # a path (that exists): NEL
        'model: "m\\e[2J"\n',  # a model folder (a link to the tiny one): an escape that clears the screen
    ],
    ids=["endpoint", "corpus", "model"],
)
def test_a_control_character_in_any_string_of_a_spec_is_refused_at_load(
    extra, tiny_bert_dir, tmp_path, capsys
):
    """Names, endpoints, labels and paths of a spec reach the terminal (`--dry-run`, progress) and the
    report: a newline forges a line there, an escape drives the terminal, a bidi control shows other
    text. One line naming the spec and the place, before anything is made."""
    (tmp_path / "c\u0085## Verdict.txt").write_text("the cat sees the dog .\n")
    (tmp_path / "m\x1b[2J").symlink_to(tiny_bert_dir)
    spec = _spec(tmp_path, tiny_bert_dir, extra)
    line = error_line(capsys, "sweep", spec, "--dry-run")
    assert f"{spec}: " in line and "holds a newline or control character" in line
    assert "\x1b" not in line and "\u2066" not in line and "\x85" not in line


def test_a_control_character_in_a_mask_or_task_file_is_refused_at_load(tiny_bert_dir, tmp_path, capsys):
    """`info` printed a mask config's fields raw (a method named with an escape cleared the screen);
    a task.json's class labels went to the report. The same cleaner refuses them when read."""
    mask = tmp_path / "mask"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", 0.5, "--out", mask)[0] == 0
    path = mask / "mask_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "method": "omp\x1b[2J"}))
    line = error_line(capsys, "info", mask)
    assert f"{path}: method 'omp\\x1b[2J': holds a newline or control character" in line
    write_sst2(tmp_path / "glue")
    task = tmp_path / "glue" / "task.json"
    task.write_text(json.dumps({"id": "mine", "dir_name": "SST-2", "labels": ["0", "1\u2028## Verdict"]}))
    argv = ["finetune", "--model", tiny_bert_dir, "--task", task, "--max-length", 32, "--max-steps", 1]
    line = error_line(capsys, *argv, "--out", tmp_path / "ft")
    assert "task: labels[1] '1\\u2028## Verdict': holds a newline" in line
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize(
    "extra, flags, said",
    [
        ("", ["--runs", "no-such-run*"], "no-such-run*"),  # runs chosen by name that the plan lacks
        ("pretrain_eval: {max_length: 4096}\n", [], "pretrain_eval.max_length"),  # past the model's positions
        # each length a run asks of the model (64 positions), the searches' failing their fine-tunings
        (
            "finetune: {steps: 5, max_length: 100000}\n",
            [],
            "finetune.max_length 100000 exceeds the model's 64",
        ),
        ("methods: {omp: {}, imp: {max_length: 65}}\n", [], "methods.imp.max_length 65 exceeds"),
        (
            "methods: [full, wanda]\n",
            [],
            "search: calibration_length (its default) 128 exceeds the model's 64",
        ),
        (  # the corpus's start holds fewer full blocks than the sequences asked: each search would fail
            "methods: [full, wanda]\nsearch: {calibration: 1000, calibration_length: 32}\n"
            "corpus: {train: big.txt, dev: corpus.txt}\n",
            [],
            "blocks of 32 tokens in its training split, fewer than the 1000 calibration sequences",
        ),
        ("", ["--out", "data/a/sweep"], "is inside the input"),  # a task's data folder: its fine-tunings'
        ("corpus: {train: weights.bin, dev: corpus.txt}\n", [], "corpus.train: "),  # each search would fail
    ],
    ids=[
        "runs",
        "positions",
        "finetune-length",
        "search-length",
        "calibration-length",
        "calibration-count",
        "in-task-data",
        "binary",
    ],
)
def test_a_sweep_refused_before_any_run_leaves_no_directory(
    extra, flags, said, tiny_bert_dir, tmp_path, capsys
):
    """A sweep refused before its first run left its directory behind: a marker, an empty store and
    the spec's copy, which the next sweep there took for a sweep begun. Every such refusal comes
    before the directory is made."""
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01" * 64)
    (tmp_path / "big.txt").write_text("the cat sees the dog .\n" * 2000)
    spec = _spec(tmp_path, tiny_bert_dir, extra)
    out = tmp_path / (flags[1] if flags[:1] == ["--out"] else "sw")
    flags = ["--out", out, *flags[2:]] if flags[:1] == ["--out"] else ["--out", out, *flags]
    line = error_line(capsys, "sweep", spec, *flags)
    assert said in line and not out.exists(), line


def test_a_control_character_in_a_command_line_argument_is_refused(tiny_bert_dir, tmp_path, capsys):
    """A path given on the command line is printed back (`results: OUT/...`) and logged: with an
    escape in it, the terminal acted on it. Refused in one line, before any work."""
    out = tmp_path / "m\x1b]0;owned\x07"
    line = error_line(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", 0.5, "--out", out)
    assert "command-line argument" in line and "holds a newline or control character" in line
    assert "\x1b" not in line and not out.exists()


def test_a_control_character_in_a_config_from_python_is_refused(tiny_bert_dir, tmp_path):
    """From Python, where no command line is checked: a config's name or path holding a newline (a
    model folder, one of several corpora, a task) is refused when the config is built, naming its
    field, before it reaches a mask file or a log."""
    import ticketlab as tl

    odd = tmp_path / "a\nb"
    for build, field in (
        (lambda: tl.PruneConfig(str(odd), "omp", 0.5, tmp_path / "m"), "model"),
        (lambda: tl.PruneConfig(str(tiny_bert_dir), "omp", 0.5, odd), "out"),
        (lambda: tl.PretrainEvalConfig(corpus=[tmp_path / "c.txt", odd], model=str(tiny_bert_dir)), "corpus"),
        (lambda: tl.FinetuneConfig(model=str(tiny_bert_dir), task="sst2\n"), "task"),
    ):
        with pytest.raises(ConfigError, match=f"^{field} '.*': holds a newline or control character"):
            build()
