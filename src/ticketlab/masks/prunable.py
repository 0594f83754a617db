"""The prunable weights of a loaded model: `find_targets` (the patterns themselves, torch-free, are
`masks.targets`, which verbs' configs read when their options are parsed)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from ..core.errors import ConfigError
from ..models.arch import ARCHS, encoder_of
from ..models.load import load_model
from .targets import Targets, default_targets


def fresh_pooler(model: nn.Module) -> str | None:
    """The name of the family's pooler when the model has one its checkpoint did not hold (transformers
    initialised it at random: a model saved from *ForMaskedLM, e.g. bert-mini-ref), else None. Such a
    pooler is no default target: its magnitudes say nothing, and the random values differ at every
    load, so no mask could be checked against them. Told by transformers' `_is_hf_initialized`, set
    on every weight it loaded (a model built from a config has it on none: its pooler counts)."""
    arch = ARCHS.get(getattr(getattr(model, "config", None), "model_type", None))
    encoder = encoder_of(model)
    if arch is None or arch.pooler is None:
        return None
    try:
        pooler, words = encoder.get_submodule(arch.pooler), encoder.get_submodule(arch.embeddings)
    except AttributeError:
        return None
    loaded = lambda m: getattr(getattr(m, "weight", None), "_is_hf_initialized", False)  # noqa: E731
    return arch.pooler if loaded(words) and not loaded(pooler) else None


def pooler_target(model: nn.Module) -> str | None:
    """The family's pooler as a targets pattern (relative to the encoder) where the model holds one its
    checkpoint gave, else None: a family without one, a model built without it, or one transformers
    initialised at random (`fresh_pooler`)."""
    arch = ARCHS.get(getattr(getattr(model, "config", None), "model_type", None))
    if arch is None or arch.pooler is None or fresh_pooler(model) is not None:
        return None
    present = any(n == arch.pooler for n, _ in encoder_of(model).named_modules())
    return re.escape(arch.pooler) if present else None


def _matcher(targets: str | Sequence[str]):
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error as e:
            raise ConfigError(f"invalid targets regex {targets!r}: {e}") from None
        return lambda name: pattern.fullmatch(name) is not None
    names = list(targets)
    return lambda name: any(name == t or name.endswith("." + t) for t in names)


def find_targets(model: nn.Module, targets: Targets = None) -> dict[str, nn.Module]:
    """Map each prunable weight key (`<module>.weight`, relative to the encoder) to its module.

    Only modules with a 2-D `weight` (Linear, Embedding) qualify, and only non-empty ones: a compacted
    model's layer without heads or FFN neurons holds 0-row matrices, nothing to prune or to count.
    Raises if nothing matches.
    """
    encoder = encoder_of(model)
    skip = None
    if targets is None:
        targets = default_targets(getattr(getattr(model, "config", None), "model_type", "unknown"))
        skip = fresh_pooler(model)
    match = _matcher(targets)
    found = {
        f"{name}.weight": module
        for name, module in encoder.named_modules()
        if isinstance(module, (nn.Linear, nn.Embedding))
        and match(name)
        and module.weight.numel() > 0
        and name != skip
    }
    if not found:
        raise ConfigError(f"targets {targets!r} match no Linear or Embedding module of the model")
    return found


def attach_pooler(model: nn.Module, name: str) -> bool:
    """Give `model`'s encoder the pre-trained pooler of checkpoint `name` where its family's base model
    has one and `model` was built without it (transformers' *ForMaskedLM): TAMT's masker masks the
    pooler too, and a mask with a pooler key fits the MLM model it is scored on. Nothing is attached
    when the checkpoint holds no pooler (`fresh_pooler`). The encoder then computes the pooled output
    too (one matrix on [CLS]), which no pre-training loss reads. Returns whether one was attached."""
    arch = ARCHS.get(getattr(getattr(model, "config", None), "model_type", None))
    if arch is None or arch.pooler is None:
        return False
    encoder = encoder_of(model)
    slot = arch.pooler.split(".")[0]  # `pooler`: None in a model built without one
    if getattr(encoder, slot, False) is not None:  # has one, or the family's model has no such slot
        return False
    base = encoder_of(load_model(name, head="base"))
    if fresh_pooler(base) is not None:
        return False
    for child, module in base.named_children():  # the pooler and its activation (ALBERT's are two)
        if child.startswith(slot) and getattr(encoder, child, False) is None:
            setattr(encoder, child, module.to(next(encoder.parameters()).device))
    return True


def add_missing_children(model: nn.Module, like: nn.Module) -> None:
    """Give `model`'s encoder, freshly built, each module `like`'s encoder has where `model`'s slot is
    empty (a pooler `attach_pooler` gave `like`), so that `like`'s state dict loads into it."""
    encoder = encoder_of(model)
    missing = [c for c, _ in encoder_of(like).named_children() if getattr(encoder, c, False) is None]
    if missing:
        base = type(encoder)(model.config)  # the family's base model, built with its pooler
        for child in missing:
            setattr(encoder, child, getattr(base, child))
