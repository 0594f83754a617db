"""Nothing outside --out is deleted or overwritten, and a refused input leaves no output: a marker's
paths, the report folder, links in a run folder, a user's database, a task id, and refusals that come
late.

One function (`core.outputs.place`) decides where ticketlab may write or delete: inside the output,
never through a symbolic link (ticketlab makes none), never a file its marker does not list; a
results store, a report folder and a task id are ticketlab's only when they show it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

import sweep_fakes as fakes
from conftest import error_line, run
from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.core.outputs import MARKER, claim_dir, mark_output, remove_ours
from ticketlab.studies import run_sweep
from ticketlab.studies.report import write_report


def user_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def assert_kept(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        assert (root / rel).read_text() == text, rel


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture()
def swept(tmp_path, tiny_bert_dir) -> Path:
    """A finished (fake) sweep with its report: SW/results.sqlite, SW/runs, SW/report."""
    spec = fakes.make_spec(
        tmp_path, tiny_bert_dir, methods=["full"], pretrain_eval=None, search_curve=None, data_curve=None
    )
    (tmp_path / "SW").mkdir()
    mark_output(tmp_path / "SW", "sweep")  # as `ticketlab sweep` claims its directory
    run_sweep(spec, tmp_path / "SW", finetune=fakes.fake_finetune, log=lambda s: None)
    write_report(tmp_path / "SW")
    return tmp_path / "SW"


# --------------------------------------------------------------------------- a marker's paths


def test_a_marker_listing_paths_outside_its_folder_deletes_nothing(tmp_path, tiny_bert_dir, capsys):
    """`model.work/.ticketlab-output` listing `../victims/thesis.tex` and an absolute path
    made `pretrain --out model` delete both when it cleared its work folder. The marker is refused
    in one line before any work, and the clean-up itself never leaves the folder."""
    victims = {"victims/thesis.tex": "\\begin{document}", "abs/notes.txt": "mine"}
    user_files(tmp_path, victims)
    work = tmp_path / "model.work"
    work.mkdir()
    listed = ["../victims/thesis.tex", str(tmp_path / "abs" / "notes.txt")]
    (work / MARKER).write_text(json.dumps({"kind": "pre-training work directory", "files": listed}))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 40)
    shape = "--hidden 32 --layers 1 --heads 2 --intermediate 64 --max-length 32 --batch-size 4".split()
    line = error_line(
        capsys,
        "pretrain",
        "--corpus",
        corpus,
        "--tokenizer",
        tiny_bert_dir,
        *shape,
        "--steps",
        2,
        "--out",
        tmp_path / "model",
    )
    assert f"{work / MARKER}: lists '../victims/thesis.tex'" in line and "outside" in line
    assert_kept(tmp_path, victims)
    assert not (tmp_path / "model").exists()

    # The clean-up on its own (a marker edited after the claim): only entries inside the folder.
    remove_ours(work)
    assert_kept(tmp_path, victims)


def test_a_marker_planted_in_a_users_folder_does_not_make_it_ours(tmp_path, tiny_bert_dir, capsys):
    """A user's folder whose marker is a link (symbolic or hard) to a real output's marker, or a
    FIFO: the folder is not ticketlab's, so `--out` there is refused and its files are kept."""
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", 0.5, "--out"]
    assert main([str(a) for a in [*prune, tmp_path / "real"]]) == 0
    capsys.readouterr()
    theirs = {"results.json": "mine", "notes.txt": "mine too"}
    for planted in ("symlink", "hardlink", "fifo"):
        folder = tmp_path / planted
        user_files(folder, theirs)
        {
            "symlink": lambda m: m.symlink_to(tmp_path / "real" / MARKER),
            "hardlink": lambda m: os.link(tmp_path / "real" / MARKER, m),
            "fifo": os.mkfifo,
        }[planted](folder / MARKER)
        line = error_line(capsys, *prune, folder)
        assert str(folder) in line, line
        assert_kept(folder, theirs)


