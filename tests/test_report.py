"""Reports: every figure drawn as a valid PNG from a store filled by a fake sweep, figures without
data skipped with a reason, the winning-ticket table and averages against hand-computed values, and
every number traceable to run ids in the store."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import zlib
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from matplotlib.text import Text
from PIL import Image

import sweep_fakes as fakes
from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.studies import Store, load_spec, run_sweep, spec_from_dict
from ticketlab.studies.report import run_record, write_report
from ticketlab.studies.report.analyses import load_recipe
from ticketlab.studies.report.cells import AVG, method_label
from ticketlab.studies.report.plots import FIGURES
from ticketlab.studies.report.results import load_results
from ticketlab.studies.run_ids import make_run
from ticketlab.studies.stats import PAIRED

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory, tiny_bert_dir) -> Path:
    """A fake sweep with every study: 3 sparsities, 6 methods, search and data curves, pre-training eval."""
    root = tmp_path_factory.mktemp("report")
    methods = ["full", "omp", "random", "imp", "tamt-mlm", "tamt-kd"]
    spec = fakes.make_spec(root, tiny_bert_dir, methods=methods, sparsities=[0.5, 0.7, 0.9])
    result = run_sweep(
        spec,
        root / "sweep",
        finetune=fakes.fake_finetune,
        pretrain_eval=fakes.fake_pretrain_eval,
        log=lambda s: None,
    )
    assert result.ok
    return root / "sweep"


@pytest.fixture(scope="module")
def full_report(full_sweep):
    return write_report(full_sweep)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as im:
        im.verify()
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_every_figure_is_drawn_as_a_png(full_sweep, full_report):
    report = full_report
    assert report.skipped == {}
    # and the loss along the searches (pre-training evaluations of masks at several budgets)
    assert sorted(report.figures) == sorted([*(f for f, _, _ in FIGURES), "fig6_loss_vs_search_steps.png"])
    for path in report.figures.values():
        assert_png(path)
    text = report.path.read_text()
    for fname in report.figures:
        assert f"](figures/{fname})" in text
    with open(full_sweep / "report" / "figures" / "fig6_loss_vs_search_steps.csv") as f:
        drawn = list(csv.DictReader(f))
    curve = {(r["method"], r["sparsity"], r["y"], int(r["search_steps"])): r for r in drawn}
    losses = load_results(full_sweep).pretrain_losses().values()
    for (method, sparsity, key, steps), r in curve.items():  # every point is its masks' evaluations
        at = [
            p[key]
            for p in losses
            if (p["method"], str(p["sparsity"]), p["search_steps"]) == (method, sparsity, steps)
        ]
        assert int(r["n"]) == len(at) > 0 and float(r["mean"]) == pytest.approx(sum(at) / len(at))
    assert {m for m, *_ in curve} >= {"tamt-mlm", "tamt-kd", "imp"}
    for name in ("results.csv", "winning_tickets.csv", "pretrain_losses.csv"):
        assert (full_sweep / "report" / name).is_file()


def test_numbers_trace_back_to_runs(full_sweep, full_report):
    report = full_report
    res = load_results(full_sweep)
    with Store(full_sweep) as st:
        records = {r.id: r for r in st.runs()}
    # Every footnote of the markdown names runs that exist and are done.
    notes = re.findall(r"^\[\^\d+\]: runs (.*)$", report.path.read_text(), flags=re.M)
    assert notes
    for ids in notes:
        assert all(records[i].status == "done" for i in ids.split(", "))
    # Each results.csv row's mean is the mean of the scores of the runs it names.
    rows = list(csv.DictReader((full_sweep / "report" / "results.csv").open()))
    grids = {r["grid"] for r in rows}
    assert grids == {"main", "curve"}
    for row in rows:
        ids = row["run_ids"].split()
        # an average's n counts seed pairs, each with one run per task
        assert len(ids) == int(row["n"]) * (len(res.tasks) if row["task"] == AVG else 1)
        if row["task"] != AVG:
            scores = [records[i].metrics["score"] for i in ids]
            assert float(row["mean"]) == pytest.approx(sum(scores) / len(scores), abs=1e-4)
            assert {records[i].config["task_label"] for i in ids} == {row["task"]}
    # The main table: tamt-mlm at 70% pools 2 masks x 2 fine-tuning seeds, with the fake's known scores.
    cell = res.cells()[("tamt-mlm", 0.7, "a")]
    expected = [fakes.expected_score(records[i].config) for i in cell.run_ids]
    assert cell.n == 4 and cell.mean == pytest.approx(sum(expected) / 4)
    # 100 * (0.9 - 0.6 * 0.7**2 + 0.04 * 0.7 - 0.1 / 21) + mean seed offsets (0.5 + 0.15) = 63.574
    assert "63.6 ± 0.6" in report.main_table


def test_cli_report_and_run_lookup(full_sweep, capsys):
    assert main(["report", str(full_sweep), "--out", str(full_sweep / "r2")]) == 0
    out = capsys.readouterr().out
    assert f"report: {full_sweep / 'r2' / 'report.md'}" in out and "tamt-mlm" in out
    res = load_results(full_sweep)
    some = res.scores[0].id
    assert main(["report", str(full_sweep), "--run", some[:10]]) == 0
    assert f'"id": "{some}"' in capsys.readouterr().out
    assert main(["report", str(full_sweep), "--run", "zzzz"]) == 2
    assert run_record(full_sweep, some[:10]).id == some  # the Python API's look-up, as the CLI's
    assert main(["report", str(full_sweep.parent / "nothing")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_tasks_of_different_sizes_are_no_data_scarcity_curve(tmp_path, tiny_bert_dir):
    """Fig. 9 needs one task fine-tuned on two or more sizes. A subset of one task and all of another
    (minilm-mlm: SST-2 on 10,000 examples, MRPC and CoLA on all) are two sizes of the method, not a
    curve: the figure was drawn, one point per task and an empty average panel."""
    tasks = {"a": {"data": "data/a", "train_size": 4}, "b": {"data": "data/b"}}
    kw = dict(methods=["full", "omp"], pretrain_eval=None, search_curve=None, data_curve=None)
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, tasks=tasks, **kw)
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    report = write_report(tmp_path / "sweep")
    assert "training-set sizes" in report.skipped["fig9_train_size.png"]


def test_figures_without_data_are_skipped_with_a_reason(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        methods=["full", "omp", "random"],
        pretrain_eval=None,
        search_curve=None,
        data_curve=None,
    )
    run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None)
    report = write_report(tmp_path / "sweep")
    assert set(report.skipped) == {
        "fig5_pretrain_loss_vs_score.png",
        "fig6_search_cost.png",
        "fig9_train_size.png",
    }
    assert "pretrain_eval" in report.skipped["fig5_pretrain_loss_vs_score.png"]
    text = report.path.read_text()
    for fname, reason in report.skipped.items():
        assert not (tmp_path / "sweep" / "report" / "figures" / fname).exists()
        assert reason in text
    for path in report.figures.values():
        assert_png(path)
    # Copied elsewhere without its masks, the store still renders; the mask figures say why not.
    for d in (tmp_path / "sweep" / "masks").iterdir():
        for f in d.iterdir():
            f.unlink()
    again = write_report(tmp_path / "sweep")
    assert "mask" in again.skipped["fig8_similarity.png"] and "fig3_score_vs_sparsity.png" in again.figures


# --------------------------------------------------------------------------- hand-computed tables


def fill(
    sweep_dir: Path,
    scores: dict[tuple[str, float, str], list[float]],
    masks: dict[str, int] | None = None,
    per_seed: bool = False,
    shared: bool = False,
) -> None:
    """A store with fine-tuning results only (no training, no mask files): one search per (method, sparsity,
    mask seed), k fine-tunings per mask with seeds of its own (a sweep's default: no seed serves two masks;
    `shared`: seeds 0..k-1 for every mask, a spec's pinned `seeds: finetune`). Scores are listed mask
    seed-major: [m0f0, m0f1, m1f0, m1f1, ...]. `masks`: masks per method (default: 1 for full and omp, 2
    for the others). `per_seed`: a super-ticket study's design, mask k fine-tuned with seed k only (the
    full model: one run per seed)."""
    sweep_dir.mkdir()
    runs, done = [], {}
    for (label, s, task), values in scores.items():
        method, _, source = label.partition("@")  # imp-task@x: a ticket found on task x
        n_masks = (masks or {}).get(method, 1 if method in ("full", "omp") else 2)
        per = len(values) // n_masks
        for k, v in enumerate(values):
            mseed, fseed = (None, k) if n_masks == 1 else (k // per, k % per)
            if not shared:  # the mask's own seeds, the same on every task (an average pairs them)
                fseed += 10 * (zlib.crc32(f"{method}|{s}|{mseed}".encode()) % 100_000)
            if per_seed:
                mseed, fseed = (None if method == "full" else k), k
            mask, found_on = None, {"source": source} if source else {}
            if method != "full":
                what = {"method": method, "sparsity": s, "seed": mseed, "model": "m", "settings": {}}
                what |= {"source": {"label": source, "task": source, "data": None}} if source else {}
                search = make_run("search", "s", what | {"corpus": None, "steps": None, "save_at": []})
                done[search.id] = (search, {"mask_dir": "masks/none", "intermediate": []})
                mask = {"search": search.id, "step": None}
            config = {"model": "m", "task": task, "task_label": task, "data": None, "seed": fseed}
            config |= {"train_size": None, "settings": {}, "mask": mask, "method": method} | found_on
            config |= {"sparsity": s if method != "full" else 0.0, "mask_seed": mseed, "search_steps": None}
            run = make_run("finetune", "f", config)
            done[run.id] = (run, {"metric": "accuracy", "score": v, "final_score": v})
    runs = [r for r, _ in done.values()]
    with Store(sweep_dir) as st:
        st.add_runs(runs)
        for run_id, (_, metrics) in done.items():
            assert st.claim(run_id)
            st.finish(run_id, metrics, {})


def test_winning_tickets_and_averages_by_hand(tmp_path):
    fill(
        tmp_path / "sweep",
        {
            ("full", 0.0, "x"): [80.0, 82.0, 84.0],  # mean 82, sample std 2: the bar is 80
            ("full", 0.0, "y"): [60.0, 60.0, 66.0],  # mean 62, sample std sqrt(12) = 3.464
            ("omp", 0.5, "x"): [81.0, 81.0, 81.0],  # 81 >= 80: wins
            ("omp", 0.7, "x"): [79.5, 80.5, 80.0],  # exactly 80: wins (the bar is inclusive)
            ("omp", 0.9, "x"): [70.0, 71.0, 72.0],  # loses
            ("omp", 0.5, "y"): [59.0, 59.0, 59.0],  # 59 >= 58.536: wins
            ("omp", 0.7, "y"): [58.0, 58.0, 58.0],  # 58 < 58.536: loses
            ("omp", 0.9, "y"): [10.0, 10.0, 10.0],
            ("random", 0.5, "x"): [79.0, 79.9, 79.0, 79.9],  # 79.45: loses; no sparsity wins
            ("random", 0.5, "y"): [50.0, 50.0, 50.0, 50.0],
        },
    )
    # A run whose process was killed: the report counts it as interrupted, not as running.
    what = {"model": "m", "task": "x", "task_label": "x", "data": None, "seed": 9, "train_size": None}
    what |= {
        "settings": {},
        "mask": None,
        "method": "full",
        "sparsity": 0.0,
        "mask_seed": None,
        "search_steps": None,
    }
    gone = make_run("finetune", "killed", what)
    with Store(tmp_path / "sweep") as st:
        st.add_runs([gone])
        st.claim(gone.id)
        st.db.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (gone.id,))
    res = load_results(tmp_path / "sweep")
    cells = res.cells()
    assert cells[("full", 0.0, "x")].std == pytest.approx(2.0)
    assert cells[("full", 0.0, "y")].std == pytest.approx(12**0.5)
    # The average pairs tasks by seed: full per-seed averages (80+60)/2, (82+60)/2, (84+66)/2.
    full_avg = cells[("full", 0.0, AVG)]
    assert full_avg.values == pytest.approx([70.0, 71.0, 75.0])
    assert full_avg.std == pytest.approx(((70 - 72) ** 2 + (71 - 72) ** 2 + (75 - 72) ** 2) ** 0.5 / 2**0.5)
    # random has 2 masks x 2 fine-tuning seeds = 4 runs per cell
    assert cells[("random", 0.5, "x")].n == 4 and cells[("random", 0.5, "x")].mean == pytest.approx(79.45)
    wins = {(w.method, w.task): w.sparsity for w in res.winning_tickets()}
    assert wins[("omp", "x")] == 0.7
    assert wins[("omp", "y")] == 0.5
    assert wins[("random", "x")] is None and wins[("random", "y")] is None
    # avg: the bar is 72 - sqrt(7) = 69.354; omp 0.5 -> (81 + 59) / 2 = 70 wins, 0.7 -> 69 loses.
    assert wins[("omp", AVG)] == 0.5
    report = write_report(tmp_path / "sweep")
    rows = {
        (r["method"], r["task"]): r
        for r in csv.DictReader((tmp_path / "sweep/report/winning_tickets.csv").open())
    }
    assert rows[("omp", "x")]["winning_sparsity"] == "0.7" and rows[("omp", "x")]["full_std"] == "2.0000"
    assert rows[("random", "x")]["winning_sparsity"] == ""
    text = report.path.read_text()
    assert "Runs: 37 done, 1 interrupted." in text
    assert "| omp | 70% (80.0 ± 0.5 (n=3)[^" in text
    # The figure's points and bands, as drawn: omp at 70% on x is 80 ± 0.5 over 3 runs.
    drawn = {
        (r["method"], r["task"], float(r["sparsity"])): r
        for r in csv.DictReader((tmp_path / "sweep/report/figures/fig3_score_vs_sparsity.csv").open())
    }
    point = drawn[("omp", "x", 0.7)]
    assert int(point["n"]) == 3 and float(point["mean"]) == pytest.approx(80.0)
    assert (float(point["lower"]), float(point["upper"])) == pytest.approx((79.5, 80.5))
    assert float(drawn[("full", "y", 0.0)]["std"]) == pytest.approx(12**0.5)
    assert float(drawn[("random", "x", 0.5)]["lower"]) == pytest.approx(
        79.45 - cells[("random", 0.5, "x")].std
    )
    assert "| random | none | none | none |" in text
    # No mask files in this store: the mask figures are skipped, the others drawn.
    assert "fig3_score_vs_sparsity.png" in report.figures


@pytest.mark.parametrize("block", [{"max_blocks": 8}, {}])  # {}: every default
def test_pre_training_evaluations_the_spec_asks_for_are_pending_not_missing(tmp_path, tiny_bert_dir, block):
    """A partial store of a spec with `pretrain_eval:` must not tell the user to add that block."""
    small = dict(methods=["full", "omp"], sparsities=[0.5], search_curve=None, data_curve=None)
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **small, pretrain_eval=block)
    assert spec.pretrain_eval is not None
    run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, max_runs=1, log=lambda s: None)
    report = write_report(tmp_path / "sweep")
    assert report.skipped["fig5_pretrain_loss_vs_score.png"] == "no pre-training evaluation has finished yet"
    text = report.path.read_text()
    assert "_No pre-training evaluation has finished yet._" in text
    assert "add `pretrain_eval: {}`" not in text


def test_report_shows_the_last_spec_not_earlier_versions(tmp_path, tiny_bert_dir):
    """Re-sweeping with another fine-tuning lr adds runs; the report must not pool old and new."""
    small = dict(
        methods=["full", "omp"], sparsities=[0.5], pretrain_eval=None, search_curve=None, data_curve=None
    )
    first = fakes.make_spec(tmp_path, tiny_bert_dir, **small, finetune={"steps": 5, "lr": 1e-4})
    second = fakes.make_spec(tmp_path, tiny_bert_dir, **small, finetune={"steps": 5, "lr": 1e-3})
    for spec in (first, second):
        assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    res = load_results(tmp_path / "sweep")
    assert res.left_out == 8  # full and omp x 2 tasks x 2 seeds, with the first lr
    assert res.cells()[("omp", 0.5, "a")].n == 2
    assert load_results(tmp_path / "sweep", all_runs=True).cells()[("omp", 0.5, "a")].n == 4
    text = write_report(tmp_path / "sweep").path.read_text()
    assert "8 runs of earlier versions of the spec are left out" in text


def test_a_sweep_run_in_stages_is_reported_against_its_whole_spec(tmp_path, tiny_bert_dir, capsys):
    """Stages (smaller specs with the same settings) share run ids with the whole spec: --spec shows
    the whole plan, what is done and what is still pending; by default the last stage is shown."""
    small = dict(methods=["full", "omp"], pretrain_eval=None, search_curve=None, data_curve=None)
    whole = fakes.spec_dict(tmp_path, tiny_bert_dir, **small)  # omp at 50% and 70%
    (tmp_path / "whole.yaml").write_text(yaml.safe_dump(whole))
    stage = spec_from_dict({**whole, "sparsities": [0.5]}, base_dir=tmp_path, registry=fakes.fake_registry())
    assert run_sweep(stage, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    staged = write_report(tmp_path / "sweep", tmp_path / "stage").path.read_text()
    assert "Runs: 9 done." in staged  # full and omp 50%: 2 tasks x 2 seeds each, and the OMP search
    assert (
        main(
            [
                "report",
                str(tmp_path / "sweep"),
                "--out",
                str(tmp_path / "whole"),
                "--spec",
                str(tmp_path / "whole.yaml"),
            ]
        )
        == 0
    )
    text = (tmp_path / "whole" / "report.md").read_text()
    assert "Runs: 9 done, 5 pending" in text  # omp 70%: its search and 4 fine-tunings
    other = {**whole, "methods": ["full"], "finetune": {**whole["finetune"], "lr": 1.0}}  # no run in common
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(TicketlabError, match="other.yaml: none of its runs is in"):
        write_report(tmp_path / "sweep", tmp_path / "other", spec=tmp_path / "other.yaml")
    with pytest.raises(TicketlabError, match="other.yaml: none of its runs is in"):  # a spec read
        write_report(tmp_path / "sweep", tmp_path / "other", spec=load_spec(tmp_path / "other.yaml"))
    res = load_results(tmp_path / "sweep", plan=([], {}))
    assert res.cells() == {} and res.left_out == 9


def test_no_winning_verdict_where_the_full_model_is_at_a_constant_predictors_score(tmp_path, tiny_bert_dir):
    """Task a's dev set is 99% one class: the full model (fake scores 90 and 91) is below that floor,
    so no mask is called winning there; task b has no dev file here: no floor, the usual verdict."""
    small = dict(
        methods=["full", "omp"], sparsities=[0.5], pretrain_eval=None, search_curve=None, data_curve=None
    )
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **small)
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    rows = ["text\tlabel", *(f"sentence {i}\t{int(i > 0)}" for i in range(100))]
    (tmp_path / "data" / "a" / "dev.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "data" / "b" / "dev.tsv").unlink()
    res = load_results(tmp_path / "sweep")
    assert res.floors == {"a": pytest.approx(99.0)}
    wins = {(w.method, w.task): w for w in res.winning_tickets()}
    assert wins[("omp", "a")].at_floor and wins[("omp", "a")].sparsity is None
    assert not wins[("omp", "b")].at_floor and wins[("omp", "b")].sparsity is None  # 75 < 90.5 - 0.7
    text = write_report(tmp_path / "sweep").path.read_text()
    assert (
        "A constant predictor (one label for every dev example, the best such label) scores a 99.0." in text
    )
    assert "On a the full model is within one std of that floor" in text
    assert "| omp | floor | none | floor |" in text  # avg: a task in it at the floor, no verdict
    assert wins[("omp", "avg")].at_floor and wins[("omp", "avg")].reason == "floor"
    with open(tmp_path / "sweep" / "report" / "winning_tickets.csv") as f:
        table = {r["task"]: r for r in csv.DictReader(f) if r["method"] == "omp"}
    assert table["a"]["winning_sparsity"] == "floor" and table["a"]["constant_predictor"] == "99.0000"


def test_the_floor_is_scored_on_the_dev_part_the_scores_are_read_on(tmp_path, tiny_bert_dir):
    """With `select_fraction` a run's score is read on the report part of dev (the other part picks
    its step): the constant predictor is scored there too, cut as the fine-tuning cuts it. On the
    whole dev set below, class 1 is 60%; on the report part of the seeded half it is not."""
    import numpy as np

    from ticketlab.data.features import Features
    from ticketlab.tasks.evaluation import split_dev

    small = dict(methods=["full"], sparsities=[0.5], pretrain_eval=None, search_curve=None, data_curve=None)
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, finetune={"steps": 5, "select_fraction": 0.5}, **small)
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    labels = [1, 1, 1, 0, 0, 0, 1, 0, 1, 1]  # 60% class 1; all of the report part (seed 0) is 1
    rows = ["text\tlabel", *(f"sentence {i}\t{y}" for i, y in enumerate(labels))]
    (tmp_path / "data" / "a" / "dev.tsv").write_text("\n".join(rows) + "\n")
    # the report part as the fine-tuning's objective cuts it (select_seed 0, the default)
    _, report = split_dev(Features({"labels": np.asarray(labels)}), 0.5, 0)
    shown = report.columns["labels"].tolist()
    want = 100 * max(shown.count(0), shown.count(1)) / len(shown)
    assert want != 60.0  # this seed's report part is not the whole set's mix (else the test shows nothing)
    assert load_results(tmp_path / "sweep").floors["a"] == pytest.approx(want)


def test_no_comparison_or_correlation_on_a_task_where_the_full_model_is_at_its_floor(tmp_path, tiny_bert_dir):
    """Task a's dev set is 99% one class (the fake full model scores 90-91, below it): the task was
    not learnt, so random − omp and loss ↔ score on a get 'floor' and no p (out of the Holm family);
    task b and the average over tasks keep their tests."""
    small = dict(
        methods=["full", "omp", "random"],
        sparsities=[0.5],
        seeds={"search": [0, 1, 2], "finetune": [0, 1]},
        search_curve=None,
        data_curve=None,
    )
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **small)
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    rows = ["text\tlabel", *(f"sentence {i}\t{int(i > 0)}" for i in range(100))]
    (tmp_path / "data" / "a" / "dev.tsv").write_text("\n".join(rows) + "\n")
    res = load_results(tmp_path / "sweep")
    comps = {c.task: c for c in res.comparisons()}
    assert comps["a"].verdict == "floor" and comps["a"].p is None and comps["a"].p_holm is None
    assert comps["b"].p is not None and comps[AVG].p is not None
    claims = load_recipe(ROOT / "recipes" / "tamt" / "claims.py")  # TAMT's claim 2: loss predicts score
    corr = {(c.task, c.loss): c for c in claims.correlations(res)}
    assert corr[("a", "mlm_loss")].verdict == "floor" and corr[("a", "mlm_loss")].p is None
    assert corr[("b", "mlm_loss")].why_not is None
    text = write_report(tmp_path / "sweep").path.read_text()
    assert "| random − omp | 50% | a |" in text and "| floor |" in text


def test_pretraining_losses_group_by_target_sparsity(full_sweep, full_report):
    """Masks of two seeds reach 70.0000% and 70.0010%: one row per (method, target sparsity)."""
    text = full_report.path.read_text()
    section = text[text.index("Dev-set pre-training losses") :].split("\n#")[0]
    rows = [line for line in section.splitlines() if line.startswith("| tamt-mlm ")]
    assert [r.split("|")[2].strip() for r in rows] == ["50%", "70%", "90%"]
    csv_rows = list(csv.DictReader((full_sweep / "report" / "pretrain_losses.csv").open()))
    assert {r["sparsity"] for r in csv_rows if r["method"] == "tamt-mlm"} == {"0.5", "0.7", "0.9"}
    assert all(r["achieved_sparsity"] for r in csv_rows)


def test_welch_over_mask_means_by_hand(tmp_path):
    """A deterministic one-mask method (OMP) against another (its global variant): Welch over their
    fine-tuning seeds; a stochastic method with one mask (TAMT, random) gets no test and says why."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [80.0, 82.0, 84.0],  # mean 82, var 4
            ("omp/global", 0.5, "x"): [81.0, 85.0, 89.0],  # mean 85, var 16
            ("tamt-mlm", 0.5, "x"): [81.0, 85.0, 89.0],  # one searched mask
            ("random", 0.5, "x"): [78.0, 79.8, 82.2],
        },
        masks={"tamt-mlm": 1, "random": 1, "omp/global": 1},
    )
    res = load_results(tmp_path / "sweep")
    p = res.paired("omp/global", "omp", 0.5, "x")
    assert p.masks == (1, 1) and p.seeds == (3, 3) and p.mean == pytest.approx(3.0)
    va, vb = 16 / 3, 4 / 3
    assert p.se == pytest.approx((va + vb) ** 0.5)
    assert p.df == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 2))  # Satterthwaite: 2.94
    from scipy import stats

    assert p.p == pytest.approx(2 * stats.t.sf(3 / p.se, p.df))
    half = stats.t.ppf(0.975, p.df) * p.se
    assert p.ci95 == pytest.approx((3 - half, 3 + half))
    for method in ("tamt-mlm", "random"):
        q = res.paired(method, "omp", 0.5, "x")
        assert q.p is None and q.se is None and q.mde is None and q.ci95 is None
        assert q.verdict == "search variance not estimated (1 mask)"
    comps = {(c.a.method, c.b.method): c for c in res.comparisons()}
    assert {k for k, c in comps.items() if c.p is not None} == {("omp/global", "omp")}
    assert comps[("omp/global", "omp")].p_holm == pytest.approx(p.p)  # a family of one test
    write_report(tmp_path / "sweep")
    rows = list(csv.DictReader((tmp_path / "sweep/report/paired.csv").open()))
    row = next(r for r in rows if r["a"] == "omp/global")
    assert row["mean_diff"] == "3.0000" and row["p"] == repr(p.p) and row["p_holm"] == f"{p.p:.4f}"
    assert (row["masks_a"], row["seeds_a"], row["masks_b"], row["seeds_b"]) == ("1", "3", "1", "3")
    assert len(row["run_ids"].split()) == 6
    for r in rows:
        if r["a"] in ("tamt-mlm", "random"):
            assert r["p"] == r["p_holm"] == r["mde80"] == ""
            assert r["verdict"] == "search variance not estimated (1 mask)"
    text = (tmp_path / "sweep/report/report.md").read_text()
    assert f"| omp/global − omp | 50% | x | 1×3 vs 1×3 | +3.00 ± {p.se:.2f} SE |" in text
    assert "Holm family: the 1 tests of this report" in text
    assert "2 search variance not estimated (1 mask)" in text


