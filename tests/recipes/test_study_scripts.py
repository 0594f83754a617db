"""The scripts that carry minilm-mlm-v2 across machines keep what would leave with one.
`curve_similarity.py` keeps each done search's training log (`search_curves.csv`; a resumed step's
later line wins; an earlier machine's rows stay) and finds OMP's mask by the model's content, not its
path; `snapshot.py` keeps exactly the masks a pending run
reads, a mask saved along a search under its search's `steps/` folder, as the sweep reads it."""

from __future__ import annotations

import csv
import importlib.util
import json
import sqlite3
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "minilm-mlm-v2" / "curve_similarity.py"


def _script():
    spec = importlib.util.spec_from_file_location("curve_similarity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _store(sweep: Path, runs: list[tuple[str, str, str, dict, dict | None]]) -> None:
    """A store with the two tables these scripts read: (id, kind, status, config, metrics) rows, all
    of the current plan."""
    sweep.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(sweep / "results.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    columns = "id TEXT, kind TEXT, status TEXT, config TEXT, metrics TEXT, provenance TEXT"
    db.execute(f"CREATE TABLE runs ({columns})")
    db.execute("INSERT INTO meta VALUES ('plan', ?)", (json.dumps([r[0] for r in runs]),))
    for run_id, kind, status, config, metrics in runs:
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, '{}')",
            (run_id, kind, status, json.dumps(config), json.dumps(metrics)),
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
            ("kd1", "search", "done", kd, {"mask_dir": "masks/kd1"}),
            ("mlm0", "search", "running", {"method": "tamt-mlm", "seed": 0, "sparsity": 0.7}, {}),
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

    assert cs.update(curves, cs.CURVE_FIELDS, cs.training_curves(sweep, cs.done_searches(sweep))) == 1
    rows = _rows(curves)
    assert [(r["run_id"], r["step"], r["loss"]) for r in rows] == [
        ("old", "10", "3.8"),
        ("kd1", "10", "0.34"),
        ("kd1", "20", "0.25"),
    ]
    assert rows[2]["kd_loss"] == "0.25" and rows[2]["mlm_loss"] == "" and rows[2]["search_seed"] == "1"
    assert not curves.with_name(curves.name + ".tmp").exists()


def _snapshot(here: Path):
    """minilm-mlm's `snapshot.py` writing into `here` (the study folder it copies to)."""
    spec = importlib.util.spec_from_file_location(
        "snapshot", SCRIPT.parents[1] / "minilm-mlm" / "snapshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = here
    return module


def _mask(folder: Path, *, output: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "mask_config.json").write_text("{}")
    (folder / "masks.safetensors").write_bytes(folder.name.encode())
    if output:  # a final mask has one; a mask saved along a search has none
        (folder / ".ticketlab-output").write_text("")


def test_snapshot_keeps_the_masks_pending_runs_read_and_drops_the_rest(tmp_path):
    sweep, here = tmp_path / "sweep", tmp_path / "study"
    search = {"method": "tamt-kd", "seed": 0, "sparsity": 0.7}
    along = {
        "mask_dir": "masks/s",
        "intermediate": [{"step": 250, "mask_dir": "masks/s/steps/step-250"}],
    }
    runs = [
        ("s", "search", "done", search, along),
        ("t", "search", "done", search, {"mask_dir": "masks/t"}),
        ("pe250", "pretrain-eval", "pending", {"mask": {"search": "s", "step": 250}}, None),
        ("pe500", "pretrain-eval", "done", {"mask": {"search": "s", "step": 500}}, {}),
        ("ft_t", "finetune", "done", {"mask": {"search": "t", "step": None}}, {}),
    ]
    _store(sweep, runs)
    _mask(sweep / "masks" / "s")
    _mask(sweep / "masks" / "s" / "steps" / "step-250", output=False)
    # what an earlier snapshot kept: t's mask and s's mask at 500, which no pending run reads now
    _mask(here / "masks" / "t")
    _mask(here / "masks" / "s" / "steps" / "step-500", output=False)

    _snapshot(here).main(sweep)

    kept = here / "masks" / "s" / "steps" / "step-250"
    assert sorted(p.name for p in kept.iterdir()) == ["mask_config.json", "masks.safetensors"]
    assert (kept / "masks.safetensors").read_bytes() == b"step-250"
    assert not (here / "masks" / "t").exists()  # every run that reads it is done
    assert not (here / "masks" / "s" / "steps" / "step-500").exists()
    assert (here / "results.sqlite").is_file()


def test_omps_mask_is_matched_by_the_models_content_not_its_path(monkeypatch):
    """A store carried between worktrees keeps each run's own model path: OMP's mask is the one whose
    run read the same model content (the hash in `inputs`), wherever it was; the path only where a
    run recorded no hash."""
    script = _script()
    monkeypatch.setattr(script, "load", lambda sweep, rel, recorded: rel)  # every mask is "here"

    def config(method: str, path: str, content: str | None) -> dict:
        return {
            "method": method,
            "sparsity": 0.7,
            "model": path,
            **({"inputs": {"model": content}} if content else {}),
        }

    omp = config("omp", "/old-worktree/models/m", "sha256:aa")
    done = [("omp", omp, {"mask_dir": "masks/omp"}, {}, True)]
    assert (
        script._omp(Path("."), done, config("tamt-kd", "/new-worktree/models/m", "sha256:aa")) == "masks/omp"
    )
    assert script._omp(Path("."), done, config("tamt-kd", "/old-worktree/models/m", "sha256:bb")) is None
    unhashed = [("omp", config("omp", "/w/models/m", None), {"mask_dir": "masks/omp"}, {}, True)]
    assert script._omp(Path("."), unhashed, config("tamt-kd", "/w/models/m", "sha256:aa")) == "masks/omp"
    assert script._omp(Path("."), unhashed, config("tamt-kd", "/v/models/m", "sha256:aa")) is None
