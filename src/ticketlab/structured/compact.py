"""Compaction: a physically smaller model without the pruned heads, FFN neurons and FFN sub-layers.

`compact(model, units)` returns a sliced copy of the model (`inplace=True`: slices the model itself),
with `transformers.pytorch_utils.prune_linear_layer`:

- pruned heads: their Q/K/V rows (weights and biases) and attention-output columns go; the attention
  module's head count follows. A layer without heads keeps only the attention-output bias (what the
  gated model adds there: its input is all zeros);
- pruned neurons: their FFN-in rows (both halves of a gated FFN-in) and FFN-out columns go;
- a pruned FFN sub-layer (ν = 0): every neuron goes *and* FFN-out's bias is zeroed, so the layer
  computes `LayerNorm(attention output)`, as the gated model does.

Its outputs equal the gated model's to float tolerance (the sums run over fewer terms). FFN units
compact in every family of `ticketlab.arch`; heads where the map says how (`Arch.attention`: BERT and
its relatives, DeBERTa v1-v3 with their relative-position projections, ModernBERT's fused QKV).
DistilBERT and MPNet keep per-head state outside their projections (a width attribute, a relative
bias shared by every layer): a ticket that prunes a head there is refused in one line, and its gated
or weight-masked model computes the same.

`save_compacted(model, out_dir)` writes a Hugging Face checkpoint plus `ticketlab_compact.json`, the
manifest with the kept units and shapes of every layer, which HF configs cannot express (they have one
head count and one FFN size). Its `config.json` says `model_type: "ticketlab-compact"`, so a plain
`AutoModel*.from_pretrained` refuses it (unknown model type) instead of loading wrong shapes, and a
`BertFor*.from_pretrained` fails on the mismatched shapes. `load_compacted(dir)` rebuilds it: the
original config, the per-layer shapes from the manifest, then the weights (strict: every tensor must
be there, with its shape).

    from ticketlab.structured import compact, load_compacted, load_unit_mask, save_compacted

    units, config = load_unit_mask("tickets/winning50")
    save_compacted(compact(model, units), "compact/winning50", mask_config=config)
    small = load_compacted("compact/winning50")
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import MaskFileError, TicketlabError
from ..files import atomic_dir, atomic_write_json, read_json
from ..masking.io import MaskConfig
from ..masking.units import UnitMask
from ..modeling import Head, auto_class, head_of, quiet_transformers
from ..structure import Structure, encoder_layers, structure_of
from .gates import get_gates

if TYPE_CHECKING:  # transformers is imported where it is used: `ticketlab info` reads masks without it
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

MANIFEST = "ticketlab_compact.json"
FORMAT = "ticketlab-compact"
FORMAT_VERSION = 1
MODEL_TYPE = "ticketlab-compact"  # in config.json: plain `from_pretrained` refuses the checkpoint
_MANIFEST_ATTR = "_ticketlab_compact"


class NoHeads(nn.Module):
    """The self-attention of a layer whose heads are all pruned: an empty context [..., 0]."""

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def _slice(linear: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
    """`prune_linear_layer`, keeping the layer's dtype (it builds the new layer in the default one)."""
    from transformers.pytorch_utils import prune_linear_layer

    with warnings.catch_warnings():  # an empty layer (no heads, no neurons left) is fine here
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        return prune_linear_layer(linear, index, dim).to(linear.weight.dtype)


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
    for name in arch.head_extras:  # DeBERTa's relative-position projections and split biases
        parent, _, attr = name.rpartition(".")
        owner = layer.get_submodule(parent)
        extra = getattr(owner, attr, None)
        if isinstance(extra, nn.Linear):
            setattr(owner, attr, _slice(extra, width, dim=0))
        elif isinstance(extra, nn.Parameter):
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


def _check_heads_compact(model_type: str, structure: Structure, units: UnitMask) -> None:
    """One line, before any copy, where this family's heads cannot be sliced as `units` asks."""
    arch, pruned = structure.arch, not bool(units.head.all())
    if pruned and not arch.compact_heads:
        raise TicketlabError(
            f"compaction of attention heads is not written for {model_type}, whose attention keeps "
            "per-head state outside its projections: this ticket prunes heads, so use it gated or as a "
            "weight mask (same outputs), or compact a ticket of FFN units only"
        )
    if pruned and not arch.no_heads and not bool(units.head.any(dim=1).all()):
        raise TicketlabError(
            f"this ticket leaves a layer of {model_type} without heads, which its attention cannot run "
            "with: use it gated or as a weight mask (same outputs)"
        )