def test_masks_are_the_unit_and_no_mask_is_paired_with_another(tmp_path):
    """Fine-tuning noise is tiny but TAMT's three masks differ by 20 points: the test sees their
    spread. Two methods with three masks each: Welch over the mask means, whatever their seeds."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [80.0, 80.1, 80.2],  # one mask: mean 80.1, seed variance 0.01
            ("tamt-mlm", 0.5, "x"): [70.0, 70.1, 70.2, 90.0, 90.1, 90.2, 81.0, 81.1, 81.2],
            ("random", 0.5, "x"): [60.0, 60.1, 60.2, 75.0, 75.1, 75.2, 70.0, 70.1, 70.2],
        },
        masks={"tamt-mlm": 3, "random": 3},
    )
    res = load_results(tmp_path / "sweep")
    p = res.paired("tamt-mlm", "omp", 0.5, "x")
    assert p.masks == (3, 1) and p.seeds == (3, 3) and p.a.means == pytest.approx([70.1, 90.1, 81.1])
    va = sum((m - 241.3 / 3) ** 2 for m in (70.1, 90.1, 81.1)) / 2 / 3
    assert p.mean == pytest.approx(241.3 / 3 - 80.1) and p.se == pytest.approx((va + 0.01 / 3) ** 0.5)
    assert p.p > 0.9 and p.verdict == "within noise"
    q = res.paired("tamt-mlm", "random", 0.5, "x")
    vb = sum((m - 205.3 / 3) ** 2 for m in (60.1, 75.1, 70.1)) / 2 / 3
    assert q.masks == (3, 3) and q.se == pytest.approx((va + vb) ** 0.5)
    assert q.df == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 2))
    # reordering one method's masks (another "pairing") changes nothing: no pairing
    assert q.mean == pytest.approx(36 / 3) and len(q.run_ids) == 18
    text = write_report(tmp_path / "sweep").path.read_text()
    assert f"| tamt-mlm − omp | 50% | x | 3×3 vs 1×3 | +0.33 ± {p.se:.2f} SE |" in text


def test_null_rejection_rate_by_simulation():
    """The size of the comparison's design (`stats.welch`, `stats.t_test`: Welch on the means of
    per-mask means, Satterthwaite's df) under the null, by simulation: 3 masks × 3 fine-tuning seeds
    of a stochastic method against OMP's one mask × 3 seeds, and against another 3 × 3 method, for
    mask-to-seed variance ratios from 0.1 to 10: at most 5% within Monte-Carlo error. A naive design
    that takes the 9 runs as independent (ignores the masks) rejects far more where the masks vary,
    and treating one searched mask as fixed (the old one-mask test) more still: the check can fail."""
    import numpy as np

    from ticketlab.studies.stats import t_test, welch

    rng = np.random.default_rng(35)
    reps = 4000
    bound = 0.05 + 2 * (0.05 * 0.95 / reps) ** 0.5  # 5% plus two Monte-Carlo standard errors
    naive = {}
    for ratio in (0.1, 0.3, 1.0, 3.0, 10.0):
        for b_masks in (1, 3):
            a = rng.normal(0, ratio**0.5, (reps, 3, 1)) + rng.normal(0, 1, (reps, 3, 3))
            b = rng.normal(0, ratio**0.5 if b_masks > 1 else 0, (reps, b_masks, 1))
            b = b + rng.normal(0, 1, (reps, b_masks, 3))
            ma = a.mean(2)
            vb = b.mean(2).var(1, ddof=1) / b_masks if b_masks > 1 else b[:, 0].var(1, ddof=1) / 3
            diff = ma.mean(1) - b.mean((1, 2))
            p = t_test(diff, *welch([(ma.var(1, ddof=1) / 3, 2), (vb, 2)]))
            assert (p < 0.05).mean() <= bound, (ratio, b_masks, (p < 0.05).mean())
            runs = a.reshape(reps, 9)  # naive: nine independent runs against b's
            flat = b.reshape(reps, -1)
            n_b = flat.shape[1]
            parts = [(runs.var(1, ddof=1) / 9, 8), (flat.var(1, ddof=1) / n_b, n_b - 1)]
            naive[(ratio, b_masks)] = (t_test(runs.mean(1) - flat.mean(1), *welch(parts)) < 0.05).mean()
        one = rng.normal(0, ratio**0.5, (reps, 1)) + rng.normal(0, 1, (reps, 3))  # one searched mask
        base = rng.normal(0, 1, (reps, 3))
        d = one - base  # the old test: paired over fine-tuning seeds, the mask taken as fixed
        fixed = (t_test(d.mean(1), d.std(1, ddof=1) / 3**0.5, 2) < 0.05).mean()
        if ratio >= 1:  # measured: 0.11 at 1, 0.49 at 10
            assert fixed > bound + 0.04, (ratio, fixed)
    assert naive[(10.0, 1)] > 0.15 and naive[(10.0, 3)] > 0.15, naive


def test_masks_as_the_unit_on_the_task_average(tmp_path):
    """On the average over tasks a mask's value is the mean over tasks of its per-task means."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [80.0, 80.0],
            ("omp", 0.5, "y"): [60.0, 62.0],
            ("random", 0.5, "x"): [70.0, 72.0, 90.0, 90.0],
            ("random", 0.5, "y"): [50.0, 50.0, 61.0, 61.0],
        },
    )
    p = load_results(tmp_path / "sweep").paired("random", "omp", 0.5, AVG)
    # omp: (80 + 61) / 2 = 70.5; random's masks: (71 + 50) / 2 = 60.5 and (90 + 61) / 2 = 75.5
    assert p.a.means == pytest.approx([60.5, 75.5]) and p.b.means == pytest.approx([70.5])
    assert p.b.within == pytest.approx([70.0, 71.0])  # OMP's per-seed task averages
    assert p.mean == pytest.approx(-2.5)