def test_a_marker_entry_behind_a_link_is_never_deleted(tmp_path):
    """A marker's path through a link inside the folder: `link/thesis.tex` with `link -> ../victims`."""
    user_files(tmp_path, {"victims/thesis.tex": "mine"})
    out = claim_dir(tmp_path / "out", kind="thing")
    (out / "link").symlink_to(tmp_path / "victims")
    (out / MARKER).write_text(json.dumps({"kind": "thing", "files": ["link/thesis.tex"]}))
    with pytest.raises(TicketlabError, match="symbolic link"):
        remove_ours(out)
    assert_kept(tmp_path, {"victims/thesis.tex": "mine"})
    with pytest.raises(TicketlabError, match=r"out/link: a symbolic link"):
        claim_dir(out, kind="thing")


# --------------------------------------------------------------------------- the report folder


def test_an_unmarked_report_folder_is_refused_not_adopted(swept, capsys):
    """`SW/report/` without our marker, holding the user's report.md and results.csv, was
    taken for a report "from before markers" and its files replaced."""
    report = swept / "report"
    for p in report.rglob("*"):  # the user's own folder of that name
        if p.is_file():
            p.unlink()
    theirs = {"report.md": "# my own report\n", "results.csv": "my,table\n"}
    user_files(report, theirs)
    line = error_line(capsys, "report", swept)
    assert f"{report}: exists and is not a ticketlab report" in line
    assert_kept(report, theirs)
    assert not (report / MARKER).exists()


