"""One subnetwork's pre-training performance, what `verbs.evaluate_pretrain.evaluate_pretraining` runs
for each of its rows (its module is read by `ticketlab evaluate-pretrain --help`; this one imports
torch and transformers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.digest import content_keys, run_identity
from ..core.errors import ConfigError, TicketlabError, prefixed
from ..core.files.atomic import to_json
from ..data.corpus import load_lm_blocks
from ..data.sources import check_corpus_source
from ..lm.evaluation import HEAD_FILE, load_head_state
from ..lm.evaluation import evaluate_pretraining as evaluate_blocks
from ..lm.objectives import MLMCollator
from ..masks import apply_mask, check_fits, load_mask
from ..masks.hub import mask_dir as hub_mask_dir
from ..masks.io import recorded_base
from ..methods.options import DEFAULT_MAX_LENGTH
from ..models.load import load_config, load_model, load_tokenizer
from ..models.source import fit_max_length, head_of

# `verbs.evaluate_pretrain.PretrainEvalConfig`, read here by its fields only: that module imports this
# one when its function runs, and no import goes back (no circle).
PretrainEvalConfig = Any


def check_inputs(config: PretrainEvalConfig) -> None:
    """Every corpus, mask and base model of `config` read before the first row is scored: a mistyped
    corpus, a mask that does not fit its base (shapes, weights), a recorded base that is not here, a
    base with nothing to score, each refused in one line, not after the rows before it are scored."""
    for corpus in config.corpus:
        check_corpus_source(corpus)
    bases: dict[str, list[tuple[str, Any]]] = {}  # base model -> the masks scored on it, read
    if config.model is not None and (config.full or not config.masks):
        bases[config.model] = []
    for mask_dir in config.masks:  # every mask read before any base model is loaded
        loaded = load_mask(mask_dir)
        base = config.model or recorded_base(mask_dir)
        bases.setdefault(base, []).append((str(mask_dir), loaded))
    for base, masks in bases.items():
        _check_base(config, base, masks)


def _check_base(config: PretrainEvalConfig, base: str, masks: list[tuple[str, Any]]) -> None:
    """`base`'s config (a recorded base that cannot load is named with its mask), an MLM head where
    the KD loss is off, and every mask scored on it fitting its weights."""
    try:
        model_config = load_config(base)
    except TicketlabError as e:
        named = f"{masks[0][0]}: its recorded base model" if config.model is None else None
        raise (e if named is None else prefixed(e, named)) from None
    has_head = head_of(model_config) == "mlm"
    if config.no_kd and not has_head:
        raise ConfigError(f"{base}: has no MLM head, and no_kd leaves nothing to score on it")
    if masks:
        model = load_model(base, head="mlm" if has_head else "base")
        for mask_dir, (mask, mc) in masks:
            check_fits(mask, mc, model, source=mask_dir, check_hash=not config.ignore_hash)


def evaluate_subnetwork(
    config: PretrainEvalConfig, mask_dir: str | None, blocks_cache: dict
) -> dict[str, Any]:
    """One row of `evaluate_pretraining`: the full model (`mask_dir` None) or the subnetwork of the
    mask in `mask_dir`, on the blocks of `config.corpus` (tokenized once per base model and length,
    in `blocks_cache`)."""
    base = config.model or recorded_base(mask_dir)
    model_config = load_config(base)
    has_head = head_of(model_config) == "mlm"
    model = load_model(base, head="mlm" if has_head else "base")
    row: dict[str, Any] = {
        "name": Path(mask_dir).name if mask_dir else "full",
        "mask": mask_dir,
        "model": base,
    }
    if mask_dir is not None:
        mask, mc = load_mask(mask_dir)
        check_fits(mask, mc, model, source=mask_dir, check_hash=not config.ignore_hash)
        apply_mask(model, mask)
        row.update(method=mc.method, sparsity=round(mask.sparsity, 6))
        head = hub_mask_dir(mask_dir) / HEAD_FILE  # a hub mask: its cached folder
        if has_head and head.is_file() and config.uses_trained_head:
            load_head_state(model, head)
            row["mlm_head"] = "trained"
    else:
        row.update(method="full", sparsity=0.0)
    length = fit_max_length(model_config, config.max_length, DEFAULT_MAX_LENGTH)
    row["max_length"] = length
    key = (base, length)
    if key not in blocks_cache:
        tokenizer = load_tokenizer(base)
        # with max_blocks, only the text of the first blocks (one more: the first are then whole)
        cap = (config.max_blocks + 1) * length if config.max_blocks is not None else None
        blocks, _ = load_lm_blocks(
            config.corpus,
            tokenizer,
            length,
            cache_dir=config.cache_dir,
            text_column=config.text_column,
            progress=config.progress,
            max_tokens=cap,
        )
        blocks_cache[key] = (blocks.take(config.max_blocks), MLMCollator(tokenizer))
    blocks, collator = blocks_cache[key]
    metrics = evaluate_blocks(
        model,
        blocks,
        collator,
        batch_size=config.batch_size,
        seed=config.seed,
        mlm=has_head,
        kd=not config.no_kd,
        progress=config.progress,
        source=", ".join(map(str, config.corpus)),
        decoder=config.decoder,
        kd_input=config.kd_input,
    )
    return {**row, **metrics}


# Fields that do not change a row's scores: which rows there are, where they go, the cache, the bars.
NOT_SCORED = ("masks", "full", "out", "cache_dir", "progress")


def row_identity(config: PretrainEvalConfig, mask_dir: str | None) -> dict[str, Any]:
    """What one row's scores depend on: the settings, and the content keys of its base model, its
    mask and the corpus (a hub id has none: its name, in the settings, stands for it)."""
    base = config.model or recorded_base(mask_dir)
    paths = {"model": base, "mask": mask_dir, "corpus": [str(c) for c in config.corpus]}
    identity = {"settings": run_identity(config, leave_out=NOT_SCORED), "inputs": content_keys(paths)}
    return json.loads(to_json(identity, default=str))  # as the file holds it: lists, paths as text
