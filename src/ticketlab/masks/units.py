"""Structural units of a transformer encoder and the weight slices each one owns.

Super tickets (Liang et al. 2021 §3) prune *units*, not single weights:

- a **head** h of layer l owns rows `h·dh:(h+1)·dh` of Q, K and V (weights and biases) and the same
  columns of the attention-output matrix `attention.output.dense` (whose input is the per-head
  contexts concatenated head by head);
- an **FFN neuron** i of layer l owns row i of FFN-in (`intermediate.dense`, weight and bias) and
  column i of FFN-out (`output.dense`);
- an **FFN sub-layer** (one per layer, the paper's ν) owns both FFN matrices *and* FFN-out's bias: a
  pruned FFN sub-layer leaves `LayerNorm(attention output)`.

A `UnitMask` says which units are kept (bool tensors, True = kept): `head` [L, H] always, and the FFN
at one or both granularities, `ffn` [L] (whole sub-layers) and/or `neuron` [L, I]. `granularity` is
"layer", "neuron" or "both" (or "none" for a heads-only mask).

`to_weight_mask(units, structure)` gives the equivalent unstructured `Mask` over the six matrices of
every layer (keys relative to the encoder, like every mask file), so every verb that takes a weight
mask takes a structured ticket. This weight form is how a ticket is *used*: `apply_unit_mask(model,
units)` puts it on a model as `BinaryMask` parametrizations (`masks.apply`), like any mask, so the
model fine-tunes with pruned weights held at zero, `save_pretrained` writes the zeros, and
`masks_disabled` is the one switch. Gates (forward hooks, `masks.gates`) are for gradients with
respect to units only (importance scores). With FFN sub-layers (granularity "layer" or "both") it also covers
FFN-out's bias of every layer (`...output.dense.bias`: all kept, or all pruned with its sub-layer),
and the weight form computes exactly what the gates compute:

- a pruned head's Q/K/V biases stay, but its attention-output columns are zero, so the head adds
  nothing: the same as its closed gate (no bias entry needed);
- a pruned neuron's FFN-in bias stays (the neuron outputs act(b_i)), but its FFN-out column is zero:
  again exactly its closed gate;
- a pruned FFN sub-layer's matrices are zero *and* FFN-out's bias is masked: the layer computes
  `LayerNorm(attention output)`, as the gated (ν = 0) and the compacted models do. (Before biases
  could be masked it computed `LayerNorm(a + b)`; fine-tuning through the weight form now keeps that
  bias at zero too.) A family whose FFN-out has no bias (ModernBERT by default) needs no entry: the
  key is left out when the mask is applied.

The bias entries are not weights: sparsity, the recorded hash and similarity count the weights only
(`masks.mask`), so a structured ticket's `achieved_sparsity` and `base_model_hash` are what they
were. Its file stores units, never these tensors, and reads unchanged.

Which modules and rows these are in each family is the architecture map's (`ticketlab.models.arch`):
separate Q/K/V or one fused QKV matrix (ModernBERT's `Wqkv`: a head owns one row block in each of
Q, K and V; DeBERTa's `in_proj`: one block of its own), and a gated FFN-in (ModernBERT's `Wi`: a
neuron owns its input row and its gate row). ALBERT's one shared layer has no per-layer weights: its
units are refused in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from torch import Tensor, nn

from ..core.errors import MaskFileError, MaskMismatchError, TicketlabError
from ..core.files.inputs import read_json
from ..models.structure import Structure, structure_of
from .apply import apply_mask
from .mask import Mask

GRANULARITIES = ("layer", "neuron", "both")


@dataclass
class UnitMask:
    """Kept structural units (True = kept): heads [L, H]; FFN sub-layers [L] and/or neurons [L, I]."""

    head: Tensor  # bool [L, H]
    ffn: Tensor | None = None  # bool [L]: whole FFN sub-layers (the paper's ν)
    neuron: Tensor | None = None  # bool [L, I]: FFN intermediate neurons

    def __post_init__(self) -> None:
        for name, t in self.tensors().items():
            if t.dtype != torch.bool:
                raise TypeError(f"UnitMask.{name} must be a bool tensor, got {t.dtype}")
        L = self.head.shape[0]
        if self.head.ndim != 2 or (self.ffn is not None and tuple(self.ffn.shape) != (L,)):
            raise ValueError(f"UnitMask: head must be [L, H] and ffn [L], got {self.shapes}")
        if self.neuron is not None and (self.neuron.ndim != 2 or self.neuron.shape[0] != L):
            raise ValueError(f"UnitMask: neuron must be [L, I], got {self.shapes}")

    @classmethod
    def ones(cls, structure: Structure, granularity: str = "layer") -> UnitMask:
        """Everything kept, at the given FFN granularity ("layer", "neuron", "both" or "none")."""
        s = structure
        return cls(
            head=torch.ones(s.num_layers, s.num_heads, dtype=torch.bool),
            ffn=torch.ones(s.num_layers, dtype=torch.bool) if granularity in ("layer", "both") else None,
            neuron=(
                torch.ones(s.num_layers, s.intermediate_size, dtype=torch.bool)
                if granularity in ("neuron", "both")
                else None
            ),
        )

    @property
    def granularity(self) -> str:
        if self.ffn is not None and self.neuron is not None:
            return "both"
        return "layer" if self.ffn is not None else "neuron" if self.neuron is not None else "none"

    def tensors(self) -> dict[str, Tensor]:
        """The non-empty unit tensors by name ("head", "ffn", "neuron")."""
        return {
            n: t
            for n, t in (("head", self.head), ("ffn", self.ffn), ("neuron", self.neuron))
            if t is not None
        }

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(t.shape) for n, t in self.tensors().items()}

    def check_structure(self, structure: Structure, source: str = "structured mask") -> None:
        """Raise `MaskMismatchError` unless the unit tensors have the shapes of `structure`."""
        want = UnitMask.ones(structure, "both").shapes
        for name, shape in self.shapes.items():
            if shape != want[name]:
                raise MaskMismatchError(
                    f"{source}: {name} units have shape {shape} but the model has {want[name]}"
                )

    def ffn_neurons(self) -> Tensor | None:
        """Neurons that survive both granularities (bool [L, I]), or None when neurons are not gated."""
        if self.neuron is None:
            return None
        return self.neuron if self.ffn is None else self.neuron & self.ffn[:, None]

    def level(self) -> dict[str, float]:
        """Fraction of units pruned, per kind."""
        return {n: 1.0 - t.float().mean().item() for n, t in self.tensors().items()}

    def kept_per_layer(self) -> dict[str, list]:
        """Kept heads (indices), FFN sub-layers (bool), neurons (counts) per layer: for configs, `info`."""
        out: dict[str, list] = {"heads": [torch.nonzero(r).flatten().tolist() for r in self.head]}
        if self.ffn is not None:
            out["ffn"] = [bool(v) for v in self.ffn]
        if self.neuron is not None:
            out["neurons"] = [int(r.sum()) for r in self.neuron]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UnitMask) or self.shapes != other.shapes:
            return False
        return all(torch.equal(t, other.tensors()[n]) for n, t in self.tensors().items())

    __hash__ = None


def _rows(flags: Tensor, width: int) -> Tensor:
    return flags[:, None].expand(len(flags), width).clone()  # [rows, width]


def _cols(flags: Tensor, height: int) -> Tensor:
    return flags[None, :].expand(height, len(flags)).clone()  # [height, cols]


def to_weight_mask(units: UnitMask, structure: Structure) -> Mask:
    """The weight mask equivalent to `units`: the six matrices of every layer and, with FFN
    sub-layers, FFN-out's bias (see the module docstring)."""
    units.check_structure(structure)
    s, arch = structure, structure.arch
    out: dict[str, Tensor] = {}
    neurons = units.ffn_neurons()
    for l in range(s.num_layers):
        heads = units.head[l]  # [H]
        for name in arch.qkv:
            out[arch.layer_key(l, name)] = _rows(s.head_rows(heads), s.hidden_size)
        # the attention output's input: the per-head contexts, head by head [H·dh]
        out[arch.layer_key(l, arch.attn_out)] = _cols(heads.repeat_interleave(s.head_size), s.hidden_size)
        if neurons is not None:
            keep = neurons[l]  # [I]
        elif units.ffn is not None:
            keep = units.ffn[l].expand(s.intermediate_size)
        else:
            keep = torch.ones(s.intermediate_size, dtype=torch.bool)
        out[arch.layer_key(l, arch.ffn_in)] = _rows(s.ffn_in_rows(keep), s.hidden_size)
        out[arch.layer_key(l, arch.ffn_out)] = _cols(keep, s.hidden_size)
        if units.ffn is not None:  # ν = 0 also takes FFN-out's bias: the gate scales FFN(z) with it
            out[arch.layer_key(l, arch.ffn_out, "bias")] = units.ffn[l].expand(s.hidden_size).clone()  # [d]
    return Mask(out)


