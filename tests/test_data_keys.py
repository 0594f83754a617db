"""A task's data enters its runs' ids by what loading the task reads (`sweep.plan.data_key`): of a
GLUE root the task's own folder, its task.json included, not the task folders beside it. A store
recorded when the key hashed the whole root (run ids version 5) is re-keyed where it is proven that
the task's files are the ones its runs read, and a report finds a spec's runs in it without writing
it. Searches and fine-tunings are the fakes of tests/sweep_fakes.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import sweep_fakes as fakes
from ticketlab.core.files import content_key
from ticketlab.studies import Store, expand, run_sweep, spec_from_dict
from ticketlab.studies.report.results import load_results
from ticketlab.studies.run_ids import IDS_VERSION
from ticketlab.studies.sweep import plan
from ticketlab.studies.sweep.spec import spec_json

# Full and OMP fine-tuned on both tasks, and a per-task search (task IMP) on each: its data key too.
KW = dict(
    methods=["full", "omp", "imp-task"],
    sparsities=[0.5],
    seeds={"search": [0], "finetune": [0]},
    search_curve=None,
    data_curve=None,
    pretrain_eval=None,
)


AT_ROOT = {"a": {"data": "data"}, "b": {"data": "data"}}  # both tasks' data: the folder holding them


def _glue_root(root: Path, model: Path) -> dict:
    """The fakes' tasks a and b in one data folder, as a GLUE root holds its tasks (`data/a`,
    `data/b`, each with its task.json, written here), and a spec (as parsed YAML) that names the root
    for both."""
    return fakes.spec_dict(root, model, tasks=AT_ROOT, **KW)


def _spec(root: Path, d: dict):
    return spec_from_dict(d, base_dir=root, registry=fakes.fake_registry())


def _sweep(root: Path, spec, **kw):
    return run_sweep(spec, root / "sweep", finetune=fakes.fake_finetune, log=lambda s: None, **kw)


def _add_task_folder(data: Path, name: str = "c") -> None:
    (data / name).mkdir()
    (data / name / "task.json").write_text(json.dumps({"id": name, "text_a": "text"}))
    (data / name / "train.tsv").write_text("text\tlabel\nanother task .\t1\n")


def _whole_root(task: str, data) -> str | None:
    """The data key before ids version 6: every file of the folder the spec names."""
    return content_key([data])


def _as_version_5(sweep_dir: Path) -> None:
    with sqlite3.connect(sweep_dir / "results.sqlite") as db:
        db.execute("UPDATE meta SET value = '5' WHERE key = 'ids'")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_task_folder_added_beside_a_glue_root_s_tasks_changes_no_run_id(tmp_path, tiny_bert_dir):
    """Every run of a sweep over a GLUE root keeps its id when a task folder is added beside its
    tasks' (STS-B beside CoLA, SST-2 and MRPC), or a file at the root; editing a task's own files
    gives new ids to its runs and to the fine-tunings of the masks searched on it, and to no other."""
    d = _glue_root(tmp_path, tiny_bert_dir)
    runs = {r.id: r for r in expand(_spec(tmp_path, d))}
    data = tmp_path / "data"
    _add_task_folder(data)
    (data / "README.md").write_text("where the files came from")
    assert [r.id for r in expand(_spec(tmp_path, d))] == list(runs)

    (data / "a" / "train.tsv").write_text("text\tlabel\nedited .\t0\n")
    changed = set(runs) - {r.id for r in expand(_spec(tmp_path, d))}
    searches = {i: r for i, r in runs.items() if r.kind == "search"}
    searched_on_a = {i for i, r in searches.items() if r.config.get("source", {}).get("label") == "a"}
    on_a = searched_on_a | {i for i, r in runs.items() if r.config.get("task_label") == "a"}
    masks_of_a = {i for i, r in runs.items() if (r.config.get("mask") or {}).get("search") in searched_on_a}
    assert searched_on_a and any(runs[i].config["task_label"] == "b" for i in masks_of_a)
    assert changed == on_a | masks_of_a


def test_a_spec_naming_a_task_s_own_folder_keeps_its_ids(tmp_path, tiny_bert_dir, monkeypatch):
    """A spec whose tasks' data names each task's own folder plans the ids it planned when the key
    hashed the whole folder it names (that folder is the task's), and a spec naming the GLUE root
    they lie in plans the same ids: the same files are read."""
    own = fakes.make_spec(tmp_path, tiny_bert_dir, **KW)  # data/a, data/b
    ids = [r.id for r in expand(own)]
    assert {r.config["inputs"].get("data") for r in expand(own) if r.kind == "finetune"} == {
        content_key([tmp_path / "data" / t]) for t in ("a", "b")
    }
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        assert [r.id for r in expand(own)] == ids
    assert [r.id for r in expand(_spec(tmp_path, _glue_root(tmp_path, tiny_bert_dir)))] == ids


def test_data_keys_of_task_files_outside_a_glue_layout(tmp_path):
    """SQuAD's folder of a GLUE-style root; a task whose task.json lies at the data folder's top,
    its files in its own folder (both read, so both keyed); a folder holding no task's files keys
    as a whole (its runs are refused before they start)."""
    (tmp_path / "SQuAD").mkdir()
    (tmp_path / "SQuAD" / "train-v1.1.json").write_text("{}")
    (tmp_path / "Z").mkdir()
    (tmp_path / "Z" / "train.tsv").write_text("text\tlabel\nz .\t0\n")
    (tmp_path / "task.json").write_text(json.dumps({"id": "ztask", "dir_name": "Z", "text_a": "text"}))
    squad, z = plan.data_key("squad", tmp_path), plan.data_key("ztask", tmp_path)
    assert squad == content_key([tmp_path / "SQuAD"])
    assert z == content_key([tmp_path / "Z", tmp_path / "task.json"]) != content_key([tmp_path / "Z"])
    _add_task_folder(tmp_path, "other")
    assert (plan.data_key("squad", tmp_path), plan.data_key("ztask", tmp_path)) == (squad, z)
    (tmp_path / "task.json").write_text(
        json.dumps({"id": "ztask", "dir_name": "Z", "text_a": "text", "lr": 1e-4})
    )
    assert plan.data_key("ztask", tmp_path) != z
    assert plan.data_key("sst2", tmp_path) == content_key([tmp_path])


def test_a_store_keyed_by_the_whole_root_is_re_keyed_where_the_task_s_files_are_proven(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """A store whose runs recorded the whole GLUE root's key (ids version 5), the root gaining a task
    folder since: a report finds the spec's runs in it and writes nothing; a sweep re-keys it to
    today's ids and runs nothing, here and where the store was carried with the data elsewhere."""
    d = _glue_root(tmp_path, tiny_bert_dir)
    spec = _spec(tmp_path, d)
    ids = [r.id for r in expand(spec)]
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        old = [r.id for r in expand(spec)]
        assert _sweep(tmp_path, spec).ok
    assert set(old) != set(ids)
    _as_version_5(tmp_path / "sweep")
    _add_task_folder(tmp_path / "data")
    shutil.copytree(tmp_path, tmp_path.parent / "carried", ignore=shutil.ignore_patterns("model"))
    store = tmp_path / "sweep" / "results.sqlite"
    before, done = _digest(store), fakes.calls(tmp_path / "sweep")
    res = load_results(tmp_path / "sweep", plan=(ids, spec_json(spec)))
    assert res.not_swept == 0 and res.left_out == 0 and {s.id for s in res.scores} <= set(old)
    assert _digest(store) == before
    log: list[str] = []
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=log.append).ran == []
    assert any("re-keyed" in line for line in log) and fakes.calls(tmp_path / "sweep") == done
    with Store(tmp_path / "sweep", readonly=True) as st:
        assert set(st.statuses()) == set(ids) and st.get_meta("ids") == IDS_VERSION
    # Carried: the store where the data lies elsewhere, the folder its runs name gone.
    shutil.rmtree(tmp_path / "data")
    carried = tmp_path.parent / "carried"
    moved = _spec(carried, d)
    assert [r.id for r in expand(moved)] == ids
    assert _sweep(carried, moved).ran == []


