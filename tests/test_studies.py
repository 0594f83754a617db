"""The remaining studies of the papers: ticket importance across tasks (Liang et al. §8), domain
adaptation (§7), TAMT's mask initialisation (Liu et al. §4.2.4), data scarcity (§4.2.6)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.experiments.plan import FULL, make_run
from ticketlab.experiments.store import Store
from ticketlab.files import mark_output
from ticketlab.structured.across import CSV_FILE, FIGURE_FILE, MD_FILE, write_importance_across
from ticketlab.structured.importance import Importance


def _fake_study(root, task: str, seeds: dict[int, tuple[list[list[float]], list[float]]]):
    """A super-ticket study directory whose store holds one finished full-model run per seed, with
    raw importance scores (heads [L, H], FFN sub-layers [L])."""
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
            store.finish(run.id, {"score": 0.5, "importance_dir": rel}, {})
    return root


@pytest.fixture()
def studies(tmp_path):
    a = _fake_study(tmp_path / "a", "sst2", {1: ([[1.0, 3.0]], [2.0]), 2: ([[3.0, 1.0]], [2.0])})
    b = _fake_study(tmp_path / "b", "mrpc", {1: ([[0.0, 4.0]], [5.0])})
    c = _fake_study(tmp_path / "c", "cola", {1: ([[2.0, 2.0]], [0.0])})
    return [a, b, c]


def test_task_shares_sum_to_one_and_match_a_hand_computation(studies, tmp_path):
    rows = {r.unit: r for r in write_importance_across(studies, tmp_path / "out")}
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


def test_studies_of_different_models_are_refused(studies, tmp_path):
    other = _fake_study(tmp_path / "d", "qnli", {1: ([[1.0, 1.0, 1.0]], [1.0])})
    with pytest.raises(TicketlabError, match="same model"):
        write_importance_across([studies[0], other], tmp_path / "out", dominant=0.7)
