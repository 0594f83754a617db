"""A dev evaluation's per-example predictions and labels as JSON: what a GLUE-style task's eval leaves
for its run to keep (`tasks.objective`), a fine-tuning result holds (`verbs.finetune_results`) and a
sweep's store keeps in its `predictions` table, so that a test can resample dev examples and pair
two arms on the same ones (`studies.stats`). Base64 of compact arrays: a few KB a run.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def _compact(values: np.ndarray) -> np.ndarray:
    """Class ids as int8 (int16 beyond 127 classes), regression outputs as float32."""
    if values.dtype.kind in "iub":
        return values.astype(np.int8 if values.size == 0 or int(np.abs(values).max()) < 128 else np.int16)
    return values.astype(np.float32)


def encode_predictions(preds: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per-example predictions (class ids, or a regression's outputs) and labels, (N,) each, as JSON
    (`decode_predictions` reads them back)."""
    out = {}
    for name, values in (("preds", preds), ("labels", labels)):
        arr = _compact(np.asarray(values))
        out[name] = {"dtype": arr.dtype.str, "data": base64.b64encode(arr.tobytes()).decode()}
    return out


def decode_predictions(d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels) from `encode_predictions`' JSON."""
    arrays = [
        np.frombuffer(base64.b64decode(d[k]["data"]), dtype=np.dtype(d[k]["dtype"]))
        for k in ("preds", "labels")
    ]
    return arrays[0], arrays[1]
