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
mask takes a structured ticket. Weight masks never cover biases, so:

- a pruned head's Q/K/V biases stay, but its attention-output columns are zero, so the head adds
  nothing: the converted mask computes exactly what the gated model computes;
- a pruned neuron's FFN-in bias stays (the neuron outputs act(b_i)), but its FFN-out column is zero:
  again exactly the gated model;
- a pruned FFN sub-layer's matrices are zero but FFN-out's bias b stays: the converted model computes
  `LayerNorm(a + b)` where the gated (ν = 0) and the compacted model compute `LayerNorm(a)`. This is
  what pruning every neuron of the layer gives, and b is one vector that fine-tuning adapts; where
  the exact paper unit matters (importance scores, compaction) use gates or compaction.

Which modules and rows these are in each family is the architecture map's (`ticketlab.arch`):
separate Q/K/V or one fused QKV matrix (ModernBERT's `Wqkv`: a head owns one row block in each of
Q, K and V; DeBERTa's `in_proj`: one block of its own), and a gated FFN-in (ModernBERT's `Wi`: a
neuron owns its input row and its gate row). ALBERT's one shared layer has no per-layer weights: its
units are refused in one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..arch import ARCHS, FUSED, INTERLEAVED, SEPARATE, Arch
from ..errors import MaskMismatchError
from ..masking.mask import Mask
from ..modeling import encoder_of

GRANULARITIES = ("layer", "neuron", "both")
MAX_HIDDEN = 2**15  # the widest encoders have 4096
MAX_WEIGHTS = 2**35  # per structure: above the largest encoders' layer weights (XLM-R XXL: 9.7e9)

# BERT's module names inside one layer (relative to `encoder.layer.{l}`); other families' are in their
# `Arch` (`Structure.arch`).
_B = ARCHS["bert"]
QUERY, KEY, VALUE = _B.qkv
ATTN_OUT, FFN_IN, FFN_OUT = _B.attn_out, _B.ffn_in, _B.ffn_out
LAYER_MODULES = _B.layer_modules
SIZES = ("num_layers", "num_heads", "head_size", "hidden_size", "intermediate_size")


def layer_key(layer: int, module: str) -> str:
    """The mask-file key of one BERT layer's weight, e.g. `encoder.layer.3.intermediate.dense.weight`."""
    return _B.layer_key(layer, module)


