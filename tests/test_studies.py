"""The remaining studies of the papers: ticket importance across tasks (Liang et al. §8), domain
adaptation (§7), TAMT's mask initialisation (Liu et al. §4.2.4), data scarcity (§4.2.6)."""

from __future__ import annotations

import csv
import json
import math
import sqlite3

import pytest
import torch

import sweep_fakes as fakes
from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.core.outputs import mark_output
from ticketlab.methods.super_tickets.importance import Importance
from ticketlab.studies import MethodSpec, expand, run_sweep, spec_from_dict
from ticketlab.studies.across import CSV_FILE, FIGURE_FILE, MD_FILE, write_importance_across
from ticketlab.studies.report import write_report
from ticketlab.studies.run_ids import make_run
from ticketlab.studies.store import Store
from ticketlab.studies.sweep.plan import FULL


def _fake_study(root, task: str, seeds: dict[int, tuple[list[list[float]], list[float]]], model=None):
    """A super-ticket study directory whose store holds one finished full-model run per seed, with
    raw importance scores (heads [L, H], FFN sub-layers [L]); `model`: the content key of the model
    weights its rows record having read."""
    root.mkdir(parents=True)
    mark_output(root, "super-ticket study")
    with Store(root) as store:
        for seed, (heads, ffn) in seeds.items():
            rel = f"runs/{task}_{seed}/importance"
            h = torch.tensor(heads)
            Importance(h / h.norm(dim=1, keepdim=True), h, torch.tensor(ffn), None, 8, {"task": task}).save(
                root / rel
            )
            run = make_run("finetune", f"ft_{task}_full_ft{seed}", {"task_label": task, "seed": seed, **FULL})
            store.add_runs([run])
            store.claim(run.id)
            store.finish(run.id, {"score": 0.5, "importance_dir": rel}, {"inputs": {"model": model}})
    return root


@pytest.fixture()
def studies(tmp_path):
    a = _fake_study(tmp_path / "a", "sst2", {1: ([[1.0, 3.0]], [2.0]), 2: ([[3.0, 1.0]], [2.0])})
    b = _fake_study(tmp_path / "b", "mrpc", {1: ([[0.0, 4.0]], [5.0])})
    c = _fake_study(tmp_path / "c", "cola", {1: ([[2.0, 2.0]], [0.0])})
    return [a, b, c]


