"""Merge the runs the GPU finished into minilm-mlm-v2's store, once the device check allows it (README.md).

Copies each finished fine-tuning of the GPU's store whose row in the study's store (same run id) is
pending or failed, with its provenance marked `device` (the GPU's name), in one statement per row that
checks the status as it writes: a row a sweep is running there (or has finished) is left alone.

    python recipes/gpu-2026-11-28/merge.py GPU_STORE STUDY_STORE --device "cuda: NVIDIA H200"
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

FIELDS = "status metrics provenance error attempts host pid started heartbeat finished job log".split()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gpu", type=Path, help="the GPU's copy of the store")
    p.add_argument("study", type=Path, help="the study's store, written in place")
    p.add_argument("--device", required=True, help="what ran them, recorded in each run's provenance")
    args = p.parse_args()

    gpu = sqlite3.connect(f"file:{args.gpu}?mode=ro", uri=True)
    done = "status = 'done' and kind = 'finetune'"
    rows = gpu.execute(f"select id, name, {', '.join(FIELDS)} from runs where {done}")
    study = sqlite3.connect(args.study, timeout=60)  # a sweep may be writing it
    merged = []
    with study:
        for run_id, name, *values in rows:
            row = dict(zip(FIELDS, values, strict=True))
            row["provenance"] = json.dumps({**json.loads(row["provenance"]), "device": args.device})
            sets = ", ".join(f"{f} = ?" for f in FIELDS)
            where = "id = ? and status in ('pending', 'failed')"
            cur = study.execute(f"update runs set {sets} where {where}", [row[f] for f in FIELDS] + [run_id])
            if cur.rowcount:
                merged.append(name)
    print(f"merged {len(merged)} runs into {args.study}:", *sorted(merged), sep="\n  ")


if __name__ == "__main__":
    main()
