"""Sweep specs: validation with errors naming the file and key, and deterministic expansion into runs."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sweep_fakes import base_spec_dict, fake_registry
from ticketlab.core.errors import ConfigError
from ticketlab.studies import Store, expand, load_spec, spec_from_dict


@pytest.fixture()
def base(tmp_path) -> dict:
    return base_spec_dict(tmp_path)


def write(tmp_path: Path, d: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def load(tmp_path: Path, d: dict):
    return load_spec(write(tmp_path, d), registry=fake_registry())


def test_valid_spec_resolves_paths_and_settings(tmp_path, base):
    spec = load(tmp_path, base)
    assert spec.model == str((tmp_path / "model").resolve())
    assert spec.sparsities == [0.5, 0.7]
    assert spec.tasks["sst2"].data == str((tmp_path / "glue/SST-2").resolve())
    assert spec.corpus["train"] == [str((tmp_path / "wiki.txt").resolve())]
    assert spec.name == "spec"
    # Each method sees only the settings it declares: OMP's identity does not depend on TAMT's lr.
    assert spec.search_settings("tamt-mlm") == {"lr": 0.1, "steps": 20}
    assert spec.search_settings("omp") == {}
    assert spec.finetune_settings("cola") == {"lr": 2e-5, "steps": 7}


def test_a_specs_default_directory_is_its_output_else_sweeps_and_its_name(tmp_path, base):
    """Where `ticketlab sweep` and a Python caller put the runs when no directory is given."""
    base["name"] = "study"
    assert load(tmp_path, base).default_dir == Path("sweeps") / "study"
    base["output"] = "out/here"  # relative to the spec's folder
    assert load(tmp_path, base).default_dir == (tmp_path / "out" / "here").resolve()


def test_a_hub_corpus_is_kept_as_named_and_names_its_runs(tmp_path, base):
    """`hub:NAME[:CONFIG]` is a corpus the runs download (nothing local to find or hash): the spec
    keeps it as written, and another dataset or config plans other searches."""
    base["corpus"] = {"train": "hub:Salesforce/wikitext:wikitext-103-raw-v1"}
    spec = load(tmp_path, base)
    assert spec.corpus["train"] == ["hub:Salesforce/wikitext:wikitext-103-raw-v1"]
    searched = {r.id for r in expand(spec) if r.config.get("corpus")}  # TAMT's, and their evaluations
    assert searched
    base["corpus"] = {"train": "hub:Salesforce/wikitext:wikitext-2-raw-v1"}
    assert searched.isdisjoint(r.id for r in expand(load(tmp_path, base)))
    base["corpus"] = {"train": "hub:"}
    with pytest.raises(ConfigError, match="corpus.train: hub:: no dataset after 'hub:'"):
        load(tmp_path, base)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(sparsity=[0.5]), "sparsity: unknown key (did you mean 'sparsities'?)"),
        (
            lambda d: d.update(methods=["omp", "tamt-mlmm"]),
            "unknown method 'tamt-mlmm' (did you mean 'tamt-mlm'?)",
        ),
        (lambda d: d.update(sparsities=[0.5, 1.0]), "sparsities: 1.0 is not a fraction in [0, 1)"),
        (lambda d: d.update(sparsities=[0.5, 0.5]), "sparsities: duplicate values"),
        (lambda d: d["tasks"]["sst2"].pop("data"), "tasks.sst2.data: missing"),
        (lambda d: d["tasks"]["sst2"].update(data="glue/nope"), "tasks.sst2.data: glue/nope: not found"),
        (lambda d: d["finetune"].update(lrr=1), "finetune.lrr: unknown setting (did you mean 'lr'?)"),
        (lambda d: d["tasks"]["cola"].update(stepz=1), "tasks.cola.stepz: unknown setting"),
        (lambda d: d["search"].update(lr_typo=1), "search.lr_typo: unknown setting"),
        (lambda d: d.update(methods={"omp": {"lr": 1}}), "methods.omp.lr: unknown setting"),
        (lambda d: d.update(methods={"omp": {"damp": 0.1}}), "methods.omp.damp: unknown setting"),
        (lambda d: d.update(methods={"sparsegpt": {"damp": 2}}), "methods.sparsegpt.damp: must be in"),
        (
            lambda d: d.update(methods={"st-random": {"granularity": "block"}}),
            "methods.st-random.granularity: must be one of",
        ),
        (
            lambda d: d.update(methods={"st-random": {"units": "bogus"}}),
            "methods.st-random.units: must be one of",
        ),
        (
            lambda d: d.update(methods={"st-random": {"random_draw": 1}}),
            "methods.st-random.random_draw: must be",
        ),
        (lambda d: d.pop("corpus"), "corpus: required by tamt-mlm"),
        (lambda d: d["corpus"].update(trian="x"), "corpus.trian: unknown key (did you mean 'train'?)"),
        (lambda d: d["corpus"].pop("train"), "corpus.train: missing"),
        (lambda d: d["search"].pop("steps"), "search.steps: a positive step budget is required by tamt-mlm"),
        (lambda d: d["finetune"].update(steps=0), "finetune.steps: a positive number of steps or null"),
        (lambda d: d["tasks"]["sst2"].update(task="sst3"), "tasks.sst2: unknown task 'sst3'"),
        (lambda d: d.update(seeds={"search": [0, 0]}), "seeds.search: a non-empty list of distinct"),
        (lambda d: d.update(seeds={"serch": [0]}), "seeds.serch: unknown key (did you mean 'search'?)"),
        (lambda d: d.update(methods={"omp": {"search_seeds": [0, 1]}}), "methods.omp.search_seeds: omp is"),
        (
            lambda d: d.update(methods={"random": {"search_seeds": []}}),
            "methods.random.search_seeds: a non-empty list of distinct integers",
        ),
        (lambda d: d.update(methods={"random": {"search_seeds": [0, "1"]}}), "'1' is not an integer"),
        (
            lambda d: d.update(methods={"omp": {"finetune_seeds": []}}),
            "methods.omp.finetune_seeds: a non-empty list of distinct integers",
        ),
        (
            lambda d: d.update(methods={"full": {"finetune_seeds": [0, 1, 1]}}),
            "methods.full.finetune_seeds: a non-empty list of distinct integers",
        ),
        (
            lambda d: d.update(methods={"omp": {"finetune_seeds": [0, "1"]}}),
            "methods.omp.finetune_seeds: '1' is not an integer",
        ),
        (
            lambda d: d.update(methods={"omp": {"finetune_seeds": [-1]}}),
            "methods.omp.finetune_seeds: -1 is out of range",
        ),
        (
            lambda d: d.update(methods={"omp": {"finetune_seed": [0, 1]}}),
            "methods.omp.finetune_seed: unknown setting (did you mean 'finetune_seeds'?)",
        ),
        (
            lambda d: d.update(search_curve={"steps": [10, 40]}),
            "search_curve.steps: 40 is beyond the search budget",
        ),
        (
            lambda d: d.update(search_curve={"steps": [10], "sparsities": [0.9]}),
            "search_curve.sparsities: 0.9",
        ),
        (lambda d: d.update(search_curve={"steps": [10], "methods": ["omp"]}), "omp has no search budget"),
        (lambda d: d.update(data_curve={"train_sizes": [0]}), "data_curve.train_sizes: a non-empty list"),
        (lambda d: d.update(data_curve={"train_sizes": [8], "tasks": ["rte"]}), "data_curve.tasks: 'rte'"),
        (lambda d: d.update(data_curve={"train_sizes": [8], "tasks": []}), "data_curve.tasks: empty"),
        (lambda d: d.update(model="./missing-model"), "model: ./missing-model: not found"),
        (lambda d: d.update(model="./model "), "did you mean "),  # a trailing space: the folder beside it
        (lambda d: d["corpus"].update(train="wiki.tx"), "/wiki.txt?)"),  # a file: the file beside it
        (lambda d: d.pop("tasks"), "tasks: missing (required)"),
    ],
)
def test_errors_name_file_and_key(tmp_path, base, edit, message):
    edit(base)
    path = write(tmp_path, base)
    with pytest.raises(ConfigError) as e:
        load_spec(path, registry=fake_registry())
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)


def test_yaml_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\ntasks: [a\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line \d"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="nope.yaml: sweep spec not found"):
        load_spec(tmp_path / "nope.yaml")


def test_a_key_given_twice_is_refused_not_replaced(tmp_path, base):
    """YAML keeps the last of two equal keys: a second `methods:` (or a repeated key deeper down)
    would silently replace the first, so the file is refused at the second."""
    text = yaml.safe_dump(base)
    path = tmp_path / "twice.yaml"
    path.write_text(text + "methods: [omp]\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: invalid YAML at line \d+: duplicate key 'methods'"):
        load_spec(path, registry=fake_registry())
    path.write_text(text + "resources:\n  search: {gpus: 1, gpus: 2}\n")
    with pytest.raises(ConfigError, match="duplicate key 'gpus'"):
        load_spec(path, registry=fake_registry())


def test_hub_id_model_passes_through(tmp_path, base):
    base["model"] = "bert-base-uncased"
    assert load(tmp_path, base).model == "bert-base-uncased"


def test_methods_as_mapping_with_overrides(tmp_path, base):
    base["methods"] = ["full", {"tamt-mlm": {"lr": 0.5}}, "omp"]
    spec = load(tmp_path, base)
    assert list(spec.methods) == ["full", "tamt-mlm", "omp"]
    assert spec.search_settings("tamt-mlm") == {"lr": 0.5, "steps": 20}


# --------------------------------------------------------------------------- expansion


def test_expansion_counts_and_mask_reuse(tmp_path, base):
    runs = expand(load(tmp_path, base))
    kinds = Counter(r.kind for r in runs)
    # omp: 1 mask per sparsity (deterministic); random and tamt: 3 seeds x 2 sparsities; full: none.
    assert kinds["search"] == 2 + 6 + 6
    # full: 2 tasks x 2 seeds; every mask: 2 tasks x 2 fine-tuning seeds.
    assert kinds["finetune"] == 4 + (2 + 6 + 6) * 4
    assert kinds["pretrain-eval"] == 0
    searches = {r.id: r for r in runs if r.kind == "search"}
    assert {r.config["seed"] for r in searches.values() if r.config["method"] == "omp"} == {None}
    # A mask is searched once and transferred to every task with every fine-tuning seed.
    uses = Counter(r.deps[0] for r in runs if r.kind == "finetune" and r.deps)
    assert set(uses) == set(searches) and set(uses.values()) == {4}
    for r in runs:
        assert all(d in searches for d in r.deps)
    # Fine-tuning runs of the full model have no mask and no dependency.
    full = [r for r in runs if r.kind == "finetune" and r.config["method"] == "full"]
    assert len(full) == 4 and all(r.config["mask"] is None and not r.deps for r in full)
    assert len({r.id for r in runs}) == len(runs)


def test_expansion_is_deterministic_and_incremental(tmp_path, base):
    first = expand(load(tmp_path, base))
    assert [r.id for r in expand(load(tmp_path, base))] == [r.id for r in first]
    # Adding a sparsity adds runs and keeps every existing one.
    base["sparsities"] = [0.5, 0.7, 0.9]
    more = {r.id for r in expand(load(tmp_path, base))}
    assert {r.id for r in first} < more
    # Changing TAMT's lr redoes TAMT (and its fine-tunings) only.
    base["sparsities"] = [0.5, 0.7]
    base["search"]["lr"] = 0.2
    changed = {r.id for r in first} - {r.id for r in expand(load(tmp_path, base))}
    by_id = {r.id: r for r in first}
    assert changed and {by_id[i].config["method"] for i in changed} == {"tamt-mlm"}
    # A per-task fine-tuning change touches only that task's fine-tunings.
    base["search"]["lr"] = 0.1
    base["tasks"]["cola"]["steps"] = 8
    changed = {r.id for r in first} - {r.id for r in expand(load(tmp_path, base))}
    assert {(by_id[i].kind, by_id[i].config["task_label"]) for i in changed} == {("finetune", "cola")}


def test_three_masks_per_seeded_method_by_default(tmp_path, base):
    """A spec naming no search seeds searches 3 masks of every seeded method (1 of OMP); seed 0's runs
    are the runs a spec with `search: [0]` plans, under the same ids: more seeds only add runs."""
    base["seeds"] = {"finetune": [0, 1]}
    spec = load(tmp_path, base)
    assert spec.search_seeds == [0, 1, 2]
    searches = [r for r in expand(spec) if r.kind == "search"]
    seeds = Counter((r.config["method"], r.config["seed"]) for r in searches)
    assert seeds == {("omp", None): 2, **{(m, k): 2 for m in ("random", "tamt-mlm") for k in (0, 1, 2)}}
    base["seeds"]["search"] = [0]
    one = {r.id for r in expand(load(tmp_path, base))}
    three = {r.id for r in expand(spec)}
    assert one < three
    # what the extra seeds add: 2 sparsities x 2 seeds x (random, tamt-mlm), each on 2 tasks x 2 ft seeds
    assert len(three - one) == 8 + 8 * 4


def test_a_method_may_have_its_own_search_seeds(tmp_path, base):
    """`methods.random.search_seeds` (3 masks of IMP beside one of TAMT): that method's masks only,
    and no run of the others changes."""
    base["seeds"]["search"] = [0]
    before = {r.id for r in expand(load(tmp_path, base))}
    base["methods"] = ["full", "omp", {"random": {"search_seeds": [0, 1, 2]}}, "tamt-mlm"]
    runs = expand(load(tmp_path, base))
    seeds = {m: sorted({r.config["seed"] for r in runs if r.kind == "search" and r.config["method"] == m},
                       key=str) for m in ("omp", "random", "tamt-mlm")}  # fmt: skip
    assert seeds == {"omp": [None], "random": [0, 1, 2], "tamt-mlm": [0]}
    assert before < {r.id for r in runs}
    added = [r for r in runs if r.id not in before]
    assert {r.config.get("method") for r in added} == {"random"} and all(
        (r.config.get("seed") if r.kind == "search" else r.config["mask_seed"]) in (1, 2) for r in added
    )


def test_a_method_may_have_its_own_finetune_seeds(tmp_path, base):
    """`methods.omp.finetune_seeds` (and `full`'s): 5 fine-tunings of each of their masks on every
    task beside the sweep's 2 of the others'. The seeds both lists hold are the runs planned without
    them, under the same ids; the key enters no run's config; a searched method may have its own
    (fewer, here); the data curve keeps the sweep's seeds; the extra seeds come after every cell's
    first ones."""
    base["methods"] = ["full", "omp", "random", "tamt-mlm"]
    base["data_curve"] = {"train_sizes": [8], "sparsities": [0.7], "methods": ["full", "omp"]}
    before = {r.id: r for r in expand(load(tmp_path, base))}
    five = list(range(5))
    base["methods"] = [
        {"full": {"finetune_seeds": list(five)}},  # two lists: YAML would write one as an alias
        {"omp": {"finetune_seeds": list(five)}},
        {"random": {"finetune_seeds": [1]}},
        "tamt-mlm",
    ]
    spec = load(tmp_path, base)
    assert spec.method_finetune_seeds("omp") == five and spec.method_finetune_seeds("tamt-mlm") == [0, 1]
    runs = expand(spec)
    fts = [r for r in runs if r.kind == "finetune"]
    main = Counter((r.config["method"], r.config["seed"]) for r in fts if r.config["train_size"] is None)
    # full: 2 tasks per seed; omp: 2 masks x 2 tasks; random, tamt-mlm: 6 masks x 2 tasks
    assert main == {("full", f): 2 for f in five} | {("omp", f): 4 for f in five} | {
        ("random", 1): 12,
        **{("tamt-mlm", f): 12 for f in (0, 1)},
    }
    curve = Counter((r.config["method"], r.config["seed"]) for r in fts if r.config["train_size"] == 8)
    assert curve == {("full", 0): 2, ("full", 1): 2, ("omp", 0): 2, ("omp", 1): 2}  # the sweep's seeds
    after = {r.id for r in runs}
    added, gone = after - before.keys(), before.keys() - after
    assert {by.config["seed"] for by in (before[i] for i in gone)} == {0} and all(
        before[i].config["method"] == "random" for i in gone
    )
    assert {(r.config["method"], r.config["seed"]) for r in runs if r.id in added} == {
        (m, f) for m in ("full", "omp") for f in (2, 3, 4)
    }
    assert [r.id for r in runs if r.kind == "search"] == [i for i, r in before.items() if r.kind == "search"]
    assert not any("finetune_seeds" in json.dumps(r.config) for r in runs)
    # seed-major: every cell's first two seeds before OMP's and the full model's third to fifth
    order = [r.config["seed"] >= 2 for r in fts]
    assert order == sorted(order)


def test_a_spec_without_its_own_finetune_seeds_plans_the_runs_it_planned(tmp_path, base):
    """Every run of a spec with every optional grid (curves, pre-training losses), in its order, under
    the ids it plans: the count and a hash of the ids in plan order, pinned (a method's own
    fine-tuning seeds, which this spec does not give, change none of them)."""
    base["methods"] = ["full", "omp", "random", "imp", "tamt-mlm"]
    base["pretrain_eval"] = {"max_blocks": 16}
    base["search_curve"] = {"steps": [5, 10], "sparsities": [0.7], "tasks": ["sst2"]}
    base["data_curve"] = {"train_sizes": [8, "all"], "sparsities": [0.7]}
    ids = [r.id for r in expand(load(tmp_path, base))]
    assert len(ids) == 211
    assert hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16] == "fe6cad5adcf883ed"


def test_search_curve_save_at_and_budgets(tmp_path, base):
    base["methods"] = ["full", "omp", "imp", "tamt-mlm"]
    base["seeds"]["search"] = [0]
    base["search_curve"] = {"steps": [5, 10], "sparsities": [0.7], "tasks": ["sst2"]}
    runs = expand(load(tmp_path, base))
    searches = [r for r in runs if r.kind == "search"]
    tamt = {r.config["sparsity"]: r for r in searches if r.config["method"] == "tamt-mlm"}
    # TAMT saves masks along its one run at the curve sparsity only.
    assert len(tamt) == 2 and tamt[0.7].config["save_at"] == [5, 10] and tamt[0.5].config["save_at"] == []
    # IMP (budgets) gets one extra run per smaller budget at the curve sparsity.
    imp = sorted((r.config["sparsity"], r.config["steps"]) for r in searches if r.config["method"] == "imp")
    assert imp == [(0.5, 20), (0.7, 5), (0.7, 10), (0.7, 20)]
    # Masks along the curve are fine-tuned on the curve's tasks with every fine-tuning seed.
    curve_ft = [r for r in runs if r.kind == "finetune" and r.config["search_steps"] in (5, 10)]
    assert len(curve_ft) == 2 * 2 * 2  # (tamt @5, @10, imp 5, imp 10) / 2 methods x 2 steps x 2 seeds
    assert {r.config["task_label"] for r in curve_ft} == {"sst2"}
    at = sorted((r.config["method"], r.config["mask"]["step"]) for r in curve_ft)
    assert at[0] == ("imp", None) and ("tamt-mlm", 5) in at and ("tamt-mlm", 10) in at


def test_a_search_curve_with_no_tasks_is_its_pre_training_losses_alone(tmp_path, base):
    """`tasks: []` (a search-cost curve): the masks along TAMT's run get their MLM / KD dev
    losses and no fine-tuning; with `tasks` left out, every task fine-tunes them."""
    base["methods"] = ["full", "omp", "tamt-mlm"]
    base["seeds"] = {"search": [0, 1], "finetune": [0, 1]}
    base["pretrain_eval"] = {"max_blocks": 16}
    base["search_curve"] = {"steps": [5, 10], "sparsities": [0.7], "tasks": []}
    runs = expand(load(tmp_path, base))
    along = lambda kind: [r for r in runs if r.kind == kind and (r.config.get("mask") or {}).get("step")]  # noqa: E731
    assert along("finetune") == []
    assert sorted(r.config["mask"]["step"] for r in along("pretrain-eval")) == [5, 5, 10, 10]  # 2 seeds
    del base["search_curve"]["tasks"]
    runs = expand(load(tmp_path, base))
    assert len(along("finetune")) == 2 * 2 * 2 * 2  # 2 steps x 2 masks x 2 tasks x 2 seeds


def test_data_curve_and_pretrain_eval(tmp_path, base):
    base["data_curve"] = {"train_sizes": [8, 32], "sparsities": [0.7], "methods": ["full", "tamt-mlm"]}
    base["pretrain_eval"] = {"max_blocks": 16}
    runs = expand(load(tmp_path, base))
    sized = [r for r in runs if r.kind == "finetune" and r.config["train_size"] is not None]
    # full: 2 sizes x 2 tasks x 2 seeds; tamt at 0.7: 3 masks x 2 sizes x 2 tasks x 2 seeds.
    assert len(sized) == 8 + 24
    assert {r.config["method"] for r in sized} == {"full", "tamt-mlm"}
    evals = [r for r in runs if r.kind == "pretrain-eval"]
    assert len(evals) == 1 + 14  # the dense model and every mask
    assert all(r.config["settings"] == {"max_blocks": 16} for r in evals)


def test_spec_from_dict_for_programs(tmp_path, base):
    spec = spec_from_dict(base, base_dir=tmp_path, registry=fake_registry())
    assert spec.tasks["cola"].settings == {"steps": 7}
    no_tamt = {k: v for k, v in fake_registry().items() if k != "tamt-mlm"}
    with pytest.raises(ConfigError, match="<spec>: methods: unknown method 'tamt-mlm'"):
        spec_from_dict(base, base_dir=tmp_path, registry=no_tamt)


def test_example_spec_expands():
    """examples/sweep.yaml (shipped with the docs) is valid on what ships (its corpus and tasks are
    hub ids, read at run time) and plans the runs its budget states."""
    root = Path(__file__).resolve().parents[1]
    path = root / "examples" / "sweep.yaml"
    spec = load_spec(path)
    runs = expand(spec)
    kinds = Counter(r.kind for r in runs)
    header = path.read_text()
    stated = re.search(
        r"Budget: (\d+) runs \((\d+) mask searches, (\d+) pre-training evaluations, (\d+) fine-tunings\)",
        header.replace("\n# ", " "),
    )
    assert stated, "the spec states its budget"
    total, search, evals, finetunes = map(int, stated.groups())
    assert (len(runs), kinds["search"], kinds["pretrain-eval"], kinds["finetune"]) == (
        total,
        search,
        evals,
        finetunes,
    )
    assert f"(the plan: {total} runs)" in header
    assert Path(spec.model) == root / "models" / "minilm-mlm"
    assert spec.search_settings("tamt-kd") == {"batch_size": 16, "max_length": 128, "steps": 2000}


RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


# Studies whose runs are not all done yet: their committed store holds a part of the plan. A study
# leaves this set with the piece that finishes it (its store then holds every planned run).
UNDER_WAY: set[str] = set()


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(p.parent.name for p in RESULTS.glob("*/spec.yaml")))
def test_every_run_a_committed_spec_plans_is_done_in_its_store(bert_mini, name):
    """Every run of every committed spec (docs/results/*/spec.yaml) is in its committed store under
    the id today's code plans, finished, and the store is of today's ids scheme: a change that moves
    run ids fails here until the stores are re-keyed (docs/explanation/run-ids.md). A study under way
    holds part of its plan: each planned run its store holds by name is there under the planned id."""
    from ticketlab.studies.run_ids import IDS_VERSION

    if not (RESULTS / name / "results.sqlite").exists():
        pytest.skip(f"{name}: no store committed yet (declared, its runs not begun)")
    try:
        spec = load_spec(RESULTS / name / "spec.yaml")
    except ConfigError as e:  # all-MiniLM's model lives in the project's .venv, absent in a worktree
        pytest.skip(str(e))
    with Store(RESULTS / name, readonly=True) as st:
        done = {r.id for r in st.runs() if r.status == "done"}
        held: dict[str, set[str]] = {}
        for r in st.runs():
            held.setdefault(r.name, set()).add(r.id)
        assert st.get_meta("ids") == IDS_VERSION
    planned = list(expand(spec))
    if name in UNDER_WAY:
        moved = [r.name for r in planned if r.name in held and r.id not in held[r.name]]
        assert not moved and set(r.id for r in planned) & done, moved[:5]
    else:
        assert len(planned) > 60 and not {r.id for r in planned} - done


def test_naming_a_default_plans_the_run_that_took_it(tmp_path, base):
    """A run's id holds its settings as it uses them: a spec that names a default's value plans the
    same run as one that leaves it to the default, and another value is another run."""
    base.update(sparsities=[0.7], search={"steps": 200}, seeds={"search": [0], "finetune": [0]})

    def search_id(settings: dict) -> str:
        base["methods"] = [{"tamt-kd": settings}]
        return next(r.id for r in expand(spec_from_dict(base, base_dir=tmp_path)) if r.kind == "search")

    plain = search_id({"lr": 1e-3})
    assert search_id({"lr": 1e-3, "kd_input": "clean", "kd_teacher": "train", "count": "floor"}) == plain
    assert search_id({"lr": 1e-3, "count": "round"}) != plain


@pytest.mark.shared
def test_runs_under_the_defaults_never_take_a_committed_row(bert_mini):
    """bert-mini-ref's committed spec names the behaviour its runs ran under (masked decoder, KD on the
    corrupted input, a schedule that ends at the stop, the trained head), which plans its rows. Without
    those names (TAMT's defaults) its TAMT searches and its masks' pre-training evaluations are new
    runs; the searches the reference defaults do not change (OMP, random) keep their rows."""
    import sqlite3

    root = Path(__file__).resolve().parents[1] / "docs" / "results" / "bert-mini-ref"
    with sqlite3.connect(root / "results.sqlite") as db:
        done = {i for (i,) in db.execute("SELECT id FROM runs WHERE status = 'done'")}
    data = yaml.safe_load((root / "spec.yaml").read_text())
    named = {"decoder", "kd_input", "schedule_steps", "mlm_head"}
    for entry in data["methods"]:
        for settings in entry.values() if isinstance(entry, dict) else ():
            assert "schedule_steps" not in settings or settings["schedule_steps"] == data["search"]["steps"]
            for k in named & set(settings):
                del settings[k]
    data["pretrain_eval"] = {k: v for k, v in data["pretrain_eval"].items() if k not in named}
    runs = expand(spec_from_dict(data, base_dir=root))
    tamt = [r for r in runs if r.kind == "search" and r.config["method"].startswith("tamt")]
    evals = [r for r in runs if r.kind == "pretrain-eval" and r.config["mask"] is not None]
    assert tamt and evals and not {r.id for r in tamt + evals} & done
    assert all(r.config["defaults"]["schedule_steps"] == "tab2" for r in tamt)
    assert {r.config["method"]: r.config["defaults"].get("decoder") for r in tamt} == {
        "tamt-mlm": "dense",
        "tamt-kd": None,
        "tamt-mlm+kd": "dense",
    }
    kept = [r for r in runs if r.kind == "search" and r.config["method"] in ("omp", "random")]
    assert kept and {r.id for r in kept} <= done


def test_a_tamt_search_too_short_for_table_1s_lr_names_the_lr_the_default_raises_it_to(tmp_path, base):
    """The default lr follows the search's length (`TamtConfig.default_lr`): a run of 200 steps without
    an lr carries the raised one in its `defaults`, so its id is not that of a run at Table 1's lr; a
    run long enough for Table 1's lr, or one that names its lr, keeps its id."""
    from ticketlab.methods.tamt.config import TamtConfig, paper_schedule_steps

    base.update(methods=["tamt-mlm", {"tamt-kd": {"lr": 1e-3}}], sparsities=[0.7], search={"steps": 200})
    base["seeds"] = {"search": [0], "finetune": [0]}
    searches = {
        r.config["method"]: r for r in expand(spec_from_dict(base, base_dir=tmp_path)) if r.kind == "search"
    }
    raised = TamtConfig(0.7).default_lr(200, paper_schedule_steps(200, 0.7))
    assert searches["tamt-mlm"].config["defaults"]["lr"] == raised == 1.4e-4
    assert "lr" not in searches["tamt-kd"].config["defaults"]
    base["search"] = {"steps": 2000}
    long = [r for r in expand(spec_from_dict(base, base_dir=tmp_path)) if r.kind == "search"]
    assert all("lr" not in r.config["defaults"] for r in long)


def test_squad_fine_tunings_name_the_window_rule_they_run_under(tmp_path, base):
    """SQuAD's windows step by doc_stride by default (TAMT's squad_convert_examples_to_features): a
    SQuAD fine-tuning names it among its defaults, so it is never a row computed with run_qa's
    overlapping windows, which a spec keeps by naming them (`squad_windows: overlap`); GLUE's keep theirs."""
    (tmp_path / "SQuAD").mkdir()
    base["tasks"]["squad"] = {"data": "SQuAD"}
    runs = [r for r in expand(load(tmp_path, base)) if r.kind == "finetune"]
    squad = {r.id for r in runs if r.config["task"] == "squad"}
    assert squad and all(r.config["defaults"] == {"squad_windows": "step"} for r in runs if r.id in squad)
    assert all("defaults" not in r.config for r in runs if r.id not in squad)
    base["tasks"]["squad"] = {"data": "SQuAD", "squad_windows": "overlap"}
    overlap = [
        r for r in expand(load(tmp_path, base)) if r.kind == "finetune" and r.config["task"] == "squad"
    ]
    assert (
        overlap and not {r.id for r in overlap} & squad and all("defaults" not in r.config for r in overlap)
    )