def test_a_linked_report_folder_is_refused(swept, tmp_path, capsys):
    """`SW/report` a link to the user's paper folder: the report was written there."""
    paper = tmp_path / "paper"
    user_files(paper, {"report.md": "# my paper\n"})
    for p in sorted((swept / "report").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (swept / "report").rmdir()
    (swept / "report").symlink_to(paper)
    line = error_line(capsys, "report", swept)
    assert f"{swept / 'report'}: a symbolic link" in line
    assert tree(paper) == ["report.md"] and (paper / "report.md").read_text() == "# my paper\n"
    # An explicit --out that is a link: the same line (ticketlab writes through no link).
    line = error_line(capsys, "report", swept, "--out", swept / "report")
    assert "a symbolic link" in line and tree(paper) == ["report.md"]


# --------------------------------------------------------------------------- links in a run folder


def test_a_linked_spec_or_runs_folder_of_a_sweep_is_refused(
    swept, tmp_path, tiny_bert_dir, capsys, monkeypatch
):
    """`SW/spec.yaml` a link to the user's keep.yaml was written through (`shutil.copyfile`
    follows links); `SW/runs` linked elsewhere received the new runs."""
    from ticketlab.studies.sweep import runner

    def no_runs(*args, **kwargs):  # the runs themselves are not what is tried here
        raise TicketlabError("the sweep ran")

    monkeypatch.setattr(runner, "Runner", no_runs)  # after the checks `run_sweep` makes first
    spec = tmp_path / "new.yaml"
    small = dict(methods=["full", "omp"], pretrain_eval=None, search_curve=None, data_curve=None)
    spec.write_text(json.dumps(fakes.spec_dict(tmp_path, tiny_bert_dir, **small)))
    keep = tmp_path / "keep.yaml"
    keep.write_text("mine: true\n")
    (swept / "spec.yaml").unlink(missing_ok=True)
    (swept / "spec.yaml").symlink_to(keep)
    line = error_line(capsys, "sweep", spec, "--out", swept, "--no-report")
    assert f"{swept / 'spec.yaml'}: a symbolic link" in line
    assert keep.read_text() == "mine: true\n"

    (swept / "spec.yaml").unlink()
    elsewhere = tmp_path / "elsewhere"
    (swept / "runs").rename(elsewhere)
    (swept / "runs").symlink_to(elsewhere)
    before = tree(elsewhere)
    line = error_line(capsys, "sweep", spec, "--out", swept, "--no-report")
    assert f"{swept / 'runs'}: a symbolic link" in line and tree(elsewhere) == before
    library = fakes.make_spec(tmp_path, tiny_bert_dir, **small)  # the library's sweep: the same
    with pytest.raises(TicketlabError, match=r"SW/runs: a symbolic link"):
        run_sweep(library, swept, finetune=fakes.fake_finetune, log=lambda s: None)
    assert tree(elsewhere) == before


def test_a_search_whose_run_folder_is_a_link_is_refused(tmp_path, tiny_bert_dir, capsys):
    """A search's `run/` linked to a user folder got `.lock` and `settings.json`, and the
    `checkpoint.pt` there was read as a resume checkpoint."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 20)
    search = ["search", "tamt", "--model", tiny_bert_dir, "--corpus", corpus, "--sparsity", "0.3"]
    search += "--steps 2 --lr 3e-3 --max-length 16 --batch-size 4 --no-progress --out".split()
    out = tmp_path / "s"
    claim_dir(out, kind="search")
    theirs = {"checkpoint.pt": "not a checkpoint", "notes.txt": "mine"}
    user_files(tmp_path / "mine", theirs)
    (out / "run").symlink_to(tmp_path / "mine")
    line = error_line(capsys, *search, out)
    assert f"{out / 'run'}: a symbolic link" in line
    assert tree(tmp_path / "mine") == sorted(theirs)
    assert_kept(tmp_path / "mine", theirs)


def test_the_lock_file_is_never_opened_through_a_link(tmp_path):
    """A link in a run folder at the lowest level: a `.lock` that is a link is not created or
    truncated through."""
    from ticketlab.core.files.owned import exclusive

    user_files(tmp_path, {"thesis.tex": "mine"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(tmp_path / "thesis.tex")
    with pytest.raises(TicketlabError, match="cannot write"), exclusive(tmp_path / "run"):
        pass
    assert_kept(tmp_path, {"thesis.tex": "mine"})


def test_a_lock_hard_linked_to_a_users_file_is_refused_and_kept(tmp_path):
    """A `.lock` replaced by a hard link to the user's file (`ln notes.txt run/.lock`) is refused
    before anything is truncated or written: `O_NOFOLLOW` stops symbolic links only."""
    from ticketlab.core.files.owned import exclusive

    user_files(tmp_path, {"notes.txt": "mine"})
    (tmp_path / "run").mkdir()
    os.link(tmp_path / "notes.txt", tmp_path / "run" / ".lock")
    with pytest.raises(TicketlabError, match="hard link to another file"), exclusive(tmp_path / "run"):
        pass
    assert_kept(tmp_path, {"notes.txt": "mine"})


def test_a_fifo_planted_as_a_lock_or_checkpoint_is_refused_without_waiting(tmp_path):
    """A FIFO at `.lock` (or at a checkpoint) would block its open or first read forever: it is
    refused in one line by every reader, at once (a hang would time the test out)."""
    from ticketlab.core.files.owned import exclusive, lock_holder
    from ticketlab.train.checkpoint import load_checkpoint

    def hung(*_):
        raise AssertionError("blocked on the FIFO")

    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / ".lock")
    os.mkfifo(tmp_path / "run" / "checkpoint.pt")
    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # a generous bound: the refusal takes no time, a hang takes forever
    try:
        with pytest.raises(TicketlabError, match="not a regular file"):
            lock_holder(tmp_path / "run")
        with pytest.raises(TicketlabError, match="not a regular file"), exclusive(tmp_path / "run"):
            pass
        with pytest.raises(TicketlabError, match="not a regular file"):
            load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


# --------------------------------------------------------------------------- a user's database


def test_a_users_database_named_results_sqlite_is_refused(tmp_path, tiny_bert_dir, capsys):
    """`sweep --out mydb` adopted a folder whose results.sqlite was the user's own database
    with a `meta` table: rows went into it, a `runs` table, a marker, masks/ and runs/."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(fakes.spec_dict(tmp_path, tiny_bert_dir)))
    mydb = tmp_path / "mydb"
    mydb.mkdir()
    with sqlite3.connect(mydb / "results.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('owner', 'me')")
    db.close()
    before = (mydb / "results.sqlite").read_bytes()
    for dry in ([], ["--dry-run"]):
        line = error_line(capsys, "sweep", spec, "--out", mydb, "--max-runs", 1, *dry)
        assert f"{mydb}: exists and is not a ticketlab sweep" in line
        assert tree(mydb) == ["results.sqlite"] and (mydb / "results.sqlite").read_bytes() == before

    from ticketlab.studies import Store

    for readonly in (True, False):  # the store itself never writes into another program's database
        with pytest.raises(
            TicketlabError, match=r"results.sqlite: not a ticketlab results store \(no table 'runs'\)"
        ):
            Store(mydb, readonly=readonly)  # `meta` is a store's table: the line names what is missing
    assert (mydb / "results.sqlite").read_bytes() == before


# --------------------------------------------------------------------------- a task id


def test_a_task_json_cannot_replace_a_built_in_task(tmp_path, tiny_bert_dir, capsys):
    """A task.json with `"id": "sst2"` replaced the built-in SST-2 for the whole process (a
    sweep scored the real SST-2 runs with the other file's labels and metrics)."""
    from ticketlab.tasks.registry import BUILTIN, TASKS, get_task

    sst2 = TASKS["sst2"]
    data = tmp_path / "flipped"
    data.mkdir()
    (data / "task.json").write_text(json.dumps({"id": "sst2", "labels": ["1", "0"], "metrics": ["f1"]}))
    with pytest.raises(TicketlabError, match=r"flipped/task.json: task id 'sst2' is a built-in task"):
        get_task(str(data / "task.json"))
    assert TASKS["sst2"] is sst2 and "sst2" in BUILTIN
    # asked for by another id (a sweep's task label): the line names the file and the id it holds
    with pytest.raises(TicketlabError, match=r"flipped/task.json describes task 'sst2', not 'other'"):
        get_task("other", data)
    line = error_line(
        capsys, "finetune", "--model", tiny_bert_dir, "--task", data / "task.json", "--out", tmp_path / "ft"
    )
    assert "task id 'sst2' is a built-in task" in line and not (tmp_path / "ft").exists()
    assert get_task("sst2") is sst2


def test_a_task_folder_whose_task_json_names_another_task_is_named(tmp_path):
    """DATA/mine/task.json with `"id": "other-task"` is refused naming the file, its id and its
    folder's (its data would be looked for under the id); a `dir_name` of the folder's name lets the
    id differ."""
    from ticketlab.tasks.registry import get_task

    (tmp_path / "mine").mkdir()
    spec = {"id": "other-task", "labels": ["0", "1"]}
    (tmp_path / "mine" / "task.json").write_text(json.dumps(spec))
    with pytest.raises(TicketlabError) as e:
        get_task("mine", tmp_path)
    assert str(e.value) == (
        f"{tmp_path}/mine/task.json describes task 'other-task', not the 'mine' of its folder: "
        'give it the id "mine", or "dir_name": "mine"'
    )
    (tmp_path / "mine" / "task.json").write_text(json.dumps(spec | {"dir_name": "mine"}))
    assert get_task("mine", tmp_path).id == "other-task"


# --------------------------------------------------------------------------- late refusals


def _sst2(root: Path, train: str) -> Path:
    (root / "SST-2").mkdir(parents=True)
    (root / "SST-2" / "train.tsv").write_text(train)
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nthe cat is good .\t1\nthe dog is bad .\t0\n")
    return root


GOOD = "sentence\tlabel\n" + "the cat is good .\t1\nthe dog is bad .\t0\n" * 8


def test_refused_finetune_inputs_leave_no_output_folder(tmp_path, tiny_bert_dir, capsys):
    """A corrupt mask, a NaN label and an empty training file are refused in one line, and leave
    neither `OUT/.ticketlab-output` nor `OUT/seed-1/` behind."""
    stsb = tmp_path / "nan" / "STS-B"
    stsb.mkdir(parents=True)
    rows = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (stsb / "train.tsv").write_text(rows + "0\tg\tf\t2012\t0\ts\ts\tthe cat .\ta cat .\tnan\n")
    (stsb / "dev.tsv").write_text(rows + "0\tg\tf\t2012\t0\ts\ts\tthe cat .\ta cat .\t2.5\n")
    mask = tmp_path / "mask"
    assert main(["prune", "omp", "--model", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(mask)]) == 0
    (mask / "mask_config.json").write_text("{")
    base = ["finetune", "--model", tiny_bert_dir, "--max-length", 32, "--max-steps", 2, "--no-progress"]
    cases = {
        "corrupt mask": [*base, "--task", "sst2", "--data-dir", _sst2(tmp_path / "ok", GOOD), "--mask", mask],
        "NaN label": [*base, "--task", "stsb", "--data-dir", tmp_path / "nan"],
        "empty file": [*base, "--task", "sst2", "--data-dir", _sst2(tmp_path / "empty", "")],
    }
    for what, argv in cases.items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        error_line(capsys, *argv, "--seeds", 1, "--out", out)
        assert not out.exists(), what


def test_finetune_seeds_checks_every_seed_folder_before_training_any(tmp_path, tiny_bert_dir, capsys):
    """`finetune --seeds 1 2` trained seed 1 before refusing seed 2's folder (a user's folder, or a
    run with other settings, inside an earlier fine-tuning output)."""
    data = _sst2(tmp_path / "data", GOOD)
    argv = ["finetune", "--model", tiny_bert_dir, "--task", "sst2", "--data-dir", data, "--max-length", 32]
    argv += ["--no-progress", "--out", tmp_path / "out", "--max-steps"]
    assert main([str(a) for a in [*argv, 2, "--seeds", 2]]) == 0  # an output whose seed 2 took 2 steps
    capsys.readouterr()
    out = tmp_path / "out"
    ran = tree(out)
    line = error_line(capsys, *argv, 3, "--seeds", 1, 2)
    assert f"{out / 'seed-2'} holds a run with other settings" in line
    assert tree(out) == ran  # seed 1 was not trained

    for p in sorted((out / "seed-2").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    user_files(out / "seed-2", {"notes.txt": "mine"})
    line = error_line(capsys, *argv, 2, "--seeds", 1, 2)
    assert f"{out / 'seed-2'}: exists and is not a ticketlab fine-tuning run" in line
    assert not (out / "seed-1").exists()


def test_a_finished_runs_recorded_model_folder_is_not_trusted(tmp_path, tiny_bert_dir):
    """A finished run's result.json edited (or carried) to name another folder as its `model_dir`:
    the result read back names the run's own `model/`, so a study that deletes the weights it no
    longer needs (`remove_ours(result.model_dir)`) never reaches outside the run."""
    from ticketlab.verbs.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        model=str(tiny_bert_dir),
        task="sst2",
        data_dir=str(_sst2(tmp_path / "data", GOOD)),
        max_length=32,
        max_steps=2,
        save_model=True,
        progress=False,
    )
    run = tmp_path / "run"
    first = finetune(config, run)
    assert first.model_dir == str(run / "model")
    other = tmp_path / "other-model"  # another ticketlab output, not this run's
    assert (
        main(["prune", "omp", "--model", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(other)]) == 0
    )
    saved = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps({**saved, "model_dir": str(other), "out_dir": "/elsewhere"}))
    again = finetune(config, run)
    assert again.model_dir == str(run / "model") and again.out_dir == str(run)
    remove_ours(again.model_dir)
    assert (other / "mask_config.json").is_file() and not (run / "model").exists()