def test_verdict_reads_the_holm_adjusted_p():
    from ticketlab.studies.report.comparison import Paired
    from ticketlab.studies.stats import holm

    c = Paired("a", "b", 0.5, "x", [0, 1, 2], [2.0, 3.0, 4.0], [])
    t = 3 / (1 / 3**0.5)
    assert c.p == pytest.approx(1 - t / (t * t + 2) ** 0.5)  # 0.035: below 0.05 alone
    assert c.verdict == "a > b"
    c.p_holm = holm([c.p, 0.04])[0]  # the smaller of two tests: 2 x 0.035
    assert c.p_holm == pytest.approx(2 * c.p) and c.verdict == "within noise"


def test_identical_scores_are_no_test_and_leave_the_holm_family(tmp_path):
    """Two methods at the same constant predictor on every seed: no p, no MDE, 'identical', and
    the correction of the real tests is over the real tests only (not inflated by non-tests)."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [80.0, 82.0, 84.0],
            ("random", 0.5, "x"): [78.0, 79.8, 82.2] * 2,  # two masks, each 2 below omp
            ("omp", 0.5, "y"): [50.0, 50.0, 50.0],
            ("random", 0.5, "y"): [50.0] * 6,  # both at the floor: identical
        },
    )
    res = load_results(tmp_path / "sweep")
    comps = {c.task: c for c in res.comparisons() if c.task in ("x", "y")}
    same = comps["y"]
    assert same.p is None and same.mde is None and same.p_holm is None and same.verdict == "identical"
    # the average's differences are not all zero, so it is a test: x and avg make the family of two
    tests = [c for c in res.comparisons() if c.p is not None]
    assert {c.task for c in tests} == {"x", "avg"}
    px, pavg = comps["x"].p, next(c.p for c in tests if c.task == "avg")
    by_hand = min(1.0, 2 * px) if px <= pavg else max(min(1.0, 2 * pavg), px)  # Holm over two, not three
    assert comps["x"].p_holm == pytest.approx(by_hand)


def test_two_sides_without_spread_are_no_test_not_a_p_of_zero(tmp_path):
    """minilm-mlm's MRPC after its first fine-tuning seeds: three TAMT masks at 69.02 each, OMP's
    seeds at 67.79 each. Welch's SE is 0 there and its p was 0, printed as 'tamt-mlm > omp' (holds):
    a verdict from two near-constant predictors 4 dev examples apart. Now no test ('no spread'),
    outside the Holm family; one side with spread is still a test."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [67.79, 67.79],
            ("tamt-mlm", 0.5, "x"): [69.02] * 3,
            ("omp", 0.5, "y"): [67.79, 67.79],
            ("tamt-mlm", 0.5, "y"): [69.02, 68.4, 69.3],
        },
        masks={"tamt-mlm": 3},
    )
    res = load_results(tmp_path / "sweep")
    comps = {c.task: c for c in res.comparisons() if c.a.method == "tamt-mlm" and c.b.method == "omp"}
    flat, spread = comps["x"], comps["y"]
    assert flat.why_not == "no spread" and flat.verdict == "no spread"
    assert flat.p is None and flat.se is None and flat.mde is None and flat.p_holm is None
    assert spread.why_not is None and spread.se > 0 and spread.p is not None and spread.p_holm is not None
    text = write_report(tmp_path / "sweep").path.read_text()
    assert "no test (no spread)" in text and "tamt-mlm > omp at 50% on x: holds" not in text


