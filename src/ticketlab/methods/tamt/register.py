"""TAMT: task-agnostic mask training (Liu et al. 2022), `ticketlab search tamt`: its scores and masked
layers are `scores.py`, its exact thresholds `thresholds.py`, the search `search.py`
(`search_from_config`, imported when the method first runs: `--help` reads this module); sweeps know
it by its objectives, `tamt-mlm`, `tamt-kd`, `tamt-mlm+kd`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...core.digest import OMIT, run_identity
from ..registry import Method, Preset, register_method
from ..search_config import SearchConfig
from .config import TamtConfig, paper_budget, paper_schedule_steps

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..search import SearchResult


def _tamt_settings(m: TamtConfig) -> dict[str, Any]:
    """TAMT's part of a search's identity: its config's fields at the values the search uses (the
    decoder where an MLM loss reads it, the input and teacher mode where a KD loss does), less the
    seed (the search's own) and the pooler (held at its start)."""
    resolved = {
        "decoder": m.decoder if "mlm" in m.objective else OMIT,
        "kd_input": m.kd_reads,
        "kd_teacher": m.teacher_mode if m.kd_reads else OMIT,  # no KD loss: no teacher
    }
    return run_identity(m, leave_out=("seed", "pooler"), values=resolved, options=True)


def _tamt_paper_budget(m: TamtConfig) -> tuple[int, int | None]:
    """Tab. 2's step for the sparsity and the 27,920-step schedule it stopped in; on TAMT's KD data
    the schedule is train_kd.py's over them (None: known once they are drawn, `tamt.kd_data_horizon`)."""
    steps, horizon = paper_budget(m.sparsity)
    return steps, None if m.kd_data == "reference" else horizon


def _tamt_changed(fixed: Mapping[str, Any], settings: Mapping[str, Any], pooler: bool) -> dict[str, Any]:
    """TAMT's defaults in force in a sweep's search (see `Method.changed_defaults`):
    the dense decoder (MLM objectives), KD on clean text (TAMT-KD), the KD teacher in train mode
    (TAMT-KD), the masker's int(s·n) count, Tab. 2's schedule (on TAMT's KD data, train_kd.py's over
    them), the pooler and, for a search too short for Table 1's lr to move a mask, the lr the default
    raises it to (`settings` holds the run's `steps` and `sparsity` beside the spec's settings)."""
    objective = {**fixed, **settings}.get("objective", "mlm")
    changed: dict[str, Any] = {}
    if "mlm" in objective and settings.get("decoder") is None:
        changed["decoder"] = "dense"
    if objective == "kd" and settings.get("kd_input") is None:
        changed["kd_input"] = "clean"
    if objective == "kd" and settings.get("kd_teacher") is None:
        changed["kd_teacher"] = "train"
    if settings.get("count") is None:
        changed["count"] = "floor"
    if settings.get("schedule_steps") is None:  # on TAMT's KD data, train_kd.py's t_total over them
        changed["schedule_steps"] = "kd-data" if settings.get("kd_data") == "reference" else "tab2"
    if pooler and settings.get("targets") is None and settings.get("no_pooler") is not True:
        changed["pooler"] = True
    lr = _raised_lr({**fixed, **settings})
    if lr is not None:
        changed["lr"] = lr
    return changed


def _raised_lr(settings: Mapping[str, Any]) -> float | None:
    """The lr a sweep's search without one runs at where the default raises Table 1's for a short
    search (`TamtConfig.default_lr`); None where it runs at Table 1's, which its objective names."""
    steps, sparsity = settings.get("steps"), settings.get("sparsity")
    if settings.get("lr") is not None or not isinstance(steps, int) or not isinstance(sparsity, float):
        return None
    fields = {k: settings[k] for k in ("objective", "alpha", "threshold") if settings.get(k) is not None}
    config = TamtConfig(sparsity, **fields)
    horizon = settings.get("schedule_steps") or paper_schedule_steps(steps, sparsity)
    lr = config.default_lr(steps, horizon)
    return lr if lr != config.paper_lr else None


def search_from_config(config: SearchConfig, acc: Accelerator) -> SearchResult:
    """TAMT's search of `config` (`search.search_from_config`), imported when it first runs."""
    from .search import search_from_config as run  # lazy: `--help` reads this module; the search needs torch

    return run(config, acc)


register_method(
    Method(
        "tamt",
        TamtConfig,
        search_from_config,
        "task-agnostic mask training (TAMT)",
        settings=_tamt_settings,
        sparse_throughout=True,
        schedule=lambda m, steps: paper_schedule_steps(steps, m.sparsity),
        paper_budget=_tamt_paper_budget,
        changed_defaults=_tamt_changed,
        presets=(
            Preset("tamt-mlm", "mask training on MLM", {"objective": "mlm"}, "C4"),
            Preset("tamt-kd", "mask training on KD (Eq. 6)", {"objective": "kd"}, "C5"),
            Preset("tamt-mlm+kd", "mask training on MLM + KD", {"objective": "mlm+kd"}, "C6"),
        ),
        order=4,  # reports list IMP before TAMT's objectives: baselines first, as Fig. 3 reads
        against=("imp",),  # each objective against IMP and its variants (Liu et al.)
    )
)
