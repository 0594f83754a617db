"""Head and FFN gates on an unmodified Hugging Face model, through forward hooks: for gradients with
respect to units (importance scores), not for using a ticket.

A structured ticket is *used* (fine-tuned, evaluated, saved, exported) as its weight form:
`apply_unit_mask(model, units)` (`masks.units`) masks the unit slices of the weights, and FFN-out's
bias with a pruned FFN sub-layer, by parametrizations like any mask; it computes exactly what the
gates below compute, with no hooks, and `save_pretrained` writes the zeros. Gates stay where a
gradient with respect to a unit is needed: ∂L/∂ξ_h and ∂L/∂ν (`methods.super_tickets.importance`,
the scoring step of the super-ticket study).

transformers 5 removed `head_mask` and `prune_heads`, so ticketlab gates units itself, without editing
transformers' code and for every attention backend (eager, sdpa, flash, flex), with hooks on the two
linear layers that see every unit separately (BERT's names here; every family's
are in `ticketlab.models.arch`):

- `attention.output.dense`, forward **pre**-hook: its input is the per-head contexts concatenated head
  by head, [..., H·dh]; viewed as [..., H, dh] it is multiplied by ξ[l] (shape [H]). ξ_h = 0 is exactly the
  model with head h sliced out (its Q/K/V rows and attention-output columns removed).
- `output.dense` (FFN-out), forward **pre**-hook: its input is the intermediate activations [..., I],
  multiplied by the neuron gates [I]. A zero gate is the neuron sliced out (FFN-in row, FFN-out column).
- `output.dense`, forward hook: its output, bias included, is multiplied by ν[l] (the paper's
  FFN(z) = ν·FFN(z)); ν = 0 leaves `LayerNorm(attention output)`.

Usage::

    from ticketlab.masks import masks_disabled
    from ticketlab.masks import attach_gates, remove_gates

    gates = attach_gates(model, granularity="layer")  # heads [L, H] + one gate per FFN [L]; all ones
    gates.requires_grad_()                             # importance: |gates.head.grad| after backward
    gates.head[3, 5] = 0.0                             # gates are plain tensors
    with masks_disabled(model):                        # the one switch: gates and weight masks off
        ...
    units = gates.to_unit_mask()                       # which gates are open, as a UnitMask
    remove_gates(model)                                # hooks off; the model is untouched

`granularity` chooses the FFN gates: "layer" (`.ffn` [L], the paper's unit), "neuron" (`.neuron`
[L, I]), "both", or "none" (heads only). Head gates `.head` [L, H] are always there. Gates are float32
on the device of the layer they gate and are cast to the activations' dtype in the hooks, so autograd
reaches them under mixed precision too. `attach_gates(model, units=units)` attaches gates with the 0/1
values of a `UnitMask` (at its granularity); `Gates.to_unit_mask()` reads them back. Gates compose
with masks: importance on a model carrying a ticket as weights scores its pruned units 0.

The gates object is kept on the encoder (`model.base_model`), so `remove_gates` and `get_gates`
work from any head. A deep copy of a gated model shares the original's gates: attach after copying.
Closed gates are hooks, not weights: `save_pretrained` refuses them in one line (`_closed_gates`);
a ticket meant to be saved is applied with `apply_unit_mask`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..core.checks import check_one_of
from ..core.errors import MaskMismatchError
from ..models.arch import encoder_of
from ..models.structure import Structure, encoder_layers, structure_of
from .apply import MASK_KINDS, SAVE_REFUSALS, MaskKind, guard_saving
from .units import GRANULARITIES, UnitMask

_ATTR = "_ticketlab_gates"


class Gates:
    """The gate tensors of one model: `.head` [L, H], `.ffn` [L] or None, `.neuron` [L, I] or None.

    Hooks read the tensors at every forward, so values may be changed in place, or a tensor replaced
    by another of the same shape. `enabled = False` (or `masks.masks_disabled`) lets everything through.
    """

    def __init__(self, structure: Structure, granularity: str, device: torch.device):
        check_one_of("granularity", granularity, (*GRANULARITIES, "none"))
        s = structure
        self.structure = structure
        self.granularity = granularity
        self.head: Tensor = torch.ones(s.num_layers, s.num_heads, device=device)  # ξ
        self.ffn: Tensor | None = (
            torch.ones(s.num_layers, device=device) if granularity in ("layer", "both") else None
        )  # ν
        self.neuron: Tensor | None = (
            torch.ones(s.num_layers, s.intermediate_size, device=device)
            if granularity in ("neuron", "both")
            else None
        )
        self.enabled = True
        self._handles: list[RemovableHandle] = []

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}={list(t.shape)}" for n, t in self.tensors().items())
        return f"Gates({shapes}, granularity={self.granularity!r}, enabled={self.enabled})"

    def tensors(self) -> dict[str, Tensor]:
        """The gate tensors by name ("head", "ffn", "neuron"), those this granularity has."""
        return {
            n: t
            for n, t in (("head", self.head), ("ffn", self.ffn), ("neuron", self.neuron))
            if t is not None
        }

    def requires_grad_(self, requires_grad: bool = True) -> Gates:
        for t in self.tensors().values():
            t.requires_grad_(requires_grad)
        return self

    def zero_grad(self) -> None:
        """Drop accumulated gradients (`.grad = None`), e.g. before each batch of importance scoring."""
        for t in self.tensors().values():
            t.grad = None

    @torch.no_grad()
    def load_(self, units: UnitMask) -> Gates:
        """Set the gates to the 0/1 values of `units`; FFN gates `units` does not have are set to 1."""
        units.check_structure(self.structure, "unit mask")
        given = units.tensors()
        missing = sorted(set(given) - set(self.tensors()))
        if missing:
            raise MaskMismatchError(
                f"the unit mask has {', '.join(missing)} units but the gates are {self.granularity!r}"
            )
        for name, t in self.tensors().items():
            t.copy_(given[name].to(t.device, t.dtype) if name in given else torch.ones_like(t))
        return self

    def to_unit_mask(self) -> UnitMask:
        """Which units are open (gate != 0), as a `UnitMask`."""
        return UnitMask(**{n: (t.detach() != 0).cpu() for n, t in self.tensors().items()})


def get_gates(model: nn.Module) -> Gates | None:
    """The gates attached to `model` (any head, or its encoder), or None."""
    return getattr(encoder_of(model), _ATTR, None)


def _head_hook(gates: Gates, layer: int, head_size: int):
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if not gates.enabled:
            return None
        x, *rest = args  # [..., H·dh]: the heads' contexts, concatenated head by head
        g = gates.head[layer].to(x.dtype)  # [H], or [B, T, H] per example and token (importance)
        return ((x.unflatten(-1, (-1, head_size)) * g[..., None]).flatten(-2), *rest)

    return hook


def _neuron_hook(gates: Gates, layer: int):
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if not gates.enabled or gates.neuron is None:
            return None
        x, *rest = args  # [..., I]: intermediate activations
        return (x * gates.neuron[layer].to(x.dtype), *rest)

    return hook


def _ffn_hook(gates: Gates, layer: int):
    def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
        if not gates.enabled or gates.ffn is None:
            return None
        return out * gates.ffn[layer].to(out.dtype)  # [..., d]: FFN-out with its bias, times ν

    return hook


def attach_gates(model: nn.Module, granularity: str | None = None, *, units: UnitMask | None = None) -> Gates:
    """Hook gates (all ones, or the 0/1 values of `units`) onto a model of a known family in place.
    `granularity` defaults to that of `units`, else "layer"."""
    if get_gates(model) is not None:
        raise MaskMismatchError("the model already has gates; remove_gates(model) first")
    if granularity is None:
        granularity = units.granularity if units is not None else "layer"
    structure = structure_of(model)
    layers = encoder_layers(model)
    arch = structure.arch
    gates = Gates(structure, granularity, layers[0].get_submodule(arch.ffn_out).weight.device)
    if units is not None:
        gates.load_(units)
    for l, layer in enumerate(layers):
        attn_out, ffn_out = layer.get_submodule(arch.attn_out), layer.get_submodule(arch.ffn_out)
        gates._handles.append(attn_out.register_forward_pre_hook(_head_hook(gates, l, structure.head_size)))
        if gates.neuron is not None:
            gates._handles.append(ffn_out.register_forward_pre_hook(_neuron_hook(gates, l)))
        if gates.ffn is not None:
            gates._handles.append(ffn_out.register_forward_hook(_ffn_hook(gates, l)))
    setattr(encoder_of(model), _ATTR, gates)
    guard_saving(model)
    return gates


def _closed_gates(model: nn.Module) -> str | None:
    """Why `model` cannot be saved as plain weights: closed gates are hooks, which a checkpoint
    does not hold (it would reload as the dense model). All-ones or disabled gates compute the
    dense model, which saving writes."""
    gates = get_gates(model)
    if gates is None or not gates.enabled or all(bool((t == 1).all()) for t in gates.tensors().values()):
        return None
    return (
        "it has closed unit gates, which are forward hooks, not weights: apply a ticket as weights "
        "(apply_unit_mask(model, units)), compact it (masks.compact), or remove_gates(model) first"
    )


SAVE_REFUSALS.append(_closed_gates)


def remove_gates(model: nn.Module) -> nn.Module:
    """Take the gates' hooks off (no-op when there are none). The weights were never touched."""
    gates = get_gates(model)
    if gates is not None:
        for h in gates._handles:
            h.remove()
        gates._handles.clear()
        delattr(encoder_of(model), _ATTR)
    return model


@contextlib.contextmanager
def _gates_off(model: nn.Module) -> Iterator[nn.Module]:
    """The gates of `model` let everything through inside the block (no-op without gates); what
    `masks_disabled` does to gates."""
    gates = get_gates(model)
    before = gates.enabled if gates is not None else None
    if gates is not None:
        gates.enabled = False
    try:
        yield model
    finally:
        if gates is not None:
            gates.enabled = before


# `masks.masks_disabled` (the KD teacher) switches gates off too; `masks.has_masks` sees them
MASK_KINDS.append(MaskKind(present=lambda model: get_gates(model) is not None, disabled=_gates_off))
