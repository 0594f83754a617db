"""Which weights are prunable.

Targets are chosen by module-name patterns relative to the encoder (`model.base_model`), the way
PEFT's `target_modules` works: a string is a regular expression that must match the whole module
name; a list names modules exactly or by suffix (`"query"` matches `encoder.layer.0.attention.self.query`).
The key of a target is `<module name>.weight`, e.g. `encoder.layer.3.intermediate.dense.weight`, so
the same mask fits `*ForMaskedLM`, `*ForSequenceClassification`, `*ForQuestionAnswering` and the bare
model. Biases, LayerNorm, position/type embeddings and task heads are never targets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..arch import ARCHS, BERT_LIKE_ENCODER, arch_of
from ..errors import ConfigError
from ..modeling import encoder_of

if TYPE_CHECKING:  # `Targets` is a config field's type: read when a verb's `--help` is parsed
    from torch import nn

__all__ = ["BERT_LIKE_ENCODER", "BERT_LIKE_TARGETS", "POOLER", "default_targets", "find_targets"]

BERT_LIKE_TARGETS = ARCHS["bert"].targets()  # TAMT §3.2 on BERT: word embeddings + six per layer
POOLER = r"pooler\.dense"  # only task models have one (transformers' *ForMaskedLM have none)

Targets = str | Sequence[str] | None


def default_targets(model_type: str) -> str:
    """The family's word embeddings and six matrices per layer (`arch.ARCHS`), or one clear error."""
    return arch_of(model_type).targets()


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
    from torch import nn  # lazy start-up: `Targets` is read when a verb's `--help` is parsed

    encoder = encoder_of(model)
    if targets is None:
        targets = default_targets(getattr(getattr(model, "config", None), "model_type", "unknown"))
    match = _matcher(targets)
    found = {
        f"{name}.weight": module
        for name, module in encoder.named_modules()
        if isinstance(module, (nn.Linear, nn.Embedding)) and match(name) and module.weight.numel() > 0
    }
    if not found:
        raise ConfigError(f"targets {targets!r} match no Linear or Embedding module of the model")
    return found


def targets_repr(targets: Targets, model: nn.Module) -> str | list[str]:
    """The targets as they are stored in a mask file: the explicit pattern, never None."""
    if targets is None:
        return default_targets(model.config.model_type)
    return targets if isinstance(targets, str) else list(targets)
