"""Copy the study's live store and the masks it still needs into this folder, to commit before a stop.

A machine's files end with its session: a search's checkpoints (300 MB) cannot be kept, but its
mask (2.8 MB) can. This copies `results.sqlite` (SQLite's backup API: consistent while sweeps write;
one file, out of WAL mode, so that reading it leaves no `-wal`/`-shm` files to commit) and, under
`masks/`, every mask (final, or one saved along a search: `<search>/steps/step-N`, as in the
sweep) that a run of the plan not done yet reads; a mask no run needs any more leaves the folder
(git history keeps it, and each run's provenance its content hash), so the working tree stays small
(the device tool carries 64 MiB). To resume on a new machine, from the study's worktree:

    mkdir -p sweeps/minilm-mlm && cp docs/results/minilm-mlm/results.sqlite sweeps/minilm-mlm/
    cp -r docs/results/minilm-mlm/masks sweeps/minilm-mlm/

The report needs every final mask (its mask-similarity figures read them) long after their runs are
done and the masks have left this folder; `--restore` brings each done search's final mask back into
the sweep from git history (the last commit that held it), before `ticketlab report`.

Usage (from the worktree's root):
    PYTHONPATH=src python recipes/minilm-mlm/snapshot.py [SWEEP_DIR]              # before a stop
    PYTHONPATH=src python recipes/minilm-mlm/snapshot.py --restore [SWEEP_DIR]  # before the report
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm"  # the study's record
FILES = (".ticketlab-output", "mask_config.json", "masks.safetensors")  # not run/ (checkpoints)


def needed_masks(db: sqlite3.Connection) -> set[str]:
    """The mask directories (relative to the sweep) that a run of the plan not done yet reads, of
    searches that are done (rows of earlier run ids are history: their masks went with an earlier
    machine)."""
    runs = _plan_runs(db)
    keep: set[str] = set()
    for _, status, config, _, _ in runs.values():
        ref = config.get("mask")
        if status == "done" or not ref or ref["search"] not in runs:
            continue
        _, search_status, _, metrics, _ = runs[ref["search"]]
        if search_status != "done":
            continue
        if ref.get("step") is None:
            keep.add(metrics["mask_dir"])
        else:
            keep.update(i["mask_dir"] for i in metrics["intermediate"] if i["step"] == ref["step"])
    return keep


def _plan_runs(db: sqlite3.Connection) -> dict[str, tuple[str, str, dict, dict | None, dict]]:
    """id -> (kind, status, config, metrics, provenance) of the runs of the store's current plan."""
    plan = set(json.loads(db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()[0]))
    rows = db.execute("SELECT id, kind, status, config, metrics, provenance FROM runs")
    return {
        i: (k, s, json.loads(c), json.loads(m or "null"), json.loads(p or "{}"))
        for i, k, s, c, m, p in rows
        if i in plan
    }


def _write_mask(target: Path, files: dict[str, bytes]) -> Path:
    """A mask folder's `files` written beside `target` (`<name>.tmp`, returned) for the caller to
    move into place: a stop half-way leaves no half mask under its name."""
    part = target.with_name(target.name + ".tmp")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    for name, data in files.items():
        (part / name).write_bytes(data)
    return part


def restore(sweep: Path) -> None:
    """Bring back into `sweep` the final mask of every done search that is missing there, from the
    newest commit (on any branch) whose tree holds it under this folder's `masks/`, checked against
    the content hash its search recorded (ticketlab's `mask_hash`; needs the study's environment)."""
    from ticketlab.core.files.inputs import check_regular_unopened
    from ticketlab.studies.sweep.provenance import mask_hash

    check_regular_unopened(sweep / "results.sqlite", "results store")  # else SQLite's "unable to open"
    db = sqlite3.connect(f"file:{sweep / 'results.sqlite'}?mode=ro", uri=True)
    runs = _plan_runs(db)
    db.close()
    root = Path(subprocess.check_output(["git", "rev-parse", "--show-toplevel"], cwd=HERE, text=True).strip())
    folder = HERE.relative_to(root) / "masks"
    missing = 0
    for kind, status, _, metrics, prov in runs.values():
        if kind != "search" or status != "done" or not metrics.get("mask_dir"):
            continue
        target = sweep / metrics["mask_dir"]
        if (target / "masks.safetensors").is_file():
            continue
        path = f"{folder}/{target.name}"
        # The newest commit touching it added it (still held) or removed it (its parent held it).
        last = subprocess.check_output(
            ["git", "log", "-1", "--all", "--format=%H", "--", path], cwd=root, text=True
        )
        held = [c for c in (last.strip(), last.strip() + "^") if c and _holds(root, c, path)]
        if not held:
            print(f"note: {target.name}: in no commit; not restored")
            missing += 1
            continue
        commit = subprocess.check_output(["git", "rev-parse", held[0]], cwd=root, text=True).strip()
        git_file = {
            n: subprocess.check_output(["git", "show", f"{commit}:{path}/{n}"], cwd=root) for n in FILES
        }
        part = _write_mask(target, git_file)
        if prov.get("mask_hash") and mask_hash(part) != prov["mask_hash"]:
            shutil.rmtree(part)
            print(f"note: {target.name} in {commit[:12]} is not the mask its search saved; not restored")
            missing += 1
            continue
        part.replace(target)
        print(f"{target}: restored from {commit[:12]}")
    print(
        f"{sweep}: {missing} done searches' final masks missing"
        if missing
        else f"{sweep}: every done search's final mask is there"
    )


