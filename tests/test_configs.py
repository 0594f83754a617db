"""Every config checks its values when it is built, and a sweep's dry run builds
the config of every run it plans, so a bad value is refused in one line before any work."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pkgutil
import shutil
import types
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml

import ticketlab
from sweep_fakes import imp_settings, spec_dict, tamt_settings
from ticketlab.cli import main
from ticketlab.core.checks import Range, _hints
from ticketlab.core.errors import TicketlabError

# A valid instance of every config class (the checks below change one field at a time).
FACTORIES = {
    "PruneConfig": lambda: ticketlab.PruneConfig(model="m", method="omp", sparsity=0.5, out="o"),
    "SearchConfig": lambda: ticketlab.SearchConfig(
        model="m", method=ticketlab.TamtConfig(0.5), steps=3, out="o", corpus=["c.txt"]
    ),
    "PretrainEvalConfig": lambda: ticketlab.PretrainEvalConfig(corpus=["c.txt"], model="m"),
    "FinetuneConfig": lambda: ticketlab.FinetuneConfig(model="m", task="sst2"),
    "TrainConfig": lambda: ticketlab.train.loop.TrainConfig(max_steps=3),
    "TamtConfig": lambda: ticketlab.TamtConfig(0.5),
    "ImpConfig": lambda: ticketlab.ImpConfig(0.5),
    "PretrainConfig": lambda: ticketlab.lm.pretrain.PretrainConfig(steps=3),
    "SuperConfig": lambda: _module("studies.supertickets").SuperConfig(
        finetune=ticketlab.FinetuneConfig(model="m", task="sst2")
    ),
    "MtlConfig": lambda: _module("studies.mtl").MtlConfig(model="m", tasks=["sst2"]),
    "SyntheticConfig": lambda: _module("data.synthetic").SyntheticConfig(),
    "ExportConfig": lambda: ticketlab.ExportConfig(model="m", mask="k", out="o"),
    "CompactConfig": lambda: ticketlab.CompactConfig(model="m", mask="k", out="o"),
    "InfoConfig": lambda: ticketlab.InfoConfig(mask="k"),
    "SparseGptConfig": lambda: _module("methods.sparsegpt.config").SparseGptConfig(),
    "CompareConfig": lambda: ticketlab.CompareConfig(masks=["k1", "k2"]),
    "CompareRunsConfig": lambda: ticketlab.CompareRunsConfig(runs=["r1", "r2"]),
    "RandomTicketConfig": lambda: _module("methods.super_tickets.levels").RandomTicketConfig(),
    "AdaptConfig": lambda: _module("studies.adaptation").AdaptConfig(
        finetune=ticketlab.FinetuneConfig(model="m", task="sst2"),
        sources=[_module("studies.adaptation").AdaptSource("full", 1, "m")],
    ),
}
NOT_CONFIGS = {
    "MaskConfig",  # a mask file's record, checked when read (test_hardening)
    "TicketlabCompactConfig",  # transformers' config of a compacted model (hf_auto), not a ticketlab setting
}


def _module(name: str):
    return importlib.import_module(f"ticketlab.{name}")


def config_classes() -> dict[str, type]:
    """Every dataclass named *Config in the package (a new one must get a factory above)."""
    found = {}
    for info in pkgutil.walk_packages(ticketlab.__path__, "ticketlab."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            is_config = name.endswith("Config") and inspect.isclass(obj) and dataclasses.is_dataclass(obj)
            if is_config and obj.__module__ == module.__name__ and name not in NOT_CONFIGS:
                found[name] = obj
    return found


def _number_type(tp: Any) -> tuple[type, Range | None] | None:
    """(int or float, its range) when annotation `tp` is a number, optionally null; else None."""
    if get_origin(tp) in (Union, types.UnionType):
        kinds = [a for a in get_args(tp) if a is not type(None)]
        return _number_type(kinds[0]) if len(kinds) == 1 else None
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        ranges = [m for m in meta if isinstance(m, Range)]
        return (base, ranges[0]) if base in (int, float) else None
    return (tp, None) if tp in (int, float) else None


def _outside(bound: Range, kind: type) -> list[float]:
    """Values just outside `bound`."""
    step = 1 if kind is int else 0.5
    out = []
    if bound.ge is not None:
        out.append(bound.ge - step)
    if bound.gt is not None:
        out.append(bound.gt)
    if bound.le is not None:
        out.append(bound.le + step)
    if bound.lt is not None:
        out.append(bound.lt)
    return [kind(v) for v in out]


def bad_values() -> list:
    cases = []
    for name, cls in sorted(config_classes().items()):
        if name not in FACTORIES:
            continue  # reported by test_every_config_class_is_covered
        for field, tp in _hints(cls).items():
            number = _number_type(tp)
            if number is None:
                continue
            kind, bound = number
            values: list[Any] = ["16", 1.5, True] if kind is int else ["fast", math.nan, -math.inf]
            values += _outside(bound, kind) if bound is not None else []
            cases += [pytest.param(name, field, v, id=f"{name}.{field}={v!r}") for v in values]
    return cases


def test_every_config_class_is_covered():
    assert set(config_classes()) == set(FACTORIES)
    for make in FACTORIES.values():
        make()  # the factories' values are valid


# Numbers any value of which is fine: seeds.
UNBOUNDED = {"seed", "data_seed", "select_seed"}


def test_every_number_of_every_config_has_a_range():
    """A numeric field says its range in its annotation (`PositiveInt`, `Fraction`, ...), so the
    check below covers it; a new field without one fails here."""
    missing = [
        f"{name}.{field}"
        for name, cls in sorted(config_classes().items())
        for field, tp in _hints(cls).items()
        if (number := _number_type(tp)) is not None and number[1] is None and field not in UNBOUNDED
    ]
    assert missing == []


@pytest.mark.parametrize("name, field, value", bad_values())
def test_configs_refuse_bad_values_when_built(name, field, value):
    """Wrong type (an int field given "16" or 1.5 or True), nan / inf, or out of range: refused when
    built, with the field named first; the caller's config is left as it was."""
    valid = FACTORIES[name]()
    before = dataclasses.asdict(valid)
    with pytest.raises(TicketlabError) as info:
        dataclasses.replace(valid, **{field: value})
    assert str(info.value).startswith(f"{field} "), str(info.value)
    assert dataclasses.asdict(valid) == before


