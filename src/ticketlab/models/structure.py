"""The shape of an encoder as far as units are concerned: layers, heads, head size, hidden and FFN
sizes, and its family's layout (`ticketlab.models.arch`), read from a model (`structure_of`).

`Structure` says which weight rows and columns a head or an FFN neuron owns in its family
(`head_rows`, `ffn_in_rows`, `weight_shapes`); the unit masks over it (`masks.units.UnitMask`) and
the slicing of units (`compaction`) build on it. ALBERT's one shared layer has no per-layer weights:
`unit_arch` refuses it in one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..core.checks import is_int
from ..core.errors import MaskMismatchError
from .arch import ARCHS, FUSED, INTERLEAVED, SEPARATE, Arch, encoder_of

MAX_HIDDEN = 2**15  # the widest encoders have 4096
MAX_WEIGHTS = 2**35  # per structure: above the largest encoders' layer weights (XLM-R XXL: 9.7e9)

# BERT's module names inside one layer (relative to `encoder.layer.{l}`); other families' are in their
# `Arch` (`Structure.arch`). A family with BERT's unit layout compares equal to it (`==`: its MLM head
# is not compared), as RoBERTa, XLM-R, CamemBERT and ELECTRA do.
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
    key of `models.arch.ARCHS`; files of BERT-layout families leave it out: a file that names none
    is BERT's layout)."""

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
        return sizes if self.arch == _B else {**sizes, "family": self.family}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Structure:
        """Read from a file, which may hold anything: every size a positive integer, the heads' rows no
        more than the hidden size, and no more weights than an encoder holds (a head size of -16 or
        10**12 sized tensors before any check: a traceback or an allocation of terabytes)."""
        values = {k: d[k] for k in SIZES}
        for k, v in values.items():
            if not is_int(v) or v < 1:
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
    return model_type, unit_arch(model_type)


def unit_arch(model_type: str) -> Arch:
    """The layout of a family whose heads and FFN units own weights, or one `MaskMismatchError` saying
    why not. From a config alone, so verbs that build or read tickets refuse before any work."""
    arch = ARCHS.get(model_type)
    if arch is None:
        raise MaskMismatchError(
            f"structured tickets: unknown model family '{model_type}' (known: {', '.join(sorted(ARCHS))}); "
            "register its layout with ticketlab.models.arch.register_arch"
        )
    if arch.shared:
        raise MaskMismatchError(
            f"structured tickets: {model_type} applies one shared layer to every depth, so a head or an "
            "FFN unit of one layer owns no weights of its own; prune it unstructured (prune, search)"
        )
    return arch


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
        family="bert" if arch == _B else model_type,  # BERT's layout, whatever its MLM head
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