def test_no_winning_verdict_from_one_run(tmp_path):
    """One fine-tuning of the full model has no std: 'mean >= full - 1 std' is noise; one of the
    ticket likewise."""
    fill(tmp_path / "sweep", {("full", 0.0, "x"): [80.0], ("omp", 0.5, "x"): [85.0]})
    w = {(w.method, w.task): w for w in load_results(tmp_path / "sweep").winning_tickets()}[("omp", "x")]
    assert w.sparsity is None and w.reason == "one run" and not w.at_floor
    fill(tmp_path / "two", {("full", 0.0, "x"): [80.0, 81.0, 82.0], ("omp", 0.5, "x"): [85.0]})
    w = {(w.method, w.task): w for w in load_results(tmp_path / "two").winning_tickets()}[("omp", "x")]
    assert w.sparsity is None and w.reason == "one run"
    text = write_report(tmp_path / "two").path.read_text()
    assert "| omp | one run |" in text


def test_a_method_with_nothing_fine_tuned_on_a_task_is_no_runs_not_none(tmp_path):
    """A partial sweep: random has runs on y only. On x it neither wins nor loses ('none' would say
    it lost at every sparsity); its x column says 'no runs'."""
    fill(
        tmp_path / "sweep",
        {
            ("full", 0.0, "x"): [80.0, 81.0, 82.0],
            ("full", 0.0, "y"): [70.0, 71.0, 72.0],
            ("omp", 0.5, "x"): [60.0, 61.0],  # loses on x: 'none'
            ("random", 0.5, "y"): [71.0, 71.5],
        },
    )
    w = {(w.method, w.task): w for w in load_results(tmp_path / "sweep").winning_tickets()}
    assert w[("random", "x")].reason == "no runs" and w[("random", "x")].sparsity is None
    assert w[("omp", "x")].reason is None and w[("omp", "x")].sparsity is None
    assert w[("random", "y")].sparsity == 0.5
    text = write_report(tmp_path / "sweep").path.read_text()
    assert "| random | no runs | 50% (" in text and "| omp | none |" in text


