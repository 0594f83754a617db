"""Copy the study's live store and the masks it still needs into this folder, to commit before a stop.

A machine's files end with its session: a search's checkpoints (300 MB) cannot be kept, but its
mask (2.8 MB) can. This copies `results.sqlite` (SQLite's backup API: consistent while sweeps write)
and, under `masks/`, every mask (final, or a search-cost checkpoint's) that a run of the plan not
done yet reads; a mask no run needs any more leaves the folder (git history keeps it, and each run's
provenance its content hash), so the working tree stays small (the device tool carries 64 MiB). To
resume on a new machine, from the study's worktree:

    mkdir -p sweeps/minilm-mlm && cp docs/results/minilm-mlm/results.sqlite sweeps/minilm-mlm/
    cp -r docs/results/minilm-mlm/masks sweeps/minilm-mlm/

Usage (from the worktree's root): python docs/results/minilm-mlm/snapshot.py [SWEEP_DIR]
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = (".ticketlab-output", "mask_config.json", "masks.safetensors")  # not run/ (checkpoints)


def needed_masks(db: sqlite3.Connection) -> set[str]:
    """The mask directories (relative to the sweep) that a run of the plan not done yet reads, of
    searches that are done (rows of earlier run ids are history: their masks went with an earlier
    machine)."""
    plan = set(json.loads(db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()[0]))
    rows = db.execute("SELECT id, kind, status, config, metrics FROM runs")
    runs = {i: (k, s, json.loads(c), json.loads(m or "null")) for i, k, s, c, m in rows if i in plan}
    keep: set[str] = set()
    for _, status, config, _ in runs.values():
        ref = config.get("mask")
        if status == "done" or not ref or ref["search"] not in runs:
            continue
        _, search_status, _, metrics = runs[ref["search"]]
        if search_status != "done":
            continue
        if ref.get("step") is None:
            keep.add(metrics["mask_dir"])
        else:
            keep.update(i["mask_dir"] for i in metrics["intermediate"] if i["step"] == ref["step"])
    return keep


def main(sweep: Path) -> None:
    src = sqlite3.connect(f"file:{sweep / 'results.sqlite'}?mode=ro", uri=True)
    tmp = HERE / "results.sqlite.tmp"
    tmp.unlink(missing_ok=True)
    dst = sqlite3.connect(tmp)
    src.backup(dst)
    keep = needed_masks(dst)
    dst.close()
    src.close()
    tmp.replace(HERE / "results.sqlite")
    out = HERE / "masks"
    for rel in sorted(keep):
        target = out / Path(rel).name
        if (target / "masks.safetensors").is_file():
            continue
        if not (sweep / rel / "masks.safetensors").is_file():
            print(f"note: {sweep / rel} has no mask (a search re-run for lost masks?): not copied")
            continue
        part = target.with_name(target.name + ".tmp")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for name in FILES:
            shutil.copy2(sweep / rel / name, part / name)
        part.replace(target)
    for old in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        if old.name not in {Path(rel).name for rel in keep}:
            shutil.rmtree(old)  # no run needs it any more: git history has it
            print(f"note: {old.name}: every run that reads it is done; removed from {out}")
    print(f"{HERE / 'results.sqlite'}: store copied; {len(keep)} masks kept under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/minilm-mlm").resolve())
