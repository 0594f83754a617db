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
from ..masks.targets import resolve_targets, targets_repr
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
    saved = _saved_mask(config.out)
    if saved is not None:  # the settings the command decides, before any work; the targets below
        _refuse_other(config.out, saved, _asked(config, saved))
    # the corpus read before the model: a refused corpus costs no loading
    calibration = {"calibration": _calibration(config)} if method.calibrated else {}
    own = {"settings": config.settings} if method.config is not None else {}  # SparseGPT's blocks, damping
    model = model if model is not None else load_model(config.model, head="base")
    targets = resolve_targets(model, one_shot_targets(model, config), config.pooler)
    # the default targets, now resolved: another family's are another model's, not other settings
    if saved is not None and saved.get("model_type") == model.config.model_type:
        _refuse_other(config.out, saved, {"targets": targets_repr(targets, model)})
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
        save_mask(result.mask, mc, config.out, extra=extra)
    return result.mask, load_mask(config.out)[1], elapsed  # the config as saved


def _calibration(config: PruneConfig) -> Any:
    """The calibration sequences of a calibrated method (`methods.calibration.draw_calibration`)."""
    return draw_calibration(
        config.model,
        config.corpus,
        config.calibration,
        config.calibration_length,
        config.seed,
        text_column=config.text_column,
        cache_dir=config.cache_dir,
    )


def _ranking(config: PruneConfig) -> str | None:
    """The ranking a mask records: None for a calibrated method, whose ranking is its own (`search`)."""
    return None if methods("prune")[config.method].calibrated else config.ranking


def _seed(config: PruneConfig) -> int | None:
    """The seed a mask records: the pruning's (random); a calibrated method's is its calibration's."""
    return config.seed if methods("prune")[config.method].seeded else None


def _recorded(config: Mapping[str, Any]) -> dict[str, Any]:
    """A mask config's fields, its `search` record's keys beside them (a field wins a shared name)."""
    return {**(config.get("search") or {}), **{k: v for k, v in config.items() if k != "search"}}


def _refuse_other(out: Any, saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Refuse, in one line, the folder `out` whose mask `saved` (`_recorded`) differs from `now` in
    one of `now`'s keys: the mask it holds is not replaced. Its inputs are not compared: the same
    settings on a changed model or corpus make the mask the same command gives now."""
    check_same_run(out, "mask", {k: saved.get(k) for k in now}, now, {})


def _saved_mask(out: Any) -> dict[str, Any] | None:
    """The mask config `out` holds (`_recorded`); None where it holds none, or a config that does not
    read as one (a broken folder of ours is replaced)."""
    path = Path(out).expanduser() / CONFIG_NAME
    try:
        saved = read_json(path, "mask config") if path.is_file() else None
    except TicketlabError:
        return None
    ok = isinstance(saved, dict) and isinstance(saved.get("search") or {}, dict)
    return _recorded(saved) if ok else None


def _asked(config: PruneConfig, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The settings `config` gives a mask before any work, as its config records them (`_recorded`):
    the targets where given (the defaults follow the model); a method's own settings where the mask
    records them."""
    asked = {"method": config.method, "kind": "weights", "sparsity": config.sparsity}
    asked |= {"pattern": config.pattern, "ranking": _ranking(config), "seed": _seed(config)}
    if config.targets is not None:  # as `targets_repr` records them
        asked["targets"] = config.targets if isinstance(config.targets, str) else list(config.targets)
    if methods("prune")[config.method].calibrated:
        asked |= {"calibration_sequences": config.calibration, "calibration_seed": config.seed}
        asked["calibration_length"] = config.calibration_length
    if dataclasses.is_dataclass(config.settings):  # a method's own (SparseGPT's blocksize, damp)
        asked |= {k: v for k, v in dataclasses.asdict(config.settings).items() if k in saved}
    return asked
