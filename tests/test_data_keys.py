"""A task's data enters its runs' ids by what loading the task reads (`sweep.plan.data_key`): of a
GLUE root the task's own folder, its task.json included, not the task folders beside it. Searches and
fine-tunings are the fakes of tests/sweep_fakes.py."""

from __future__ import annotations

import json
from pathlib import Path

import sweep_fakes as fakes
from ticketlab.core.files.keys import content_key
from ticketlab.studies import expand, run_sweep, spec_from_dict
from ticketlab.studies.sweep import plan

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
    """A data key over every file of the folder the spec names (of a GLUE root: every task's)."""
    return content_key([data])


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