def test_a_search_refuses_save_at_steps_past_its_end_when_built(tmp_path, capsys, monkeypatch):
    """save_at is checked against steps with the other values (a search made its directory, wrote
    its settings, then refused it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("some text\n")  # a corpus there: a missing one is refused first
    with pytest.raises(TicketlabError, match=r"save-at steps must be in \[1, 3\], got \[9\]"):
        dataclasses.replace(FACTORIES["SearchConfig"](), save_at=[9])
    argv = ["search", "tamt", "--model", "m", "--corpus", "c.txt", "--sparsity", "0.5", "--steps", "3"]
    line = _error_line(capsys, *argv, "--save-at", "9", "--out", tmp_path / "s")
    assert "save-at steps must be in [1, 3]" in line and not (tmp_path / "s").exists()


def test_search_leaves_the_callers_config_alone(tiny_bert_dir, tmp_path):
    """The run fits max_length to the model's positions on its own copy of the config."""
    model = shutil.copytree(tiny_bert_dir, tmp_path / "model")  # its own name: its own length notice
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 30)
    config = ticketlab.SearchConfig(
        model=str(model),
        method=ticketlab.TamtConfig(0.5),
        steps=1,
        out=tmp_path / "out",
        corpus=[corpus],
        no_eval=True,
        progress=False,
    )
    before = dataclasses.asdict(config)
    ticketlab.search(config)
    assert dataclasses.asdict(config) == before


METHODS = {m: {} for m in ("full", "omp", "random", "imp")}  # spec_dict's, besides tamt-mlm


