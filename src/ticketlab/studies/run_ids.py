"""A run's id: the content hash of its resolved config (`run_id`), minus the paths of the inputs
whose content key it holds and the settings that name ticketlab's behaviour before the reference defaults
(`identity`), so a store carried to another machine keeps its ids and old rows are never reused under
new defaults. Every row of a results store is made here (`make_run`): a sweep's runs (`sweep/plan.py`),
a super-ticket study's and ticket sharing's rows. Stores of an earlier identity are re-keyed once
(`sweep/rekey.py`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from ..core.digest import digest
from ..core.errors import TicketlabError
from ..core.files import open_safetensors, read_json
from ..core.outputs import safe_component
from ..models.arch import ARCHS

PLAN_VERSION = 1  # in every id's hash; ids without paths are told apart by the store's meta `ids`
# 1: ids hashed the inputs' absolute paths; 2: by content where known (`identity`); 3: the corpus's
# other settings (text column, dev fraction) and file names per split back in the identity; 4: the
# papers' methods became the defaults (`sweep.rekey._retired_defaults`): a run searched under an
# old default names it in its settings, so a run under the new one never reuses it; 5: a model's
# content key leaves out its card and other files loading does not read (`core.files.model_key`);
# 6: a task's data key is what loading the task reads (`sweep.plan.data_key`: of a GLUE root the
# task's folder)
IDS_VERSION = 6
LOCATED = ("model", "corpus", "data")  # config fields that are paths, each with its key in `inputs`


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    name: str  # a readable, filesystem-safe name (directories are `<name>_<id8>`)
    config: dict[str, Any]
    deps: tuple[str, ...] = ()

    @property
    def dirname(self) -> str:
        return run_dirname(self.name, self.id)


def run_dirname(name: str, run_id_: str, what: str = "run name") -> str:
    """A run's directory name, `<name>_<id8>`, under a sweep's `runs/` and `masks/`. The name holds
    labels of the spec (a task's, a method's): one component, never `../x` (`what` names it in the
    error)."""
    return safe_component(f"{name}_{run_id_[:8]}", what)


# The settings at the values that select ticketlab's earlier defaults, those from before it followed
# the reference code: a masked MLM decoder, KD on the corrupted input, a mask's trained MLM head, the
# pooler left dense, TAMT's KD teacher in eval mode and its masker's round(s·n) count, SQuAD's
# overlapping windows; and TAMT-KD on
# the pre-training blocks (`kd_data: blocks`, still the default and what every TAMT-KD run trained on
# before its own KD data could be chosen). A run that names one computes what a run without it computed
# under the earlier defaults, so its id leaves the setting out: a store written under them keeps its
# rows' ids (the committed specs name these settings: docs/results/*/spec.yaml). A run under the
# reference defaults names those it runs under in its config's `defaults` instead
# (`MethodSpec.changed_defaults`), so its id is never an earlier row's.
EARLIER_DEFAULTS = {
    "decoder": "masked",
    "kd_input": "corrupted",
    "mlm_head": "trained",
    "no_pooler": True,
    "kd_teacher": "eval",
    "count": "round",
    "kd_data": "blocks",
    "squad_windows": "overlap",
}


def _is_earlier_default(key: str, value: Any, config: dict[str, Any]) -> bool:
    """Whether a setting names one of ticketlab's earlier defaults: one of EARLIER_DEFAULTS, a schedule
    that ends at the stop, or a family's earlier default targets (those without the pooler)."""
    if key == "schedule_steps":
        return value is not None and value == config.get("steps")
    if key == "targets":
        return isinstance(value, str) and value in {a.targets(pooler=False) for a in ARCHS.values()}
    if key not in EARLIER_DEFAULTS:
        return False
    old = EARLIER_DEFAULTS[key]
    return value is old if isinstance(old, bool) else value == old  # `no_pooler: 1` is no True


def checkpoint_has_pooler(model: str) -> bool:
    """Whether the base model's checkpoint holds pooler weights, read from its safetensors header or
    index without loading a tensor; True where that cannot be told (a hub id, a .bin checkpoint), so
    that a run under the default targets that follow the reference code is never taken for one from before."""
    try:  # a family whose base model has no pooler (ELECTRA, DeBERTa, ...) prunes none
        model_type = read_json(Path(model).expanduser() / "config.json", "model config")
        arch = ARCHS.get(model_type.get("model_type")) if isinstance(model_type, dict) else None
    except TicketlabError:
        arch = None
    if arch is not None and arch.pooler is None:
        return False
    names = _weight_names(str(model))
    return names is None or any("pooler." in n for n in names)


@functools.lru_cache(maxsize=8)
def _weight_names(model: str) -> frozenset[str] | None:
    root = Path(model).expanduser()
    try:
        index = root / "model.safetensors.index.json"
        if index.is_file():
            return frozenset(read_json(index, "weights index")["weight_map"])
        with open_safetensors(root / "model.safetensors") as f:  # its header only
            return frozenset(f.keys())
    except (TicketlabError, SafetensorError, OSError, KeyError, TypeError):
        return None


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a run's id hashes: its config, with the paths of the inputs whose content key it holds
    (`inputs`) left out, and the settings that name ticketlab's earlier defaults (`EARLIER_DEFAULTS`).
    A corpus keeps its other settings (text column, dev fraction) and its files' names per split (a file
    moved from train to dev changes what each split reads); a hub id, or a config without keys (a
    super-ticket study's rows), keeps its names."""
    keys = config.get("inputs") or {}
    out = {k: v for k, v in config.items() if not (k in LOCATED and keys.get(k) is not None)}
    if isinstance(out.get("settings"), dict):
        out["settings"] = {k: v for k, v in out["settings"].items() if not _is_earlier_default(k, v, config)}
    corpus = config.get("corpus")
    if keys.get("corpus") is not None and isinstance(corpus, dict):
        out["corpus"] = {k: _names(v) if k in ("train", "dev") else v for k, v in corpus.items()}
    if isinstance(out.get("source"), dict) and keys.get("data") is not None:  # a per-task search's
        out["source"] = {k: v for k, v in out["source"].items() if k != "data"}
    return out


def _names(paths: Any) -> Any:
    """File names without their folders (a list of paths, or whatever else a config holds)."""
    return [Path(p).name for p in paths] if isinstance(paths, list) else paths


def run_id(config: dict[str, Any]) -> str:
    return digest({"plan_version": PLAN_VERSION, **identity(config)}, compact=True)


def make_run(kind: str, name: str, config: dict[str, Any], deps: tuple[str, ...] = ()) -> Run:
    config = {"kind": kind, **config}
    return Run(run_id(config), kind, name, config, deps)
