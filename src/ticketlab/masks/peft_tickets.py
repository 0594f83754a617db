"""A PEFT adapter (LoRA) over a ticket: it records the ticket it was trained on, reloads only onto
that ticket, and merges under the mask or not at all.

    peft_model = get_peft_model(ticketed, LoraConfig(...))   # peft.get_peft_model, guarded
    peft_model.save_pretrained("lora/sst2")                  # + ticketlab_ticket.json
    peft_model = load_peft_model(ticketed, "lora/sst2")      # refuses another base in one line
    merged = merge_under_mask(peft_model)                     # (W + Δ) ⊙ M: still the ticket

The base layers of a ticketed model are parametrized (`masks.apply`): their `weight` is computed,
W ⊙ M, on every access. PEFT's own merge adds the update to `base_layer.weight.data`, a temporary, so
`merge_and_unload` silently merged nothing; once ticketlab is imported it is refused in one line on
every masked layer, of any PEFT model (`ticketlab.masks.hf_auto` guards PEFT's LoRA merge). Merging under
the mask is `merge_under_mask`: the update goes into the dense weight under the parametrization, so
the merged model computes (W + Δ) ⊙ M, its pruned
weights still exactly zero. That is not what the adapter computed, W ⊙ M + Δ (a LoRA update is
dense): outputs move by the pruned part of the update, Δ ⊙ (1 − M). Keeping them means giving up
the ticket: `remove_mask(model)` on the base first, then PEFT's merge (a dense model).

The record (`ticketlab_ticket.json` beside the adapter) is `ticket_record(model)` of the base it was
wrapped around: a sha256 over the mask bits and the weights the model computes under them, the
ticket's sparsity, and a short hash of every other tensor of the base (those the adapter saves
itself, PEFT's `modules_to_save`, left out). An adapter loaded with `load_peft_model` onto a model
whose ticket differs (the dense base, another ticket, other weights) is refused in one line, and so
is one whose base has another tensor elsewhere: a layer the checkpoint lacks, which `from_pretrained`
draws anew on each load (an MLM checkpoint's missing pooler under a classifier), unless the adapter
saves it. An adapter without a record going onto a ticketed model is warned about in one line.
PEFT is optional (`pip install 'ticketlab[peft]'`) and imported here only when used.
"""

from __future__ import annotations

import hashlib
import os
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import MaskMismatchError, TicketlabError
from ..core.files.atomic import atomic_write_json
from ..core.files.inputs import check_folder, read_json
from ..core.optional import missing, optional_module
from ..models.arch import encoder_of
from .apply import _mask_param, _masked_modules, dense_tensor, is_masked, masked_state_dict, split_key
from .ticket import tensor_digests

RECORD = "ticketlab_ticket.json"
PEFT_MISSING = missing("peft", "peft", "an adapter over a ticket")


def _peft() -> types.ModuleType:
    return optional_module("peft", "peft", "an adapter over a ticket")


def _encoder(model: nn.Module) -> nn.Module:
    """The encoder of a model, under a PEFT wrapper or not (masks are keyed relative to it)."""
    get = getattr(model, "get_base_model", None)
    return encoder_of(get() if callable(get) else model)


def ticket_record(model: nn.Module) -> dict[str, Any]:
    """What identifies the base an adapter trains on: {"ticket": sha256 over each masked tensor's
    name, mask bits and computed weights (W ⊙ M), None without masks; "sparsity"; "masked": how many
    tensors; "tensors": a short sha256 of every other tensor of the base, by name; "adapter_saves":
    the modules the adapter saves itself (PEFT's `modules_to_save`, left out of "tensors")}. Under
    PEFT the names are the base model's (no `.base_layer`, `.original_module`)."""
    found = {
        key.replace(".base_layer.", "."): (module, p) for key, module, p in _masked_modules(_encoder(model))
    }
    h, kept, total = hashlib.sha256(), 0, 0
    for key in sorted(found):
        module, p = found[key]
        bits = p.current_mask().detach().cpu()
        value = getattr(module, split_key(key)[1]).detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{tuple(bits.shape)};".encode())
        h.update(np.packbits(bits.numpy().ravel()).tobytes())
        h.update(value.numpy().tobytes())
        kept, total = kept + int(bits.sum()), total + bits.numel()
    saves, tensors = _base_tensors(model)
    return {
        "ticket": "sha256:" + h.hexdigest() if found else None,
        "sparsity": round(1 - kept / total, 6) if found else 0.0,
        "masked": len(found),
        "tensors": tensors,
        "adapter_saves": saves,
    }