def _error_line(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["finetune"].update(lr="fast"), "finetune.lr: must be a number or null, got 'fast'"),
        (lambda d: d["finetune"].update(lr=math.nan), "finetune.lr: must be a number or null, got nan"),
        (lambda d: d["finetune"].update(batch_size=0), "finetune.batch_size: must be >= 1, got 0"),
        (lambda d: d["tasks"]["b"].update(max_length=-5), "tasks.b.max_length: must be >= 8, got -5"),
        (lambda d: d["tasks"]["a"].update(grad_accum=0), "tasks.a.grad_accum: must be >= 1, got 0"),
        (lambda d: d["search"].update(lr="fast"), "search.lr: must be a number or null, got 'fast'"),
        (lambda d: d["search"].update(batch_size=0), "search.batch_size: must be >= 1, got 0"),
        (lambda d: d["search"].update(max_length=-5), "search.max_length: must be >= 8, got -5"),
        (lambda d: d["corpus"].update(dev_fraction=5), "corpus.dev_fraction: must be in [0, 1), got 5"),
        (  # the spec's corpus has a dev file: nothing is carved, the fraction would be ignored
            lambda d: d["corpus"].update(dev_fraction=0.1),
            "corpus.dev_fraction: carves dev text from the corpus: with dev given, leave it out",
        ),
        (
            lambda d: d.update(methods={**METHODS, "tamt-mlm": {"threshold": math.nan}}),
            "methods.tamt-mlm.threshold: must be a number, got nan",
        ),
        (
            lambda d: d.update(methods={**METHODS, "tamt-mlm": {"lr": "1e-4"}}),
            "methods.tamt-mlm.lr: must be a number or null, got '1e-4' (YAML reads 1e-4 as text",
        ),
        (lambda d: d["search"].update(prune_rate=1.5), "search.prune_rate: must be in (0, 1), got 1.5"),
        (
            lambda d: d["search"].update(freeze_head="no"),  # not 'no' was False: the head froze
            "search.freeze_head: must be true or false, got 'no'",
        ),
        (lambda d: d["pretrain_eval"].update(batch_size=0), "pretrain_eval.batch_size: must be >= 1, got 0"),
        (  # a mask's row reads it, the full model's does not: checked all the same
            lambda d: d["pretrain_eval"].update(decoder="sparse"),
            "pretrain_eval.decoder: must be one of",
        ),
        (
            lambda d: d.update(search_curve={"steps": [2], "methods": ["imp"], "sparsities": [0.7]}),
            "search: IMP needs at least 6 steps for 7 pruning rounds, got 2",
        ),
    ],
)
def test_sweep_dry_run_builds_every_runs_config(tiny_bert_dir, tmp_path, capsys, edit, message):
    """A value a planned run's config refuses is refused by the dry run, naming the spec and key."""
    d = spec_dict(tmp_path, tiny_bert_dir)
    edit(d)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(d))
    line = _error_line(capsys, "sweep", spec, "--out", tmp_path / "sweep", "--dry-run")
    assert f"{spec}: {message}" in line
    assert not (tmp_path / "sweep").exists()


def test_sweep_dry_run_accepts_what_its_runs_accept(tiny_bert_dir, tmp_path, capsys):
    """The configs are built as the plan builds them: a per-task IMP search reads its task, not the
    corpus (a check that passed it the corpus too refused a valid spec); targets may be a list for
    every method (OMP's config took only a string)."""
    d = spec_dict(tmp_path, tiny_bert_dir)
    d["methods"] = {**METHODS, "tamt-mlm": {}, "imp-task": {"sources": ["a"]}}
    d["search"]["targets"] = ["attention", "intermediate"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(d))
    code = main(["sweep", str(spec), "--out", str(tmp_path / "sweep"), "--dry-run"])
    assert code == 0, capsys.readouterr().err


def test_sweep_dry_run_refuses_a_model_without_tokenizer(tiny_bert_dir, tmp_path, capsys):
    model = tmp_path / "weights-only"
    model.mkdir()
    shutil.copy(tiny_bert_dir / "config.json", model)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(tmp_path, model)))
    line = _error_line(capsys, "sweep", spec, "--out", tmp_path / "sweep", "--dry-run")
    assert f"{spec}: model: {model}: not a tokenizer directory" in line


