"""The sweep's searches by training: a library search method (TAMT, IMP) through `ticketlab.search`,
one sweep method per preset (`tamt-kd`...) and, where it may search on a task, `NAME-task`. The spec's
settings go to the method's config or to `SearchConfig`, by their option names."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import masks  # its names are imported on first use: reading a spec loads no torch
from ...core.checks import documented, from_options, not_result, option_name, option_names
from ...methods import registry as library
from ...methods.registry import Method, Preset
from ...verbs.search import SearchConfig, search
from .adapters import logged
from .jobs import Curve, MethodSpec, SearchFn, SearchJob, SearchOutput

if TYPE_CHECKING:
    from ...methods import ImpConfig

# `ticketlab search tamt|imp` options a spec may set under `search:` or per method, by their names as
# fields of `SearchConfig`, `TamtConfig` (freeze_head: not train_head) or `ImpConfig`. The sweep sets
# the others itself (model, sparsity, steps, out, corpus, seed, save_at, objective, progress).
# NON_RESULT: `SearchConfig`'s fields marked `result=False`, less `progress` (the sweep's own).
NON_RESULT = frozenset(not_result(SearchConfig)) - {"progress"}
TRAINING_SETTINGS = NON_RESULT | frozenset(
    "max_length batch_size lr warmup_steps weight_decay grad_accum max_grad_norm mixed_precision ranking "
    "targets schedule_steps clip_per_tensor adam_eps optimizer wikitext_markup corpus_tokens".split()
)
# Options of a search method's config a spec may not give: rewind_to (its masks apply to rewound
# weights, not to the base model a sweep fine-tunes) and head_lr (never offered to sweeps: TAMT-MLM's
# head follows lr, as in the paper).
NOT_SWEPT = frozenset({"rewind_to", "head_lr"})


def _search_output(job: SearchJob) -> SearchOutput:
    """Cost, final dev losses and masks along the way, read back from the search's mask files."""
    search = masks.load_mask(job.mask_dir)[1].search
    intermediate = []
    for step in job.save_at:
        step_dir = job.mask_dir / "steps" / f"step-{step:06d}"
        time_s = masks.load_mask(step_dir)[1].search.get("search_time_s")
        intermediate.append({"step": step, "mask_dir": str(step_dir), "time_s": time_s})
    final = {k: v for k, v in (search.get("final_eval") or {}).items() if k.endswith(("_loss", "_acc"))}
    return SearchOutput(
        steps=int(search.get("steps", job.steps or 0)),
        time_s=float(search.get("search_time_s", search.get("train_time_s", 0.0))),
        metrics={f"dev_{k}": v for k, v in final.items()},
        intermediate=intermediate,
    )


def _option_names(method: Method) -> frozenset[str]:
    return option_names(method.config)


def spec_settings(method: Method, preset: Preset | None = None) -> frozenset[str]:
    """The settings a spec may give `method` (under `preset`), by their option names: those of
    TRAINING_SETTINGS it reads (`SearchConfig`'s, and `ranking` / `targets` where its config has
    them) and its config's documented options, less what the preset fixes and NOT_SWEPT."""
    fields = dataclasses.fields(method.config)
    readers = _option_names(method) | {f.name for f in dataclasses.fields(SearchConfig)}
    own = {option_name(f) for f in documented(method.config)}
    fixed = {option_name(f) for f in fields if preset is not None and f.name in preset.fixed}
    return frozenset({n for n in TRAINING_SETTINGS if n in readers} | own) - fixed - NOT_SWEPT


def method_config(
    method: Method, preset: Preset | None, sparsity: float, seed: int | None, settings: dict[str, Any]
) -> Any:
    """`method`'s config in a sweep: its `settings` (option names: `freeze_head`), the preset's fixed
    fields and, where the config has one, the search seed."""
    kw = from_options(method.config, settings)
    seeded = {"seed": seed} if seed is not None and "seed" in _option_names(method) else {}
    return method.config(sparsity=sparsity, **kw, **seeded, **(preset.fixed if preset else {}))


def sweep_imp(sparsity: float, settings: dict[str, Any]) -> ImpConfig:
    """A sweep's IMP config at `sparsity` (without `variant`: Chen et al.'s, `ImpConfig`'s default)."""
    return method_config(library.get_method("imp", "search"), None, sparsity, None, settings)


def search_config(job: SearchJob, method: Method, preset: Preset | None = None) -> SearchConfig:
    """The `ticketlab.search` config of a job of `method` (under `preset`): the spec's settings go
    to the method's config or to `SearchConfig`, under their CLI option names. A job with a `source`
    searches on that task (`ticketlab search imp --task`), not on the corpus."""
    settings = {k: v for k, v in job.settings.items() if v is not None}
    own = {k: settings.pop(k) for k in _option_names(method) if k in settings}
    seed = job.seed or 0
    corpus = job.corpus or {}
    task = {"task": job.source["task"], "data_dir": job.source["data"]} if job.source is not None else {}
    return SearchConfig(
        model=job.model,
        method=method_config(method, preset, job.sparsity, seed, own),
        steps=job.steps,
        out=job.mask_dir,
        corpus=corpus.get("train"),
        dev=corpus.get("dev") or None,
        seed=seed,
        **task,
        save_at=list(job.save_at),
        progress=sys.stderr.isatty(),
        **{k: corpus[k] for k in ("dev_fraction", "text_column") if corpus.get(k) is not None},
        # the whole corpus unless the spec caps it: a sweep tokenizes it once for all its runs, and
        # its runs' ids were computed on all of it
        **{"corpus_tokens": 0, **settings},
    )


def trained_search(configure: Callable[[SearchJob], SearchConfig]) -> SearchFn:
    """A search through `ticketlab.search` of the config `configure` builds for a job (resumable:
    the same OUT); its messages go to `work_dir/search.log`."""

    def run(job: SearchJob) -> SearchOutput:

        config = configure(job)
        with logged(job.work_dir / "search.log", f"search {config.verb} -> {job.mask_dir}"):
            search(config)
        return _search_output(job)

    return run


def _trained(method: Method, preset: Preset | None, **kw: Any) -> MethodSpec:
    configure = functools.partial(search_config, method=method, preset=preset)
    fixed = dict(preset.fixed) if preset is not None else {}
    return MethodSpec(
        search=trained_search(configure),
        uses_steps=True,
        settings=spec_settings(method, preset),
        non_result=NON_RESULT,
        configure=configure,
        changed_defaults=lambda settings, pooler: method.changed_defaults(fixed, settings, pooler),
        **kw,
    )


@functools.cache  # per registered entry (identity): a sweep reads its methods often
def trained_methods(method: Method) -> tuple[MethodSpec, ...]:
    """A library search method as sweep methods: one per preset (searched on the corpus) and, where it
    may search on a task, `NAME-task`, searched on each source task and fine-tuned on every task
    (Chen et al. §5 Table 3; reported per source task, `imp-task@sst2`: no colour, no curve)."""
    curve: Curve = "save_at" if method.sparse_throughout else "budgets"
    specs = [
        _trained(method, p, name=p.name, description=p.help, uses_corpus=True, curve=curve, color=p.color)
        for p in method.named
    ]
    if method.task:
        name, on_task = f"{method.name}-task", f"`ticketlab search {method.name} --task`"
        specs.append(
            _trained(
                method,
                None,
                name=name,
                description=f"{method.help} on a source task ({on_task})",
                per_task=True,
            )
        )
    return tuple(specs)
