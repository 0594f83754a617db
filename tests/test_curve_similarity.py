"""minilm-mlm-v2's `curve_similarity.py` keeps what leaves with a study's machine: each done search's
training log (`search_curves.csv`), a resumed step's later line winning, and the rows an earlier
machine wrote kept."""

from __future__ import annotations

import csv
import importlib.util
import json
import sqlite3
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "minilm-mlm-v2" / "curve_similarity.py"


def _script():
    spec = importlib.util.spec_from_file_location("curve_similarity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _store(sweep: Path, runs: list[tuple[str, str, dict, dict]]) -> None:
    """A store with the two tables `searches` reads: (id, status, config, metrics) rows."""
    sweep.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(sweep / "results.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute(
        "CREATE TABLE runs (id TEXT, kind TEXT, status TEXT, config TEXT, metrics TEXT, provenance TEXT)"
    )
    db.execute("INSERT INTO meta VALUES ('plan', ?)", (json.dumps([r[0] for r in runs]),))
    for run_id, status, config, metrics in runs:
        db.execute(
            "INSERT INTO runs VALUES (?, 'search', ?, ?, ?, '{}')",
            (run_id, status, json.dumps(config), json.dumps(metrics)),
        )
    db.commit()
    db.close()


def _log(sweep: Path, mask_dir: str, lines: list[dict]) -> None:
    run = sweep / mask_dir / "run"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_training_logs_are_kept_and_a_resumed_step_keeps_its_later_line(tmp_path):
    cs = _script()
    sweep = tmp_path / "sweep"
    kd = {"method": "tamt-kd", "seed": 1, "sparsity": 0.7}
    _store(
        sweep,
        [
            ("kd1", "done", kd, {"mask_dir": "masks/kd1"}),
            ("mlm0", "running", {"method": "tamt-mlm", "seed": 0, "sparsity": 0.7}, {}),
        ],
    )
    _log(
        sweep,
        "masks/kd1",
        [
            {"step": 10, "lr": 2e-5, "loss": 0.34, "kd_loss": 0.34},
            {"step": 20, "lr": 1.9e-5, "loss": 0.33, "kd_loss": 0.33},
            {"eval": {"step": 20, "kd_loss": 0.3}},  # an evaluation: not a training step
            {"event": "mask_saved", "step": 20},
            {"step": 20, "lr": 1.9e-5, "loss": 0.25, "kd_loss": 0.25},  # resumed from step 10
        ],
    )
    curves = tmp_path / "search_curves.csv"
    # a row an earlier machine wrote, of a search whose log is not here
    with curves.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cs.CURVE_FIELDS)
        writer.writeheader()
        writer.writerow({"run_id": "old", "method": "imp", "search_seed": "0", "step": "10", "loss": "3.8"})

    assert cs.update(curves, cs.CURVE_FIELDS, cs.training_curves(sweep)) == 1
    rows = _rows(curves)
    assert [(r["run_id"], r["step"], r["loss"]) for r in rows] == [
        ("old", "10", "3.8"),
        ("kd1", "10", "0.34"),
        ("kd1", "20", "0.25"),
    ]
    assert rows[2]["kd_loss"] == "0.25" and rows[2]["mlm_loss"] == "" and rows[2]["search_seed"] == "1"
    assert not curves.with_name(curves.name + ".tmp").exists()