def test_sweep_dry_run_refuses_a_task_folder_without_its_data(tiny_bert_dir, tmp_path, capsys):
    """A task folder holding its task.json but not the files it names: every fine-tuning of the
    sweep failed after the searches; the dry run refuses it, naming the spec, key and files."""
    d = spec_dict(tmp_path, tiny_bert_dir)
    (tmp_path / "data" / "b" / "dev.tsv").unlink()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(d))
    for dry in (["--dry-run"], []):
        line = _error_line(capsys, "sweep", spec, "--out", tmp_path / "sweep", *dry)
        assert f"{spec}: tasks.b.data: " in line and "b dev file not found" in line
        assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--jobs", "0", "an integer >= 1"),  # was taken as 1
        ("--retries", "-1", "an integer >= 0"),
        ("--max-runs", "0", "an integer >= 1"),
        ("--cpus", "0", "a number in [1, 4096]"),
        ("--stale-after", "-5", "a number > 0"),  # every run held elsewhere was taken over
    ],
)
def test_sweep_options_refuse_values_out_of_range_when_parsed(tmp_path, capsys, flag, value, expected):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "spec.yaml", "--out", str(tmp_path / "sweep"), flag, value])
    assert info.value.code == 2
    assert f"argument {flag}: expected {expected}, got '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "argv", [["sweep", "spec.yaml", "--jobs"], ["importance", "a", "b", "--out", "o", "--top"]]
)
def test_an_integer_option_past_64_bits_is_refused_when_parsed(tmp_path, capsys, argv):
    """No 64-bit integer holds 99999999999999999999: no pool of that many processes can be sized."""
    with pytest.raises(SystemExit) as info:
        main([*argv, "99999999999999999999"])
    assert info.value.code == 2
    assert "must fit in 64 bits (below 2**63), got '99999999999999999999'" in capsys.readouterr().err


def test_float_options_with_no_sense_above_a_ceiling_are_refused_when_built(tmp_path, capsys):
    """`search tamt --alpha 1e308` overflowed mid-search, `pretrain --time-budget 1e308` too: the
    configs state ceilings (α, φ, weight decay, epochs, durations), refused in one line before
    anything is written."""
    (tmp_path / "m").mkdir()  # a model directory (a missing one is refused before the config is built)
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "c.txt").write_text("some text\n")  # pretrain's corpus and tokenizer, there
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tokenizer.json").write_text("{}")
    base = ["search", "tamt", "--model", tmp_path / "m", "--sparsity", "0.5", "--steps", "3"]
    for flag, named in (
        ("--alpha", "--alpha must be in [1, 10000]"),
        ("--weight-decay", "--weight-decay must be in [0, 1]"),
    ):
        line = _error_line(capsys, *base, "--out", tmp_path / "s", flag, "1e308")
        assert named in line
    assert not (tmp_path / "s").exists()
    pretrain = [
        "pretrain",
        "--tokenizer",
        tmp_path / "t",
        "--corpus",
        tmp_path / "c.txt",
        "--out",
        tmp_path / "p",
    ]
    line = _error_line(capsys, *pretrain, "--time-budget", "1e308")  # overflowed the steps it sets
    assert "--time-budget must be in (0, 31622400], got 1e+308" in line
    assert not any(p.name.startswith("p") for p in tmp_path.iterdir())


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_float_options_refuse_nan_and_inf_when_parsed(capsys, value):
    """Every float option of every verb (here TAMT's --threshold, fine-tuning's --lr) is parsed as a
    finite number: nan is refused by argparse, not later as a diverged search."""
    for argv in (
        ["search", "tamt", "--model", "m", "--sparsity", "0.5", "--steps", "3", "--out", "o", "--threshold"],
        ["finetune", "--model", "m", "--task", "sst2", "--out", "o", "--lr"],
    ):
        with pytest.raises(SystemExit) as info:
            main([*argv[:-1], f"{argv[-1]}={value}"])  # '-inf' alone would read as an option
        assert info.value.code == 2
        assert f"{argv[-1]}: expected a finite number, got '{value}'" in capsys.readouterr().err