def _base_tensors(model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """(the modules a PEFT wrapper saves itself, a short hash of every other tensor of the base as
    it computes it, by its name without PEFT's wrappers)."""
    get = getattr(model, "get_base_model", None)
    state = masked_state_dict(get() if callable(get) else model)
    saves = sorted({k.split(".modules_to_save.")[0] for k in state if ".modules_to_save." in k})
    base = {  # without the adapter's own tensors, under the base's names
        k.replace(".base_layer.", ".").replace(".original_module.", "."): t
        for k, t in state.items()
        if ".lora_" not in k and ".modules_to_save." not in k
    }
    return saves, tensor_digests(base)


def _describe(record: dict[str, Any]) -> str:
    if record.get("ticket") is None:
        return "no mask (the dense model)"
    return f"a {record['sparsity']:.1%} ticket ({str(record['ticket'])[7:19]})"


def check_adapter_ticket(model: nn.Module, adapter_dir: str | os.PathLike) -> None:
    """Refuse in one line an adapter recorded on another ticket than `model` carries, or on a base
    with other weights outside the ticket (a layer the checkpoint lacks, initialised anew on each
    load); warn in one line about an adapter without a record going onto a ticketed model."""
    path = Path(adapter_dir) / RECORD
    mine = ticket_record(model)
    if not path.is_file():
        if mine["ticket"] is not None:
            warnings.warn(
                f"{adapter_dir}: the adapter records no ticket (trained on this one?)", stacklevel=2
            )
        return
    recorded = read_json(path, "ticket record")
    if not isinstance(recorded, dict) or "ticket" not in recorded:
        raise TicketlabError(f"{path}: not a ticket record (no 'ticket')")
    if recorded["ticket"] != mine["ticket"]:
        raise MaskMismatchError(
            f"{adapter_dir}: the adapter was trained on {_describe(recorded)}, this model carries "
            f"{_describe(mine)}; put that ticket on the base first (or check_ticket=False)"
        )
    saves = tuple(f"{m}." for m in recorded.get("adapter_saves") or [])
    for name, digest in (recorded.get("tensors") or {}).items():
        if not name.startswith(saves) and mine["tensors"].get(name) != digest:
            raise MaskMismatchError(
                f"{adapter_dir}: the base's {name} differs from the one the adapter was trained with (a "
                "layer the checkpoint lacks, initialised anew? save it with the adapter: modules_to_save)"
            )


def get_peft_model(model: nn.Module, peft_config: Any, **kwargs: Any) -> nn.Module:
    """`peft.get_peft_model` over a ticketed model, guarded (see the module docstring)."""
    return guard(_peft().get_peft_model(model, peft_config, **kwargs))


def load_peft_model(
    model: nn.Module, adapter_dir: str | os.PathLike, *, check_ticket: bool = True, **kwargs: Any
) -> nn.Module:
    """`peft.PeftModel.from_pretrained(model, adapter_dir)` after checking the adapter's ticket
    against the one `model` carries (`check_ticket=False`: not checked), guarded."""
    peft = _peft()
    if check_ticket:
        check_adapter_ticket(model, adapter_dir)
    check_folder(adapter_dir, "adapter file")  # PEFT's reader would wait forever on a FIFO in it
    return guard(peft.PeftModel.from_pretrained(model, str(adapter_dir), **kwargs))


def guard(peft_model: nn.Module) -> nn.Module:
    """Give `peft_model` a `save_pretrained` that also writes the ticket record (an instance
    attribute, as `masks.apply.guard_saving` does). PEFT's merge on a masked layer is refused for
    every PEFT model once ticketlab is imported (`ticketlab.masks.hf_auto`)."""
    record = ticket_record(peft_model)
    peft_model.__dict__["save_pretrained"] = types.MethodType(_saver(record), peft_model)
    return peft_model


def _saver(record: dict[str, Any]) -> Any:
    def save_pretrained(self: nn.Module, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        out = type(self).save_pretrained(self, str(save_directory), *args, **kwargs)
        if kwargs.get("is_main_process", True):
            atomic_write_json(Path(save_directory) / RECORD, record)
        return out

    return save_pretrained


def refuse_masked_merge(layer: nn.Module) -> None:
    """One line where PEFT would merge into a masked weight (it would merge nothing)."""
    if _mask_param(layer.get_base_layer(), "weight") is None:
        return
    raise TicketlabError(
        "PEFT cannot merge into a ticketed (masked) weight: it would silently merge nothing; "
        "merge_under_mask(peft_model) merges (W + Δ) ⊙ M, or remove_mask the base for a dense merge"
    )


def _lora_layers(peft_model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """(name, LoRA layer, whether its base layer's weight is masked) of every LoRA layer."""
    lora_layer = _peft().tuners.lora.LoraLayer
    out = []
    for name, module in peft_model.named_modules():
        if isinstance(module, lora_layer):
            out.append((name, module, _mask_param(module.get_base_layer(), "weight") is not None))
    return out


def merge_under_mask(peft_model: nn.Module) -> nn.Module:
    """Merge the active LoRA adapters and unload PEFT: a masked base weight becomes (W + Δ) ⊙ M (the
    update under the mask; pruned weights stay zero), an unmasked one W + Δ as PEFT merges it.
    Returns the base model, still ticketed. See the module docstring for what this changes."""
    if not is_masked(peft_model.get_base_model()):
        raise TicketlabError(
            "merge_under_mask: the base model carries no ticket (PEFT's merge_and_unload merges)"
        )
    for name, layer, masked in _lora_layers(peft_model):
        adapters = [a for a in layer.active_adapters if a in layer.lora_A or a in layer.lora_embedding_A]
        if not masked:
            type(layer).merge(layer, adapter_names=adapters)
            continue
        for adapter in adapters:
            if adapter in layer.lora_variant or layer.lora_bias.get(adapter):
                raise TicketlabError(
                    f"{name}: only plain LoRA updates merge under a mask (not DoRA, lora_bias)"
                )
            weight = dense_tensor(layer.get_base_layer(), "weight")
            with torch.no_grad():
                weight.add_(layer.get_delta_weight(adapter).to(weight.dtype))
    return peft_model.unload()  # the LoRA layers go; their updates are in the weights now


__all__ = [
    "PEFT_MISSING",
    "RECORD",
    "check_adapter_ticket",
    "get_peft_model",
    "guard",
    "load_peft_model",
    "merge_under_mask",
    "ticket_record",
]
