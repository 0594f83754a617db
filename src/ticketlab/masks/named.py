"""Named masks on one model, one of them active: PEFT's `add_adapter` / `set_adapter` /
`disable_adapter` shape, for masks.

    add_mask(model, "sst2", mask_a)        # the first one added is active
    add_mask(model, "rte", mask_b)
    set_active_mask(model, "rte")          # the model now computes exactly what apply_mask(mask_b) gives
    with masks_disabled(model): ...        # the dense model (the KD teacher), as for any mask
    active_mask(model), mask_names(model)  # "rte", ["sst2", "rte"]
    delete_mask(model, "sst2")

One injection: every tensor some named mask covers carries one `BinaryMask` parametrization
(`masks.apply`), whose buffer holds the *active* mask (one byte per entry, once). The masks not in
force are kept bit-packed (1/8 byte per entry and mask, on the tensor's device), so a model with
one mask per task holds no byte per weight per task. Switching unpacks the new mask into the
buffers; a mask whose buffer was edited in place while active (IMP prunes that way) is packed back
first, so what was done to it is kept, and the masks not in force never change.

A tensor a mask does not cover is kept whole while that mask is active. Keys of biases a module
does not have are left out (`apply.resolve_modules`). `remove_mask(model)` takes the named masks off
with every other mask. Tensors masked some other way (`apply_mask`) are refused, not shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..core.errors import MaskMismatchError
from ..models.arch import encoder_of
from .apply import (
    NAMED_ATTR,
    BinaryMask,
    _mask_param,
    _masked_modules,
    _own_class,
    attach,
    masked_tensor,
    resolve_modules,
    split_key,
)
from .mask import Mask

_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)  # first entry in the high bit


def pack_bits(t: Tensor) -> Tensor:
    """A bool tensor as uint8 [ceil(n/8)], in `numpy.packbits` order (the mask files' own)."""
    flat = t.reshape(-1).to(torch.uint8)  # [n]
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) << _SHIFTS.to(flat.device)).sum(1, dtype=torch.uint8)  # [n/8]


