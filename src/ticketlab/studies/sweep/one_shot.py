"""The sweep's one-shot and unit methods: a one-shot method (OMP, random, Wanda, SparseGPT) writes its
mask through `ticketlab.prune`, the spec's settings its options; a unit method (`st-random`) through its
own function."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...core.checks import documented, from_options, not_result, option_name
from ...methods import registry as library
from ...methods.registry import Method
from ...verbs.prune import PruneConfig, prune
from .jobs import MethodSpec, SearchFn, SearchJob, SearchOutput

PRUNE_SETTINGS = frozenset({"ranking", "targets", "no_pooler"})  # no_pooler: `--no-pooler`
# A calibrated one-shot method's (wanda, sparsegpt) besides those: its calibration sequences, drawn
# from the spec's corpus, and where that corpus's tokens are cached (not part of a run's identity).
CALIBRATION_SETTINGS = frozenset({"calibration", "calibration_length", "cache_dir"})
NON_RESULT = frozenset(not_result(PruneConfig))


def own_settings(method: Method) -> frozenset[str]:
    """A one-shot method's own settings (its config's options: SparseGPT's blocksize, damp)."""
    return frozenset(option_name(f) for f in documented(method.config))


def prune_config(job: SearchJob):
    """The `ticketlab.prune` config of a one-shot job (OMP, random; Wanda and SparseGPT calibrated on
    the spec's training corpus, SparseGPT under its own settings)."""
    method = library.get_method(job.method)
    given = _given(job)
    known = PRUNE_SETTINGS | CALIBRATION_SETTINGS
    corpus = {}
    if job.corpus and method.calibrated:  # its training files, and the column a saved dataset's text is in
        corpus = {"corpus": job.corpus.get("train"), "text_column": job.corpus.get("text_column")}
        corpus = {k: v for k, v in corpus.items() if v is not None}
    names = own_settings(method)
    own = {k: v for k, v in given.items() if k in names}
    return PruneConfig(
        model=job.model,
        method=job.method,
        sparsity=job.sparsity,
        out=job.mask_dir,
        seed=job.seed or 0,
        **corpus,
        **from_options(PruneConfig, {k: v for k, v in given.items() if k in known}),
        settings=own if method.config is not None else None,
    )


def one_shot_search(job: SearchJob) -> SearchOutput:
    """A one-shot method's mask (`ticketlab.prune`) into the job's mask directory."""
    from ...models.load import shared_base_model  # lazy: a spec is read, and refused, before torch loads

    config = prune_config(job)
    return SearchOutput(steps=0, time_s=prune(config, model=shared_base_model(job.model)).time_s)


def _given(job: SearchJob) -> dict[str, Any]:
    """The settings a spec gives a job (those it leaves out are None there: the defaults')."""
    return {k: v for k, v in job.settings.items() if v is not None}


def unit_config(method: Method) -> Callable[[SearchJob], Any] | None:
    """A unit method's settings built into its config (`RandomTicketConfig`): what its run is given,
    and what the dry run checks; None for a method without a config."""
    if method.config is None:
        return None
    return lambda job: method.config(**from_options(method.config, _given(job)))


def unit_search(method: Method) -> SearchFn:
    """A unit method's search (`st-random`): its function writes the unit mask directory, given its
    config (`unit_config`), or the spec's settings where it has none."""
    configure = unit_config(method)

    def run(job: SearchJob) -> SearchOutput:
        t0 = time.perf_counter()
        settings = configure(job) if configure is not None else job.settings
        method.run(job.model, job.sparsity, job.seed or 0, settings, job.mask_dir)
        return SearchOutput(steps=0, time_s=time.perf_counter() - t0)

    return run


def pooler_default(settings: dict[str, Any], pooler: bool) -> dict[str, Any]:
    """A one-shot method's reference default: the pooler among the default targets (where the checkpoint
    holds one and the spec names no targets)."""
    given = settings.get("targets") is not None or settings.get("no_pooler") is True
    return {"pooler": True} if pooler and not given else {}


def one_shot_spec(method: Method, **kw: Any) -> MethodSpec:
    """A one-shot method as the sweep's method: `ticketlab.prune`, its options the spec's settings
    (a calibrated method's calibration drawn from the spec's corpus; its config's own settings)."""
    settings = PRUNE_SETTINGS | (CALIBRATION_SETTINGS if method.calibrated else frozenset())
    settings |= own_settings(method)
    return MethodSpec(
        method.name,
        one_shot_search,
        method.help,
        settings=settings,
        non_result=NON_RESULT & settings,
        configure=prune_config,
        changed_defaults=pooler_default,
        uses_corpus=method.calibrated,
        **kw,
    )
