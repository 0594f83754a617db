"""Compaction: slicing pruned heads, FFN neurons and FFN sub-layers out of a model, and its manifest.

The model layer of compaction (`masks.compacted.compact(model, units)` is the call most users want):
`slice_units` slices a model in place, with `transformers.pytorch_utils.prune_linear_layer`:

- pruned heads: their Q/K/V rows (weights and biases) and attention-output columns go; the attention
  module's head count follows. A layer without heads keeps only the attention-output bias (what the
  gated model adds there: its input is all zeros);
- pruned neurons: their FFN-in rows (both halves of a gated FFN-in) and FFN-out columns go;
- a pruned FFN sub-layer (ν = 0): every neuron goes *and* FFN-out's bias is zeroed, so the layer
  computes `LayerNorm(attention output)`, as the gated model does.

Its outputs equal the ticketed model's to float tolerance (the sums run over fewer terms). FFN units
compact in every family of `ticketlab.models.arch`; heads where the map says how (`Arch.attention`: BERT and
its relatives, DeBERTa v1-v3 with their relative-position projections, DistilBERT, ModernBERT's
fused QKV). MPNet keeps per-head state outside its projections (a relative bias shared by every
layer): a ticket that prunes a head there is refused in one line, and its gated or weight-masked
model computes the same.

`save_compacted(model, out_dir)` writes a Hugging Face checkpoint plus `ticketlab_compact.json`, the
manifest with the kept units and shapes of every layer, which HF configs cannot express (they have one
head count and one FFN size). Its `config.json` says `model_type: "ticketlab-compact"`, so a plain
`AutoModel*.from_pretrained` refuses it (unknown model type) instead of loading wrong shapes (after
`import ticketlab` the Auto classes rebuild it: `ticketlab.masks.hf_auto`), and a `BertFor*.from_pretrained`
fails on the mismatched shapes. `load_compacted(dir)` rebuilds it: the
original config, the per-layer shapes from the manifest, then the weights (strict: every tensor must
be there, with its shape).

    from ticketlab.masks import compact, load_compacted, load_unit_mask, save_compacted

    units, config = load_unit_mask("tickets/winning50")
    save_compacted(compact(model, units), "compact/winning50", mask_config=config)
    small = load_compacted("compact/winning50")
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import prune_linear_layer

from ..core.errors import MaskFileError, TicketlabError
from ..core.files.inputs import read_json
from .structure import Structure, encoder_layers

MANIFEST = "ticketlab_compact.json"
FORMAT = "ticketlab-compact"
FORMAT_VERSION = 1
MODEL_TYPE = "ticketlab-compact"  # in config.json: plain `from_pretrained` refuses the checkpoint
MANIFEST_ATTR = "_ticketlab_compact"  # the manifest of a sliced model, kept on it


class NoHeads(nn.Module):
    """The self-attention of a layer whose heads are all pruned: an empty context [..., 0]."""

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def _slice(linear: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
    """`prune_linear_layer`, keeping the layer's dtype (it builds the new layer in the default one)."""
    with warnings.catch_warnings():  # an empty layer (no heads, no neurons left) is fine here
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        return prune_linear_layer(linear, index, dim).to(linear.weight.dtype)


def head_extras(layer: nn.Module, arch: Any) -> list[tuple[nn.Module, str, nn.Linear | nn.Parameter]]:
    """The per-head rows [H·dh] of one layer outside Q/K/V (`Arch.head_extras`: DeBERTa's
    relative-position projections and split biases) that this configuration has, as (owner,
    attribute, Linear or 1-D parameter): what compaction slices and ticket sharing masks."""
    out = []
    for name in arch.head_extras:
        parent, _, attr = name.rpartition(".")
        owner = layer.get_submodule(parent)
        extra = getattr(owner, attr, None)  # None: not in this configuration (DeBERTa-v3 shares keys)
        if isinstance(extra, (nn.Linear, nn.Parameter)):
            out.append((owner, attr, extra))
    return out


def _compact_heads(layer: nn.Module, keep: Tensor, structure: Structure) -> None:
    """Keep the heads flagged in `keep` (bool [H]) of one layer (`Arch`: which modules, attributes)."""
    arch, dh = structure.arch, structure.head_size
    heads = torch.nonzero(keep).flatten()  # [h]
    width = (heads[:, None] * dh + torch.arange(dh)).flatten()  # [h·dh]: the kept heads' contexts
    layer.set_submodule(arch.attn_out, _slice(layer.get_submodule(arch.attn_out), width, dim=1))
    if len(heads) == 0:  # a view of an empty projection as [..., -1, dh] is ambiguous: no module at all
        layer.set_submodule(arch.attention, NoHeads())
        return
    rows = torch.nonzero(structure.head_rows(keep)).flatten()
    for name in arch.qkv:
        layer.set_submodule(name, _slice(layer.get_submodule(name), rows, dim=0))
    for owner, attr, extra in head_extras(layer, arch):  # DeBERTa's relative-position projections
        if isinstance(extra, nn.Linear):
            setattr(owner, attr, _slice(extra, width, dim=0))
        else:  # a split bias [H·dh]
            setattr(owner, attr, nn.Parameter(extra.detach()[width].clone(), extra.requires_grad))
    attention = layer.get_submodule(arch.attention)
    for attr, what in arch.head_attrs:
        setattr(attention, attr, len(heads) if what == "heads" else len(heads) * dh)


