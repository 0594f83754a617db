"""Which weights are prunable.

Targets are chosen by module-name patterns relative to the encoder (`model.base_model`), the way
PEFT's `target_modules` works: a string is a regular expression that must match the whole module
name; a list names modules exactly or by suffix (`"query"` matches `encoder.layer.0.attention.self.query`).
The key of a target is `<module name>.weight`, e.g. `encoder.layer.3.intermediate.dense.weight`, so
the same mask fits `*ForMaskedLM`, `*ForSequenceClassification`, `*ForQuestionAnswering` and the bare
model. Biases, LayerNorm, position/type embeddings and task heads are never targets.

This module is torch-free (verbs' configs read it when their options are parsed); the modules a
pattern matches on a loaded model are `masks.prunable.find_targets`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..models.arch import ARCHS, BERT_LIKE_ENCODER, arch_of

if TYPE_CHECKING:  # `Targets` is a config field's type: read when a verb's `--help` is parsed
    from torch import nn

__all__ = ["BERT_LIKE_ENCODER", "BERT_LIKE_TARGETS", "POOLER", "default_targets"]

# TAMT §3.2 on BERT: word embeddings + six per layer (+ the pooler, as the papers' code: `default_targets`)
BERT_LIKE_TARGETS = ARCHS["bert"].targets(pooler=False)
POOLER = r"pooler\.dense"  # only task models have one (transformers' *ForMaskedLM have none)

Targets = str | Sequence[str] | None


def default_targets(model_type: str, pooler: bool = True) -> str:
    """The family's word embeddings, six matrices per layer and pooler (`models.arch.ARCHS`; `pooler=False`:
    without it), or one clear error."""
    return arch_of(model_type).targets(pooler)


# The help of `--no-pooler` (a field that is on by default): what the flag does, then the default.
POOLER_HELP = (
    "leave the pooler dense (not pruned); by default it is pruned where the checkpoint has one, as "
    "both papers' code does (TAMT, Liu et al. 2022; BERT-Tickets, Chen et al. 2020)"
)


def resolve_targets(model: nn.Module, targets: Targets, pooler: bool) -> Targets:
    """`targets`, or with none given the default targets without the pooler when `pooler` is False
    (written out: the pattern a mask file stores names the weights it covers)."""
    if targets is not None or pooler:
        return targets
    return default_targets(getattr(getattr(model, "config", None), "model_type", "unknown"), pooler=False)


def targets_repr(targets: Targets, model: nn.Module) -> str | list[str]:
    """The targets as they are stored in a mask file: the explicit pattern, never None."""
    if targets is None:
        return default_targets(model.config.model_type)
    return targets if isinstance(targets, str) else list(targets)
