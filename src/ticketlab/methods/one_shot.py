"""One-shot pruning of a pre-trained model into a mask directory: what `ticketlab prune` runs
(`verbs.prune.prune`, whose module `ticketlab prune --help` reads, imports it when it runs). The
method is a registered one-shot method (`methods.registry`, verb prune: omp, random; wanda and
sparsegpt read calibration sequences of `--corpus`, `methods.calibration`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..core.errors import TicketlabError
from ..core.files.inputs import read_json
from ..core.outputs import check_output
from ..masks import Mask, MaskConfig, load_mask, save_mask
from ..masks.identity import same_mask
from ..masks.io import CONFIG_NAME
from ..masks.prunable import pooler_target
from ..masks.reconstructed import RECONSTRUCTED_NAME
from ..masks.targets import resolve_targets
from ..models.arch import arch_of
from ..models.load import load_model
from ..train.run_dir import check_same_run
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
    saved = _saved_settings(config.out)
    if saved is not None:  # the settings the command decides, before any work; the targets below
        check_same_run(config.out, "mask", {k: saved.get(k) for k in _asked(config)}, _asked(config), {})
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
        ranking=_ranking(config),
        seed=_seed(config),
        pattern=config.pattern,
        search=result.info,
    )
    extra = {RECONSTRUCTED_NAME: result.weights} if result.weights else None
    if extra is None and same_mask(config.out, result.mask, mc):  # the same command again
        log.info("%s: holds this mask already; left as it is", config.out)
    else:
        if saved is not None:  # whatever else differs (the targets): that mask is not replaced
            check_same_run(config.out, "mask", saved, _settings(mc.to_dict()), {})
        save_mask(result.mask, mc, config.out, extra=extra)
    return result.mask, load_mask(config.out)[1], elapsed  # the config as saved


def _calibration(config: PruneConfig) -> Any:
    """The calibration sequences of a calibrated method (`methods.calibration.draw_calibration`)."""
    return draw_calibration(
        config.model, config.corpus, config.calibration, config.calibration_length, config.seed
    )


def _ranking(config: PruneConfig) -> str | None:
    """The ranking a mask records: None for a calibrated method, whose ranking is its own (`search`)."""
    return None if methods("prune")[config.method].calibrated else config.ranking


def _seed(config: PruneConfig) -> int | None:
    """The seed a mask records: the pruning's (random); a calibrated method's is its calibration's."""
    return config.seed if methods("prune")[config.method].seeded else None


# What a mask's config records besides the settings that made it: when and with what it was made,
# what it achieved, and its inputs (the model and the calibration corpus, by path and by content).
# A mask of the same settings on a changed input is what the same command gives now: it replaces the
# old one, as a re-run of a command is meant to.
NOT_SETTINGS = {
    "created", "versions", "achieved_sparsity", "format", "format_version", "base_model",
    "base_model_hash", "encoder_hash", "model_type", "calibration_corpus", "calibration_corpus_key",
    "calibration_corpus_read",
}  # fmt: skip


def _settings(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A mask config's settings, its `search` record's keys beside the others."""
    flat = {**{k: v for k, v in recorded.items() if k != "search"}, **(recorded.get("search") or {})}
    return {k: v for k, v in flat.items() if k not in NOT_SETTINGS}


def _saved_settings(out: Any) -> dict[str, Any] | None:
    """The settings of the mask `out` holds (`_settings`); None where it holds none, or a config that
    does not read as one (a broken folder of ours is replaced)."""
    path = Path(out).expanduser() / CONFIG_NAME
    try:
        saved = read_json(path, "mask config") if path.is_file() else None
    except TicketlabError:
        return None
    return _settings(saved) if isinstance(saved, dict) and isinstance(saved.get("search", {}), dict) else None


def _asked(config: PruneConfig) -> dict[str, Any]:
    """The settings `config` gives a mask before any work, as its config records them (`_settings`):
    all but the targets, which the model resolves."""
    asked = {"method": config.method, "kind": "weights", "sparsity": config.sparsity}
    asked |= {"pattern": config.pattern, "ranking": _ranking(config), "seed": _seed(config)}
    if methods("prune")[config.method].calibrated:
        asked |= {"calibration_sequences": config.calibration, "calibration_seed": config.seed}
        asked["calibration_length"] = config.calibration_length
    if dataclasses.is_dataclass(config.settings):  # a method's own settings (SparseGPT's blocksize, damp)
        asked |= dataclasses.asdict(config.settings)
    return asked
