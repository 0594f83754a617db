"""minilm-mlm's `snapshot.py`, for this study's folder: copy the live store and the masks its pending
runs read here before a stop (`masks/`), or bring each done search's final mask back from git history
(`--restore`). The code is minilm-mlm's (one copy of it); only the folder it writes and reads differs.
The masks this study reuses from minilm-mlm-v2 come back with v2's script, on this study's sweep:
`recipes/minilm-mlm-v2/snapshot.py --restore sweeps/minilm-mlm-v3`.

Usage (from the worktree's root):
    PYTHONPATH=src python recipes/minilm-mlm-v3/snapshot.py [SWEEP_DIR]              # before a stop
    PYTHONPATH=src python recipes/minilm-mlm-v3/snapshot.py --restore [SWEEP_DIR]  # before the report
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "minilm_mlm_snapshot", ROOT / "recipes" / "minilm-mlm" / "snapshot.py"
)
snapshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snapshot)
snapshot.HERE = ROOT / "docs" / "results" / "minilm-mlm-v3"  # its functions read the folder from this global

if __name__ == "__main__":
    sys.exit(snapshot.cli("sweeps/minilm-mlm-v3", __doc__))