def _compact_ffn(layer: nn.Module, keep: Tensor, sublayer_kept: bool, structure: Structure) -> None:
    """Keep the FFN neurons flagged in `keep` (bool [I]); a pruned sub-layer loses FFN-out's bias too."""
    arch = structure.arch
    kept = keep & sublayer_kept
    rows = torch.nonzero(structure.ffn_in_rows(kept)).flatten()  # [i], or [2i] of a gated FFN-in
    layer.set_submodule(arch.ffn_in, _slice(layer.get_submodule(arch.ffn_in), rows, dim=0))
    ffn_out = _slice(layer.get_submodule(arch.ffn_out), torch.nonzero(kept).flatten(), dim=1)
    layer.set_submodule(arch.ffn_out, ffn_out)
    if not sublayer_kept and ffn_out.bias is not None:
        with torch.no_grad():
            ffn_out.bias.zero_()


def check_sliceable(model_type: str, structure: Structure, head: Tensor) -> None:
    """One line, before any work, where this family's heads cannot be sliced as `head` [L, H] asks."""
    arch, pruned = structure.arch, not bool(head.all())
    if pruned and not arch.compact_heads:
        raise TicketlabError(
            f"compaction of attention heads is not written for {model_type}: {arch.no_head_slicing}; "
            "this ticket prunes heads, so use it as a weight mask (apply_unit_mask, --mask), or compact a "
            "ticket of FFN units only"
        )
    if pruned and not arch.no_heads and not bool(head.any(dim=1).all()):
        raise TicketlabError(
            f"this ticket leaves a layer of {model_type} without heads, which its attention cannot run "
            "with: use it as a weight mask (apply_unit_mask, --mask)"
        )


def slice_units(
    model: nn.Module, structure: Structure, head: Tensor, neuron: Tensor | None, ffn: Tensor | None
) -> nn.Module:
    """Slice `model` in place to the kept units (bool: `head` [L, H], `neuron` [L, I] or None, `ffn`
    [L] or None) and record the manifest on it; returns it."""
    check_sliceable(model.config.model_type, structure, head)
    layers = encoder_layers(model)
    for l, layer in enumerate(layers):
        keep = neuron[l] if neuron is not None else torch.ones(structure.intermediate_size, dtype=torch.bool)
        sublayer_kept = bool(ffn[l]) if ffn is not None else True
        if structure.arch.compact_heads:
            _compact_heads(layer, head[l].cpu(), structure)
        _compact_ffn(layer, keep.cpu(), sublayer_kept, structure)
    setattr(model, MANIFEST_ATTR, _manifest(model, layers, head, ffn, structure))
    return model


def _manifest(
    model: nn.Module, layers: nn.ModuleList, head: Tensor, ffn: Tensor | None, structure: Structure
) -> dict[str, Any]:
    records, arch = [], structure.arch
    for l, layer in enumerate(layers):
        records.append(
            {
                "heads": torch.nonzero(head[l]).flatten().tolist(),  # original indices
                "ffn": bool(ffn[l]) if ffn is not None else True,
                "intermediate_size": layer.get_submodule(arch.ffn_out).in_features,
                "shapes": {
                    name: list(layer.get_submodule(name).weight.shape)
                    for name in (arch.attn_out, arch.ffn_in, arch.ffn_out)
                },
            }
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": model.config.model_type,
        "structure": structure.to_dict(),
        "layers": records,
    }


def is_compacted(path: str | os.PathLike) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()


def refuse_compacted(path: str | os.PathLike, needs: str) -> None:
    """One line before any work when `path` is a compacted model and the caller `needs` what it lost:
    unit-indexed work (importance, tickets) needs every layer's heads and FFN, a plain HF checkpoint
    one head count and FFN size for all layers."""
    if not is_compacted(path):
        return
    try:  # the model it came from, when the manifest says (a corrupt manifest is reported on load)
        base = (read_manifest(Path(path).expanduser()).get("mask") or {}).get("base_model")
    except (TicketlabError, AttributeError):
        base = None
    origin = f" ({base})" if isinstance(base, str) else ""
    raise TicketlabError(
        f"{path} is a compacted model (heads or FFN units removed); {needs} the uncompacted model{origin}"
    )


def read_manifest(path: Path) -> dict[str, Any]:
    manifest = read_json(path / MANIFEST, "compaction manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MaskFileError(f"{path / MANIFEST}: not a ticketlab compaction manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version < 0:
        raise MaskFileError(f"{path / MANIFEST}: format_version must be a whole number, got {version!r}")
    if version > FORMAT_VERSION:
        raise MaskFileError(f"{path / MANIFEST}: format version is newer than this ticketlab reads")
    return manifest


def flags_from_manifest(manifest: dict[str, Any], path: Path) -> tuple[Structure, Tensor, Tensor, Tensor]:
    """(structure, head [L, H], neuron [L, I], ffn [L]) flags giving the manifest's shapes (which
    neurons is immaterial: the weights are loaded)."""
    try:
        s = Structure.from_dict(manifest["structure"])
        layers = manifest["layers"]
        head = torch.zeros(s.num_layers, s.num_heads, dtype=torch.bool)
        neuron = torch.zeros(s.num_layers, s.intermediate_size, dtype=torch.bool)
        ffn = torch.ones(s.num_layers, dtype=torch.bool)
        for l, layer in enumerate(layers):
            head[l, layer["heads"]] = True
            neuron[l, : int(layer["intermediate_size"])] = True
            ffn[l] = bool(layer["ffn"])
        if len(layers) != s.num_layers:
            raise ValueError(f"{len(layers)} layers listed for {s.num_layers}")
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise MaskFileError(f"{path / MANIFEST}: invalid layer list ({e})") from None
    return s, head, neuron, ffn