def compact(model: PreTrainedModel, units: UnitMask, *, inplace: bool = False) -> PreTrainedModel:
    """A copy of `model` without the units `units` prunes; `model` is left as it was.

    `inplace=True` slices `model` itself and returns it (no second copy in memory: the CLI and
    `load_compacted`, which own the model they compact)."""
    if get_gates(model) is not None:
        raise TicketlabError("remove the gates before compacting (remove_gates(model))")
    structure = structure_of(model)
    units.check_structure(structure, "unit mask")  # before the copy: a wrong mask costs nothing
    _check_heads_compact(model.config.model_type, structure, units)
    if not inplace:
        model = copy.deepcopy(model)
    neurons = units.ffn_neurons()
    layers = encoder_layers(model)
    for l, layer in enumerate(layers):
        keep = (
            neurons[l] if neurons is not None else torch.ones(structure.intermediate_size, dtype=torch.bool)
        )
        sublayer_kept = bool(units.ffn[l]) if units.ffn is not None else True
        if structure.arch.compact_heads:
            _compact_heads(layer, units.head[l].cpu(), structure)
        _compact_ffn(layer, keep.cpu(), sublayer_kept, structure)
    setattr(model, _MANIFEST_ATTR, _manifest(model, layers, units, structure))
    return model


def _manifest(
    model: PreTrainedModel, layers: nn.ModuleList, units: UnitMask, structure: Structure
) -> dict[str, Any]:
    records, arch = [], structure.arch
    for l, layer in enumerate(layers):
        records.append(
            {
                "heads": torch.nonzero(units.head[l]).flatten().tolist(),  # original indices
                "ffn": bool(units.ffn[l]) if units.ffn is not None else True,
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


def parameter_count(model: nn.Module) -> int:
    """Parameters, each tied tensor counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_compacted(
    model: PreTrainedModel,
    out_dir: str | os.PathLike,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    mask_config: MaskConfig | None = None,
    inputs: tuple[str | os.PathLike | None, ...] = (),
) -> Path:
    """Write a compacted model (from `compact`) with its manifest, atomically; see the module docstring."""
    manifest = getattr(model, _MANIFEST_ATTR, None)
    if manifest is None:
        raise TicketlabError("save_compacted needs a model from compact() or load_compacted()")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, kind="compacted model", inputs=inputs) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        config = read_json(tmp / "config.json", "model config")
        config["model_type"] = MODEL_TYPE  # see the module docstring: plain loaders must not load it
        atomic_write_json(tmp / "config.json", config)
        record = {**manifest, "mask": mask_config.to_dict() if mask_config is not None else None}
        atomic_write_json(tmp / MANIFEST, record)
    return out_dir


def is_compacted(path: str | os.PathLike) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()


def refuse_compacted(path: str | os.PathLike, needs: str) -> None:
    """One line before any work when `path` is a compacted model and the caller `needs` what it lost:
    unit-indexed work (importance, tickets) needs every layer's heads and FFN, a plain HF checkpoint
    one head count and FFN size for all layers."""
    if not is_compacted(path):
        return
    try:  # the model it came from, when the manifest says (a corrupt manifest is reported on load)
        base = (_read_manifest(Path(path).expanduser()).get("mask") or {}).get("base_model")
    except (TicketlabError, AttributeError):
        base = None
    origin = f" ({base})" if isinstance(base, str) else ""
    raise TicketlabError(
        f"{path} is a compacted model (heads or FFN units removed); {needs} the uncompacted model{origin}"
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = read_json(path / MANIFEST, "compaction manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MaskFileError(f"{path / MANIFEST}: not a ticketlab compaction manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise MaskFileError(f"{path / MANIFEST}: format version is newer than this ticketlab reads")
    return manifest


def _units_from_manifest(manifest: dict[str, Any], path: Path) -> UnitMask:
    """Unit flags giving the manifest's shapes (which neurons is immaterial: the weights are loaded)."""
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
    return UnitMask(head=head, ffn=ffn, neuron=neuron)


def _config(path: Path, manifest: dict[str, Any], **overrides: Any) -> PretrainedConfig:
    from transformers import CONFIG_MAPPING

    raw = read_json(path / "config.json", "model config")
    model_type = manifest.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise MaskFileError(f"{path / MANIFEST}: unknown model type {model_type!r}")
    raw = {**raw, **overrides, "model_type": model_type}
    return CONFIG_MAPPING[model_type].from_dict(raw)


def _state_dict(path: Path) -> dict[str, Tensor]:
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise MaskFileError(f"{path}: no model*.safetensors weights")
    state: dict[str, Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own error types
            raise MaskFileError(f"{f}: corrupt or truncated safetensors file ({e})") from None
    return state


def compacted_config(path: str | os.PathLike, **overrides: Any) -> PretrainedConfig:
    """The config of a compacted model with its original model type (its head counts are the original's)."""
    path = Path(path).expanduser()
    if not is_compacted(path):
        raise MaskFileError(f"{path}: not a compacted model (no {MANIFEST})")
    return _config(path, _read_manifest(path), **overrides)


def load_compacted(
    path: str | os.PathLike,
    head: Head | None = None,
    *,
    ignore_mismatched_sizes: bool = False,
    **config_overrides: Any,
) -> PreTrainedModel:
    """Rebuild a model written by `save_compacted`.

    `head`: the saved one unless given (a new head starts from a fixed seed); keyword arguments
    override config fields (e.g. `num_labels`), as with `from_pretrained`; `ignore_mismatched_sizes`
    lets a saved task head of another shape be replaced by a new one (never the encoder's tensors).
    """
    path = Path(path).expanduser()
    config = compacted_config(path, **config_overrides)
    quiet_transformers()
    manifest = _read_manifest(path)
    head = head or head_of(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a head the checkpoint lacks (a new classifier) starts the same every time
        model = auto_class(head).from_config(config)
    compact(model, _units_from_manifest(manifest, path), inplace=True)
    state = _rekey(_state_dict(path), model)
    if ignore_mismatched_sizes:  # a task head of another shape: drop it, the new one stays
        own = model.state_dict()
        body = _body_prefixes(model)
        state = {
            k: t
            for k, t in state.items()
            if k.startswith(body) or k not in own or tuple(own[k].shape) == tuple(t.shape)
        }
    _load_strict(model, state, path, allow_missing=head != head_of(config) or ignore_mismatched_sizes)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    setattr(model, _MANIFEST_ATTR, {k: v for k, v in manifest.items() if k != "mask"})
    return model.eval()


def _load_strict(model: nn.Module, state: dict[str, Tensor], path: Path, allow_missing: bool) -> None:
    """Load every tensor with its shape; only tied copies (and, for another head, its head) may be absent."""
    own = model.state_dict()
    for key, t in state.items():
        if key in own and tuple(own[key].shape) != tuple(t.shape):
            raise MaskFileError(
                f"{path}: {key} has shape {tuple(t.shape)} but the manifest gives {tuple(own[key].shape)}"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = [k for k in missing if own[k].data_ptr() not in loaded]  # tied to a loaded tensor: fine
    if allow_missing:  # another head (and maybe a pooler) than saved: embeddings and layers must be complete
        body = _body_prefixes(model)
        missing = [k for k in missing if k.startswith(body)]
        unexpected = [k for k in unexpected if k.startswith(body)]
    if missing or unexpected:
        raise MaskFileError(
            f"{path}: weights do not match the manifest (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _encoder_prefix(model: PreTrainedModel) -> str:
    """'bert.' for a model with a head, '' for the bare encoder (whose keys have no prefix)."""
    return "" if model.base_model is model else f"{model.base_model_prefix}."


def _body_prefixes(model: PreTrainedModel) -> tuple[str, ...]:
    """State-dict prefixes of the embeddings and layers: what must always load."""
    return tuple(f"{_encoder_prefix(model)}{part}." for part in ("embeddings", "encoder"))


def _rekey(state: dict[str, Tensor], model: PreTrainedModel) -> dict[str, Tensor]:
    """The saved tensors keyed as `model` keys them: a checkpoint saved with a head loads as the bare
    encoder ('bert.x' -> 'x') and a bare one under a head ('x' -> 'bert.x'), as `from_pretrained` does."""
    prefix = f"{model.base_model_prefix}."
    saved_with_head = any(k.startswith(prefix) for k in state)
    if _encoder_prefix(model) and not saved_with_head:
        return {prefix + k: t for k, t in state.items()}
    if not _encoder_prefix(model) and saved_with_head:
        return {k.removeprefix(prefix): t for k, t in state.items()}
    return state
