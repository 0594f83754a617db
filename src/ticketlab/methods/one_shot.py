"""One-shot pruning of a pre-trained model into a mask directory: what `ticketlab prune` runs
(`verbs.prune.prune`, whose module `ticketlab prune --help` reads, imports it when it runs). The
method is a registered one-shot method (`methods.registry`, verb prune: omp, random; wanda and
sparsegpt read calibration sequences of `--corpus`, `methods.calibration`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from torch import nn

from ..core.outputs import check_output
from ..masks import Mask, MaskConfig, load_mask, save_mask
from ..masks.identity import same_mask
from ..masks.prunable import pooler_target
from ..masks.reconstructed import RECONSTRUCTED_NAME
from ..masks.targets import resolve_targets
from ..models.arch import arch_of
from ..models.load import load_model
from .calibration import OneShotResult, draw_calibration
from .prune_config import PruneConfig
from .registry import methods

log = logging.getLogger(__name__)


def one_shot_targets(model: nn.Module, config: PruneConfig) -> Any:
    """The weights one-shot pruning ranks: `config.targets` when given; under global ranking Chen et
    al.'s (BERT-Tickets' `pruning_model` in oneshot.py: the layers' Q, K, V, attention-output and FFN
    matrices and, with `pooler`, the pooler ranked with them; the word embeddings dense, whose 7.8M
    weights would otherwise spare the encoder of a small model or take most of the pruning); else
    None, the family's default (TAMT §3.2: word embeddings too)."""
    if config.targets is not None or config.ranking != "global":
        return config.targets
    encoder = arch_of(getattr(model.config, "model_type", "unknown")).encoder_targets()
    pooler = pooler_target(model) if config.pooler else None  # none the checkpoint lacked
    return f"{encoder}|{pooler}" if pooler else encoder


def prune_into(config: PruneConfig, model: nn.Module | None) -> tuple[Mask, MaskConfig, float]:
    """Prune and write the mask directory `config.out`: (the mask, its config as saved, the seconds
    the pruning took, loading and saving excluded; a calibrated method's pass over its calibration
    sequences included). `model`: the already loaded base model (not modified)."""
    check_output(config.out, kind="mask", inputs=[config.model, *(config.corpus or [])])  # before any work
    method = methods("prune")[config.method]
    # the corpus read before the model: a refused corpus costs no loading
    calibration = {"calibration": _calibration(config)} if method.calibrated else {}
    own = {"settings": config.settings} if method.config is not None else {}  # SparseGPT's blocks, damping
    model = model if model is not None else load_model(config.model, head="base")
    targets = resolve_targets(model, one_shot_targets(model, config), config.pooler)
    t0 = time.perf_counter()
    found = method.run(
        model,
        config.sparsity,
        ranking=config.ranking,
        targets=targets,
        seed=config.seed,
        pattern=config.pattern,
        **calibration,
        **own,
    )
    elapsed = time.perf_counter() - t0
    result = found if isinstance(found, OneShotResult) else OneShotResult(found)
    mc = MaskConfig.for_model(
        model,
        result.mask,
        method=config.method,
        sparsity=config.sparsity,
        base_model=str(config.model),
        targets=targets,
        ranking=None if method.calibrated else config.ranking,  # their own comparison (`search`)
        seed=config.seed if method.seeded else None,
        pattern=config.pattern,
        search=result.info,
    )
    extra = {RECONSTRUCTED_NAME: result.weights} if result.weights else None
    if extra is None and same_mask(config.out, result.mask, mc):  # the same command again
        log.info("%s: holds this mask already; left as it is", config.out)
    else:
        save_mask(result.mask, mc, config.out, extra=extra)
    return result.mask, load_mask(config.out)[1], elapsed  # the config as saved


def _calibration(config: PruneConfig) -> Any:
    """The calibration sequences of a calibrated method (`methods.calibration.draw_calibration`)."""
    return draw_calibration(
        config.model, config.corpus, config.calibration, config.calibration_length, config.seed
    )
