"""Structured ticket files: a mask directory whose config has `kind: "structured"`.

The directory is the one of `masks.io` (`mask_config.json` + bit-packed `masks.safetensors`); the
tensors are the unit masks `head` [L, H], `ffn` [L] and/or `neuron` [L, I] (True = kept) instead of
one tensor per weight, and the config's `units` object records the granularity, the encoder's unit
structure (layers, heads, head size, hidden and intermediate size) and the kept units per layer
(head indices, FFN sub-layers, neuron counts), so `ticketlab info` can show them. `base_model_hash`
is `masks.weights_hash` over the six matrices of every layer, exactly as for the equivalent weight
mask, so the same checks apply.

`masks.load_mask` reads a structured ticket as its equivalent weight mask (`units.to_weight_mask`),
so every verb that takes `--mask` takes a structured ticket. This module reads it as units:

    config = unit_mask_config(model, units, method="winning", level=0.3, base_model="bert-base-uncased")
    save_unit_mask(units, config, "tickets/winning30")
    units, config = load_unit_mask("tickets/winning30")
    units, config = load_unit_mask_onto(model, "tickets/winning30")   # checks shapes and hash, masks it

`load_unit_mask_onto` puts the ticket on the model as its weight form (`masks.units.apply_unit_mask`:
parametrizations, no hooks), as `masks.load_mask_onto` does: the same model, the same outputs as
its gates, and `save_pretrained` writes the zeros.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from torch import nn

from ..core.checks import is_number
from ..core.errors import ConfigError, MaskFileError, MaskMismatchError
from ..models.structure import LAYER_MODULES, Structure, structure_of
from .io import MaskConfig, check_fits, load_mask, pruned_record, save_mask, units_of
from .mask import Mask
from .units import UnitMask, apply_unit_mask, to_weight_mask

KIND = "structured"
# The weights a structured ticket of a BERT-layout model covers (recorded as its `targets`;
# other families record their `Arch.encoder_targets()`), relative to the encoder.
TARGETS = r"encoder\.layer\.\d+\.(" + "|".join(m.replace(".", r"\.") for m in LAYER_MODULES) + ")"


def unit_mask_config(
    model: nn.Module, units: UnitMask, *, method: str, level: float, base_model: str, **kw: Any
) -> MaskConfig:
    """The config of a structured ticket found on `model`: hash, structure and kept units filled in.

    `level` is the fraction of units pruned the ticket aimed at (its `sparsity`); the fraction of
    weights it zeroes is written as `achieved_sparsity`.
    """
    if not is_number(level) or not 0.0 < level < 1.0:
        raise ConfigError(f"level must be a fraction of units pruned in (0, 1), got {level!r}")
    structure = structure_of(model)
    units.check_structure(structure, "unit mask")
    weight_mask = to_weight_mask(units, structure)
    return MaskConfig.for_model(
        model,
        weight_mask,
        method=method,
        sparsity=level,
        base_model=base_model,
        targets=TARGETS if structure.family == "bert" else structure.arch.encoder_targets(),
        ranking=kw.pop("ranking", None),
        achieved_sparsity=round(weight_mask.sparsity, 6),
        kind=KIND,
        units=units_record(units, structure),
        **kw,
    )


def units_record(units: UnitMask, structure: Structure) -> dict[str, Any]:
    """The `units` object of a structured config (JSON)."""
    return {
        "granularity": units.granularity,
        "structure": structure.to_dict(),
        "pruned": pruned_record(units),
        "kept": units.kept_per_layer(),
    }


def save_unit_mask(units: UnitMask, config: MaskConfig, out_dir: str | os.PathLike) -> Path:
    """Write a structured ticket directory atomically (the config from `unit_mask_config`)."""
    if config.kind != KIND or config.units is None:
        raise ValueError("save_unit_mask needs a structured config (see unit_mask_config)")
    structure = Structure.from_dict(config.units["structure"])
    units.check_structure(structure, "unit mask")
    config = dataclasses.replace(config, units=units_record(units, structure))
    return save_mask(Mask({n: t.cpu() for n, t in units.tensors().items()}), config, out_dir)


def load_unit_mask(path: str | os.PathLike) -> tuple[UnitMask, MaskConfig]:
    """Read a structured ticket directory, or raise `MaskFileError` naming the file and the problem."""
    raw, config = load_mask(path, as_units=True)
    if config.kind != KIND:
        raise MaskFileError(f"{path}: not a structured ticket (a {config.kind} mask by {config.method})")
    return units_of(raw, config, path)[0], config


def check_unit_fits(
    units: UnitMask,
    config: MaskConfig,
    model: nn.Module,
    *,
    source: str | os.PathLike,
    check_hash: bool = True,
) -> Structure:
    """Raise `MaskMismatchError` unless the ticket fits `model`: unit structure, shapes, base weights."""
    recorded = Structure.from_dict(config.units["structure"])
    try:
        have = structure_of(model)
    except MaskMismatchError as e:
        raise MaskMismatchError(f"{source}: {e}") from None
    if have != recorded:
        raise MaskMismatchError(
            f"{source}: the ticket is for {_describe(recorded)} but the model has {_describe(have)} "
            f"(ticket found on {config.base_model})"
        )
    check_fits(to_weight_mask(units, recorded), config, model, source=source, check_hash=check_hash)
    return have


def _describe(s: Structure) -> str:
    return (
        f"{s.num_layers} layers of {s.num_heads} heads x {s.head_size}, hidden {s.hidden_size}, "
        f"FFN {s.intermediate_size}"
    )


def load_unit_mask_onto(
    model: nn.Module, path: str | os.PathLike, *, check_hash: bool = True
) -> tuple[UnitMask, MaskConfig]:
    """Load a structured ticket, check that it fits `model`, and put it on the model as its weight
    form (`apply_unit_mask`). Returns the ticket's units and its config; `attach_gates(model,
    units=units)` gives the model's gates where they are wanted."""
    units, config = load_unit_mask(path)
    check_unit_fits(units, config, model, source=path, check_hash=check_hash)
    apply_unit_mask(model, units)
    return units, config


def units_line(units_info: dict[str, Any]) -> str:
    """One line: the granularity and the fraction of each kind of unit pruned (for `ticketlab info`)."""
    names = {"head": "heads", "ffn": "FFN sub-layers", "neuron": "FFN neurons"}
    pruned = ", ".join(f"{v:.1%} of {names.get(n, n)}" for n, v in units_info.get("pruned", {}).items())
    return f"structured ticket, FFN granularity {units_info.get('granularity')}; pruned: {pruned}"


def summary(units_info: dict[str, Any]) -> str:
    """Heads and FFN kept per layer, from a structured config's `units` object (for `ticketlab info`)."""
    s, kept = Structure.from_dict(units_info["structure"]), units_info["kept"]
    lines = [f"{'layer':>5}  {'heads kept':>10}  {'pruned heads':<24}  {'FFN':>12}"]
    n_heads = 0
    for l, heads in enumerate(kept["heads"]):
        n_heads += len(heads)
        pruned = ",".join(str(h) for h in range(s.num_heads) if h not in set(heads)) or "-"
        lines.append(
            f"{l:>5}  {f'{len(heads)}/{s.num_heads}':>10}  {pruned:<24}  {_ffn_cell(kept, l, s):>12}"
        )
    total_heads = s.num_layers * s.num_heads
    ffn = []
    if "ffn" in kept:
        ffn.append(f"{sum(kept['ffn'])}/{s.num_layers} FFN sub-layers")
    if "neurons" in kept:
        ffn.append(f"{sum(kept['neurons'])}/{s.num_layers * s.intermediate_size} neurons")
    pruned = f"heads ({1 - n_heads / total_heads:.1%} pruned)"
    lines.append(
        f"{'total':>5}  {f'{n_heads}/{total_heads}':>10}  {pruned:<24}  {'; '.join(ffn) or 'FFN kept'}"
    )
    return "\n".join(lines)


def _ffn_cell(kept: dict[str, Any], layer: int, s: Structure) -> str:
    if "ffn" in kept and not kept["ffn"][layer]:
        return "pruned"
    if "neurons" in kept:
        return f"{kept['neurons'][layer]}/{s.intermediate_size}"
    return "kept"


def unit_jaccard(a: UnitMask, b: UnitMask) -> dict[str, float]:
    """Jaccard similarity of the kept units, per kind the two tickets share."""
    out = {}
    for name, t in a.tensors().items():
        other = b.tensors().get(name)
        if other is not None and other.shape == t.shape:
            union = int((t | other).sum())
            out[name] = int((t & other).sum()) / union if union else 1.0
    return out


def unit_jaccard_matrices(paths: list[str | os.PathLike]) -> dict[str, list[list[float]]]:
    """Jaccard similarity matrices of kept units per kind, when every path is a structured ticket."""
    configs = [load_mask(p, as_units=True)[1] for p in paths]
    if not all(c.kind == KIND for c in configs):
        return {}
    tickets = [load_unit_mask(p)[0] for p in paths]
    kinds = [k for k in ("head", "ffn", "neuron") if all(k in t.tensors() for t in tickets)]
    pairs = [[unit_jaccard(a, b) for b in tickets] for a in tickets]
    return {k: [[row[j].get(k, float("nan")) for j in range(len(tickets))] for row in pairs] for k in kinds}
