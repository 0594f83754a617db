"""TAMT: task-agnostic mask training (Liu et al. 2022), `ticketlab search tamt`: its scores and masked
layers are `methods.scores`, its exact thresholds `methods.thresholds`, the search `methods.tamt`;
sweeps know it by its objectives, `tamt-mlm`, `tamt-kd`, `tamt-mlm+kd`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...core.digest import OMIT, run_identity
from ...core.errors import ConfigError
from ...masks.prunable import attach_pooler
from ...masks.targets import resolve_targets
from ...models.load import load_tokenizer
from ...models.source import fit_max_length
from ..configs import DEFAULT_MAX_LENGTH, TamtConfig, paper_budget, paper_schedule_steps
from ..registry import Method, Preset, register_method
from ..search_inputs import lm_objective, load_mlm_model, run_options

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..search import SearchResult

log = logging.getLogger(__name__)
SearchConfig = Any  # `verbs.search.SearchConfig`, a layer above: read here by its fields only


def search(config: SearchConfig, acc: Accelerator) -> SearchResult:
    from ..tamt import search_tamt  # lazy start-up (see the imports)

    tamt: TamtConfig = config.method  # type: ignore[assignment]
    need_head = "mlm" in tamt.objective
    model, model_config, has_head = load_mlm_model(config, need_head)
    if tamt.targets is None and tamt.pooler:  # TAMT's masker masks the checkpoint's pooler too
        attach_pooler(model, config.model)
    tamt = dataclasses.replace(tamt, targets=resolve_targets(model, tamt.targets, tamt.pooler))
    if need_head and not has_head:
        if not tamt.train_head:
            raise ConfigError(f"{config.model} has no MLM head: a frozen random head cannot be used for MLM")
        if acc.is_main_process:
            log.warning(
                f"note: {config.model} has no MLM head; "
                "a fresh one (transform, bias) is trained with the masks"
            )
    config.max_length = fit_max_length(model_config, config.max_length, DEFAULT_MAX_LENGTH)
    tokenizer = load_tokenizer(config.model)
    # TAMT-KD on a model without an MLM head: no MLM loss to report
    mlm_eval = tamt.objective != "kd" or has_head
    objective = lm_objective(
        config,
        tokenizer,
        acc,
        tamt.objective,
        mlm_eval=mlm_eval,
        decoder=tamt.decoder,
        kd_input=tamt.kd_reads or "clean",
        eval_kd_input=tamt.kd_input or "clean",  # TAMT's KD dev data is clean text, whatever the objective
    )
    objective.info["fresh_mlm_head"] = need_head and not has_head
    lr = config.lr or tamt.default_lr
    return search_tamt(
        model, objective, tamt, config.train_config(lr), config.out, **run_options(config, lr, acc)
    )


def _tamt_settings(m: TamtConfig) -> dict[str, Any]:
    """TAMT's part of a search's identity. Left out as directories written before recorded neither:
    the seed (the search's own) and the pooler (held at its start). The settings of issue 34 are in
    only where they differ from what ticketlab did before (their fields' `compat`: a masked decoder,
    KD on the corrupted input), as the decoder an MLM loss uses and the input KD reads: a directory
    written then resumes only under that behaviour, and a search under TAMT's defaults never takes it
    for its own."""
    resolved = {"decoder": m.decoder if "mlm" in m.objective else OMIT, "kd_input": m.kd_reads}
    return run_identity(m, leave_out=("seed", "pooler"), values=resolved, options=True)


def _tamt_changed(fixed: Mapping[str, Any], settings: Mapping[str, Any], pooler: bool) -> dict[str, Any]:
    """TAMT's defaults of issue 34 in force in a sweep's search (see `SearchMethod.changed_defaults`):
    the dense decoder (MLM objectives), KD on clean text (TAMT-KD), Tab. 2's schedule and the pooler."""
    objective = {**fixed, **settings}.get("objective", "mlm")
    changed: dict[str, Any] = {}
    if "mlm" in objective and settings.get("decoder") is None:
        changed["decoder"] = "dense"
    if objective == "kd" and settings.get("kd_input") is None:
        changed["kd_input"] = "clean"
    if settings.get("schedule_steps") is None:
        changed["schedule_steps"] = "tab2"
    if pooler and settings.get("targets") is None and settings.get("no_pooler") is not True:
        changed["pooler"] = True
    return changed


register_method(
    Method(
        "tamt",
        TamtConfig,
        search,
        "task-agnostic mask training (TAMT)",
        settings=_tamt_settings,
        sparse_throughout=True,
        schedule=lambda m, steps: paper_schedule_steps(steps, m.sparsity),
        paper_budget=lambda m: paper_budget(m.sparsity),
        changed_defaults=_tamt_changed,
        presets=(
            Preset("tamt-mlm", "mask training on MLM", {"objective": "mlm"}, "C4"),
            Preset("tamt-kd", "mask training on KD (Eq. 6)", {"objective": "kd"}, "C5"),
            Preset("tamt-mlm+kd", "mask training on MLM + KD", {"objective": "mlm+kd"}, "C6"),
        ),
        order=4,  # reports list IMP before TAMT's objectives, as they did before this registry
    )
)