def test_a_search_refused_for_its_corpus_leaves_no_output_folder(tmp_path, tiny_bert_dir, capsys):
    """The search's form of the late refusal: a corpus of blank lines, refused once read, leaves no
    `OUT/` (no marker, no `run/`)."""
    (tmp_path / "empty.txt").write_text("\n\n")
    out = tmp_path / "s"
    line = error_line(
        capsys,
        *["search", "tamt", "--model", tiny_bert_dir, "--corpus", tmp_path / "empty.txt", "--sparsity", 0.3],
        *"--steps 2 --max-length 16 --batch-size 4 --no-progress --out".split(),
        out,
    )
    assert "empty.txt: no text found" in line and not out.exists()


@pytest.mark.parametrize("verb", ["evaluate-pretrain", "prune wanda", "search tamt"])
def test_an_empty_corpus_file_is_one_line_before_any_work(tmp_path, tiny_bert_dir, capsys, verb):
    """A 0-byte corpus is refused with the inputs, before a model is loaded (no note about its
    positions, no tokenizing progress above the refusal)."""
    (tmp_path / "empty.txt").write_text("")
    extra = {
        "evaluate-pretrain": [],
        "prune wanda": ["--sparsity", "0.5"],
        "search tamt": ["--sparsity", "0.5"],
    }
    out = (
        []
        if verb == "evaluate-pretrain"
        else ["--steps", "2"] * (verb == "search tamt") + ["--out", tmp_path / "o"]
    )
    argv = [*verb.split(), "--model", tiny_bert_dir, "--corpus", tmp_path / "empty.txt", *extra[verb], *out]
    code, _, err = run(capsys, *argv)
    assert (
        code == 2
        and err.strip() == f"ticketlab {verb.split()[0]}: error: {tmp_path / 'empty.txt'}: empty corpus file"
    )


