"""Fine-tuning runs of one's own side by side: `ticketlab.compare_runs` and `ticketlab compare RUN_DIR
...` read each run folder's results (RUN_DIR's results.json, or one seed's result.json) and table the
task, the reported score as mean ± SD over the seeds with their number, the mask and its sparsity,
the seeds and the checkpoint; a folder that is no run, or a mask among runs, is one line."""

from __future__ import annotations

import json

import pytest

import ticketlab
from conftest import error_line, run
from test_finetune import glue_dir, mask_dir  # noqa: F401 (fixtures: a tiny SST-2 and an OMP mask)

QUICK = "--max-steps 2 --eval-every 1 --max-length 32 --lr 1e-3 --no-progress".split()


@pytest.fixture(scope="module")
def runs(tiny_bert_dir, glue_dir, mask_dir, tmp_path_factory):  # noqa: F811
    """Two RUN_DIRs as `ticketlab finetune` writes them: the full model at seeds 1 and 2, the OMP
    mask at seed 3."""
    from ticketlab.cli import main

    root = tmp_path_factory.mktemp("runs")
    base = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir", str(glue_dir)]
    assert main([*base, "--out", str(root / "full"), "--seeds", "1", "2", *QUICK]) == 0
    assert main([*base, "--mask", str(mask_dir), "--out", str(root / "omp70"), "--seeds", "3", *QUICK]) == 0
    return root / "full", root / "omp70"


def test_compare_runs_tables_each_run_with_its_score_mask_sparsity_and_seeds(runs):
    full, omp = runs
    table = ticketlab.compare_runs(ticketlab.CompareRunsConfig([full, omp, omp / "seed-3"]))
    a, b, c = table.rows
    summary = json.loads((full / "results.json").read_text())
    assert (a.run, a.task, a.metric, a.seeds, a.n) == (str(full), "sst2", "accuracy", [1, 2], 2)
    assert (a.mean, a.std) == (summary["reported"]["mean"], summary["reported"]["std"])
    assert a.mask is None and a.sparsity == 0 and a.checkpoint == summary["checkpoint"]
    assert b.mask.endswith("omp70") and b.sparsity == pytest.approx(0.7, abs=0.01) and b.seeds == [3]
    assert (c.mean, c.seeds, c.n, c.std) == (b.mean, [3], 1, 0.0)  # one seed's folder: the same run
    text = table.text().splitlines()
    assert text[0].split()[:3] == ["run", "task", "metric"] and len(text) == 4
    assert f"{a.mean:.2f} ± {a.std:.2f} (n=2)" in text[1] and "full model" in text[1]
    assert "70.0%" in text[2]


def test_the_command_line_prints_the_table_and_json(runs, capsys):
    full, omp = runs
    code, out, err = run(capsys, "compare", full, omp)
    assert code == 0, err
    assert out.splitlines()[0].startswith("run") and str(omp) in out and "full model" in out
    code, out, _ = run(capsys, "compare", full, omp, "--json")
    rows = json.loads(out)["runs"]
    assert [r["seeds"] for r in rows] == [[1, 2], [3]] and rows[1]["sparsity"] == pytest.approx(0.7, abs=0.01)


def test_what_is_not_a_run_is_one_line(runs, mask_dir, tmp_path, capsys):  # noqa: F811
    full, _ = runs
    assert "not a fine-tuning run folder; compare takes masks, or runs, not both" in error_line(
        capsys, "compare", full, mask_dir
    )
    assert "--distance and --per-matrix compare masks" in error_line(capsys, "compare", full, "--distance")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"task": "sst2", "reported": {"mean": "high"}}')
    line = error_line(capsys, "compare", full, tmp_path / "bad")
    assert line.endswith("results.json: not a fine-tuning result (fields missing or of the wrong type)")
    summary = json.loads((full / "results.json").read_text())
    del summary["mask"]  # every other field as written
    (tmp_path / "bad" / "results.json").write_text(json.dumps(summary))
    line = error_line(capsys, "compare", full, tmp_path / "bad")
    assert line.endswith("results.json: not a fine-tuning result (fields missing or of the wrong type)")
    with pytest.raises(ticketlab.core.errors.TicketlabError, match="not a fine-tuning run folder"):
        ticketlab.compare_runs(ticketlab.CompareRunsConfig([tmp_path]))