def test_transfer_matrix_by_hand(tmp_path):
    fill(
        tmp_path / "sweep",
        {
            ("full", 0.0, "x"): [80.0, 82.0, 84.0],  # 82 ± 2
            ("full", 0.0, "y"): [60.0, 60.0, 66.0],  # 62 ± 3.464
            ("imp-task@x", 0.5, "x"): [83.0] * 4,  # +0.5 std: wins
            ("imp-task@x", 0.5, "y"): [55.0] * 4,  # -2.02 std: loses
            ("imp-task@y", 0.5, "x"): [79.0] * 4,  # -1.5 std: loses
            ("imp-task@y", 0.5, "y"): [62.0] * 4,  # 0 std: wins
            ("imp", 0.5, "x"): [81.0] * 4,  # the MLM ticket: -0.5 std, wins
        },
    )
    res = load_results(tmp_path / "sweep")
    assert "imp-task@x" in res.methods and "imp-task@y" in res.methods
    got = {(c.source, c.target): c for c in res.transfer()}
    assert set(got) == {("x", "x"), ("x", "y"), ("y", "x"), ("y", "y"), ("mlm", "x")}
    assert got[("x", "x")].delta_std == pytest.approx(0.5) and got[("x", "x")].winning
    assert got[("x", "y")].delta_std == pytest.approx(-7 / 12**0.5) and not got[("x", "y")].winning
    assert got[("y", "x")].delta_std == pytest.approx(-1.5) and not got[("y", "x")].winning
    assert got[("y", "y")].winning and got[("mlm", "x")].delta_std == pytest.approx(-0.5)
    assert got[("x", "y")].cell.n == 4
    report = write_report(tmp_path / "sweep")
    assert "table3_transfer.png" in report.figures
    assert_png(report.figures["table3_transfer.png"])
    rows = {
        (r["source"], r["target"]): r for r in csv.DictReader((tmp_path / "sweep/report/transfer.csv").open())
    }
    assert rows[("y", "x")]["delta_std"] == "-1.5000" and rows[("y", "x")]["winning"] == "False"
    assert rows[("mlm", "x")]["n"] == "4" and rows[("x", "x")]["winning"] == "True"
    text = report.path.read_text()
    assert "## Transfer between tasks" in text
    assert "83.0 ± 0.0 (n=4)[^" in text and "(+0.5σ) ★" in text and "(-1.5σ) |" in text


def test_transfer_matrix_of_a_labelled_imp_has_its_mlm_ticket(tmp_path):
    """Task tickets under a label (`imp-task/tamt@x`) take the MLM ticket of the same label
    (`imp/tamt`) as their matrix's MLM row, not another variant's."""
    fill(
        tmp_path / "sweep",
        {
            ("full", 0.0, "x"): [80.0, 82.0, 84.0],
            ("imp-task/tamt@x", 0.5, "x"): [83.0] * 4,
            ("imp/tamt", 0.5, "x"): [81.0] * 4,
            ("imp", 0.5, "x"): [70.0] * 4,  # another variant's MLM ticket: not this matrix's
        },
    )
    got = {(c.source, c.target): c for c in load_results(tmp_path / "sweep").transfer()}
    assert set(got) == {("x", "x"), ("mlm", "x")}
    assert got[("mlm", "x")].cell.mean == pytest.approx(81.0)