def test_a_store_keyed_by_the_whole_root_is_not_re_keyed_where_a_task_s_files_changed(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """A task's own files edited since its runs (and a folder added): the root's old key is the key
    of no set of its entries now, so no run that read the root is re-keyed. Each keeps its id, under
    which it is never taken for today's run (the other task's runs too: the old key cannot tell
    their files apart), and every run that reads task data runs again, which the sweep says in one
    note, with why; the others keep their ids."""
    d = _glue_root(tmp_path, tiny_bert_dir)
    spec = _spec(tmp_path, d)
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        old = [r.id for r in expand(spec)]
        assert _sweep(tmp_path, spec).ok
    _as_version_5(tmp_path / "sweep")
    _add_task_folder(tmp_path / "data")
    (tmp_path / "data" / "a" / "dev.tsv").write_text("text\tlabel\nedited .\t0\n")
    runs = {r.id: r for r in expand(spec)}
    reads_data = {i for i, r in runs.items() if r.config["inputs"].get("data") is not None}
    assert {r.kind for r in runs.values()} == {"search", "finetune"} and reads_data != set(runs)
    log: list[str] = []
    result = run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=log.append)
    assert result.ok and set(result.ran) == reads_data == set(runs) - set(old)
    (note,) = _notes(log, "that read task data")
    assert note.startswith(f"note: {len(reads_data)} runs of ") and "run again" in note
    assert f"{len(reads_data)} because their task's files changed since" in note
    with Store(tmp_path / "sweep", readonly=True) as st:
        assert set(st.statuses()) == set(old) | reads_data and st.get_meta("ids") == IDS_VERSION


