"""Per-method sparsities and task-specific IMP (`imp-task`) in sweeps: Chen et al. 2020 §5 Table 3,
a ticket found on one task fine-tuned on every task. Expansion and validation only (no runs)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sweep_fakes import base_spec_dict, fake_registry
from ticketlab.core.errors import ConfigError
from ticketlab.studies import expand, load_spec, spec_from_dict
from ticketlab.studies.sweep.jobs import SearchJob
from ticketlab.studies.sweep.methods import sweep_methods
from ticketlab.studies.sweep.runner import Runner


@pytest.fixture()
def base(tmp_path) -> dict:
    return base_spec_dict(tmp_path)


def load(tmp_path: Path, d: dict):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(d))
    return load_spec(path, registry=fake_registry())


def by_method(runs, kind: str) -> Counter:
    return Counter(r.config["method"] for r in runs if r.kind == kind)


# --------------------------------------------------------------------------- old specs, old runs


def _old_style_spec(root: Path) -> dict:
    for d in ("glue/SST-2", "glue/CoLA", "model"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "wiki.txt").write_text("some text\n")
    return {
        "model": "model",
        "corpus": {"train": "wiki.txt", "dev": "wiki.txt"},
        "tasks": {"sst2": {"data": "glue/SST-2"}, "cola": {"data": "glue/CoLA", "steps": 7}},
        "methods": ["full", "omp", "random", "imp", {"tamt-mlm": {"lr": 0.5}}, "tamt-kd"],
        "sparsities": [0.5, "70%", 0.9],
        "seeds": {"search": [0, 1], "finetune": [0, 1]},
        "search": {"steps": 20, "lr": 0.1, "log_every": 5},
        "finetune": {"steps": 5, "lr": 2e-5, "eval_every": 2},
        "pretrain_eval": {"max_blocks": 16},
        "search_curve": {"steps": [5, 10], "sparsities": [0.7], "tasks": ["sst2"]},
        "data_curve": {"train_sizes": [8, 32], "sparsities": [0.7], "methods": ["full", "omp", "tamt-mlm"]},
    }


def test_specs_without_the_new_keys_keep_their_runs(tmp_path):
    """Every run config (hence every run id: cached sweeps, the demo's) of a spec that uses neither
    feature is what the code before them made: pinned as a digest of the configs with the temporary
    directory and the search ids written as names (the sorted digest computed before fine-tunings
    were ordered seed by seed). Two keys were added since, on purpose: the task data's content key
    (run ids hash content, not paths), and the reference defaults a run is
    under (a mask's pre-training evaluation: dense decoder, KD on clean text, the original MLM head;
    OMP and random: the pooler): new runs, never the rows computed before them."""
    root = tmp_path / "sweep"
    spec = spec_from_dict(_old_style_spec(root), base_dir=root, registry=fake_registry())
    runs = expand(spec)
    names = {r.id: r.name for r in runs}
    snapshot = []
    for r in runs:
        c = json.loads(json.dumps(r.config).replace(str(root), "<tmp>"))
        assert (c["inputs"].pop("data", None) is not None) == (r.kind == "finetune")
        if c.get("mask"):
            c["mask"]["search"] = names[c["mask"]["search"]]
        changed = c.pop("defaults", None)
        if r.kind == "pretrain-eval" and c["mask"] is not None:
            assert changed == {"decoder": "dense", "kd_input": "clean", "mlm_head": "original"}
        elif r.kind == "search" and c["method"] in ("omp", "random"):
            assert changed == {"pooler": True}  # no checkpoint at the spec's model: a pooler assumed
        else:
            assert changed is None  # the fake searches and the dense model's evaluation: as before
        snapshot.append([r.kind, r.name, c, [names[d] for d in r.deps]])
    snapshot.sort(key=lambda x: json.dumps(x, sort_keys=True))  # the ids matter here, not the order
    digest = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()
    assert len(runs) == 239
    assert digest == "7974a890e138a7c7a35d949ea907930eb0e2b4c7d53c600c71444926743ad5cd"


# --------------------------------------------------------------------------- per-method sparsities


def test_per_method_sparsities_expand_and_stay_out_of_the_identity(tmp_path, base):
    before = {r.id: r for r in expand(load(tmp_path, base))}
    base["methods"] = [
        "full",
        "omp",
        {"random": {"sparsities": [0.5]}},
        {"tamt-mlm": {"sparsities": ["70%", 0.9]}},
    ]
    spec = load(tmp_path, base)
    assert spec.method_sparsities("random") == [0.5] and spec.method_sparsities("tamt-mlm") == [0.7, 0.9]
    assert spec.method_sparsities("omp") == [0.5, 0.7]  # the sweep's
    assert spec.search_settings("tamt-mlm") == {"lr": 0.1, "steps": 20}  # not a search setting
    runs = expand(spec)
    # omp: the sweep's 2 sparsities, 1 mask each; random: 1 x 3 seeds; tamt: 2 x 3 seeds.
    assert by_method(runs, "search") == {"omp": 2, "random": 3, "tamt-mlm": 6}
    # full: 2 tasks x 2 seeds; every mask: 2 tasks x 2 fine-tuning seeds.
    assert by_method(runs, "finetune") == {"full": 4, "omp": 8, "random": 12, "tamt-mlm": 24}
    assert all("sparsities" not in r.config.get("settings", {}) for r in runs)
    # A run at a sparsity both lists share is the same run (same id) as before.
    kept = [r for r in runs if r.config.get("sparsity") in (0.5, 0.7) or r.config["method"] == "full"]
    assert kept and all(r.id in before and before[r.id].config == r.config for r in kept)


def test_finetunings_run_seed_by_seed(tmp_path, base):
    """A sweep stopped part-way has every cell at its first seed before any cell gets its second."""
    fts = [r for r in expand(load(tmp_path, base)) if r.kind == "finetune"]
    seeds = [r.config["seed"] for r in fts]
    assert len(set(seeds)) == 2 and seeds == sorted(seeds, key=[0, 1].index)
    cells = [[r.name.rsplit("_ft", 1)[0] for r in fts if r.config["seed"] == f] for f in (0, 1)]
    assert cells[0] == cells[1] and len(set(cells[0])) == len(cells[0])


def test_top_level_sparsities_may_be_left_out_when_every_method_has_its_own(tmp_path, base):
    del base["sparsities"]
    base["methods"] = ["full", {"omp": {"sparsities": [0.9]}}, {"tamt-mlm": {"sparsities": 0.5}}]
    runs = expand(load(tmp_path, base))
    assert sorted((r.config["method"], r.config["sparsity"]) for r in runs if r.kind == "search") == [
        ("omp", 0.9),
        *[("tamt-mlm", 0.5)] * 3,
    ]
    base["methods"].append("random")
    with pytest.raises(ConfigError, match="sparsities: at least one sparsity is required \\(by random"):
        load(tmp_path, base)


# --------------------------------------------------------------------------- validation


def _methods(**m) -> Callable[[dict], None]:
    return lambda d: d.update(methods=["full", *[{k.replace("_", "-"): v} for k, v in m.items()]])


@pytest.mark.parametrize(
    "edit, message",
    [
        (_methods(omp={"sparsities": [0.5, 1.0]}), "methods.omp.sparsities: 1.0 is not a fraction in [0, 1)"),
        (_methods(omp={"sparsities": ["50%", 0.5]}), "methods.omp.sparsities: duplicate values"),
        (_methods(omp={"sparsities": ["x%"]}), "methods.omp.sparsities: not a number: 'x%'"),
        (_methods(omp={"sparsities": []}), "methods.omp.sparsities: at least one sparsity is required"),
        (
            lambda d: d.update(methods={"full": {"sparsities": [0.5]}}),
            "methods.full.sparsities: full has no mask",
        ),
        (
            _methods(imp_task={"sources": ["rte"]}),
            "methods.imp-task.sources: 'rte' is not in the sweep's tasks",
        ),
        (_methods(imp_task={"sources": []}), "methods.imp-task.sources: a non-empty list"),
        (_methods(imp_task={"sources": ["sst2", "sst2"]}), "methods.imp-task.sources: a non-empty list"),
        (_methods(omp={"sources": ["sst2"]}), "methods.omp.sources: omp does not search on a task"),
        (_methods(imp_task={"prune_rat": 0.2}), "methods.imp-task.prune_rat: unknown setting"),
        (
            lambda d: d.update(methods=["imp-task"], search_curve={"steps": [5], "methods": ["imp-task"]}),
            "search_curve.methods: imp-task has no search-cost curve",
        ),
        (
            lambda d: d.update(
                methods=["full", {"tamt-mlm": {"sparsities": [0.5]}}], search_curve={"steps": [5]}
            ),
            "search_curve.sparsities: 0.7 is not in the sparsities of tamt-mlm [0.5]",
        ),
        (
            lambda d: d.update(
                methods=["full", {"omp": {"sparsities": [0.5]}}], data_curve={"train_sizes": [8]}
            ),
            "data_curve.sparsities: 0.7 is not in the sparsities of omp [0.5]",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path, base, edit, message):
    edit(base)
    with pytest.raises(ConfigError) as e:
        load(tmp_path, base)
    assert str(e.value).startswith(f"{tmp_path / 'spec.yaml'}: ")
    assert message in str(e.value)


# --------------------------------------------------------------------------- imp-task


def transfer(base: dict, **imp_task) -> dict:
    base["tasks"]["mrpc"] = {"data": "glue/MRPC"}
    base["tasks"]["sst2-again"] = {"task": "sst2", "data": "glue/SST-2"}  # a label that is not the task id
    base["methods"] = ["full", "imp", {"imp-task": {"sparsities": [0.5, 0.7], **imp_task}}]
    base["pretrain_eval"] = {"max_blocks": 8}
    return base


def test_imp_task_searches_per_source_and_transfers_to_every_task(tmp_path, base):
    d = transfer(base, sources=["sst2", "sst2-again", "mrpc"], batch_size=8)
    without = {r.id: r for r in expand(load(tmp_path, {**d, "methods": ["full", "imp"]}))}
    spec = load(tmp_path, d)
    runs = expand(spec)
    tasks = list(spec.tasks)
    searches = [r for r in runs if r.kind == "search" and r.config["method"] == "imp-task"]
    # 3 sources x 2 sparsities x 3 search seeds, each searched on its task, not on the corpus.
    assert len(searches) == 3 * 2 * 3
    glue = tmp_path.resolve() / "glue"
    s = next(r for r in searches if r.name == "imp-task-sst2-again_s50_seed0")
    assert s.config["source"] == {"label": "sst2-again", "task": "sst2", "data": str(glue / "SST-2")}
    assert s.config["corpus"] is None and "corpus" not in s.config["inputs"]
    assert s.config["settings"] == {"batch_size": 8, "lr": 0.1}  # IMP's, under the method's overrides
    assert Counter(r.config["source"]["label"] for r in searches) == {"sst2": 6, "sst2-again": 6, "mrpc": 6}
    # Every mask is fine-tuned on every task (the source among them) with every fine-tuning seed.
    fts = [r for r in runs if r.kind == "finetune" and r.config["method"] == "imp-task"]
    assert len(fts) == len(searches) * len(tasks) * 2
    for search in searches:
        mine = [r for r in fts if r.deps == (search.id,)]
        assert Counter(r.config["task_label"] for r in mine) == {t: 2 for t in tasks}
        assert {r.config["source"] for r in mine} == {search.config["source"]["label"]}
    ft = next(r for r in fts if r.name == "ft_cola_imp-task-mrpc_s70_seed1_ft0")
    assert ft.config["source"] == "mrpc" and ft.config["task_label"] == "cola"
    # Its masks get a pre-training evaluation like any mask.
    evals = [r for r in runs if r.kind == "pretrain-eval" and r.config["method"] == "imp-task"]
    assert len(evals) == len(searches) and all("source" in r.config for r in evals)
    # The other runs are exactly those of the sweep without imp-task: no `source`, the same ids.
    others = [r for r in runs if r.config["method"] != "imp-task"]
    assert {r.id for r in others} == set(without)
    assert all("source" not in r.config and r.config == without[r.id].config for r in others)


def test_imp_task_sources_default_to_every_task_and_need_no_corpus(tmp_path, base):
    transfer(base)
    del base["corpus"], base["pretrain_eval"]
    base["methods"] = ["full", {"imp-task": {"sparsities": [0.5]}}]
    spec = load(tmp_path, base)
    assert spec.sources("imp-task") == list(spec.tasks) and spec.sources("full") == []
    runs = expand(spec)
    assert by_method(runs, "search") == {"imp-task": len(spec.tasks) * 1 * 3}
    assert by_method(runs, "finetune")["imp-task"] == len(spec.tasks) * 3 * len(spec.tasks) * 2
    # The dry run says where those searches come from.
    runner = Runner(spec, tmp_path / "sweep", log=lambda s: None)
    try:
        assert "imp-task: 12 searches on source tasks cola, mrpc, sst2, sst2-again" in runner.describe()
    finally:
        runner.store.close()


def test_imp_task_search_config_reads_the_task(tmp_path):
    from ticketlab.methods import ImpConfig

    job = SearchJob(
        model="bert-base-uncased",
        method="imp-task",
        sparsity=0.5,
        seed=1,
        steps=40,
        save_at=[],
        settings={"lr": 1e-4, "prune_rate": 0.2, "max_length": 64},
        corpus=None,
        mask_dir=tmp_path / "mask",
        work_dir=tmp_path / "work",
        source={"label": "sst2-again", "task": "sst2", "data": str(tmp_path / "glue")},
    )
    config = sweep_methods()["imp-task"].configure(job)
    assert config.verb == "imp" and config.task == "sst2" and config.data_dir == str(tmp_path / "glue")
    assert config.corpus is None and config.dev is None
    assert isinstance(config.method, ImpConfig) and config.method.prune_rate == 0.2
    assert (config.lr, config.max_length, config.seed, config.steps) == (1e-4, 64, 1, 40)
