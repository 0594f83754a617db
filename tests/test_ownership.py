"""An output directory only ever loses files ticketlab wrote; a name read from a file never leaves
its directory; an unresolvable --out and deeply nested JSON/YAML give one line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import sweep_fakes as fakes
from conftest import error_line as one_line_error
from ticketlab.cli import main
from ticketlab.core.errors import DataError, TicketlabError
from ticketlab.core.files.inputs import read_json
from ticketlab.core.outputs import MARKER, atomic_dir
from ticketlab.studies import load_spec, run_sweep, spec_from_dict
from ticketlab.studies.report import write_report
from ticketlab.tasks.registry import get_task


def user_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def assert_kept(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        assert (root / rel).read_text() == text, rel


def test_an_output_directory_loses_only_files_ticketlab_wrote(tiny_bert_dir, tmp_path, capsys):
    """One familiar file name is no proof of ownership; re-running onto an earlier output
    keeps what the user added there; a user's file the output would overwrite is refused."""
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--out"]
    theirs = {"mask_config.json": "{}", "src/main.py": "print()", "thesis.tex": "\\begin"}
    user_files(tmp_path / "look-alike", theirs)
    assert "not a ticketlab mask" in one_line_error(
        capsys, *prune, tmp_path / "look-alike", "--sparsity", "0.5"
    )
    assert_kept(tmp_path / "look-alike", theirs)

    notes = {"notes.txt": "mine", "plots/loss.png": "png", "sub/deeper/x": "x"}
    for verb, out, args in [
        ("prune", tmp_path / "m", ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5"]),
        ("export", tmp_path / "e", ["export", "--model", tiny_bert_dir, "--mask", tmp_path / "m"]),
    ]:
        assert main([str(a) for a in [*args, "--out", out]]) == 0, verb
        user_files(out, notes)
        assert main([str(a) for a in [*args, "--out", out]]) == 0, verb
        assert_kept(out, notes)
        listed = set(json.loads((out / MARKER).read_text())["files"])
        assert listed and not listed & set(notes), verb  # the manifest names our files only

    # The library writer: a stale file of ours goes, a user's file in the way is refused whole.
    out = tmp_path / "lib"
    with atomic_dir(out, kind="thing") as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "old.txt").write_text("old")
    user_files(out, {"b.txt": "mine", "keep/me": "mine"})
    with atomic_dir(out, kind="thing") as tmp:
        (tmp / "a.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2" and not (out / "old.txt").exists()
    assert_kept(out, {"b.txt": "mine", "keep/me": "mine"})
    refused = pytest.raises(TicketlabError, match=r"b.txt: not written by ticketlab")
    with refused, atomic_dir(out, kind="thing") as tmp:
        (tmp / "a.txt").write_text("3")
        (tmp / "b.txt").write_text("ours")
    assert (out / "a.txt").read_text() == "2" and (out / "b.txt").read_text() == "mine"
    with refused, atomic_dir(out, kind="thing", writes=["b.txt"]):  # known before the work
        raise AssertionError("the work began")

    # A file output (evaluate-pretrain --out FILE) has no marker: it replaces only an earlier output
    # of its kind, recognised by its content, never a user's file (or the file a link points to).
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 20)
    evaluate = [
        "evaluate-pretrain",
        "--model",
        tiny_bert_dir,
        "--corpus",
        corpus,
        "--no-kd",
        "--max-length",
        32,
    ]
    user_files(tmp_path, {"thesis.tex": "\\begin", "rows.json": '[{"name": "mine"}]'})
    (tmp_path / "link.json").symlink_to(tmp_path / "thesis.tex")
    for theirs in ("thesis.tex", "rows.json", "link.json"):
        line = one_line_error(capsys, *evaluate, "--out", tmp_path / theirs)
        assert f"{theirs}: exists and is not a ticketlab evaluation" in line
    assert_kept(tmp_path, {"thesis.tex": "\\begin", "rows.json": '[{"name": "mine"}]'})
    for _ in range(2):  # new, then its own earlier output replaced
        assert main([str(a) for a in [*evaluate, "--out", tmp_path / "eval.json"]]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())[0]["name"] == "full"


