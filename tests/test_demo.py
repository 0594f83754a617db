"""`ticketlab demo` end to end with a seconds-long budget: data, pre-training, sweep, report, cache."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from PIL import Image

from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.demo.config import METHODS
from ticketlab.demo.pipeline import BUDGETS, busy_cores, demo_threads, machine_load, run_demo

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    lines: list[str] = []
    return out, run_demo(out, "test", log=lines.append), lines


def test_demo_runs_the_whole_pipeline(demo):
    out, result, lines = demo
    assert result.ok and result.ran > 0
    assert result.pretrain is not None and not result.pretrain.cached
    assert result.pretrain.dev["mlm_loss"] < 6.0  # trained (log |V| ~ 5.8 at init is the upper end)
    assert result.model.startswith(str(out / "models"))
    # The table has the full model and every method at every sparsity, for every task.
    rows = [r.split() for r in result.table.splitlines()[2:]]
    assert {r[0] for r in rows} == set(METHODS) and "imp/chen" in METHODS  # which IMP: Chen et al.'s
    assert len(rows) == 1 + (len(METHODS) - 1) * len(BUDGETS["test"].sparsities)
    assert "sentiment" in result.table and "paraphrase" in result.table
    text = result.report.read_text()
    assert "Main results" in text
    for name in ("fig3_score_vs_sparsity.png", "fig8_similarity.png", "fig5_pretrain_loss_vs_score.png"):
        path = result.report.parent / "figures" / name
        assert path.read_bytes()[:8] == PNG, name
        with Image.open(path) as im:
            im.verify()


def test_the_tables_sparsity_is_each_rows_achieved_sparsity(demo):
    """Counted here from the masks on disk: the pruned weights of a row's masks over the model's word
    embeddings and encoder matrices (Chen et al.'s IMP leaves the embeddings dense: below its target)."""
    from transformers import AutoModelForMaskedLM

    from ticketlab.masks import load_mask
    from ticketlab.masks.prunable import find_targets
    from ticketlab.masks.targets import resolve_targets
    from ticketlab.studies.report.cells import method_label
    from ticketlab.studies.report.results import load_results

    _, result, _ = demo
    res = load_results(result.sweep_dir)
    model = AutoModelForMaskedLM.from_pretrained(result.model)
    targets = find_targets(model, resolve_targets(model, None, False))
    total = sum(m.weight.numel() for m in targets.values())  # the default targets (no pooler here)
    expected = {}
    for r in res.runs("search"):
        mask = load_mask(result.sweep_dir / r.metrics["mask_dir"])[0]
        key = (method_label(r.config), r.config["sparsity"])
        expected.setdefault(key, []).append((mask.numel - mask.kept) / total)
    rows = [line.split() for line in result.table.splitlines()[2:]]
    chen, seen = [], []
    for row in rows[1:]:  # a method's rows by target sparsity, lowest first
        seen.append(row[0])
        target = sorted(BUDGETS["test"].sparsities)[seen.count(row[0]) - 1]
        shares = expected[(row[0], target)]
        assert row[1] == f"{100 * sum(shares) / len(shares):.1f}%", row
        if row[0] == "imp/chen":
            chen.append(row[1:4])
    assert chen and all(
        r[1:] == ["(target", f"{t:.0%})"] for r, t in zip(chen, BUDGETS["test"].sparsities, strict=True)
    )
    assert all(float(r[0][:-1]) < 100 * t - 1 for r, t in zip(chen, BUDGETS["test"].sparsities, strict=True))


def test_the_demo_searches_follow_tamts_rules_scaled_to_the_toy():
    """2 passes over the corpus as one schedule, each search stopped at Tab. 2's 70% point, IMP with the
    same steps at half the pre-training lr, TAMT at the default lr, which moves its masks."""
    from ticketlab.demo.config import CORPUS_BLOCKS, SEARCH_SCHEDULE, SEARCH_STEPS
    from ticketlab.methods.tamt.config import PAPER_SCHEDULE_STEPS, PAPER_STEPS, TamtConfig
    from ticketlab.methods.tamt.search import frozen_mask_warning
    from ticketlab.train.config import TrainConfig

    budget = BUDGETS["default"]
    search, settings = budget.search, budget.method_settings
    assert SEARCH_SCHEDULE == round(2 * CORPUS_BLOCKS / search["batch_size"]) == 1150
    assert SEARCH_STEPS == round(PAPER_STEPS[0.7] / PAPER_SCHEDULE_STEPS * SEARCH_SCHEDULE) == search["steps"]
    assert settings["imp/chen"]["lr"] == budget.pretrain.lr / 2 and "lr" not in search
    for objective, lr in (("mlm", 5e-5), ("kd", 4.1e-5)):
        assert "lr" not in settings[f"tamt-{objective}"]
        config = TamtConfig(0.7, objective=objective)
        horizon = settings[f"tamt-{objective}"]["schedule_steps"]
        assert config.default_lr(SEARCH_STEPS, horizon) == lr
        train = TrainConfig(max_steps=SEARCH_STEPS, batch_size=32, lr=lr, schedule_steps=horizon)
        assert frozen_mask_warning(config, train) is None


def test_second_run_is_cached(demo):
    out, first, _ = demo
    again = run_demo(out, "test", log=lambda _: None)
    assert again.ran == 0 and again.pretrain.cached
    assert again.table == first.table and again.sweep_dir == first.sweep_dir


def test_cli_prints_report_path_and_table(demo, capsys):
    out, result, _ = demo
    assert main(["demo", "--budget", "test", "--out", str(out)]) == 0  # cached: quick
    printed = capsys.readouterr().out
    assert f"report: {result.report}" in printed and result.table in printed and "done in" in printed


def test_torch_threads_come_from_the_free_cores():
    """torch's default (a thread per core) beside other work oversubscribes the cores (a demo of 6-10
    minutes takes 43): the demo takes the cores the load leaves, and says what a busy one costs."""
    assert demo_threads(2, 0.3) == (2, None)
    threads, note = demo_threads(2, 7.9)
    assert threads == 1 and note == (
        "note: the machine is busy (load 7.9 on 2 cores): the demo uses 1 torch thread, and may take "
        "up to 9x as long as on an idle machine"
    )
    assert demo_threads(16, 6.2)[0] == 10 and "up to 2x" in demo_threads(16, 6.2)[1]
    assert demo_threads(4, 40.0)[0] == 1


STAT_BEFORE = """cpu  300 0 100 900 0 0 0 0 0 0
cpu0 200 0 50 400 0 0 0 0 0 0
cpu1 100 0 50 500 0 0 0 0 0 0
intr 12345 0 0
"""
# 100 ticks later: cpu0 busy throughout (80 user, 20 system, 10 of them guest time inside user's),
# cpu1 idle but for 10 ticks of iowait, which count as idle
STAT_AFTER = """cpu  380 0 120 990 10 0 0 0 10 0
cpu0 280 0 70 400 0 0 0 0 10 0
cpu1 100 0 50 590 10 0 0 0 0 0
intr 23456 0 0
"""


def test_busy_cores_reads_the_cpus_this_process_may_use():
    assert busy_cores(STAT_BEFORE, STAT_AFTER) == pytest.approx(1.0)
    assert busy_cores(STAT_BEFORE, STAT_AFTER, cpus={1}) == pytest.approx(0.0)
    assert busy_cores(STAT_BEFORE, STAT_AFTER, cpus={0}) == pytest.approx(1.0)
    assert busy_cores(STAT_BEFORE, STAT_BEFORE) is None  # no time passed
    assert busy_cores(STAT_BEFORE, STAT_AFTER, cpus={7}) is None  # no such CPU


def test_the_load_is_the_lower_of_the_average_and_the_sample(monkeypatch):
    """The 1-minute average lags: a fresh clone's `make demo` read 1.1 on two cores just after its
    virtual environment's install had ended, and ran on one thread where two were free."""
    monkeypatch.setattr("os.getloadavg", lambda: (1.1, 0.6, 0.3))
    monkeypatch.setattr("ticketlab.demo.pipeline.busy_cores", lambda *a: 0.04)
    assert machine_load(sample_s=0) == pytest.approx(0.04)
    assert demo_threads(2, machine_load(sample_s=0)) == (2, None)
    monkeypatch.setattr("ticketlab.demo.pipeline.busy_cores", lambda *a: 1.9)  # still running
    assert machine_load(sample_s=0) == pytest.approx(1.1)
    monkeypatch.setattr("ticketlab.demo.pipeline.busy_cores", lambda *a: None)  # nothing to read
    assert machine_load(sample_s=0) == pytest.approx(1.1)


def test_given_model_skips_pretraining(tiny_bert_dir, tmp_path, monkeypatch):
    budget = replace(BUDGETS["test"], methods=("full", "omp"), sparsities=(0.5,), pretrain_eval=None)
    monkeypatch.chdir(tiny_bert_dir.parent)  # a relative model path is resolved against the cwd
    # ... on a busy machine (load 7.9 on 2 cores): one torch thread while it runs, then torch's own
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("ticketlab.demo.pipeline.machine_load", lambda: 7.9)
    monkeypatch.setattr("ticketlab.demo.pipeline.usable_cores", lambda: 2)
    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    lines: list[str] = []
    result = run_demo(tmp_path / "given", budget, model=tiny_bert_dir.name, log=lines.append)
    assert set_to == [1, torch.get_num_threads()] and "the machine is busy (load 7.9 on 2 cores)" in lines[0]
    assert result.pretrain is None and result.model == str(tiny_bert_dir.resolve()) and result.ok
    assert not (tmp_path / "given" / "models").exists()
    assert {r.split()[0] for r in result.table.splitlines()[2:]} == {"full", "omp"}


def test_bad_arguments():
    with pytest.raises(ConfigError, match="data-dir"):
        run_demo("unused", "test", tasks=["sst2"])
    with pytest.raises(ConfigError, match="budget"):
        run_demo("unused", "huge")


def test_mistyped_inputs_are_refused_before_any_stage(tiny_bert_dir, tmp_path, monkeypatch):
    """From Python as on the command line: a mistyped model (beside its real folder), corpus or
    data folder is refused before the synthetic data and the pre-training."""
    import ticketlab.demo.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_run_stages", lambda *a: pytest.fail("a stage ran"))
    out = tmp_path / "demo-out"
    for given, says in (
        ({"model": str(tiny_bert_dir.parent / "tiny-brt")}, "tiny-brt: model directory not found"),
        ({"corpus": [str(tmp_path / "c.txt")]}, "c.txt: corpus not found"),
        ({"dev_corpus": [str(tmp_path / "d.txt")]}, "d.txt: corpus not found"),
        ({"tasks": ["sst2"], "data_dir": str(tmp_path / "glue")}, "glue: data directory not found"),
        ({"tasks": ["nosuch"], "data_dir": str(tmp_path)}, "unknown task 'nosuch'"),
        ({"corpus": [str(tmp_path / "empty")]}, "empty: a directory with no .txt files"),
    ):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(TicketlabError, match=says):
            run_demo(out, "test", **given)
    assert not out.exists()
    mine = tmp_path / "thesis"  # a folder of the user's: the demo writes data, models and sweeps
    mine.mkdir()
    (mine / "thesis.txt").write_text("mine")
    with pytest.raises(TicketlabError, match="exists and is not a ticketlab demo"):
        run_demo(mine, "test")
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]
