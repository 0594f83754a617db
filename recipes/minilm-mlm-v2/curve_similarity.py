"""The Jaccard of TAMT's masks along their searches with OMP's mask, recorded before the masks leave
the machine that made them: `curve_similarity.csv`, one row per (search run, step).

The masks a search saves along the way (`search_curve:` at 250, 500 and 1,000 steps) are written
under the search's mask folder, `masks/<run>/steps/step-000250/` (`ticketlab search --save-at`), and
the store records each one's step and folder in the search's metrics (`intermediate`: what this
reads, so a search method that saves them elsewhere is read too) and its content hash in its
provenance (`intermediate_hashes`). `snapshot.py` commits only the masks a pending run still reads,
so these masks stay on that machine (minilm-mlm lost its curve's Jaccard that way): `snapshot.py`
runs this first. For every done search of the store that saved masks along the way,
each of its masks still here (those along the search and the final one) is compared with OMP's final
mask at its sparsity, the four ways of minilm-mlm's `mask_similarity.py` (its functions, imported:
pooled, per-matrix, encoder, embeddings), and with the same search's final mask (pooled and
per-matrix). OMP's mask is the done OMP search's at the same sparsity (the current plan's run first).
Each row gives the mask's recorded content hash; numbers are unrounded. Rows of masks no longer here
are kept as they are (a later machine lacks an earlier one's masks); a mask whose content is not the
one its search recorded is left out, with a note. The file is replaced atomically.

The searches' training logs (`run/log.jsonl` beside each final mask) leave with the machine as well:
`search_curves.csv` keeps every done search's logged steps (learning rate, loss and each
objective's loss), kept across machines the same way.

Usage (from the worktree's root):
    PYTHONPATH=src python recipes/minilm-mlm-v2/curve_similarity.py [SWEEP_DIR]
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import sqlite3
import sys
from pathlib import Path

from ticketlab.masks import load_mask
from ticketlab.studies.sweep.provenance import mask_hash

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm-v2"  # the study's record
OUT = HERE / "curve_similarity.csv"
CURVES = HERE / "search_curves.csv"  # the searches' training logs, which leave with their machine too
FIELDS = (
    "run_id",
    "method",
    "search_seed",
    "step",
    "omp_pooled",
    "omp_per_matrix",
    "omp_encoder",
    "omp_embeddings",
    "final_pooled",
    "final_per_matrix",
    "mask_hash",
)
CURVE_FIELDS = ("run_id", "method", "search_seed", "step", "lr", "loss", "mlm_loss", "kd_loss")
# column -> the way (`mask_similarity.WAYS`) it is computed, against OMP's mask or the search's final one
OMP_WAYS = {f"omp_{w.replace('-', '_')}": w for w in ("pooled", "per-matrix", "encoder", "embeddings")}
FINAL_WAYS = {f"final_{w.replace('-', '_')}": w for w in ("pooled", "per-matrix")}

_spec = importlib.util.spec_from_file_location(
    "minilm_mlm_mask_similarity", Path(__file__).resolve().parents[1] / "minilm-mlm" / "mask_similarity.py"
)
similarity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(similarity)


def searches(db: sqlite3.Connection) -> list[tuple[str, dict, dict, dict, bool]]:
    """(id, config, metrics, provenance, in the current plan) of the store's done searches."""
    plan = db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()
    plan = set(json.loads(plan[0])) if plan else set()
    rows = db.execute(
        "SELECT id, config, metrics, provenance FROM runs WHERE kind = 'search' AND status = 'done'"
    )
    return [
        (i, json.loads(c), json.loads(m or "{}"), json.loads(p or "{}"), i in plan) for i, c, m, p in rows
    ]


def curve_masks(config: dict, metrics: dict, prov: dict) -> list[tuple[int, str, str | None]]:
    """(step, mask folder relative to the sweep, recorded content hash) of a search's masks along
    the way, then its final mask at its budget; none where it saved no mask along the way."""
    along = sorted(metrics.get("intermediate") or [], key=lambda i: i["step"])
    if not along:
        return []
    hashes = prov.get("intermediate_hashes") or {}
    out = [(int(i["step"]), i["mask_dir"], hashes.get(str(i["step"]))) for i in along]
    final = config.get("steps") or metrics.get("steps")
    return [*out, (int(final), metrics["mask_dir"], prov.get("mask_hash"))]


def load(sweep: Path, rel: str, recorded: str | None) -> object | None:
    """The weights of the mask at `sweep / rel` if it is here and is the one its search recorded."""
    if not (sweep / rel / "masks.safetensors").is_file():
        return None
    if recorded and mask_hash(sweep / rel) != recorded:
        print(f"note: {rel} is not the mask its search recorded ({recorded}): left out")
        return None
    return load_mask(sweep / rel)[0].weights()