def test_a_pretraining_refused_for_its_corpus_leaves_no_work_folder(tmp_path, capsys):
    """Pre-training's form: the work folder is claimed before the corpus is read (its tokenizer is
    built there), and an empty corpus left `OUT.work/` behind."""
    (tmp_path / "empty.txt").write_text("\n")
    out = tmp_path / "m"
    line = error_line(
        capsys,
        *[
            "pretrain",
            "--corpus",
            tmp_path / "empty.txt",
            "--steps",
            2,
            "--max-length",
            16,
            "--build-tokenizer",
        ],
        *["--out", out],
    )
    assert "empty.txt" in line and not out.exists() and not (tmp_path / "m.work").exists()
    (tmp_path / "m.work").mkdir()  # a folder that was there before is not this call's to delete
    (tmp_path / "m.work" / ".ticketlab-output").write_text('{"kind": "pre-training work directory"}\n')
    error_line(
        capsys,
        "pretrain",
        "--corpus",
        tmp_path / "empty.txt",
        "--steps",
        2,
        "--build-tokenizer",
        "--out",
        out,
    )
    assert (tmp_path / "m.work").is_dir()


def test_a_study_refused_for_its_task_data_leaves_no_output_folder(tmp_path, tiny_bert_dir, capsys):
    """The studies' form of the late refusal: `super` and `mtl` with an empty training file left a
    marked `OUT/` behind."""
    data = _sst2(tmp_path / "data", "")
    (data / "RTE").mkdir()
    (data / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta .\tb .\tentailment\n")
    (data / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta .\tb .\tentailment\n")
    for verb, args in (
        ("super", ["--task", "sst2", "--levels", 0.6, "--max-steps", 2]),  # 0.6 fits 2 layers (Liang)
        ("mtl", ["--tasks", "rte", "sst2"]),
    ):
        out = tmp_path / verb
        line = error_line(capsys, verb, "--model", tiny_bert_dir, *args, "--data-dir", data, "--out", out)
        assert "SST-2/train.tsv" in line and not out.exists(), verb


def test_mtl_refused_for_its_model_or_tickets_leaves_no_output_folder(tmp_path, tiny_bert_dir, capsys):
    """`mtl` checked its model's files and its tickets after making OUT: a truncated or pickled
    model, or a corrupt ticket, was one line but left a marked `OUT/` with results.sqlite and seed-1/."""
    import shutil

    import torch

    from ticketlab.masks import save_unit_mask, unit_mask_config
    from ticketlab.masks.units import UnitMask
    from ticketlab.models.load import load_model

    data = _sst2(tmp_path / "data", GOOD)
    units = UnitMask(head=torch.tensor([[True, False], [True, True]]), ffn=torch.tensor([True, False]))
    config = unit_mask_config(
        load_model(tiny_bert_dir), units, method="winning", level=0.5, base_model=str(tiny_bert_dir)
    )
    ticket = save_unit_mask(units, config, tmp_path / "ticket")
    (ticket / "mask_config.json").write_text("{")
    truncated = shutil.copytree(tiny_bert_dir, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cases = {
        "truncated model": ([truncated], f"{weights}: corrupt or truncated safetensors file"),
        "corrupt ticket": ([tiny_bert_dir, "--tickets", ticket], f"{ticket / 'mask_config.json'}: corrupt"),
    }
    rest = ["--data-dir", data, "--max-length", 32]
    for what, (args, says) in cases.items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        line = error_line(capsys, "mtl", "--model", *args, "--tasks", "sst2", *rest, "--out", out)
        assert says in line and not out.exists(), what
