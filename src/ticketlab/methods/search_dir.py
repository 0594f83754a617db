"""The output directory of a mask search (`search.run_search`): resuming, publishing the mask.

A search writes one directory, usable as a mask directory as soon as it is finished:

    OUT/mask_config.json, masks.safetensors   the found mask (`--mask OUT` everywhere)
    OUT/mlm_head.safetensors                  TAMT-MLM: the trained MLM head (a delta, see tamt/search.py)
    OUT/rewound_model/                        IMP --rewind-to: the weights the mask applies to
    OUT/steps/step-000100/                    masks saved on the way (`save_at`), each a mask dir
    OUT/run/log.jsonl                         the JSON-lines search log (losses, lr, time, events)
    OUT/run/settings.json, train_result.json  what was asked for, and the training summary
    OUT/run/checkpoint.pt                     while running (deleted once the mask is written)

An interrupted search resumes from `run/checkpoint.pt` when the same command is run again; a finished
one is not repeated. A directory holding anything else is refused, one process at a time runs in it
(`run/.lock`), and a resume is refused when what the search reads changed: the settings, the base
model's target weights or the corpus's content. The mask files are moved into OUT one by one, config
last, so OUT only looks like a mask once it is complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..core.files.atomic import temp_dir, to_json
from ..core.files.owned import open_append
from ..core.outputs import MARKER
from ..masks import Mask, MaskConfig, save_mask
from ..masks.io import CONFIG_NAME
from ..train.loop import CHECKPOINT, LOG, RESULT
from ..train.run_dir import RunDir

SETTINGS = "settings.json"
# Settings that record what the search reads, by content: a change is named as such on a resume.
INPUT_KEYS = {"model_weights": "the base model's weights", "corpus_content": "the corpus"}


class SearchDir:
    """Paths and bookkeeping of one search output directory: a `RunDir` whose own files (identity,
    lock, checkpoint, training result) are under `run/`, beside the mask it publishes."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.run = self.out / "run"
        self.steps = self.out / "steps"
        files = {
            k: f"run/{v}"
            for k, v in {"identity": SETTINGS, "result": RESULT, "checkpoint": CHECKPOINT}.items()
        }
        self.run_dir = RunDir(self.out, "search", **files, lock_in="run")
        # the training summary, written once the search has trained; the training loop's checkpoint
        self.result_file, self.checkpoint_file = (
            self.run_dir.file(files["result"]),
            self.run_dir.file(files["checkpoint"]),
        )

    @property
    def finished(self) -> bool:
        return (self.out / CONFIG_NAME).is_file() and self.result_file.is_file()

    def check_settings(self, settings: dict[str, Any], is_main: bool = True) -> None:
        """Refuse to resume a run that was started with other settings; record them for a new run."""
        self.run_dir.check(settings, INPUT_KEYS, write=is_main)

    def log(self, record: dict[str, Any]) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        with open_append(self.run / LOG) as f:
            f.write(to_json(record) + "\n")

    def step_dir(self, step: int) -> Path:
        return self.steps / f"step-{step:06d}"

    def cleanup(self, keep_checkpoint: bool) -> None:
        self.run_dir.tidy(keep_checkpoint=keep_checkpoint)


def publish_mask(
    mask: Mask,
    config: MaskConfig,
    out: str | os.PathLike,
    *,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a mask into `out` without touching other files there (run/, steps/): each file is moved
    in atomically, the config last, so `out` is a loadable mask only once all files are in place."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out, "publish")
    try:
        save_mask(mask, config, tmp, extra=extra)
        names = sorted(p.name for p in tmp.iterdir() if p.name != MARKER)  # `out` is a search dir
        for name in [n for n in names if n != CONFIG_NAME] + [CONFIG_NAME]:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
