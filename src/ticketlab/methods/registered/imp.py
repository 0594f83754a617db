"""IMP: iterative magnitude pruning with rewinding (Chen et al. 2020), `ticketlab search imp`, on MLM
or on a task (`--task`); the search is `methods.imp`. Sweeps know it as `imp` and `imp-task`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...core.digest import run_identity
from ...models.load import load_config, load_tokenizer
from ...models.source import fit_max_length
from ...tasks.registry import get_task
from ..configs import DEFAULT_MAX_LENGTH, ImpConfig
from ..registry import Method, Preset, register_method
from ..search_inputs import lm_objective, load_mlm_model, run_options

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..search import SearchResult

log = logging.getLogger(__name__)
SearchConfig = Any  # `verbs.search.SearchConfig`, a layer above: read here by its fields only


def search(config: SearchConfig, acc: Accelerator) -> SearchResult:
    from ..imp import search_imp  # lazy start-up (see the imports)
    from ..search import SearchObjective

    imp: ImpConfig = config.method  # type: ignore[assignment]
    tokenizer = load_tokenizer(config.model)
    if config.task is not None:
        from ...tasks.objective import load_task_model, task_objective

        with acc.main_process_first():
            default = get_task(config.task, config.data_dir).max_length
            length = fit_max_length(load_config(config.model), config.max_length, default)
            task = task_objective(config.task, tokenizer, config.data_dir, max_length=length)
        model, _ = load_task_model(config.model, task.spec, seed=config.seed)
        objective = SearchObjective(
            name=task.spec.id,
            dataset=task.dataset,
            collate_fn=task.collate_fn,
            loss_fn=task.loss_fn,
            eval_fn=None if config.no_eval else task.eval_fn,
            info={"task": task.spec.id, "data_dir": config.data_dir, "n_train": task.n_train},
        )
        lr = config.lr or task.spec.lr
        train_config = config.train_config(lr, metric=task.metric, greater=task.greater_is_better)
    else:
        model, model_config, has_head = load_mlm_model(config, need_head=True)
        if not has_head and acc.is_main_process:
            log.warning(f"note: {config.model} has no MLM head; IMP trains a fresh one with the weights")
        config.max_length = fit_max_length(model_config, config.max_length, DEFAULT_MAX_LENGTH)
        # IMP as before issue 34 (its decoder and dev KD input are h34b's / Chen et al.'s to settle)
        objective = lm_objective(
            config,
            tokenizer,
            acc,
            "mlm",
            mlm_eval=True,
            decoder="masked",
            kd_input="corrupted",
            eval_kd_input="corrupted",
        )
        lr = config.lr or 5e-5  # Table 1
        train_config = config.train_config(lr)
    options = run_options(config, lr, acc)
    return search_imp(model, objective, imp, train_config, config.out, tokenizer=tokenizer, **options)


def _imp_settings(m: ImpConfig) -> dict[str, Any]:
    return run_identity(m, options=True)  # first_pruning, rewind_head: only when set (their `compat`)


def _imp_steps(m: ImpConfig, steps: int) -> None:
    from ..imp import imp_schedule  # lazy start-up (see the imports)

    imp_schedule(m.sparsity, steps, m.prune_rate, m.first_pruning or "start")


def _imp_resolve(m: ImpConfig, search: SearchConfig) -> ImpConfig:
    return m.resolved(on_task=search.task is not None)


# In report order: IMP before TAMT's objectives, as reports listed them before this registry.


register_method(
    Method(
        "imp",
        ImpConfig,
        search,
        "iterative magnitude pruning with rewinding (IMP)",
        task=True,
        settings=_imp_settings,
        check_steps=_imp_steps,
        resolve=_imp_resolve,
        presets=(Preset("imp", "iterative magnitude pruning on MLM, rewinding to θ0", color="C3"),),
        order=3,
    )
)
