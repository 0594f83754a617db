"""The import rule for the lower packages (core, models, masks, data, train, lm, tasks): the
modules `--help` reads stay torch-free, and every other module imports what it needs at the top. An
import inside a function is one of the few lazy boundaries, each saying why (`# lazy: ...`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ticketlab"
LOWER = ("core", "models", "masks", "data", "train", "lm", "tasks")
HEAVY = ("torch", "transformers", "sklearn", "scipy", "matplotlib", "accelerate", "datasets")
# What verbs' configs, the task registry and `import ticketlab` read when options are parsed.
LIGHT = (
    "core.checks",
    "core.digest",
    "core.errors",
    "core.files",
    "core.lazy",
    "core.outputs",
    "data.grammar",
    "data.tokenizer_kinds",
    "lm.options",
    "lm.pretrain_config",
    "masks.hf_auto",
    "masks.pattern",
    "masks.targets",
    "models.arch",
    "models.source",
    "tasks.metrics",
    "tasks.registry",
    "train.config",
    "train.run_dir",
)


def heavy_after(modules: tuple[str, ...]) -> list[str]:
    """The heavy packages a fresh interpreter holds after importing `modules` (of ticketlab)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module('ticketlab.' + m)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_light_modules_import_no_heavy_package():
    assert heavy_after(LIGHT) == []


def test_reading_a_mask_file_needs_no_transformers():
    """`ticketlab info MASK` reads a mask's tensors: torch, not transformers (tests/test_startup.py)."""
    assert heavy_after(("masks.io",)) == ["torch"]


def test_training_and_sweeps_import_no_datasets():
    """`datasets` is read only where a saved dataset or the hub is (`# lazy:` in data.sources and the
    tasks' hub readers): a GPU image without it still fine-tunes on local files and runs sweeps."""
    modules = ("tasks.glue", "tasks.squad", "verbs.finetune", "studies.sweep.runner", "demo.pipeline")
    assert "datasets" not in heavy_after(modules)