@dataclass(frozen=True)
class Structure:
    """The shape of an encoder as far as units are concerned, and its family's layout (`family`: a
    key of `arch.ARCHS`; files of BERT-layout families do not name it, as before)."""

    num_layers: int
    num_heads: int
    head_size: int
    hidden_size: int
    intermediate_size: int
    family: str = "bert"

    @property
    def arch(self) -> Arch:
        return ARCHS[self.family]

    @property
    def all_head_size(self) -> int:
        return self.num_heads * self.head_size

    def to_dict(self) -> dict[str, Any]:
        sizes: dict[str, Any] = {k: getattr(self, k) for k in SIZES}
        return sizes if self.arch is _B else {**sizes, "family": self.family}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Structure:
        """Read from a file, which may hold anything: every size a positive integer, the heads' rows no
        more than the hidden size, and no more weights than an encoder holds (a head size of -16 or
        10**12 sized tensors before any check: a traceback or an allocation of terabytes)."""
        values = {k: d[k] for k in SIZES}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        family = d.get("family", "bert")
        if family not in ARCHS:
            raise ValueError(f"unknown model family {family!r} (known: {', '.join(sorted(ARCHS))})")
        s = cls(**values, family=family)
        if s.head_size > s.hidden_size:
            raise ValueError(f"head_size {s.head_size} exceeds hidden_size {s.hidden_size}")
        if s.hidden_size > MAX_HIDDEN:
            raise ValueError(f"hidden_size {s.hidden_size} exceeds {MAX_HIDDEN} (no encoder is that wide)")
        if sum(math.prod(shape) for shape in s.weight_shapes().values()) > MAX_WEIGHTS:
            raise ValueError(f"{s.num_layers} layers of these sizes exceed {MAX_WEIGHTS:.1e} weights")
        return s

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape of every weight a structured ticket covers, keyed like a mask file."""
        d, a, i, arch = self.hidden_size, self.all_head_size, self.intermediate_size, self.arch
        qkv_rows = a if arch.qkv_layout == SEPARATE else 3 * a
        per_layer = {
            **{m: (qkv_rows, d) for m in arch.qkv},
            arch.attn_out: (d, a),
            arch.ffn_in: (2 * i if arch.gated_ffn else i, d),
            arch.ffn_out: (d, i),
        }
        return {arch.layer_key(l, m): s for l in range(self.num_layers) for m, s in per_layer.items()}

    def head_rows(self, keep: Tensor) -> Tensor:
        """Flags of the QKV projection rows (bool [rows]) the kept heads `keep` (bool [H]) own."""
        per_head = keep.repeat_interleave(self.head_size)  # [H·dh]
        layout = self.arch.qkv_layout
        if layout == FUSED:  # [3, H, dh]: one block each in Q, K and V
            return per_head.repeat(3)
        if layout == INTERLEAVED:  # [H, 3, dh]: a head's Q, K and V rows side by side
            return keep.repeat_interleave(3 * self.head_size)
        return per_head

    def ffn_in_rows(self, keep: Tensor) -> Tensor:
        """Flags of the FFN-in rows (bool [rows]) the kept neurons `keep` (bool [I]) own."""
        return keep.repeat(2) if self.arch.gated_ffn else keep


def model_arch(model: nn.Module) -> tuple[str, Arch]:
    """The model's family (`config.model_type`) and layout, or one `MaskMismatchError` saying why its
    units cannot be expressed."""
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    arch = ARCHS.get(model_type)
    if arch is None:
        raise MaskMismatchError(
            f"structured tickets: unknown model family '{model_type}' (known: {', '.join(sorted(ARCHS))}); "
            "register its layout with ticketlab.arch.register_arch"
        )
    if arch.shared:
        raise MaskMismatchError(
            f"structured tickets: {model_type} applies one shared layer to every depth, so a head or an "
            "FFN unit of one layer owns no weights of its own; prune it unstructured (prune, search)"
        )
    return model_type, arch


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a model of a known family (any `*For...` head), or one clear error."""
    model_type, arch = model_arch(model)
    try:
        layers = encoder_of(model).get_submodule(arch.layers)
    except AttributeError:
        layers = None
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise MaskMismatchError(f"structured tickets: {model_type} has no layers at {arch.layers}")
    for name in arch.layer_modules:
        try:
            module = layers[0].get_submodule(name)
        except AttributeError:
            module = None
        if not isinstance(module, nn.Linear):
            raise MaskMismatchError(f"structured tickets: {model_type} layers have no Linear '{name}'")
    return layers


def _num_heads(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    if not isinstance(heads, int) or heads < 1:
        raise MaskMismatchError("structured tickets: the model's config has no head count")
    return heads


def structure_of(model: nn.Module) -> Structure:
    """Read the unit structure from the model's modules (and check every layer has the same one)."""
    model_type, arch = model_arch(model)
    layers = encoder_layers(model)
    first = layers[0].get_submodule(arch.qkv[0])
    heads = _num_heads(model)
    all_head = first.out_features // (1 if arch.qkv_layout == SEPARATE else 3)
    if all_head % heads:
        raise MaskMismatchError(f"structured tickets: {all_head} attention rows for {heads} heads")
    s = Structure(
        num_layers=len(layers),
        num_heads=heads,
        head_size=all_head // heads,
        hidden_size=first.in_features,
        intermediate_size=layers[0].get_submodule(arch.ffn_out).in_features,
        family="bert" if arch is _B else model_type,
    )
    shapes = s.weight_shapes()
    for l, layer in enumerate(layers):
        for name in arch.layer_modules:
            have, want = tuple(layer.get_submodule(name).weight.shape), shapes[arch.layer_key(l, name)]
            if have != want:
                raise MaskMismatchError(
                    f"layer {l} {name} has shape {have}, not {want}: units need every layer of the same "
                    "shape (is this model compacted already?)"
                )
    return s


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
    """The unstructured weight mask equivalent to `units` (see the module docstring for biases)."""
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
    return Mask(out)