def test_task_shares_sum_to_one_and_match_a_hand_computation(studies, tmp_path):
    rows = {r.unit: r for r in write_importance_across(studies, tmp_path / "out", dominant=0.5)}
    # per seed, a task's head scores divided by their sum: sst2 seeds (.25, .75) and (.75, .25) -> .5, .5;
    # mrpc (0, 1); cola (.5, .5). One FFN sub-layer: 1 for sst2 and mrpc, 0 for cola (sum 0).
    h0, h1, ffn = rows["L0.H0"], rows["L0.H1"], rows["L0.FFN"]
    assert h0.score == pytest.approx({"sst2": 0.5, "mrpc": 0.0, "cola": 0.5})
    assert h0.std["sst2"] == pytest.approx(math.sqrt(0.125)) and h0.n == {"sst2": 2, "mrpc": 1, "cola": 1}
    assert h0.importance == pytest.approx(1 / 3)
    assert h0.share == pytest.approx({"sst2": 0.5, "mrpc": 0.0, "cola": 0.5})
    assert h1.importance == pytest.approx(2 / 3)
    assert h1.share == pytest.approx({"sst2": 0.25, "mrpc": 0.5, "cola": 0.25})
    assert ffn.share == pytest.approx({"sst2": 0.5, "mrpc": 0.5, "cola": 0.0})
    for r in rows.values():
        assert sum(r.share.values()) == pytest.approx(1.0)
    assert h1.dominant(0.5) == "mrpc" and h1.dominant(0.6) is None
    out = tmp_path / "out"
    table = {r["unit"]: r for r in csv.DictReader((out / CSV_FILE).open())}
    assert (
        float(table["L0.H1"]["mrpc_share"]) == pytest.approx(0.5) and table["L0.H1"]["dominated_by"] == "mrpc"
    )
    assert table["L0.H1"]["sst2_n"] == "2"
    assert (out / FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert "- mrpc: 1 units: L0.H1 (0.50)" in (out / MD_FILE).read_text()


def test_importance_cli_and_its_refusals(studies, tmp_path, capsys):
    assert main(["importance", *map(str, studies), "--out", str(tmp_path / "o")]) == 0
    assert main(["importance", *map(str, studies), "--out", str(tmp_path / "o")]) == 0  # re-render
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["importance", *map(str, studies), "--out", str(mine)]) == 2  # not ours
    assert (mine / "notes.txt").read_text() == "keep"
    assert main(["importance", str(studies[0]), "--out", str(tmp_path / "x")]) == 2  # one task
    assert (
        main(["importance", *map(str, studies[:2]), "--dominant", "0.5", "--out", str(tmp_path / "x")]) == 2
    )
    # two tasks by default: halfway between an even share and all of it, 0.75 (0.5 cannot tell)
    assert main(["importance", *map(str, studies[:2]), "--out", str(tmp_path / "two")]) == 0
    assert "share >= 0.75 of 2 tasks" in (tmp_path / "two" / "importance_across.md").read_text()
    assert (
        main(
            [
                "importance",
                str(studies[0]),
                str(studies[0]),
                studies[1].as_posix(),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert main(["importance", str(tmp_path / "nothing"), str(studies[1]), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("ticketlab importance: error: ") for line in err)
    assert "1/2" in err[2] and "already read" in err[3]
    assert not (tmp_path / "x").exists()


def test_a_store_row_without_its_task_is_one_line(tmp_path):
    """A full-model row without `task_label` (a store written by hand): named, not a KeyError."""
    from ticketlab.studies.across import gather

    bad = tmp_path / "bad"
    bad.mkdir()
    mark_output(bad, "super-ticket study")
    with Store(bad) as store:
        run = make_run("finetune", "ft_full", {"seed": 1, **FULL})
        store.add_runs([run])
        store.claim(run.id)
        store.finish(run.id, {"score": 0.5, "importance_dir": "runs/x/importance"}, {})
    with pytest.raises(TicketlabError, match=f"^{bad}: run {run.id} is not a super-ticket study's row"):
        gather([bad, _fake_study(tmp_path / "a", "sst2", {1: ([[1.0, 3.0]], [2.0])})])


def test_studies_of_different_models_are_refused(studies, tmp_path):
    other = _fake_study(tmp_path / "d", "qnli", {1: ([[1.0, 1.0, 1.0]], [1.0])})
    with pytest.raises(TicketlabError, match="same model"):
        write_importance_across([studies[0], other], tmp_path / "out", dominant=0.7)
    # of one shape, but other weights (the content keys their rows recorded): refused too
    a = _fake_study(tmp_path / "e", "sst2", {1: ([[1.0, 3.0]], [2.0])}, model="sha256:aa")
    b = _fake_study(tmp_path / "f", "mrpc", {1: ([[1.0, 3.0]], [2.0])}, model="sha256:bb")
    with pytest.raises(
        TicketlabError, match=f"^{b}: its full-model runs read other model weights than {a}'s"
    ):
        write_importance_across([a, b], tmp_path / "out", dominant=0.7)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- mask initialisation


def _init_registry():
    """The fake registry with a TAMT-KD that reads `init` and logs the settings it was given."""

    def search(job):
        fakes.record(job.mask_dir.parent.parent, f"settings {job.method} {sorted(job.settings.items())}")
        return fakes.fake_search(job)

    kd = MethodSpec(
        "tamt-kd",
        search,
        "fake TAMT-KD",
        uses_corpus=True,
        uses_steps=True,
        settings=frozenset({"lr", "init"}),
        curve="save_at",
    )
    return fakes.fake_registry(**{"tamt-kd": kd})


def _init_spec(root, model_dir, methods):

    d = fakes.spec_dict(root, model_dir, methods=methods, sparsities=[0.7], data_curve=None)
    d["seeds"] = {"search": [0, 1], "finetune": [0]}
    return spec_from_dict(d, base_dir=root, registry=_init_registry())


def test_a_random_init_variant_is_its_own_method_label_with_a_figure(tmp_path, tiny_bert_dir):

    plain = _init_spec(tmp_path, tiny_bert_dir, ["full", "omp", "tamt-kd"])
    both = _init_spec(
        tmp_path,
        tiny_bert_dir,
        {"full": {}, "omp": {}, "tamt-kd": {}, "tamt-kd/random-init": {"init": "random"}},
    )
    runs = expand(both)
    assert {r.id for r in expand(plain)} < {r.id for r in runs}  # the runs of tamt-kd keep their ids
    variant = [r for r in runs if r.kind == "search" and r.config["method"] == "tamt-kd/random-init"]
    assert len(variant) == 2 and all(r.config["settings"] == {"init": "random"} for r in variant)
    assert all("/" not in r.dirname for r in runs)
    out = tmp_path / "sweep"
    assert run_sweep(
        both, out, finetune=fakes.fake_finetune, pretrain_eval=fakes.fake_pretrain_eval, log=lambda s: None
    ).ok
    logged = [c for c in fakes.calls(out) if c.startswith("settings")]
    assert logged.count("settings tamt-kd [('init', 'random')]") == 2  # the base method ran, with init
    assert logged.count("settings tamt-kd []") == 2
    report = write_report(out)
    assert "fig_mask_init.png" in report.figures and "fig_mask_init.png" not in report.skipped
    assert "](figures/fig_mask_init.png)" in report.path.read_text()
    rows = list(csv.DictReader((out / "report" / "figures" / "fig_mask_init.csv").open()))
    assert {r["method"] for r in rows} == {"tamt-kd", "tamt-kd/random-init"}
    assert {r["y"] for r in rows} == {"score", "kd_loss", "mlm_loss"}
    assert {r["search_steps"] for r in rows} == {"6", "10", "20"} and {r["n"] for r in rows} == {"2"}


def test_labels_searched_at_one_budget_draw_no_mask_init_curve(tmp_path, tiny_bert_dir):
    """Two labels of one method searched once each (IMP's paper variants) are no curve over search
    steps: the mask-initialisation figure is skipped (it drew empty score panels and single points)."""
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, sparsities=[0.7], data_curve=None, search_curve=None)
    d["methods"] = {"full": {}, "omp": {}, "tamt-kd": {}, "tamt-kd/random-init": {"init": "random"}}
    spec = spec_from_dict(d, base_dir=tmp_path, registry=_init_registry())
    out = tmp_path / "sweep"
    assert run_sweep(
        spec, out, finetune=fakes.fake_finetune, pretrain_eval=fakes.fake_pretrain_eval, log=lambda s: None
    ).ok
    report = write_report(out)  # a study figure that does not apply is left out, not listed as skipped
    assert "fig_mask_init.png" not in report.figures and "fig_mask_init" not in report.path.read_text()
    assert not (out / "report" / "figures" / "fig_mask_init.png").exists()


@pytest.mark.parametrize("label", ["tamt-kd/", "tamt-kd/a b", "tamt-kd/../x", "nope/random-init"])
def test_bad_variant_labels_are_one_config_error(tmp_path, tiny_bert_dir, label):
    from ticketlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="methods"):
        _init_spec(tmp_path, tiny_bert_dir, {"full": {}, label: {"init": "random"}})


def test_tamt_random_init_from_a_sweep_variant_is_random_at_the_exact_sparsity(tiny_bert_dir, tmp_path):
    from transformers import BertForMaskedLM

    from conftest import make_model, tiny_bert_config
    from ticketlab.masks import current_mask
    from ticketlab.methods import omp_mask
    from ticketlab.methods.ranking import pruned_count
    from ticketlab.methods.tamt.search import prepare_tamt
    from ticketlab.studies.sweep.jobs import SearchJob
    from ticketlab.studies.sweep.methods import sweep_methods

    job = SearchJob(
        model=str(tiny_bert_dir),
        method="tamt-kd",
        sparsity=0.7,
        seed=4,
        steps=10,
        save_at=[],
        settings={"init": "random"},
        corpus={"train": ["x.txt"]},  # resolved as the spec resolves it: a list
        mask_dir=tmp_path / "m",
        work_dir=tmp_path / "w",
    )
    config = sweep_methods()["tamt-kd"].configure(job).method
    assert config.init == "random" and config.seed == 4
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    omp = omp_mask(make_model(BertForMaskedLM, tiny_bert_config(), seed=0), 0.7)
    prepare_tamt(model, config)
    start = current_mask(model)
    assert set(start) == set(omp)
    for k in omp:  # per matrix: TAMT's kept count (its masker's int(s·n) pruned), mostly elsewhere
        assert int(start[k].sum()) == omp[k].numel() - pruned_count(0.7, omp[k].numel(), "floor")
        assert (start[k] & omp[k]).sum() < 0.5 * omp[k].sum()


# --------------------------------------------------------------------------- domain adaptation


def test_adaptation_subsets_are_seeded_and_nested():
    from ticketlab.studies.adapt_config import FRACTIONS, subset_size
    from ticketlab.studies.adaptation import subsets

    a, again, other = (
        subsets(5000, FRACTIONS, seed=3),
        subsets(5000, FRACTIONS, seed=3),
        subsets(5000, FRACTIONS, 4),
    )
    assert [len(a[f]) for f in FRACTIONS] == [5, 50, 500, 5000]
    assert a == again and a[0.01] != other[0.01]
    for small, large in zip(FRACTIONS, FRACTIONS[1:], strict=False):
        assert set(a[small]) < set(a[large])  # the 1% set contains the 0.1% set, and so on
    assert subset_size(300, 0.001) == 1 and subset_size(300, 1.0) is None
    with pytest.raises(TicketlabError, match="fractions"):
        subsets(10, [0.0, 0.5], seed=1)


def test_adaptation_from_a_super_ticket_study(tiny_bert_dir, tmp_path, capsys):
    from test_finetune import sentiment_rows
    from test_super import _super_config
    from ticketlab.studies.adaptation import AdaptConfig, run_adaptation, super_sources
    from ticketlab.studies.supertickets import run_super
    from ticketlab.tasks.objective import _subset

    root = tmp_path / "glue"
    (root / "SST-2").mkdir(parents=True)
    for split, n, seed in (("train", 48, 0), ("dev", 40, 1)):
        (root / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(sentiment_rows(n, seed)) + "\n"
        )
    config = _super_config(tiny_bert_dir, root, kinds=["winning"])
    run_super(config, tmp_path / "plain")  # without --keep-models: nothing to adapt from
    assert main(["adapt", str(tmp_path / "plain"), "--task", "sst2", "--out", str(tmp_path / "x")]) == 2
    assert "--keep-models" in capsys.readouterr().err and not (tmp_path / "x").exists()

    config.keep_models = True
    run_super(config, tmp_path / "kept")
    sources = super_sources(tmp_path / "kept")
    assert sorted((s.label, s.seed) for s in sources) == [
        ("full", 1),
        ("full", 2),
        ("super", 1),
        ("super", 2),
    ]
    assert all((s.mask is None) == (s.label == "full") for s in sources)
    protocol = config.finetune.replace(select_fraction=None)
    adapt = AdaptConfig(protocol, sources, [0.1, 0.5, 1.0])
    for s in sources:  # the same seeded subset for every source at a seed: a paired comparison
        ft = adapt.run_config(s, 48, 0.1)
        assert (ft.train_samples, ft.data_seed, ft.seed, ft.model) == (5, s.seed, s.seed, s.model)
        assert set(_subset(48, 5, s.seed)) < set(_subset(48, 24, s.seed))
    result = run_adaptation(adapt, tmp_path / "adapt")
    assert {(x["source"], x["fraction"], x["n_train"]) for x in result["scores"]} == {
        (label, f, n) for label in ("super", "full") for f, n in ((0.1, 5), (0.5, 24), (1.0, 48))
    }
    table = {(r["fraction"], r["source"]): r for r in result["table"]}
    assert set(table) == {(f, s) for f in (0.1, 0.5, 1.0) for s in ("super", "full", "super - full")}
    assert all(r["n"] == 2 for r in table.values())
    run = tmp_path / "adapt" / "runs" / "super_seed1_10pct" / "result.json"
    assert json.loads(run.read_text())["sparsity"] > 0  # the super ticket's units stay pruned on B
    text = (tmp_path / "adapt" / "adaptation.md").read_text()
    assert "| 10% | 5 | super - full |" in text and "(n=2)" in text
    before = run.stat().st_mtime_ns
    assert (
        main(
            [
                "adapt",
                str(tmp_path / "kept"),
                "--task",
                "sst2",
                "--data-dir",
                str(root),
                "--fractions",
                "0.1",
                "0.5",
                "1",
                "--max-steps",
                "4",
                "--batch-size",
                "8",
                "--eval-every",
                "2",
                "--lr",
                "1e-3",
                "--no-progress",
                "--out",
                str(tmp_path / "adapt"),
            ]
        )
        == 0
    )
    assert run.stat().st_mtime_ns == before  # resumed: finished runs are not redone
    # other settings for a folder that holds runs: refused before a new fraction's run is made
    args = ["adapt", str(tmp_path / "kept"), "--task", "sst2", "--data-dir", str(root), "--no-progress"]
    steps = ["--max-steps", "5", "--batch-size", "8", "--eval-every", "2", "--lr", "1e-3"]
    capsys.readouterr()
    assert main([*args, *steps, "--fractions", "0.25", "0.5", "--out", str(tmp_path / "adapt")]) == 2
    assert "with other settings (differs in: max_steps 4 -> 5)" in capsys.readouterr().err
    assert not (tmp_path / "adapt" / "runs" / "super_seed1_25pct").exists()
    # an output inside the study it reads: refused
    assert main([*args, *steps, "--out", str(tmp_path / "kept" / "adapted")]) == 2
    assert "is inside the input" in capsys.readouterr().err and not (tmp_path / "kept" / "adapted").exists()
    summary = tmp_path / "kept" / "super.json"  # a hand-edited pick: one line naming the file
    picks = json.loads(summary.read_text())
    for bad in ([{"run_id": "abc"}], [7]):
        summary.write_text(json.dumps({**picks, "picks": bad}))
        with pytest.raises(TicketlabError, match=f"^{summary}: picks: .* is not a seed's super ticket"):
            super_sources(tmp_path / "kept")
    # a pick naming another row, a ticket that did not finish, a ticket whose search row is gone:
    # refused, not adapted from without its mask (its pruned units would train on B)
    pick = picks["picks"][0]
    store = tmp_path / "kept" / "results.sqlite"
    rows = {i: (kind, json.loads(c)) for i, kind, c in _sql(store, "SELECT id, kind, config FROM runs")}
    full_id = next(i for i, (kind, c) in rows.items() if kind == "finetune" and c.get("method") == "full")
    search_id = next(i for i, (kind, _) in rows.items() if kind == "search")
    for other, state in ((full_id, "not a finished fine-tuning of a"), (search_id, "is a done search")):
        summary.write_text(json.dumps({**picks, "picks": [{**pick, "run_id": other}]}))
        with pytest.raises(TicketlabError, match=f"^{summary}: seed {pick['seed']}'s pick {other}.*{state}"):
            super_sources(tmp_path / "kept")
    summary.write_text(json.dumps(picks))
    for edit, message in (
        (f"UPDATE runs SET status = 'failed' WHERE id = '{pick['run_id']}'", "is a failed finetune run"),
        ("DELETE FROM runs WHERE kind = 'search'", "the mask it was fine-tuned under is not in the study"),
    ):
        kept = _sql(store, "SELECT * FROM runs")
        _sql(store, edit)
        with pytest.raises(TicketlabError, match=message):
            super_sources(tmp_path / "kept")
        _sql(store, "DELETE FROM runs")
        _sql(store, f"INSERT INTO runs VALUES ({', '.join('?' * len(kept[0]))})", kept)


def _sql(path, statement: str, rows: list | None = None) -> list:
    """One statement on a store, committed and closed (`rows`: executed once per row)."""
    db = sqlite3.connect(path)
    try:
        found = db.executemany(statement, rows).fetchall() if rows else db.execute(statement).fetchall()
        db.commit()
        return found
    finally:
        db.close()


# --------------------------------------------------------------------------- data scarcity


def test_data_curve_end_to_end_with_the_whole_training_set(tiny_bert_dir, tmp_path):
    """TAMT Fig. 9 on a tiny model with real fine-tuning: subnetworks and the full model on 8, 16 and
    all 48 examples (the paper's 1K, 2K, 5K and all of SST-2)."""
    from test_finetune import sentiment_rows

    root = tmp_path / "glue"
    (root / "SST-2").mkdir(parents=True)
    for split, n, seed in (("train", 48, 0), ("dev", 24, 1)):
        rows = "\n".join(sentiment_rows(n, seed))
        (root / "SST-2" / f"{split}.tsv").write_text(f"sentence\tlabel\n{rows}\n")
    d = {
        "name": "scarcity",
        "model": str(tiny_bert_dir),
        "tasks": {"sst2": {"data": str(root)}},
        "methods": ["full", "omp", "random"],
        "sparsities": [0.5],
        "seeds": {"search": [0], "finetune": [1, 2]},
        "finetune": {"steps": 2, "batch_size": 8, "eval_every": 2},
        "data_curve": {"train_sizes": [8, 16, "all"]},
    }
    spec = spec_from_dict(d, base_dir=tmp_path)
    assert spec.data_curve.train_sizes == [8, 16, None]
    runs = [r for r in expand(spec) if r.kind == "finetune"]
    # per line (full, omp, random) x 2 seeds: 8, 16 and the whole set (the main runs themselves)
    assert len(runs) == 3 * 2 * 3
    assert run_sweep(spec, tmp_path / "sweep", log=lambda s: None).ok
    report = write_report(tmp_path / "sweep")
    assert "fig9_train_size.png" in report.figures, report.skipped
    from ticketlab.studies.report import plots
    from ticketlab.studies.report.results import load_results

    res = load_results(tmp_path / "sweep")
    drawn = {}
    original = plots._band

    def spy(ax, xs, cells, c, label, marker="o"):
        drawn[label] = (list(xs), [x.n for x in cells])
        return original(ax, xs, cells, c, label, marker)

    plots._band = spy
    try:
        assert plots.score_vs_train_size(res, tmp_path / "fig9.png") is None
    finally:
        plots._band = original
    assert drawn == {m: ([8, 16, 48], [2, 2, 2]) for m in ("full", "omp 50%", "random 50%")}


def test_data_curve_sizes_are_checked(tmp_path, tiny_bert_dir):
    from ticketlab.core.errors import ConfigError

    base, registry = fakes.spec_dict(tmp_path, tiny_bert_dir), fakes.fake_registry()
    for bad in ([8, 8], [0], ["half"], []):
        with pytest.raises(ConfigError, match="data_curve.train_sizes: a non-empty list of distinct"):
            spec_from_dict(
                {**base, "data_curve": {"train_sizes": bad}},
                base_dir=tmp_path,
                registry=registry,
            )


def test_adapt_refuses_a_study_without_a_super_ticket(tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    (study / "super.json").write_text('{"picks": []}')
    (study / "results.sqlite").write_bytes(b"")  # a study's store, from its first run
    assert main(["adapt", str(study), "--task", "sst2", "--out", str(tmp_path / "out")]) == 2
    assert "no super ticket yet" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_adaptation_verdict_is_a_paired_t_test_holm_adjusted_over_fractions():
    """super - full per seed, by hand: a t interval (not a normal one, far too narrow at n = 3) and
    Holm over the fractions; no verdict with the full model at the constant predictor."""
    from ticketlab.studies.adaptation import summarise

    def scores(fraction, full, sup):
        return [
            {"fraction": fraction, "n_train": 10, "source": src, "seed": k, "score": v}
            for src, vals in (("full", full), ("super", sup))
            for k, v in enumerate(vals)
        ]

    data = scores(0.01, [70.0, 72.0, 74.0], [71.0, 75.0, 79.0])  # diffs 1, 3, 5: p 0.1217
    data += scores(0.1, [80.0, 80.0, 80.5], [82.0, 82.2, 82.3])  # diffs 2, 2.2, 1.8
    rows = {(r["fraction"], r["source"]): r for r in summarise(data, floor=50.0)}
    t1, t2 = 3 / (2 / 3**0.5), 2 / (0.2 / 3**0.5)
    p1, p2 = 1 - t1 / (t1 * t1 + 2) ** 0.5, 1 - t2 / (t2 * t2 + 2) ** 0.5
    assert rows[(0.1, "super - full")]["verdict"] == f"better (p_Holm {2 * p2:.3f})"
    # normal 95% interval of [1, 3, 5] (3 ± 2.26) excludes 0; Student's (3 ± 4.97) does not
    assert rows[(0.01, "super - full")]["verdict"] == f"within noise (p_Holm {max(p1, 2 * p2):.3f})"
    at_floor = {(r["fraction"], r["source"]): r for r in summarise(data, floor=72.0)}
    assert at_floor[(0.01, "super - full")]["verdict"] == "no verdict (floor)"


def test_a_variant_of_a_one_shot_method_loads(tmp_path, tiny_bert_dir):
    """`omp/global` is OMP with its own settings: the spec builds its config with the base method."""
    spec = _init_spec(tmp_path, tiny_bert_dir, {"full": {}, "omp": {}, "omp/global": {"ranking": "global"}})
    assert any(r.config.get("method") == "omp/global" for r in expand(spec) if r.kind == "search")