def test_a_missing_mask_is_named_from_the_working_directory(tmp_path, monkeypatch):
    """A store without its masks (a committed one) draws no Fig. 8 and names the missing mask as the
    header names the store, relative to the working directory: the report is the same file from every
    checkout (it once held the absolute path of the checkout that drew it)."""
    fill(tmp_path / "sweep", {("omp", 0.5, "x"): [80.0, 81.0], ("random", 0.5, "x"): [70.0] * 4})
    monkeypatch.chdir(tmp_path)
    text = write_report("sweep").path.read_text()
    assert "From `sweep/results.sqlite`" in text
    assert "a mask file is missing or unreadable (sweep/masks/none: mask directory not found)" in text
    assert str(tmp_path) not in text


def test_pretraining_loss_along_the_search(full_sweep, full_report):
    """Fig. 6 without fine-tuning: one row per method and sparsity searched at several budgets, one
    column per budget, each number the pre-training loss of that budget's masks (two mask seeds)."""
    text = full_report.path.read_text()
    section = text[text.index("reached after each number of steps") :].split("\n#")[0]
    mlm = section[section.index("`mlm_loss`") :]  # after the `kd_loss` table
    header = next(line for line in mlm.splitlines() if line.startswith("| method"))
    assert header == "| method | sparsity | 6 steps | 10 steps | 20 steps |"
    rows = {
        tuple(c.strip() for c in line.split("|")[1:3]): line for line in mlm.splitlines()[4:] if "|" in line
    }
    assert set(rows) == {("imp", "70%"), ("tamt-mlm", "70%"), ("tamt-kd", "70%")}
    csv_rows = list(csv.DictReader((full_sweep / "report" / "pretrain_losses.csv").open()))
    for (method, _), line in rows.items():
        cells = [c.strip() for c in line.split("|")[3:6]]
        for steps, cell in zip((6, 10, 20), cells, strict=True):
            values = [
                float(r["mlm_loss"])
                for r in csv_rows
                if r["method"] == method and r["sparsity"] == "0.7" and int(r["search_steps"]) == steps
            ]
            assert len(values) == 2 and cell.startswith(f"{sum(values) / 2:.3f} ± ") and "(n=2)" in cell


# --------------------------------------------------------------------------- the floor and bands in figures


@pytest.fixture()
def drawn(monkeypatch):
    """Every figure a plot function saves, by file name (and still written as a PNG)."""
    from ticketlab.studies.report import mask_figures, plots, study_figures

    figures, save = {}, plots._save

    def keep(fig, path):
        figures[path.name] = fig
        save(fig, path)

    for module in (plots, mask_figures, study_figures):  # each module of figures saves its own
        monkeypatch.setattr(module, "_save", keep)
    return figures


def floor_lines(fig) -> list[float]:
    """The y of every line labelled as the constant predictor, over the figure's panels."""
    return [
        ln.get_ydata()[0]
        for ax in fig.axes
        for ln in ax.get_lines()
        if ln.get_label() == "constant predictor"
    ]


def test_score_figures_draw_the_constant_predictor_and_error_bars(tmp_path, tiny_bert_dir, drawn):
    """Task a's dev set is 60% one class, b's 70%: every figure of dev scores draws that floor (their
    average where it averages the tasks), Fig. 5 draws each mask's ± std over fine-tuning seeds."""
    spec = fakes.make_spec(tmp_path, tiny_bert_dir)
    fakes_kw = {"finetune": fakes.fake_finetune, "pretrain_eval": fakes.fake_pretrain_eval}
    assert run_sweep(spec, tmp_path / "sweep", **fakes_kw, log=lambda s: None).ok
    for task, ones in (("a", 60), ("b", 70)):
        rows = ["text\tlabel", *(f"sentence {i}\t{int(i < ones)}" for i in range(100))]
        (tmp_path / "data" / task / "dev.tsv").write_text("\n".join(rows) + "\n")
    report = write_report(tmp_path / "sweep")
    score_figures = [f for f, _, _ in FIGURES if f != "fig8_similarity.png"]
    assert set(score_figures) <= set(report.figures)
    assert floor_lines(drawn["fig3_score_vs_sparsity.png"]) == pytest.approx([60.0, 70.0, 65.0])
    assert floor_lines(drawn["fig9_train_size.png"]) == pytest.approx([60.0, 70.0, 65.0])
    for f in ("fig5_pretrain_loss_vs_score.png", "fig6_search_cost.png", "fig8_distance_from_omp.png"):
        assert floor_lines(drawn[f]) and set(floor_lines(drawn[f])) == {65.0}, f
    # Fig. 5: the fake fine-tuning's seeds differ, so each mask's point has an error bar
    bars = [c for ax in drawn["fig5_pretrain_loss_vs_score.png"].axes for c in ax.containers]
    assert bars and all(b.has_yerr for b in bars)
    for f in report.figures.values():
        assert_png(f)
    # Labels are drawn as written (no mathtext), so no figure may hold a label in mathtext: Fig. 9's
    # log axis once read "$\\mathdefault{10^{3}}$"
    for name, fig in drawn.items():
        fig.canvas.draw()
        assert not [t.get_text() for t in fig.findobj(Text) if "$" in t.get_text()], name
    rows = list(csv.DictReader((tmp_path / "sweep/report/figures/fig3_score_vs_sparsity.csv").open()))
    floors = {r["task"]: float(r["mean"]) for r in rows if r["method"] == "constant predictor"}
    assert floors == pytest.approx({"a": 60.0, "b": 70.0, "avg": 65.0})


