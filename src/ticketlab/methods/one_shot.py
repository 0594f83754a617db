"""One-shot pruning of a pre-trained model into a mask directory: what `ticketlab prune` runs
(`verbs.prune.prune`, whose module `ticketlab prune --help` reads, imports it when it runs). The
method is a registered one-shot method (`methods.registry`, verb prune: omp, random)."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from torch import nn

from ..core.outputs import check_output
from ..masks import Mask, MaskConfig, load_mask, save_mask
from ..masks.identity import same_mask
from ..masks.prunable import fresh_pooler
from ..masks.targets import resolve_targets
from ..models.arch import arch_of, encoder_of
from ..models.load import load_model
from .registry import methods

log = logging.getLogger(__name__)

PruneConfig = Any  # `verbs.prune.PruneConfig`, a layer above: read here by its fields only


def one_shot_targets(model: nn.Module, config: PruneConfig) -> Any:
    """The weights one-shot pruning ranks: `config.targets` when given; under global ranking Chen et
    al.'s (BERT-Tickets' `pruning_model` in oneshot.py: the layers' Q, K, V, attention-output and FFN
    matrices and, with `pooler`, the pooler ranked with them; the word embeddings dense, whose 7.8M
    weights would otherwise spare the encoder of a small model or take most of the pruning); else
    None, the family's default (TAMT §3.2: word embeddings too)."""
    if config.targets is not None or config.ranking != "global":
        return config.targets
    arch = arch_of(getattr(model.config, "model_type", "unknown"))
    has_pooler = config.pooler and arch.pooler and fresh_pooler(model) is None  # none the checkpoint lacked
    has_pooler = has_pooler and any(n == arch.pooler for n, _ in encoder_of(model).named_modules())
    return f"{arch.encoder_targets()}|{re.escape(arch.pooler)}" if has_pooler else arch.encoder_targets()


def prune_into(config: PruneConfig, model: nn.Module | None) -> tuple[Mask, MaskConfig, float]:
    """Prune and write the mask directory `config.out`: (the mask, its config as saved, the seconds
    the pruning took, loading and saving excluded). `model`: the already loaded base model (not
    modified)."""
    check_output(config.out, kind="mask", inputs=[config.model])  # before any work
    model = model if model is not None else load_model(config.model, head="base")
    targets = resolve_targets(model, one_shot_targets(model, config), config.pooler)
    t0 = time.perf_counter()
    method = methods("prune")[config.method]
    mask = method.run(
        model,
        config.sparsity,
        ranking=config.ranking,
        targets=targets,
        seed=config.seed,
        pattern=config.pattern,
    )
    elapsed = time.perf_counter() - t0
    mc = MaskConfig.for_model(
        model,
        mask,
        method=config.method,
        sparsity=config.sparsity,
        base_model=str(config.model),
        targets=targets,
        ranking=config.ranking,
        seed=config.seed if method.seeded else None,
        pattern=config.pattern,
    )
    if same_mask(config.out, mask, mc):  # the same command again: the folder already holds its result
        log.info("%s: holds this mask already; left as it is", config.out)
    else:
        save_mask(mask, mc, config.out)
    return mask, load_mask(config.out)[1], elapsed  # the config as saved