def test_choice_and_distinct_checks_are_one_pair_of_helpers():
    """Settings checked in code (not by an annotation) are refused by the same two helpers, as
    `FieldError`s naming the field (a sweep spec maps them back to its key)."""
    from ticketlab.core.checks import FieldError

    with pytest.raises(
        FieldError, match=r"^size must be one of tiny, mini, small, medium, base, got 'huge'$"
    ):
        ticketlab.lm.pretrain.PretrainConfig(steps=1, size="huge")
    with pytest.raises(FieldError, match=r"^granularity must be one of layer, neuron, got 'unit'$") as e:
        _module("studies.supertickets").SuperConfig(
            finetune=ticketlab.FinetuneConfig(model="m", task="sst2"), granularity="unit"
        )
    assert e.value.field == "granularity"
    with pytest.raises(FieldError, match=r"^seeds must be distinct and non-empty, got \[1, 1\]$"):
        _module("studies.mtl").MtlConfig(model="m", tasks=["sst2"], seeds=[1, 1])
    with pytest.raises(FieldError, match=r"^tasks must be distinct and non-empty, got \[\]$"):
        _module("studies.mtl").MtlConfig(model="m", tasks=[])


def test_fields_that_do_not_change_a_result_are_marked_on_the_configs():
    """What a run's identity leaves out is read from field metadata (`result=False`), one place per
    field; these sets are pinned, as they decide the run ids of recorded runs and directories."""
    from ticketlab.core.checks import not_result
    from ticketlab.lm.pretrain import PretrainConfig
    from ticketlab.studies.mtl import MtlConfig
    from ticketlab.verbs.finetune import FinetuneConfig

    assert not_result(FinetuneConfig) == (
        "eval_batch_size",
        "check_hash",
        "save_model",
        "save_every",
        "keep_checkpoint",
        "progress",
        "compile",
    )
    assert not_result(MtlConfig) == ("check_hash", "save_every", "progress")
    # save_dtype is in the identity: the written weights differ
    assert set(not_result(PretrainConfig)) == {"progress", "max_minutes", "save_every", "compile"}


def test_the_sweeps_search_settings_agree_with_the_search_configs():
    """The sweep's lists of search settings (experiments.methods: kept as lists, as deriving them
    imports torch where `--help` must not) are the configs' fields: the ones a run's identity leaves
    out are those marked `result=False` on `SearchConfig` (the sweep sets `progress` itself), and
    every other one is a field of `SearchConfig` or of the method's config."""
    import dataclasses

    from ticketlab.core.checks import not_result
    from ticketlab.methods import ImpConfig, TamtConfig
    from ticketlab.studies.sweep import trained
    from ticketlab.verbs.search import SearchConfig

    names = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    non_result, training = trained.NON_RESULT, trained.TRAINING_SETTINGS
    assert non_result == set(not_result(SearchConfig)) - {"progress"}
    assert non_result == {
        "save_every",
        "eval_every",
        "dev_blocks",
        "eval_batch_size",
        "no_eval",
        "keep_checkpoint",
        "log_every",
        "cache_dir",
        "compile",
    }
    assert training <= names(SearchConfig) | (names(TamtConfig) & names(ImpConfig))
    # options that negate a field: freeze_head (train_head), no_pooler (pooler)
    assert tamt_settings() - training <= names(TamtConfig) | {"freeze_head", "no_pooler"}
    assert imp_settings() - training <= names(ImpConfig) | {"no_pooler"}


def test_finetune_config_refuses_an_unknown_task_when_built(capsys):
    """ "configs check their values when built": a task name too (`sst-2` was accepted and failed at
    the run), in one line that names the known tasks; the CLI says it and exits 2."""
    with pytest.raises(TicketlabError) as info:
        ticketlab.FinetuneConfig(model="m", task="sst-2")
    message = str(info.value)
    assert "'sst-2'" in message and "sst2, stsb" in message and "\n" not in message
    assert main(["finetune", "--model", "m", "--task", "sst-2", "--out", "o"]) == 2
    assert capsys.readouterr().err.strip() == f"ticketlab finetune: error: {message}"


def test_evaluate_pretrain_full_without_a_model_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """--full names no model when --model is absent (each mask records its own base, not always the
    same one): refused when the config is built, not a TypeError once the work has begun."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("some text\n")
    with pytest.raises(TicketlabError, match="full: give the full model to evaluate") as info:
        ticketlab.PretrainEvalConfig(corpus=["c.txt"], masks=["k"], full=True)
    (tmp_path / "k").mkdir()  # a mask and a corpus there: a missing one is refused before the config
    argv = ["evaluate-pretrain", "--full", "--mask", str(tmp_path / "k"), "--corpus", "c.txt"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"ticketlab evaluate-pretrain: error: {info.value}"
