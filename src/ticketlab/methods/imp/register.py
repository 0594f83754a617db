"""IMP: iterative magnitude pruning with rewinding (Chen et al. 2020), `ticketlab search imp`, on MLM
or on a task (`--task`); the search is `search.py` (`search_from_config`, imported when the method first runs:
`--help` reads this module). Sweeps know it as `imp`
and `imp-task`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...core.digest import run_identity
from ..registry import Method, Preset, register_method
from ..search_config import SearchConfig
from .config import ImpConfig, imp_schedule

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..search import SearchResult


def _imp_settings(m: ImpConfig) -> dict[str, Any]:
    """IMP's part of a search's identity: its config's fields, the pooler under its field's name
    (False: dense)."""
    return {**run_identity(m, leave_out=("pooler",), options=True), "pooler": m.pooler}


def _imp_steps(m: ImpConfig, steps: int) -> None:
    imp_schedule(m.sparsity, steps, m.prune_rate, m.first_pruning or "start")


def _imp_changed(fixed: Mapping[str, Any], settings: Mapping[str, Any], pooler: bool) -> dict[str, Any]:
    """IMP's defaults in force in a sweep's search (see `Method.changed_defaults`): on
    MLM the dense decoder and the KD dev loss on clean text; the pooler where the checkpoint has one."""
    defaults = {"decoder": "dense", "kd_input": "clean"}
    changed: dict[str, Any] = {k: v for k, v in defaults.items() if settings.get(k) is None}
    if pooler and settings.get("targets") is None and settings.get("no_pooler") is not True:
        changed["pooler"] = True
    return changed


def _imp_resolve(m: ImpConfig, search: SearchConfig) -> ImpConfig:
    return m.resolved(on_task=search.task is not None)


def search_from_config(config: SearchConfig, acc: Accelerator) -> SearchResult:
    """IMP's search of `config` (`search.search_from_config`), imported when it first runs."""
    from .search import search_from_config as run  # lazy: `--help` reads this module; the search needs torch

    return run(config, acc)


# In report order: IMP before TAMT's objectives, the baselines first, as Fig. 3 reads.


register_method(
    Method(
        "imp",
        ImpConfig,
        search_from_config,
        "iterative magnitude pruning with rewinding (IMP)",
        task=True,
        settings=_imp_settings,
        check_steps=_imp_steps,
        resolve=_imp_resolve,
        changed_defaults=_imp_changed,
        presets=(Preset("imp", "iterative magnitude pruning on MLM, rewinding to θ0", color="C3"),),
        order=3,
    )
)