def done_searches(sweep: Path) -> list[tuple[str, dict, dict, dict, bool]]:
    """`searches` of the store in `sweep`, read without writing to it."""
    with contextlib.closing(
        sqlite3.connect(f"{(sweep / 'results.sqlite').as_uri()}?mode=ro", uri=True)
    ) as db:
        return searches(db)


def compute(sweep: Path, done: list) -> dict[tuple[str, str], dict[str, str]]:
    """The rows of the masks here of the done searches `done`, by (run id, step)."""
    omp: dict[float, object | None] = {}  # sparsity -> OMP's final mask (None: not here)
    rows = {}
    for run_id, config, metrics, prov, _ in done:
        masks = curve_masks(config, metrics, prov)
        here = [(step, rel, h) for step, rel, h in masks if (sweep / rel / "masks.safetensors").is_file()]
        if not here:
            continue
        sparsity = config["sparsity"]
        if sparsity not in omp:
            omp[sparsity] = _omp(sweep, done, config)
        if omp[sparsity] is None:
            print(
                f"note: no OMP mask at {sparsity} here: {config['method']} seed {config['seed']} not compared"
            )
            continue
        final = load(sweep, metrics["mask_dir"], prov.get("mask_hash"))
        for step, rel, recorded in here:
            mask = final if rel == metrics["mask_dir"] else load(sweep, rel, recorded)
            if mask is None:
                continue
            row = {
                "run_id": run_id,
                "method": config["method"],
                "search_seed": "" if config["seed"] is None else str(config["seed"]),
                "step": str(step),
                **{k: repr(similarity.WAYS[w](mask, omp[sparsity])) for k, w in OMP_WAYS.items()},
                **{
                    k: "" if final is None else repr(similarity.WAYS[w](mask, final))
                    for k, w in FINAL_WAYS.items()
                },
                "mask_hash": recorded or "",
            }
            rows[(run_id, str(step))] = row
    return rows


def same_model(a: dict, b: dict) -> bool:
    """Whether two runs' configs read the same model: by the content hash the sweep records in
    `inputs` where both have it (a store carried between worktrees keeps each run's own path, so the
    same model sits under other paths), else by path."""
    ha, hb = (c.get("inputs", {}).get("model") for c in (a, b))
    return ha == hb if ha and hb else a["model"] == b["model"]


def _omp(sweep: Path, done: list, config: dict) -> object | None:
    """OMP's final mask at `config`'s sparsity and model: the current plan's run first."""
    candidates = [
        (not in_plan, metrics["mask_dir"], prov.get("mask_hash"))
        for _, c, metrics, prov, in_plan in done
        if c["method"] == "omp" and c["sparsity"] == config["sparsity"] and same_model(c, config)
    ]
    for _, rel, recorded in sorted(candidates):
        mask = load(sweep, rel, recorded)
        if mask is not None:
            return mask
    return None


def training_curves(sweep: Path, done: list) -> dict[tuple[str, str], dict[str, str]]:
    """The training log of each done search of `done` here (`run/log.jsonl` beside its final mask:
    the step's learning rate and its loss, a mean over the steps since the last line), by (run id,
    step). A step logged twice (a search resumed from a checkpoint before it) keeps its later line,
    the one the final mask came from."""
    rows = {}
    for run_id, config, metrics, _, _ in done:
        log = sweep / metrics.get("mask_dir", "") / "run" / "log.jsonl"
        if not metrics.get("mask_dir") or not log.is_file():
            continue
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if "step" not in entry or "loss" not in entry:  # an event or an evaluation
                continue
            rows[(run_id, str(entry["step"]))] = {
                "run_id": run_id,
                "method": config["method"],
                "search_seed": "" if config["seed"] is None else str(config["seed"]),
                **{k: repr(entry[k]) if k in entry else "" for k in CURVE_FIELDS[3:]},
            }
    return rows


def update(out: Path, fields: tuple[str, ...], new: dict[tuple[str, str], dict[str, str]]) -> int:
    """Write `out` (atomically) with `new`'s rows and the rows it held of other (run id, step)
    pairs; the number kept."""
    kept = {}
    if out.is_file():
        with out.open(newline="") as f:
            kept = {(r["run_id"], r["step"]): r for r in csv.DictReader(f)}
    rows = {**kept, **new}
    order = sorted(
        rows.values(), key=lambda r: (r["method"], int(r["search_seed"] or -1), r["run_id"], int(r["step"]))
    )
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in fields} for r in order)
    os.replace(tmp, out)
    return len(rows) - len(new)


def main(sweep: Path, out: Path = OUT, curves: Path = CURVES) -> None:
    done = done_searches(sweep)
    new = compute(sweep, done)
    kept = update(out, FIELDS, new)
    searched = len({k[0] for k in new})
    print(f"{out}: {len(new)} masks of {searched} searches compared here, {kept} rows kept")
    logged = training_curves(sweep, done)
    kept = update(curves, CURVE_FIELDS, logged)
    print(f"{curves}: {len({k[0] for k in logged})} searches' training logs here, {kept} rows kept")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/minilm-mlm-v2").resolve())