def test_report_has_the_output_check_of_every_verb(tmp_path, tiny_bert_dir, capsys):
    """`report --out` neither overwrites a user's results.csv nor writes into a sweep's input."""
    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        methods=["full", "omp"],
        pretrain_eval=None,
        search_curve=None,
        data_curve=None,
    )
    run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None)
    theirs = {"results.csv": "my,table\n", "report.md": "# my report\n"}
    user_files(tmp_path / "mine", theirs)
    line = one_line_error(capsys, "report", tmp_path / "sweep", "--out", tmp_path / "mine")
    assert "mine" in line and "refusing" in line
    assert_kept(tmp_path / "mine", theirs)
    inside_model = Path(spec.model) / "report"
    assert "is inside the input" in one_line_error(
        capsys, "report", tmp_path / "sweep", "--out", inside_model
    )
    assert not inside_model.exists()

    report = write_report(tmp_path / "sweep")  # its own directory, re-rendered: the user's plot stays
    user_files(report.path.parent, {"figures/mine.png": "png"})
    again = write_report(tmp_path / "sweep")
    assert (
        again.path == report.path
        and again.path.is_file()
        and all(p.is_file() for p in again.figures.values())
    )
    assert_kept(report.path.parent, {"figures/mine.png": "png"})


def test_names_read_from_files_never_leave_their_directory(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """A task id or folder in task.json, a task label or name in a sweep spec that is not
    one path component is refused when read, before anything is created."""
    for field in ("id", "dir_name"):
        data = tmp_path / f"data-{field}"
        data.mkdir()
        task = {"id": "escape", "dir_name": "escape", field: "../../../../X"}
        (data / "task.json").write_text(json.dumps(task))
        with pytest.raises(TicketlabError, match=r"task.json: .*'../../../../X': not usable as a file name"):
            get_task(str(data / "task.json"))
    raw = fakes.spec_dict(tmp_path, tiny_bert_dir)
    raw["tasks"] = {"../../../../X": raw["tasks"][next(iter(raw["tasks"]))]}
    with pytest.raises(TicketlabError, match=r"label '../../../../X': not usable as a file name"):
        spec_from_dict(raw, base_dir=tmp_path, registry=fakes.fake_registry())
    monkeypatch.chdir(tmp_path)  # the sweep's default directory is sweeps/<name>
    named = _yaml(tmp_path / "named.yaml", {**fakes.spec_dict(tmp_path, tiny_bert_dir), "name": "../x"})
    assert f"{named}: name '../x'" in one_line_error(capsys, "sweep", named, "--dry-run")  # refused as read
    assert not (tmp_path / "x").exists()

    # Characters that break a line (U+2028, NEL U+0085) or drive a terminal (CSI U+009B) in a name:
    # refused as a path component, and the message quoting the name stays one line (escaped).
    data = tmp_path / "data-sep"
    data.mkdir()
    (data / "task.json").write_text(json.dumps({"id": "sst2\u2028x", "dir_name": "sst2"}))
    line = one_line_error(
        capsys, "finetune", "--model", tiny_bert_dir, "--task", data / "task.json", "--out", "ft"
    )
    assert "task: id 'sst2\\u2028x': holds a newline" in line and not (tmp_path / "ft").exists()
    for label, shown in (("omp/a\u2028b", "omp/a\\u2028b"), ("omp/x\x85y", "omp/x\\x85y")):
        spec = _yaml(
            tmp_path / "variant.yaml", {**fakes.spec_dict(tmp_path, tiny_bert_dir), "methods": [label]}
        )
        assert shown in one_line_error(capsys, "sweep", spec, "--out", "sw", "--dry-run")
    raw = fakes.spec_dict(tmp_path, tiny_bert_dir)
    raw["tasks"] = {"a\x9b2J": raw["tasks"]["a"]}
    assert "tasks: a key 'a\\x9b2J': holds a newline" in one_line_error(
        capsys, "sweep", _yaml(tmp_path / "csi.yaml", raw), "--dry-run"
    )
    assert not (tmp_path / "sw").exists() and not (tmp_path / "sweeps").exists()


def _yaml(path: Path, raw: dict) -> Path:
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def test_unresolvable_out_and_deep_nesting_give_one_line(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    """An --out that is a symlink loop; JSON/YAML nested 100000 deep in a file we read."""
    monkeypatch.chdir(tmp_path)
    os.symlink("a", "b")
    os.symlink("b", "a")
    line = one_line_error(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", "a")
    assert line.startswith("ticketlab prune: error: a:")

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    with pytest.raises(TicketlabError, match="deep.json: corrupt .*nested too deeply"):
        read_json(tmp_path / "deep.json")
    (tmp_path / "spec.yaml").write_text(deep)
    with pytest.raises(TicketlabError, match="spec.yaml: invalid YAML: nested too deeply"):
        load_spec(tmp_path / "spec.yaml")
    (tmp_path / "task.json").write_text(deep)
    assert "task.json" in one_line_error(
        capsys, "finetune", "--model", tiny_bert_dir, "--task", "task.json", "--out", "ft"
    )

    # The files transformers reads (a model's config.json, its tokenizer's), and a --model that is
    # a link loop or a link to a deleted folder (it was asked of the hub): one line, no output.
    import shutil

    for name, what in (("config.json", "config"), ("tokenizer_config.json", "tokenizer")):
        model = Path(shutil.copytree(tiny_bert_dir, tmp_path / f"deep-{name}"))
        (model / name).write_text(deep)
        line = one_line_error(capsys, "finetune", "--model", model, "--task", "sst2", "--out", "ft")
        assert f"{model}: cannot load {what}: a JSON file there is nested too deeply" in line
    os.symlink(tmp_path / "deleted", "dangling")
    for link in ("a", "dangling"):
        line = one_line_error(capsys, "prune", "omp", "--model", link, "--sparsity", "0.5", "--out", "m")
        assert f"{link}: a symbolic link that leads to no directory" in line
    assert not (tmp_path / "ft").exists() and not (tmp_path / "m").exists()


def test_a_store_carried_with_its_masks_resumes_beside_user_files_not(tmp_path, tiny_bert_dir, capsys):
    """The README's way to carry a sweep (copy results.sqlite, and its masks/, into an empty
    directory, rerun) works: the store is ours by its content, not its name, each mask by its
    marker; the same file beside a user's file is not."""
    from ticketlab.studies import Store

    spec = _yaml(tmp_path / "spec.yaml", fakes.spec_dict(tmp_path, tiny_bert_dir))
    (tmp_path / "made").mkdir()
    with Store(tmp_path / "made") as st:  # a real ticketlab store, as a sweep leaves it
        st.set_meta("spec", {"name": "carried"})
    carried = tmp_path / "carried"
    carried.mkdir()
    (carried / "results.sqlite").write_bytes((tmp_path / "made" / "results.sqlite").read_bytes())
    assert main(["sweep", str(spec), "--out", str(carried), "--dry-run"]) == 0
    assert sorted(p.name for p in carried.iterdir()) == ["results.sqlite"]  # the dry run wrote nothing
    # ... and with the masks its pending runs read (a search's mask outlives its machine): a pruned
    # and a searched mask pass; a folder beside them that no marker calls a mask is the user's.
    assert main(["prune", "omp", "--model", str(tiny_bert_dir), "--sparsity", "0.5",
                 "--out", str(carried / "masks" / "omp_s50_0123abcd")]) == 0  # fmt: skip
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sees the dog .\n" * 40)
    assert main(["search", "tamt", "--model", str(tiny_bert_dir), "--sparsity", "0.5", "--steps", "1",
                 "--corpus", str(corpus), "--max-length", "16",
                 "--out", str(carried / "masks" / "tamt-mlm_s50_seed0_4567ef01")]) == 0  # fmt: skip
    assert main(["sweep", str(spec), "--out", str(carried), "--dry-run"]) == 0
    user_files(carried / "masks" / "notes", {"todo.txt": "mine"})
    assert "is not a ticketlab sweep" in one_line_error(capsys, "sweep", spec, "--out", carried, "--dry-run")
    assert_kept(carried / "masks" / "notes", {"todo.txt": "mine"})
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "results.sqlite").write_bytes((carried / "results.sqlite").read_bytes())
    user_files(theirs, {"thesis.tex": "mine"})
    line = one_line_error(capsys, "sweep", spec, "--out", theirs, "--dry-run")
    assert line.startswith(f"ticketlab sweep: error: {theirs}: exists and is not a ticketlab sweep"), line
    fake = tmp_path / "fake"
    user_files(fake, {"results.sqlite": "not a store"})  # the name alone is no proof
    assert "is not a ticketlab sweep" in one_line_error(capsys, "sweep", spec, "--out", fake, "--dry-run")
    assert_kept(theirs, {"thesis.tex": "mine"})


def test_a_users_hidden_tmp_and_a_linked_folder_are_never_touched(tmp_path, tiny_bert_dir):
    """Only ticketlab's own files lost, through three more doors: the clean-up of temporaries takes
    only ticketlab's own (a user's old `.backup.tmp` folder beside an output stays), a folder of an
    output that the user replaced by a link to their own files is never written or deleted through,
    and a work folder cleared at the end of a pre-training loses only what the training wrote there."""
    from ticketlab.core.files.atomic import atomic_write_text
    from ticketlab.lm.pretrain import PretrainConfig, pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 40)
    tiny = dict(hidden=32, layers=1, heads=2, intermediate=64, max_length=32, batch_size=4, steps=3)
    config = PretrainConfig(**tiny, max_minutes=1e-9, progress=False)  # one step a piece
    assert pretrain(config, corpus, tmp_path / "model", tokenizer=tiny_bert_dir).stopped
    user_files(tmp_path / "model.work", {"notes.txt": "lr too high?", "plots/loss.png": "png"})
    for _ in range(3):  # the last two steps, then the finished model
        pretrain(config, corpus, tmp_path / "model", tokenizer=tiny_bert_dir)
    assert (tmp_path / "model" / "pretrain.json").is_file()
    assert sorted(
        str(p.relative_to(tmp_path / "model.work")) for p in (tmp_path / "model.work").rglob("*")
    ) == [
        "notes.txt",
        "plots",
        "plots/loss.png",
    ]

    backup = tmp_path / ".thesis-backup.tmp"
    user_files(backup, {"chapter1.tex": "mine"})
    os.utime(backup, (0, 0))  # older than any staleness limit
    atomic_write_text(tmp_path / "results.json", "{}")
    assert_kept(backup, {"chapter1.tex": "mine"})

    out, paper = tmp_path / "out", tmp_path / "paper"
    with atomic_dir(out, kind="report") as tmp:
        user_files(tmp, {"figures/fig.png": "ours"})
    user_files(paper, {"fig.png": "my figure"})
    (out / "figures" / "fig.png").unlink()
    (out / "figures").rmdir()
    (out / "figures").symlink_to(paper)
    with (
        pytest.raises(TicketlabError, match="figures: a symbolic link"),
        atomic_dir(out, kind="report") as tmp,
    ):
        user_files(tmp, {"report.md": "new"})  # fig.png is no longer drawn: it would be deleted
    assert_kept(paper, {"fig.png": "my figure"})


def test_a_sweep_from_python_keeps_the_class_of_what_it_refuses(tmp_path, tiny_bert_dir):
    """A refusal of what the spec names begins with the spec's file and keeps its class: Python code
    catching a `DataError` for a task folder without its files catches it from `run_sweep` too."""
    path = _yaml(tmp_path / "spec.yaml", fakes.spec_dict(tmp_path, tiny_bert_dir))
    (tmp_path / "data" / "b" / "train.tsv").unlink()
    with pytest.raises(DataError, match=f"^{path}: tasks.b.data: .*b train file"):
        run_sweep(load_spec(path), tmp_path / "sweep", finetune=fakes.fake_finetune, max_runs=0)
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_from_python_claims_its_directory_as_the_command_does(tmp_path, tiny_bert_dir):
    """`run_sweep` is `ticketlab sweep`: a user's folder is refused before any run, its files kept
    and no store made there; the sweep's own directory is marked and keeps the spec's file."""
    spec = load_spec(_yaml(tmp_path / "spec.yaml", fakes.spec_dict(tmp_path, tiny_bert_dir)))
    theirs = tmp_path / "theirs"
    user_files(theirs, {"notes.txt": "mine"})
    with pytest.raises(TicketlabError, match="exists and is not a ticketlab sweep"):
        run_sweep(spec, theirs, finetune=fakes.fake_finetune, log=lambda _: None, max_runs=1)
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    assert_kept(theirs, {"notes.txt": "mine"})
    ours = tmp_path / "sweep"
    run_sweep(spec, ours, finetune=fakes.fake_finetune, log=lambda _: None, max_runs=1)
    assert read_json(ours / MARKER, "marker")["kind"] == "sweep"
    assert (ours / "spec.yaml").read_text() == (tmp_path / "spec.yaml").read_text()
    changed = tmp_path / "changed"  # a spec changed in Python: its file no longer says what ran
    run_sweep(dataclasses.replace(spec, name="changed"), changed, finetune=fakes.fake_finetune, max_runs=0)
    assert not (changed / "spec.yaml").exists()
    user_files(theirs, {"results.sqlite": "my own database"})  # refused as theirs, not read as a store
    with pytest.raises(TicketlabError, match="exists and is not a ticketlab sweep"):
        run_sweep(spec, theirs, finetune=fakes.fake_finetune, log=lambda _: None, max_runs=1)