def test_phase_transition_draws_the_floor_and_the_transfer_matrix_a_colour_bar(tmp_path, drawn):
    from ticketlab.studies.report import plots

    fill(
        tmp_path / "super",
        {
            ("full", 0.0, "x"): [80.0, 82.0],
            ("st-winning", 0.3, "x"): [81.0, 80.0, 79.0, 82.0],
            ("st-random", 0.3, "x"): [70.0, 71.0, 72.0, 69.0],
        },
    )
    res = load_results(tmp_path / "super")
    res.floors = {"x": 50.0}  # a store without task data: the floor as `_floors` would read it
    assert plots.phase_transition(res, tmp_path / "fig4.png") is None
    assert floor_lines(drawn["fig4.png"]) == [50.0]
    fill(
        tmp_path / "transfer",
        {
            ("full", 0.0, "x"): [80.0, 82.0],
            ("imp-task@x", 0.5, "x"): [81.0, 80.0, 79.0, 82.0],
            ("imp-task@x", 0.5, "y"): [61.0, 60.0, 59.0, 62.0],
            ("full", 0.0, "y"): [60.0, 62.0],
        },
    )
    assert plots.transfer_matrix(load_results(tmp_path / "transfer"), tmp_path / "t3.png") is None
    fig = drawn["t3.png"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "full model" in bars[0].get_ylabel()
    assert_png(tmp_path / "t3.png")


def test_tamt_is_compared_with_every_imp_variant(tmp_path):
    """`imp/chen` and `imp/tamt` (variant labels of IMP) are IMP for the papers' comparisons."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [80.0, 82.0, 84.0],
            ("imp/chen", 0.5, "x"): [81.0, 83.0, 85.0] * 2,
            ("imp/tamt", 0.5, "x"): [79.0, 80.0, 83.0] * 2,
            ("tamt-kd", 0.5, "x"): [82.0, 83.0, 84.0] * 2,
        },
    )
    pairs = set(load_results(tmp_path / "sweep").pairs())
    assert {("tamt-kd", "imp/chen"), ("tamt-kd", "imp/tamt")} <= pairs
    assert not any(b == "imp" for _, b in pairs)  # no `imp` here to compare its variants with


def test_a_variant_of_omp_is_compared_with_omp_once(tmp_path):
    fill(
        tmp_path / "sweep",
        {("omp", 0.5, "x"): [80.0, 82.0, 84.0], ("omp/global", 0.5, "x"): [81.0, 83.0, 84.0]},
        masks={"omp/global": 1},
    )
    comps = [
        (c.a.method, c.b.method) for c in load_results(tmp_path / "sweep").comparisons() if c.task == "x"
    ]
    assert comps == [("omp/global", "omp")]


def test_super_tickets_are_compared_over_their_masks(tmp_path):
    """A super-ticket study: seed s's tickets come from seed s's full model and are fine-tuned with
    seed s only; winning tickets (importance-ranked: deterministic given the seed) against random
    and losing ones of one level: each seed's model is behind one ticket of each kind, so the seed is
    shared and the test is the paired t over the seeds."""
    fill(
        tmp_path / "sweep",
        {
            ("full", 0.0, "x"): [60.0, 59.0, 62.0],
            ("st-winning", 0.5, "x"): [60.0, 58.0, 61.0],
            ("st-random", 0.5, "x"): [57.0, 57.5, 58.0],
            ("st-losing", 0.5, "x"): [50.0, 51.0, 52.0],
        },
        masks={"st-winning": 3, "st-random": 3, "st-losing": 3},
        per_seed=True,
    )
    comps = {(c.a.method, c.b.method): c for c in load_results(tmp_path / "sweep").comparisons()}
    assert set(comps) == {("st-winning", "st-random"), ("st-winning", "st-losing")}
    c = comps[("st-winning", "st-random")]
    assert c.masks == (3, 3) and c.seeds == (1, 1) and c.mean == pytest.approx(179 / 3 - 57.5)
    d = np.array([60.0, 58.0, 61.0]) - np.array([57.0, 57.5, 58.0])  # per seed
    assert c.test == PAIRED and c.se == pytest.approx(d.std(ddof=1) / 3**0.5) and c.df == 2


def test_determinism_colours_and_comparisons_come_from_the_registry(tmp_path, monkeypatch, drawn):
    """A unit method registered in a test (deterministic: one mask; tested against random tickets) is
    compared over its one mask's fine-tuning seeds, drawn in the phase transition in its colour; and
    st-winning is deterministic because its registry entry says so (no list of names in the report)."""
    from matplotlib.colors import to_rgba

    from ticketlab.methods.registry import Method, load
    from ticketlab.studies.report import plots
    from ticketlab.studies.report.comparison import ONE_STOCHASTIC_MASK

    toy = Method("toy-ticket", None, None, "a toy ticket", verb=None, pattern="units", seeded=False)
    toy = dataclasses.replace(toy, color="C9", order=6, against=("st-random",))
    monkeypatch.setitem(load(), toy.name, toy)
    fill(
        tmp_path / "sweep",
        {
            ("full", 0.0, "x"): [60.0, 59.0, 62.0],
            ("toy-ticket", 0.5, "x"): [61.0, 60.0, 62.0],  # one mask, fine-tuning seeds 0, 1, 2
            ("st-random", 0.5, "x"): [57.0, 57.5, 58.0],
            ("st-winning", 0.5, "x"): [59.0, 58.0, 60.0],
        },
        masks={"toy-ticket": 1, "st-winning": 1, "st-random": 3},
    )
    res = load_results(tmp_path / "sweep")
    comps = {(c.a.method, c.b.method): c for c in res.comparisons()}
    c = comps[("toy-ticket", "st-random")]
    assert c.masks == (1, 3) and not c.a.stochastic and c.why_not is None and c.p is not None
    assert c.se == pytest.approx((1 / 3 + 0.25 / 3) ** 0.5)  # var(61, 60, 62) = 1 over 3 seeds
    assert comps[("st-winning", "st-random")].why_not is None  # one deterministic mask: a test
    assert plots.phase_transition(res, tmp_path / "fig4.png") is None
    lines = {ln.get_label(): ln.get_color() for ln in drawn["fig4.png"].axes[0].get_lines()}
    assert to_rgba(lines["toy-ticket"]) == to_rgba("C9") and to_rgba(lines["st-winning"]) == to_rgba("navy")

    # st-winning registered as a seeded search: its one mask estimates no search variance
    monkeypatch.setitem(load(), "st-winning", dataclasses.replace(load()["st-winning"], seeded=True))
    comps = {(c.a.method, c.b.method): c for c in load_results(tmp_path / "sweep").comparisons()}
    assert comps[("st-winning", "st-random")].why_not == ONE_STOCHASTIC_MASK


@pytest.mark.parametrize("ticket", ["st-winning", "st-losing"])
def test_a_spec_that_names_a_ticket_of_ticketlab_super_is_refused_with_one_line(
    tmp_path, tiny_bert_dir, ticket
):
    """st-winning and st-losing are registered (for the report) but made only by `ticketlab super`:
    a spec that names one is refused before any run (the dry run included), saying so, instead of
    failing its search part-way through a sweep; the list of known methods leaves them out."""
    small = {**fakes.SMALL, "methods": ["full", ticket]}
    with pytest.raises(
        TicketlabError,
        match=f"methods: '{ticket}' is no sweep's method: it needs a task's importance scores from a "
        "fine-tuned model: `ticketlab super` makes it",
    ):
        fakes.make_spec(tmp_path, tiny_bert_dir, **small)
    with pytest.raises(TicketlabError, match="unknown method 'st-winer'") as e:
        fakes.make_spec(tmp_path, tiny_bert_dir, **{**small, "methods": ["full", "st-winer"]})
    assert "st-random" in str(e.value) and "st-winning" not in str(e.value).split("known:")[1]


def test_the_papers_downstream_orders_get_one_verdict_per_comparison(tmp_path):
    """Verdict (4): each comparison whose order the papers claim (TAMT ≥ IMP > OMP > random; winning
    super tickets above random and losing ones) holds, is contradicted or is not shown, in that
    claimed direction (random − omp is read as omp > random); a variant against its base is no claim."""
    from types import SimpleNamespace

    from ticketlab.studies.report.orders import claimed_higher, order_verdict

    omp, random = [80.0, 80.1, 80.2], [50.0, 50.2, 50.4, 50.6, 50.1, 50.3]
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): omp,
            ("random", 0.5, "x"): random,
            ("imp", 0.5, "x"): [90.0, 90.1, 90.2, 90.3, 90.1, 90.2],
            ("tamt-kd", 0.5, "x"): [90.0, 91.0, 89.0, 92.0, 90.5, 89.5],
            ("tamt-kd/random-init", 0.5, "x"): [88.0, 89.0, 87.0, 90.0, 88.5, 87.5],
            ("omp", 0.5, "y"): omp,
            ("random", 0.5, "y"): random,
            ("imp", 0.5, "y"): [60.0, 60.1, 60.2, 60.3, 60.1, 60.2],
            ("tamt-kd", 0.5, "y"): [60.0, 61.0, 59.0, 62.0, 60.5, 59.5],
            ("tamt-kd/random-init", 0.5, "y"): [58.0, 59.0, 57.0, 60.0, 58.5, 57.5],
        },
        masks={"random": 3, "imp": 3, "tamt-kd": 3, "tamt-kd/random-init": 3},
    )
    line = order_verdict(load_results(tmp_path / "sweep").comparisons())
    assert "omp > random at 50% on x: holds" in line and "imp > omp at 50% on x: holds" in line
    assert "imp > omp at 50% on y: contradicted" in line
    assert re.search(r"tamt-kd > imp at 50% on x: not shown \(MDE \d+\.\d\d\)", line)
    assert "tamt-kd/random-init > tamt-kd" not in line and "tamt-kd > tamt-kd/random-init" not in line
    side = lambda m: SimpleNamespace(method=m)  # noqa: E731
    assert claimed_higher(SimpleNamespace(a=side("st-losing"), b=side("st-winning"))) is False
    assert claimed_higher(SimpleNamespace(a=side("st-random"), b=side("st-losing"))) is None


def test_a_variant_is_compared_with_its_own_method(tmp_path):
    """TAMT from a random mask against TAMT from OMP's (Liu et al. §4.2.4): masks paired by seed."""
    fill(
        tmp_path / "sweep",
        {
            ("omp", 0.5, "x"): [80.0, 82.0, 84.0],
            ("tamt-kd", 0.5, "x"): [82.0, 83.0, 84.0] * 2,
            ("tamt-kd/random-init", 0.5, "x"): [80.0, 81.0, 83.0] * 2,
        },
    )
    comps = {(c.a.method, c.b.method): c for c in load_results(tmp_path / "sweep").comparisons()}
    c = comps[("tamt-kd/random-init", "tamt-kd")]
    assert c.masks == (2, 2) and c.mean == pytest.approx(-5 / 3)


def test_data_curve_comparisons_per_size_in_one_holm_family(tmp_path, tiny_bert_dir):
    """A data curve's sizes get the main table's comparisons (TAMT-MLM − OMP at 70% on 10 and 100
    examples, per task), equal to a hand computation from the fake scores, adjusted by Holm together
    with the main grid's, and a table in the report's data-scarcity section."""
    from ticketlab.studies.report.comparison import MAIN
    from ticketlab.studies.stats import holm

    # the data curve's methods at its sparsity, not the whole grid (10 s with it)
    grid = dict(methods=["full", "omp", "tamt-mlm"], sparsities=[0.7], search_curve=None, pretrain_eval=None)
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **grid)
    assert run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None).ok
    res = load_results(tmp_path / "sweep")
    comps = res.comparisons()
    curve = [c for c in comps if c.train_size != MAIN]
    assert {(c.a.method, c.b.method, c.task, c.train_size) for c in curve} == {
        ("tamt-mlm", "omp", t, n) for t in ("a", "b") for n in (10, 100)
    }
    # each mask's difference: the method's bonus at 70%, its 20 search steps' cost and its mask seed's
    # offset (the size's cost cancels)
    bonus = 100 * (fakes.BONUS["tamt-mlm"] * 0.7 - 0.1 / 21)
    for c in curve:
        assert c.sparsity == 0.7 and c.masks == (2, 1)
        omp = c.b.means[0]
        assert [m - omp for m in c.a.means] == pytest.approx([bonus + 0.3 * k for k in (0, 1)])
    assert [c.p_holm for c in comps] == pytest.approx(holm([c.p for c in comps]))
    text = write_report(tmp_path / "sweep").path.read_text()
    section = text.split("## Data scarcity")[1]
    row = r"\| a \| 10 \| tamt-mlm \| 70% \| 2 \| [\d.]+ ± [\d.]+ \(n=4\)\[\^\d+\] \| − omp \| 2×2 vs 1×2 \| "
    assert re.search(row, section), section
    assert "| b | all | full | 0% | 1 |" in section
    rows = list(csv.DictReader((tmp_path / "sweep" / "report" / "paired.csv").open()))
    assert {r["train_size"] for r in rows} == {"main", "10", "100"}