def apply_unit_mask(model: nn.Module, units: UnitMask) -> nn.Module:
    """Put a structured ticket on `model` as its weight form (`to_weight_mask`: parametrizations of
    the unit slices and, with FFN sub-layers, FFN-out's bias) and return the model. It computes what
    the ticket's gates compute, with no hooks; `save_pretrained` writes the zeros; `remove_mask`
    takes it off. (Before, this attached gates and returned them: `attach_gates(model, units=units)`
    still does, where gradients with respect to units are wanted.)"""
    return apply_mask(model, to_weight_mask(units, structure_of(model)))


# The weights a structure may describe when no base model is here to compare it with: BERT-large's
# layers hold 3.0e8, so a ticket of any model up to that size reads anywhere; larger ones need their
# base model (its config.json) here, so a file cannot make ticketlab allocate what no model has.
UNVOUCHED_WEIGHTS = 2**29
_SIZE_KEYS = {  # a Structure size and the config.json keys families give it under
    "num_layers": ("num_hidden_layers", "n_layers"),
    "num_heads": ("num_attention_heads", "n_heads"),
    "hidden_size": ("hidden_size", "dim"),
    "intermediate_size": ("intermediate_size", "hidden_dim"),
}


def check_structure_bound(structure: Structure, base_model: str, where: Path) -> None:
    """Refuse (one line) a recorded structure its base model does not have. The weight form of a
    ticket is as large as its structure says (`units.structure` of hidden 32768 and 16384 heads: 13 GB
    for a 210-byte file), so the structure must be the base model's, by its config.json (a local
    folder, or the hub's cache); without one, it may describe at most `UNVOUCHED_WEIGHTS`."""
    found = _base_config(base_model)
    if found is None:
        n = sum(math.prod(shape) for shape in structure.weight_shapes().values())
        if n > UNVOUCHED_WEIGHTS:
            raise MaskFileError(
                f"{where}: its units.structure describes {n:.2g} weights and its base model {base_model} "
                f"is not here to confirm them (at most {UNVOUCHED_WEIGHTS:.2g} without it)"
            )
        return
    path, raw = found
    for size, keys in _SIZE_KEYS.items():
        want = next((raw[k] for k in keys if isinstance(raw.get(k), int)), None)
        if want is not None and getattr(structure, size) != want:
            raise MaskFileError(
                f"{where}: its units.structure gives {size} {getattr(structure, size)}, but its base "
                f"model has {want} ({path}): not a ticket of that model"
            )


def _base_config(base_model: str) -> tuple[Path, dict[str, Any]] | None:
    """(path, contents) of the base model's config.json, from its folder or the hub's cache; None
    when neither has it or it does not read."""
    path = Path(base_model).expanduser() / "config.json"
    if not path.is_file():
        try:  # no network: the cache alone
            cached = try_to_load_from_cache(base_model, "config.json")
        except Exception:  # not a hub id (a moved folder's path): nothing to read
            cached = None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        raw = read_json(path, "model config")
    except TicketlabError:
        return None
    return (path, raw) if isinstance(raw, dict) else None