def unpack_bits(packed: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The bool tensor of `shape` that `pack_bits` packed, on the packed bits' device."""
    bits = (packed[:, None] >> _SHIFTS.to(packed.device)) & 1  # [n/8, 8]
    return bits.reshape(-1)[: math.prod(shape)].bool().reshape(shape)


@dataclass
class NamedMasks:
    """The named masks of one model: bits per name and key, the active name, the buffers in force."""

    buffers: dict[str, BinaryMask] = field(default_factory=dict)  # key -> its parametrization
    bits: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # name -> key -> uint8 [n/8]
    active: str | None = None
    versions: dict[str, int] = field(default_factory=dict)  # key -> buffer `_version` when loaded

    def load(self, name: str) -> None:
        """Put `name`'s mask in force (after keeping any in-place edit of the one in force)."""
        self._keep_edits()
        for key, p in self.buffers.items():
            packed = self.bits[name].get(key)
            with torch.no_grad():
                if packed is None:  # a tensor this mask does not cover: kept whole
                    p.mask.fill_(True)
                else:
                    p.mask.copy_(unpack_bits(packed.to(p.mask.device), tuple(p.mask.shape)))
            self.versions[key] = p.mask._version
        self.active = name

    def _keep_edits(self) -> None:
        """Pack back each buffer of the mask in force that changed since it was loaded."""
        if self.active is None:
            return
        mine = self.bits[self.active]
        for key, p in self.buffers.items():
            if p.mask._version != self.versions.get(key):
                mine[key] = pack_bits(p.mask)
                self.versions[key] = p.mask._version


def _named(model: nn.Module) -> NamedMasks | None:
    return getattr(encoder_of(model), NAMED_ATTR, None)


def _require(model: nn.Module, name: str) -> NamedMasks:
    named = _named(model)
    if named is None or name not in named.bits:
        have = ", ".join(named.bits) if named else "none"
        raise MaskMismatchError(f"no mask named {name!r} on this model (named masks: {have})")
    return named


def add_mask(model: nn.Module, name: str, mask: Mask, *, activate: bool = False) -> None:
    """Add `mask` under `name`; the first mask added (or `activate=True`) is put in force."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a mask name is a non-empty string, got {name!r}")
    named = _named(model)
    if named is not None and name in named.bits:
        raise MaskMismatchError(f"a mask named {name!r} exists already; delete_mask it first")
    modules = resolve_modules(model, list(mask))
    for key, module in modules.items():
        if tuple(masked_tensor(module, key).shape) != tuple(mask[key].shape):
            raise MaskMismatchError(f"{key}: mask shape {tuple(mask[key].shape)} does not fit the model")
    if named is None:
        named = NamedMasks()
        setattr(encoder_of(model), NAMED_ATTR, named)
    _cover(model, named, modules)
    named.bits[name] = {k: pack_bits(mask[k].to(named.buffers[k].mask.device)) for k in modules}
    if named.active is None or activate:
        named.load(name)


def _cover(model: nn.Module, named: NamedMasks, modules: dict[str, nn.Module]) -> None:
    """Parametrize the tensors no named mask covered yet (kept whole by the masks already there)."""
    new = {
        k: BinaryMask(torch.ones_like(masked_tensor(m, k), dtype=torch.bool))
        for k, m in modules.items()
        if k not in named.buffers
    }
    for key in new:  # another mask (apply_mask, TAMT's scores) on the same tensor: refused
        if _mask_param(modules[key], split_key(key)[1]) is not None:
            raise MaskMismatchError(f"{key} is masked already, not by a named mask; remove_mask first")
    attach(model, new)
    named.buffers.update(new)
    for key, p in new.items():
        named.versions[key] = p.mask._version


def set_active_mask(model: nn.Module, name: str) -> None:
    """Put the mask named `name` in force: the model computes exactly what applying it alone gives."""
    named = _require(model, name)
    if named.active != name:
        named.load(name)


def active_mask(model: nn.Module) -> str | None:
    """The name of the mask in force, or None (no named masks)."""
    named = _named(model)
    return None if named is None else named.active


def mask_names(model: nn.Module) -> list[str]:
    """The named masks of `model`, in the order they were added."""
    named = _named(model)
    return [] if named is None else list(named.bits)


def named_mask(model: nn.Module, name: str) -> Mask:
    """The mask named `name` as a `Mask` (CPU; the keys it covers)."""
    named = _require(model, name)
    if named.active == name:
        named._keep_edits()
    shapes = {k: tuple(p.mask.shape) for k, p in named.buffers.items()}
    return Mask({k: unpack_bits(b.cpu(), shapes[k]) for k, b in named.bits[name].items()})


def delete_mask(model: nn.Module, name: str) -> None:
    """Drop the mask named `name`. The one in force is refused while others remain (set another
    active first); deleting the last one takes the named masks off (the dense model)."""
    named = _require(model, name)
    if len(named.bits) == 1:
        _take_off(model, named)
        return
    if named.active == name:
        raise MaskMismatchError(f"mask {name!r} is in force; set_active_mask another one before deleting it")
    del named.bits[name]


def _take_off(model: nn.Module, named: NamedMasks) -> None:
    """Remove the named masks' parametrizations (tied modules' too), and no other mask."""
    owned = {id(p) for p in named.buffers.values()}
    for key, module, p in list(_masked_modules(model)):
        if id(p) in owned:
            _own_class(module)  # a deep copy's masks come off without touching the original's
            parametrize.remove_parametrizations(module, split_key(key)[1], leave_parametrized=False)
    delattr(encoder_of(model), NAMED_ATTR)


def active_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The buffers of the mask in force by key (no copy: they change with `set_active_mask`)."""
    named = _named(model)
    return {} if named is None else {k: p.mask for k, p in named.buffers.items()}
