"""A model's whole MLM head, as the MLM losses apply it: found by its family's head layout
(`Arch.mlm_heads` in the architecture map, `models.arch.ARCHS`), every parameter outside the encoder
in it, or refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor, nn

from ..core.errors import ConfigError
from ..models.arch import ARCHS, HeadLayout, encoder_of


# eq=False: hashed by identity. torch.compile hashes the callables it meets, and the value hash of
# a frozen dataclass reads its fields, which torch 2.11's tracer could not (`'MLMHead' object has no
# attribute 'parts'`: docs/results/gpu-2026-11-27).
@dataclass(frozen=True, eq=False)
class MLMHead:
    """A model's whole MLM head: `head(hidden)` gives the logits; `parts` are (name, module) pairs."""

    parts: tuple[tuple[str, nn.Module], ...]
    embeddings: nn.Module | None = None  # passed to the last part (DeBERTa-v2/v3 without legacy)

    def __call__(self, hidden: Tensor) -> Tensor:
        *first, (_, last) = self.parts
        for _, module in first:
            hidden = module(hidden)
        return last(hidden) if self.embeddings is None else last(hidden, self.embeddings)

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Each parameter once, named relative to the model (`cls.predictions.bias`)."""
        seen: set[int] = set()
        for prefix, module in self.parts:
            for name, p in module.named_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield f"{prefix}.{name}", p


def _no_head(model: nn.Module, why: str) -> ConfigError:
    return ConfigError(
        f"{type(model).__name__} has no MLM head ({why}); MLM losses and TAMT-MLM need one: load the "
        "model with its MLM head (head='mlm'), or use the KD objective, which needs none"
    )


def _layout(model: nn.Module) -> HeadLayout:
    """The model's head layout: the first of its family's (`Arch.mlm_heads`) whose children it has,
    else its one non-encoder child with parameters. ELECTRA, DistilBERT and ModernBERT spread their
    head over several children, whose order only the family's entry knows: the decoder child alone
    would skip the transform and norm before it, so such a head is refused rather than guessed."""
    children = dict(model.named_children())
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    arch = ARCHS.get(model_type)
    layouts = arch.mlm_heads if arch is not None else ()
    for layout in layouts:
        if all(part in children for part in layout.parts):
            return layout
    if layouts:  # e.g. ELECTRA's discriminator (ElectraForPreTraining), a bare encoder
        raise _no_head(model, f"no {'+'.join(layouts[0].parts)} module")
    get = getattr(model, "get_output_embeddings", None)
    if get is None or get() is None:
        raise _no_head(model, "no output embeddings")
    base = getattr(model, "base_model_prefix", None)
    owners = [n for n, c in children.items() if n != base and any(True for _ in c.parameters())]
    if len(owners) != 1:
        raise _no_head(
            model,
            f"model_type {model_type!r} spreads it over {', '.join(owners)}: their order is unknown "
            "(name it in its family's entry: Arch(mlm_heads=...), ticketlab.models.arch.register_arch)",
        )
    return HeadLayout((owners[0],))


def mlm_head(model: nn.Module) -> MLMHead:
    """The model's whole MLM head (`cls` for BERT, `generator_predictions` then `generator_lm_head`
    for ELECTRA, ...). Every parameter outside the encoder must be in it: a head that skipped one
    (e.g. the transform before the decoder) would give a wrong loss without a word."""
    layout = _layout(model)
    children = dict(model.named_children())
    parts = tuple((name, children[name]) for name in layout.parts)
    encoder = encoder_of(model)
    covered = {id(p) for _, m in parts for p in m.parameters()} | {id(p) for p in encoder.parameters()}
    left = [n for n, p in model.named_parameters() if id(p) not in covered]
    if left:
        raise _no_head(model, f"{left[0]} is neither in the encoder nor in the head {'+'.join(layout.parts)}")
    embeddings = encoder.get_input_embeddings() if layout.with_embeddings else None
    return MLMHead(parts, embeddings)


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The MLM head's own parameters (transform, LayerNorm, output bias), named relative to the model.

    Parameters shared with the encoder (the decoder weight tied to the word embeddings) are left out:
    they belong to the encoder and its mask.
    """
    shared = {id(p) for p in encoder_of(model).parameters()}
    return {n: p for n, p in mlm_head(model).named_parameters() if id(p) not in shared}