def test_budgets_as_a_fraction_of_the_papers():
    """TAMT Table 2's steps by sparsity (linear between its points), IMP's 2.792K per 10%, at batch
    16 × 512; fine-tuning: 3 epochs of the whole GLUE training set at batch 32."""
    from types import SimpleNamespace

    from ticketlab.studies.report.budgets import finetune_rows, paper_search_steps, search_rows

    assert paper_search_steps("tamt-kd", 0.7) == 17000 and paper_search_steps("tamt-mlm/x", 0.5) == 11000
    assert paper_search_steps("tamt-kd", 0.75) == pytest.approx(18500)
    assert (
        paper_search_steps("imp/chen", 0.5) == pytest.approx(4 * 2792)
        and paper_search_steps("omp", 0.5) is None
    )
    settings = {"batch_size": 16, "max_length": 128}
    search = SimpleNamespace(
        config={"method": "tamt-kd", "sparsity": 0.7, "settings": settings}, metrics={"steps": 200}
    )
    assert search_rows([search]) == [
        ["tamt-kd", "70%", "200 × 16 × 128", "17.0K × 16 × 512", "1/85", "1/340"]
    ]
    config = {"task_label": "sst2", "task": "sst2", "train_size": 5000, "settings": {"batch_size": 32}}
    tuned = SimpleNamespace(config=config, metrics={"steps": 100})
    assert finetune_rows([tuned]) == [
        ["sst2", "5000", "100 × 32", "0.64", "6,314 × 32 (3 epochs of 67,349)", "1/63"]
    ]


def test_a_report_drawn_again_from_the_same_store_is_the_same_file(tmp_path, monkeypatch):
    """The header says when the store's last run finished, not when the report was drawn, and names
    the store relative to the working directory: re-rendering a committed report changes nothing."""
    fill(
        tmp_path / "sweep",
        {("omp", 0.5, "x"): [80.0, 82.0, 84.0], ("omp/global", 0.5, "x"): [81.0, 83.0, 84.0]},
    )
    monkeypatch.chdir(tmp_path)
    first = write_report("sweep").path.read_bytes()
    assert write_report("sweep").path.read_bytes() == first
    assert b"From `sweep/results.sqlite` as of its last finished run (" in first


def test_chens_imp_is_labelled_unequal_sparsity_with_or_without_its_variant_named(tmp_path):
    """Chen's IMP keeps the word embeddings dense: its "70%" prunes 70% of the encoder only. A spec
    that names no variant runs Chen's, so its rows are labelled too; TAMT's variant prunes every
    target."""
    from types import SimpleNamespace

    from ticketlab.studies.report.tables import SweepResults, encoder_share

    model = tmp_path / "m"
    model.mkdir()
    sizes = {"hidden_size": 8, "num_hidden_layers": 2, "intermediate_size": 32, "vocab_size": 100}
    (model / "config.json").write_text(json.dumps(sizes))
    share = encoder_share(str(model))
    assert share == pytest.approx(2 * (4 * 64 + 2 * 8 * 32) / (2 * (4 * 64 + 2 * 8 * 32) + 800))

    def search(i, method, settings):
        config = {"method": method, "sparsity": 0.7, "model": str(model), "settings": settings}
        return SimpleNamespace(id=f"s{i}", kind="search", status="done", config=config)

    runs = [search(0, "imp", {}), search(1, "imp/tamt", {"variant": "tamt"}), search(2, "omp", {})]
    records = {r.id: r for r in runs}
    results = SweepResults(tmp_path, records, [], [], [], {}, {(r.id, None) for r in runs}, {})
    labels = {method_label(r.config): results.target_share(method_label(r.config), 0.7) for r in runs}
    assert labels["imp"] == pytest.approx(0.7 * share)  # no variant named: Chen's
    assert labels["imp/tamt"] == labels["omp"] == 0.7


def test_a_study_of_masks_alone_plans_no_fine_tuning_and_is_reported(tmp_path, tiny_bert_dir):
    """`tasks: {}`: searches, masks along them and their pre-training losses, nothing fine-tuned
    (a mask-similarity or loss study); the report draws the losses along the search and skips the
    downstream figures with a reason."""
    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        tasks={},
        methods=["omp", "tamt-mlm"],
        sparsities=[0.7],
        search_curve={"steps": [6, 10], "sparsities": [0.7], "tasks": []},
        data_curve=None,
    )
    sweep = tmp_path / "sweep"
    result = run_sweep(
        spec, sweep, finetune=fakes.fake_finetune, pretrain_eval=fakes.fake_pretrain_eval, log=lambda s: None
    )
    assert result.ok
    assert {r.kind for r in Store(sweep).runs()} == {"search", "pretrain-eval"}
    report = write_report(sweep)
    text = report.path.read_text()
    assert "reached after each number of steps" in text
    figures = report.path.parent / "figures"
    for drawn in ("fig6_loss_vs_search_steps.png", "fig8_similarity.png"):
        assert_png(figures / drawn)
    # Fig. 5 lacks scores, not losses
    assert "pretrain_eval" not in report.skipped["fig5_pretrain_loss_vs_score.png"]
    for fname in ("fig3_score_vs_sparsity.png", "fig9_train_size.png", "fig6_search_cost.png"):
        assert report.skipped[fname] == "this study fine-tunes nothing (`tasks: {}`)"
    assert "this study fine-tunes nothing" in text and "## Winning tickets" not in text
    assert "## Pre-training loss\n" in text and "paired comparisons above" not in text


@pytest.mark.parametrize(
    ("methods", "pretrain_eval", "refused"),
    [
        (["omp", "imp-task"], {"max_blocks": 2}, "methods.imp-task: imp-task searches on a task"),
        (["full", "omp"], None, "methods.full: with `tasks: {}` full has nothing to run"),
    ],
)
def test_a_study_of_masks_alone_refuses_a_method_with_nothing_to_run(
    tmp_path, tiny_bert_dir, methods, pretrain_eval, refused
):
    with pytest.raises(TicketlabError, match=re.escape(refused)):
        fakes.make_spec(
            tmp_path, tiny_bert_dir, tasks={}, methods=methods, pretrain_eval=pretrain_eval, data_curve=None
        )
