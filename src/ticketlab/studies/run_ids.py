"""A run's id: the content hash of its planned config (`run_id`), minus the paths of the inputs whose
content key it holds (`identity`), so a store carried to another machine keeps its ids. Every row of a
results store is made here (`make_run`): a sweep's runs (`sweep/plan.py`), a super-ticket study's and
ticket sharing's rows. What enters an id, and what a changed default or a new field does to ids, is
docs/explanation/run-ids.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from ..core.digest import digest
from ..core.errors import TicketlabError
from ..core.files.inputs import open_safetensors, read_json
from ..core.outputs import safe_component
from ..models.arch import ARCHS

PLAN_VERSION = 1  # in every id's hash
# The scheme that made a store's ids, in its meta `ids`: a store of another is refused (`studies.store`)
IDS_VERSION = 7
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


def checkpoint_has_pooler(model: str) -> bool:
    """Whether the base model's checkpoint holds pooler weights, read from its safetensors header or
    index without loading a tensor; True where that cannot be told (a hub id, a .bin checkpoint): the
    default targets then take the pooler in, and a planned run's id says so (`plan`)."""
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
    (`inputs`) left out, and its `settings` as the run uses them: the spec's over the defaults the
    planner names (`defaults`), so that a spec naming a default's value plans the run that ran under
    it. A corpus keeps its other settings (text column, dev fraction) and its files' names per split
    (a file moved from train to dev changes what each split reads); a hub id, or a config without
    keys (a super-ticket study's rows), keeps its names."""
    keys = config.get("inputs") or {}
    out = {k: v for k, v in config.items() if not (k in LOCATED and keys.get(k) is not None)}
    defaults = out.pop("defaults", None)
    if isinstance(defaults, dict) and defaults:
        out["settings"] = {**defaults, **(out.get("settings") or {})}
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