def test_without_the_spec_s_folders_a_store_whose_data_is_gone_is_left_as_it_is(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """A version-5 store whose runs' data folder is gone: without the spec's folders nothing proves
    the tasks' files, so no run gets a new id and the store is left to be re-keyed where its data is
    (marked version 6 with the old keys, its runs would run again there); the spec's folders, where
    the data lies now, prove them."""
    from ticketlab.studies.sweep.rekey import rekey_store, rekeyed_ids

    d = _glue_root(tmp_path, tiny_bert_dir)
    spec = _spec(tmp_path, d)
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        old = {r.id: r for r in expand(spec)}
        assert _sweep(tmp_path, spec).ok
    _as_version_5(tmp_path / "sweep")
    shutil.move(tmp_path / "data", tmp_path / "elsewhere")
    with Store(tmp_path / "sweep") as st:
        assert rekeyed_ids(st) == {} and rekey_store(st).count == 0 and st.get_meta("ids") == 5
        renamed = rekeyed_ids(st, models=[spec.model], data=[tmp_path / "elsewhere"])
    assert set(renamed) == {i for i, r in old.items() if r.config["inputs"].get("data") is not None}


def _notes(log: list[str], about: str) -> list[str]:
    return [line for line in log if line.startswith("note:") and about in line]


def test_a_store_whose_task_folder_is_a_link_keeps_those_runs_ids_and_says_so(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """A GLUE root whose task folder is a symbolic link (`data/a -> ../a_real`): the root's old key
    walked no linked folder (`Path.rglob`), so it never held task a's files and nothing proves them.
    The report and the sweep go on (no traceback): task b's runs are re-keyed, task a's (and the
    fine-tunings of the mask searched on a) keep their old ids and run again, and the sweep says so
    in one note, with why."""
    d = _glue_root(tmp_path, tiny_bert_dir)
    data = tmp_path / "data"
    shutil.move(data / "a", tmp_path / "a_real")
    (data / "a").symlink_to(Path("..") / "a_real", target_is_directory=True)
    spec = _spec(tmp_path, d)
    runs = {r.id: r for r in expand(spec)}
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        old = [r.id for r in expand(spec)]
        assert _sweep(tmp_path, spec).ok
    _as_version_5(tmp_path / "sweep")
    searched_on_a = {
        i
        for i, r in runs.items()
        if r.kind == "search" and (r.config.get("source") or {}).get("label") == "a"
    }
    on_a = searched_on_a | {i for i, r in runs.items() if r.config.get("task_label") == "a"}
    masks_of_a = {i for i, r in runs.items() if (r.config.get("mask") or {}).get("search") in searched_on_a}
    assert on_a and masks_of_a - on_a

    store = tmp_path / "sweep" / "results.sqlite"
    before = _digest(store)
    res = load_results(tmp_path / "sweep", plan=(list(runs), spec_json(spec)))
    assert res.not_swept == len(on_a | masks_of_a) and _digest(store) == before
    log: list[str] = []
    result = run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=log.append)
    assert result.ok and set(result.ran) == on_a | masks_of_a
    (note,) = _notes(log, "that read task data")
    assert f"{len(on_a | masks_of_a)} runs" in note
    assert f"{len(on_a)} because their task's folder is a symbolic link" in note
    assert f"{len(masks_of_a - on_a)} because the mask they start from was searched on such a run" in note
    with Store(tmp_path / "sweep", readonly=True) as st:
        assert st.get_meta("ids") == IDS_VERSION and set(runs) <= set(st.statuses())
        assert len(st.statuses()) == len(old) + len(on_a | masks_of_a)


def test_two_generations_of_a_run_in_a_store_of_before_leave_one_under_the_new_id(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """A version-5 store holding each run that reads task data twice: swept over the GLUE root, then
    again after a task folder was added beside its tasks (the root's key changed: every such run ran
    again). Both generations prove the same task files, so both would get today's id: the store is
    re-keyed all the same, one row under each new id (the done one: a done run over a failed one,
    else the one finished last) and the other kept under its old id, config and all (history: no
    row is lost). The report finds every run and writes nothing; the sweep runs nothing."""
    d = _glue_root(tmp_path, tiny_bert_dir)
    spec = _spec(tmp_path, d)
    ids = [r.id for r in expand(spec)]
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        first = {r.id: r for r in expand(spec)}
        assert _sweep(tmp_path, spec).ok
        _add_task_folder(tmp_path / "data")
        second = {r.id: r for r in expand(spec)}
        assert len(_sweep(tmp_path, spec).ran) == len(set(second) - set(first)) > 0
    _as_version_5(tmp_path / "sweep")
    full_a = next(
        i for i, r in second.items() if (r.config.get("method"), r.config.get("task_label")) == ("full", "a")
    )
    assert full_a not in first
    with sqlite3.connect(tmp_path / "sweep" / "results.sqlite") as db:
        db.execute("UPDATE runs SET status = 'failed' WHERE id = ?", (full_a,))  # its first is done
        rows_before = {r[0]: r[1:] for r in db.execute("SELECT id, config, finished FROM runs")}
    store = tmp_path / "sweep" / "results.sqlite"
    before, done = _digest(store), fakes.calls(tmp_path / "sweep")
    twice = set(second) - set(first)
    res = load_results(tmp_path / "sweep", plan=(ids, spec_json(spec)))
    assert res.not_swept == 0 and res.left_out == len(twice) and _digest(store) == before
    log: list[str] = []
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=log.append).ran == []
    assert fakes.calls(tmp_path / "sweep") == done
    (kept_note,) = _notes(log, "keep their old ids beside a run")
    assert kept_note.startswith(f"note: {len(twice)} runs") and _notes(log, "re-keyed")
    with sqlite3.connect(tmp_path / "sweep" / "results.sqlite") as db:
        rows = {r[0]: r[1:] for r in db.execute("SELECT id, config, finished FROM runs")}
        assert db.execute("SELECT value FROM meta WHERE key = 'ids'").fetchone()[0] == str(IDS_VERSION)
    assert len(rows) == len(rows_before) and set(ids) <= set(rows)
    history = set(rows) - set(ids)
    assert len(history) == len(twice) and all(rows[i] == rows_before[i] for i in history)
    # Under each new id: the second generation's row (finished last), but for full on a, whose
    # second failed: its first, done (each generation's runs in the plan's order).
    assert full_a in history
    for new_id, one, two in zip(ids, first, second, strict=True):
        taken = one if two == full_a else two
        assert rows[new_id][1] == rows_before[taken][1]


def test_a_store_of_runs_under_a_task_s_own_folder_and_under_the_glue_root_is_re_keyed(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """A version-5 store swept under a spec naming each task's own folder, then under one naming the
    GLUE root they lie in: the runs of the first keep their ids (today's), the second's would get
    them too and keep their old ids beside them; the store is marked re-keyed and nothing runs."""
    own, at_root = (
        fakes.make_spec(tmp_path, tiny_bert_dir, **KW),
        _spec(tmp_path, _glue_root(tmp_path, tiny_bert_dir)),
    )
    ids = [r.id for r in expand(at_root)]
    with monkeypatch.context() as m:
        m.setattr(plan, "data_key", _whole_root)
        assert [r.id for r in expand(own)] == ids
        assert _sweep(tmp_path, own).ok
        ran = _sweep(tmp_path, at_root).ran
    assert ran and not set(ran) & set(ids)
    _as_version_5(tmp_path / "sweep")
    log: list[str] = []
    assert run_sweep(at_root, tmp_path / "sweep", finetune=fakes.fake_finetune, log=log.append).ran == []
    assert _notes(log, f"{len(ran)} runs of") and not _notes(log, "earlier ticketlab")
    with Store(tmp_path / "sweep", readonly=True) as st:
        assert st.get_meta("ids") == IDS_VERSION and set(st.statuses()) == set(ids) | set(ran)


def test_why_a_task_s_data_key_of_before_is_not_proven(tmp_path):
    """The reason a sweep's note gives for each run not re-keyed (`rekey._data_keys`): a task folder
    that is a link (never in the old key), a root with more than 16 entries (which the old key covered
    cannot be told), a task's files changed (and so the others' that the old key held), a task not
    here; a folder added beside still proves."""
    from ticketlab.studies.sweep import rekey

    root = tmp_path / "glue"
    root.mkdir()
    for task in ("a", "b", "c"):
        _add_task_folder(root, task)
    shutil.move(root / "c", tmp_path / "c_real")
    (root / "c").symlink_to(tmp_path / "c_real", target_is_directory=True)
    old = content_key([root])  # a's and b's files: not c's
    rows = [{"config": json.dumps({"task": t, "data": str(root), "inputs": {"data": old}})} for t in "abcz"]
    _add_task_folder(root, "d")
    known, gone, why = rekey._data_keys(rows, [])
    assert known == {(old, t): plan.data_key(t, root) for t in "ab"} and gone == set()
    assert why == {(old, "c"): rekey.SYMLINK, (old, "z"): rekey.MISSING}
    (root / "b" / "dev.tsv").write_text("text\tlabel\nedited .\t0\n")
    _, _, why = rekey._data_keys(rows, [])
    # b edited: no set of the root's entries has the old key now, a's runs not proven either
    assert why == {
        **{(old, t): rekey.CHANGED for t in "ab"},
        (old, "c"): rekey.SYMLINK,
        (old, "z"): rekey.MISSING,
    }
    for i in range(14):
        _add_task_folder(root, f"extra{i}")
    known, _, why = rekey._data_keys(rows, [])
    assert known == {} and why[(old, "a")] == why[(old, "b")] == rekey.CROWDED
