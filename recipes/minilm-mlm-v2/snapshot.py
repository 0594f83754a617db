"""minilm-mlm's `snapshot.py`, for this study's folder: copy the live store and the masks its pending
runs read here before a stop (`masks/`), or bring each done search's final mask back from git history
(`--restore`). The code is minilm-mlm's (one copy of it); only the folder it writes and reads differs.
Before a stop it first records, in `curve_similarity.csv`, the Jaccard with OMP's mask of every mask
saved along a search that is still on this machine (`curve_similarity.py`): those masks are not
committed, and leave with the machine.

Usage (from the worktree's root):
    PYTHONPATH=src python recipes/minilm-mlm-v2/snapshot.py [SWEEP_DIR]              # before a stop
    PYTHONPATH=src python recipes/minilm-mlm-v2/snapshot.py --restore [SWEEP_DIR]  # before the report

The pilot's store (no masks) is copied alone: `--pilot [SWEEP_DIR]` writes `pilot/results.sqlite`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm-v2"  # the study's record
spec = importlib.util.spec_from_file_location(
    "minilm_mlm_snapshot", Path(__file__).resolve().parents[1] / "minilm-mlm" / "snapshot.py"
)
snapshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snapshot)
snapshot.HERE = HERE  # its functions read the folder from this global

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--pilot"]:
        from ticketlab.studies.store import copy_store

        sweep = Path(args[1] if len(args) > 1 else "sweeps/minilm-mlm-v2-pilot").resolve()
        # sweeps/minilm-mlm-v2-pilot -> pilot/, sweeps/minilm-mlm-v2-pilot-9L -> pilot-9L/
        folder = HERE / sweep.name.removeprefix("minilm-mlm-v2-")
        folder.mkdir(exist_ok=True)
        copy_store(sweep / "results.sqlite", folder / "results.sqlite")
        print(f"{folder / 'results.sqlite'}: the pilot's store copied")
        sys.exit(0)
    if args[:1] == ["--restore"]:
        snapshot.restore(Path(args[1] if len(args) > 1 else "sweeps/minilm-mlm-v2").resolve())
        sys.exit(0)
    sweep = Path(args[0] if args else "sweeps/minilm-mlm-v2").resolve()
    # First, while the masks along the searches are here (beside this script; needs ticketlab,
    # so imported only now).
    import curve_similarity

    curve_similarity.main(sweep)
    snapshot.main(sweep)