def _holds(root: Path, commit: str, path: str) -> bool:
    test = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}:{path}/masks.safetensors"], cwd=root, stderr=subprocess.DEVNULL
    )
    return test.returncode == 0


def main(sweep: Path) -> None:
    from ticketlab.studies.store import copy_store

    copy_store(sweep / "results.sqlite", HERE / "results.sqlite")
    with contextlib.closing(sqlite3.connect(f"{(HERE / 'results.sqlite').as_uri()}?mode=ro", uri=True)) as db:
        keep = needed_masks(db)
    out = HERE / "masks"
    needed = {_under_masks(rel) for rel in keep}
    for rel in sorted(keep):
        target = out / _under_masks(rel)
        if (target / "masks.safetensors").is_file():
            continue
        if not (sweep / rel / "masks.safetensors").is_file():
            print(f"note: {sweep / rel} has no mask (a search re-run for lost masks?): not copied")
            continue
        _copy_mask(sweep / rel, target)
    for old in _unneeded(out, needed):
        shutil.rmtree(old)  # no run needs it any more: git history has it
        print(f"note: {old.relative_to(out)}: every run that reads it is done; removed from {out}")
    print(f"{HERE / 'results.sqlite'}: store copied; {len(keep)} masks kept under {out}")


def _under_masks(rel: str) -> Path:
    """A mask's place under `masks/`, as under the sweep's: its search's folder, and in it
    `steps/step-N` for a mask saved along the search (so `cp -r masks SWEEP/` puts each back)."""
    return Path(*Path(rel).parts[1:])


def _copy_mask(src: Path, target: Path) -> None:
    """`src`'s mask files into `target` (which may hold the masks saved along its search), each
    written under a temporary name and moved into place, `masks.safetensors` last: a stop half-way
    leaves no half file, and no folder that `main` takes for a whole mask."""
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # a mask saved along a search has no `.ticketlab-output` of its own
        if (src / name).is_file():
            part = target / (name + ".tmp")
            part.write_bytes((src / name).read_bytes())
            part.replace(target / name)


def _unneeded(out: Path, needed: set[Path]) -> list[Path]:
    """The folders under `out` that no pending run reads: a search's whole folder, or one of the
    masks saved along it (its final mask's files stay while a mask saved along it is still needed)."""
    if not out.is_dir():
        return []
    tops = {p.parts[0] for p in needed}
    gone = [d for d in sorted(out.iterdir()) if d.is_dir() and d.name not in tops]
    for d in sorted(out.glob("*/steps/*")):
        if d.is_dir() and d.parent.parent.name in tops and d.relative_to(out) not in needed:
            gone.append(d)
    return gone


def cli(default: str, doc: str, argv: list[str] | None = None) -> int:
    """`[--restore] [SWEEP_DIR]`, for this study and the later studies whose scripts load this one (their
    folder in `HERE`, their sweep in `default`): a store that is not there is one line, exit 2."""
    from ticketlab.core.errors import TicketlabError

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--restore", action="store_true", help="bring each done search's final mask back from git history"
    )
    ap.add_argument(
        "sweep", nargs="?", default=default, help=f"the study's sweep directory (default: {default})"
    )
    args = ap.parse_args(argv)
    try:
        (restore if args.restore else main)(Path(args.sweep).resolve())
    except TicketlabError as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli("sweeps/minilm-mlm", __doc__))
