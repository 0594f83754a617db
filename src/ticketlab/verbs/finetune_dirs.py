"""The directories of `verbs.finetune`: one run's (`config.json` with its identity and the content
keys of its inputs, `result.json`, `model/`) and RUN_DIR of several seeds (`results.json`; both
names are `finetune_results`', beside what they hold). A run
resumes only under the same identity; a finished one returns its saved result."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..core.digest import content_keys, digest
from ..core.files.atomic import atomic_write_json
from ..core.files.inputs import read_json
from ..masks.identity import mask_key
from ..masks.io import library_versions
from ..tasks.glue import task_dir
from ..tasks.registry import TaskSpec
from ..train.run_dir import RunDir, check_same_run
from .finetune_config import FinetuneConfig
from .finetune_results import RESULT_FILE, FinetuneResult

CONFIG_FILE, MODEL_DIR = "config.json", "model"


INPUT_NAMES = {"model": "the model", "mask": "the mask", "data": "the task data", "task": "the task file"}


def input_content(config: FinetuneConfig, spec: TaskSpec) -> dict[str, str]:
    """Content keys of the local files a run reads (model weights, mask, task data, task file): the
    config names paths, and a path may get other bytes. Hub ids have none. Kept beside the
    fingerprint, not in it, so the ids of recorded runs stay as they are."""
    paths = input_paths(config)
    if config.data_dir is not None:
        paths["data"] = task_dir(spec, config.data_dir)  # the task's own folder, not the whole GLUE root
    keys = content_keys({k: v for k, v in paths.items() if k != "mask"})
    if config.mask is not None and (mask := mask_key(config.mask)) is not None:
        keys["mask"] = mask  # its bits and what they cover, not when it was made (a re-run `prune`)
    return keys


def _check_run_dir(
    out: Path, print_: dict[str, Any], config: FinetuneConfig, inputs: dict[str, str]
) -> FinetuneResult | None:
    """The saved result of the same finished run, None to (re)start, or an error for another config
    or changed inputs (`train.run_dir.check_same_run`)."""
    cfg_path = out / CONFIG_FILE
    if not cfg_path.is_file():
        return None
    recorded = read_json(cfg_path, "run config")
    recorded = recorded if isinstance(recorded, dict) else {}
    where = input_paths(config)
    names = {f"{k} content": f"{v} at {where[k]}" if where.get(k) else v for k, v in INPUT_NAMES.items()}
    check_same_run(
        out,
        "run",
        _identity(recorded.get("fingerprint"), recorded.get("inputs")),
        _identity(print_, inputs),
        names,
    )
    done = _run_dir(out).finished()
    if done is None:
        return None
    # Where its files are is `out`, not what result.json says: an edited or moved file must not make
    # a caller (a study deleting the weights it no longer needs) act on a folder outside the run.
    result, model = FinetuneResult.from_dict(done, str(out / RESULT_FILE)), out / MODEL_DIR
    kept = result.model_dir is not None and model.is_dir()
    return dataclasses.replace(result, out_dir=str(out), model_dir=str(model) if kept else None)


RUN_KIND, OUTPUT_KIND = "fine-tuning run", "fine-tuning output"  # one seed's directory; RUN_DIR


def _run_dir(out: Path) -> RunDir:
    """RUN_DIR: its identity is in `config.json` (`_check_run_dir` reads its nested record)."""
    return RunDir(out, "run", identity=CONFIG_FILE, result=RESULT_FILE)


def _identity(fingerprint: Any, inputs: Any) -> dict[str, Any]:
    """A fine-tuning's identity as one flat mapping: its settings, its task's spec, its inputs' keys."""
    fp = fingerprint if isinstance(fingerprint, dict) else {}
    config = fp.get("config") if isinstance(fp.get("config"), dict) else {}
    keys = inputs if isinstance(inputs, dict) else {}
    return {**config, "task spec": fp.get("task"), **{f"{k} content": v for k, v in keys.items()}}


def _write_config(out: Path, record: dict[str, Any], config: FinetuneConfig, mask_config: Any) -> None:
    """`config.json`: the fingerprint and its id, the content keys of the inputs, the resolved
    protocol, the whole config, the mask's config and the library versions."""
    print_ = record["fingerprint"]
    atomic_write_json(
        out / CONFIG_FILE,
        {
            "fingerprint": print_,
            "id": digest(print_),
            "inputs": record["inputs"],
            "resolved": record["resolved"],
            "config": config.to_dict(),
            "mask": mask_config.to_dict() if mask_config is not None else None,
            "versions": library_versions(),
        },
    )


def _write_result(out: Path, result: FinetuneResult, *, keep_checkpoint: bool) -> None:
    _run_dir(out).finish(result.to_dict(), keep_checkpoint=keep_checkpoint)


def _finished(out: Path | None, done: FinetuneResult, *, keep_checkpoint: bool) -> FinetuneResult:
    """A finished run's saved result, its checkpoint removed unless kept (by the main process): a
    kill between the result and the checkpoint's removal (`_write_result`) left one behind."""
    if out is not None and _is_main():
        _run_dir(out).tidy(keep_checkpoint=keep_checkpoint)
    return done


def _is_main() -> bool:
    """The main process (under `accelerate launch`, before the accelerator exists): it owns RUN_DIR."""
    return os.environ.get("RANK", "0") == "0"


def input_paths(config: FinetuneConfig) -> dict[str, str | None]:
    """What a fine-tuning reads, by `INPUT_NAMES` key: its model, mask, data folder and task file."""
    return {
        "model": config.model,
        "mask": config.mask,
        "data": config.data_dir,
        "task": config.task if config.task.endswith(".json") else None,
    }


def _inputs(config: FinetuneConfig) -> list[str | None]:
    return list(input_paths(config).values())
