"""A fine-tuned ticket as a small artefact beside its base model, loaded back in one call.

    save_ticket(model, "tickets/sst2-omp70", base="models/minilm-mlm")
    model = load_ticket("tickets/sst2-omp70")      # the base, the mask, the changed weights

PEFT's shape, for tickets: the artefact holds only what the base model does not, and records the
base (path or hub id, and a short sha256 of each tensor it was saved against). The directory is

- a mask directory (`mask_config.json`, bit-packed `masks.safetensors`), so `--mask DIR` takes it;
- `ticket_weights.safetensors`: each tensor fine-tuning changed (what the model computes, W ⊙ M for
  a masked one), only at the positions that can differ: a masked tensor's surviving weights, and of
  a matrix only the rows training changed (embeddings: the tokens seen; their indices beside). The
  values are stored exactly, as the difference of their bits from the base's (`_diff_pack`: small
  integers, xz-compressed). A tensor equal to the base's (frozen) is not stored;
- `ticket.json`: the base, its tensors' hashes, the model's config (head, labels), each stored
  tensor's form.

The reloaded model computes exactly what the saved one did. The base is loaded with a fixed seed, so
a tensor the base checkpoint lacks (a new task head) that training left as initialised comes back
the same; the hashes cover every tensor of the loaded base, that head included, and a base that
differs is refused in one line naming the first tensor that does.
Where the bound lies: one bit per target weight (the mask), and per surviving weight training moved
about 16 bits (a few fine-tuning steps move a float32 by ~2^16 units in its last place, which do not
compress: ~2.2 bytes each on bert-mini-ref), plus every other tensor training changed (biases,
LayerNorm, the new head; embeddings by the rows it touched).
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import AutoConfig

from ..core.errors import MaskFileError, MaskMismatchError, TicketlabError
from ..core.files.atomic import atomic_write_bytes, atomic_write_text, to_json
from ..core.files.inputs import open_safetensors, read_bytes, read_json
from ..core.files.tensors import safetensors_bytes
from ..core.outputs import atomic_dir, check_output
from ..models.load import load_config, load_model
from ..models.source import head_of
from ..models.weights import encoder_prefix
from .apply import (
    _mask_param,
    apply_mask,
    current_mask,
    dense_tensor,
    is_masked,
    masked_state_dict,
    resolve_modules,
    split_key,
)
from .card import write_model_card
from .identity import PROVENANCE_FIELDS, same_mask
from .io import MaskConfig, library_versions, load_mask, portable_path, weights_hash, write_mask_files
from .mask import Mask

log = logging.getLogger(__name__)

TICKET_NAME = "ticket.json"
WEIGHTS_NAME = "ticket_weights.safetensors"
FORMAT, FORMAT_VERSION = "ticketlab-ticket", 1
ROWS = "@rows"  # suffix of the indices of the rows a tensor is stored for (the rows training changed)
SEED = 0  # the base's new tensors (a task head) are initialised from it, on saving and on loading


def is_ticket(path: str | os.PathLike) -> bool:
    return (Path(path).expanduser() / TICKET_NAME).is_file()


# What makes two checkpoints of one family other architectures: a base differing in one is not the
# model the ticket was fine-tuned from (loaded with the fine-tuned config, its weights would not fit).
SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def _load_base(base: str, head: str, config: Any) -> nn.Module:
    """The base model with `head` and `config`'s labels, its new tensors from a fixed seed."""
    own = load_config(base)
    if differs := [f for f in SHAPE_FIELDS if getattr(own, f, None) != getattr(config, f, None)]:
        f = differs[0]
        raise MaskMismatchError(
            f"{base}: another architecture than the fine-tuned model ({f} {getattr(own, f, None)} vs "
            f"{getattr(config, f, None)}): a ticket's base is the model it was fine-tuned from"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return load_model(base, head, config=config)


def head_of_model(model: nn.Module) -> str:
    """The head of a loaded model, from its class (its config names the checkpoint's it came from)."""
    return head_of(SimpleNamespace(architectures=[type(model).__name__]))


def tensor_digests(state: Mapping[str, Tensor]) -> dict[str, str]:
    """A short sha256 of each tensor's shape, dtype and bytes, by name: what a base is checked by
    (a mismatch names the tensor)."""
    out = {}
    for key, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h = hashlib.sha256(f"{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[key] = h.hexdigest()[:16]
    return out


def _check_base(recorded: Mapping[str, str], base: nn.Module, source: str) -> None:
    mine = tensor_digests(base.state_dict())
    wrong = next((k for k, d in recorded.items() if mine.get(k) != d), None)
    if wrong is not None or set(mine) != set(recorded):
        name = wrong or sorted(set(mine) ^ set(recorded))[0]
        raise MaskMismatchError(
            f"{source}: the base's {name} differs from the one the ticket was saved against (another "
            "base, or its new head initialised otherwise); check_hash=False loads it anyway"
        )


def _selected(shape: tuple[int, ...], rows: Tensor | None, kept: Tensor | None) -> Tensor:
    """The stored positions (bool, `shape`): the mask's kept ones (all, unmasked) in the listed rows
    (all rows when None)."""
    sel = torch.ones(shape, dtype=torch.bool) if kept is None else kept.cpu().clone()
    if rows is not None:
        in_rows = torch.zeros(shape[0], dtype=torch.bool)
        in_rows[rows.long()] = True
        sel &= in_rows.view(-1, *[1] * (len(shape) - 1))
    return sel


CODECS = ("raw", "diff-xz")
INTS = {2: np.int16, 4: np.int32, 8: np.int64}  # a value's bits as an integer, by its size in bytes


def _diff_pack(values: Tensor, ref: Tensor) -> Tensor:
    """`values` as the difference of their bit patterns from `ref`'s, as integers (zigzag: small
    either way), byte plane by byte plane, xz-compressed. Fine-tuning moves a float by a few units
    in its last place relative to its size, so the difference is a small integer and its high byte
    planes are nearly all zeros. Exact: `_diff_unpack` gives the same bits back (integer arithmetic
    wraps, both ways)."""
    ints = INTS[values.element_size()]
    d = _ints(values, ints) - _ints(ref, ints)
    zigzag = (d << 1) ^ (d >> (8 * d.itemsize - 1))
    planes = np.ascontiguousarray(zigzag.view(np.uint8).reshape(-1, d.itemsize).T)  # [size, n]
    return torch.frombuffer(bytearray(lzma.compress(planes.tobytes())), dtype=torch.uint8)


def _diff_unpack(blob: Tensor, ref: Tensor) -> Tensor:
    ints = INTS[ref.element_size()]
    planes = np.frombuffer(lzma.decompress(blob.numpy().tobytes()), dtype=np.uint8)
    zigzag = np.ascontiguousarray(planes.reshape(ref.element_size(), -1).T).view(ints).reshape(-1)
    unsigned = zigzag.view(np.dtype(ints).str.replace("i", "u"))
    d = (unsigned >> 1).view(ints) ^ -(zigzag & 1)
    return torch.from_numpy((_ints(ref, ints) + d).copy()).view(ref.dtype).reshape(ref.shape)


def _ints(t: Tensor, ints: type) -> np.ndarray:
    return t.detach().cpu().contiguous().view(torch.uint8).numpy().view(ints).reshape(-1)


def _encode(t: Tensor, was: Tensor, kept: Tensor | None) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """How `t` is stored given the base's `was` (None: unchanged); `kept`: its mask, if masked."""
    if t.shape == was.shape and torch.equal(t, was):
        return None
    if t.shape != was.shape or t.dtype != was.dtype or t.element_size() not in INTS:
        return {"rows": False, "kept": False, "codec": "raw"}, {"": t}  # written whole
    rows = None
    if t.ndim >= 2:
        changed = torch.nonzero((t != was).reshape(t.shape[0], -1).any(dim=1)).flatten().int()
        rows = changed if changed.numel() < t.shape[0] else None
    sel = _selected(tuple(t.shape), rows, kept)
    form = {"rows": rows is not None, "kept": kept is not None, "codec": "diff-xz"}
    return form, {"": _diff_pack(t[sel], was[sel]), **({ROWS: rows} if rows is not None else {})}


def save_ticket(
    model: nn.Module,
    out_dir: str | os.PathLike,
    *,
    base: str | os.PathLike,
    mask: Mask | None = None,
    mask_config: MaskConfig | None = None,
    check_hash: bool = True,
) -> Path:
    """Write `model` (fine-tuned, carrying its ticket, or squashed with `mask` given) as a small
    artefact against `base`; see the module docstring. `mask_config`, when given, is the ticket's
    (its hash is checked against `base` unless `check_hash=False`)."""
    check_output(out_dir, kind="ticket", inputs=[base])  # before any work
    if mask is not None and not is_masked(model):
        check_squashed(model, mask)
        apply_mask(model, mask)
    if not is_masked(model):
        raise TicketlabError("save_ticket needs a ticketed model (or its mask: mask=)")
    mask = current_mask(model)
    head = head_of_model(model)
    base_model = _load_base(str(base), head, model.config)
    if mask_config is None:
        modules = sorted({k.rpartition(".")[0] for k in mask})
        mask_config = MaskConfig.for_model(
            base_model, mask, method="ticket", sparsity=mask.sparsity, base_model=str(base), targets=modules
        )
    elif check_hash and weights_hash(base_model, list(mask)) != mask_config.base_model_hash:
        raise MaskMismatchError(
            f"{base}: its weights differ from those the ticket was found on; pass --ignore-hash "
            "(check_hash=False) to write it anyway"
        )
    record = {"base_tensors": tensor_digests(base_model.state_dict())}
    apply_mask(base_model, mask)
    tensors, forms = _changed(masked_state_dict(model), masked_state_dict(base_model), model, mask)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "base_model": portable_path(base),
        **record,
        "head": head,
        "config": model.config.to_dict(),
        "forms": forms,
        "versions": library_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    weights = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    if _holds(Path(out_dir), record, weights, mask, mask_config):  # the same command again
        log.info("%s: holds this ticket already; left as it is", out_dir)
        return Path(out_dir)
    with atomic_dir(Path(out_dir), kind="ticket", inputs=[base]) as tmp:
        write_mask_files(mask, mask_config, tmp)
        write_model_card(tmp, mask_config, kind="ticket", sparsity=mask.sparsity)
        atomic_write_bytes(tmp / WEIGHTS_NAME, weights)
        atomic_write_text(tmp / TICKET_NAME, to_json(record, indent=2) + "\n")
    return Path(out_dir)


def _holds(out: Path, record: dict[str, Any], weights: bytes, mask: Mask, mask_config: MaskConfig) -> bool:
    """Whether `out` holds this ticket already: its mask made the same way, its record but for its
    provenance (when it was written, by which versions), and its weights byte for byte."""
    ticket, saved_weights = out / TICKET_NAME, out / WEIGHTS_NAME
    if not (ticket.is_file() and saved_weights.is_file() and same_mask(out, mask, mask_config)):
        return False
    saved, mine = read_json(ticket, "ticket"), json.loads(to_json(record))
    if not isinstance(saved, dict):
        return False
    same = all(saved.get(k) == v for k, v in mine.items() if k not in PROVENANCE_FIELDS)
    return same and saved.keys() == mine.keys() and read_bytes(saved_weights, "ticket weights") == weights


def check_squashed(model: nn.Module, mask: Mask, source: str | os.PathLike | None = None) -> None:
    """A model saved with its ticket squashed has zeros wherever `mask` prunes; one that does not is
    another model (the dense one, another ticket's), which masking would silently change. `source`:
    the model's path, to name in the message."""
    for key, module in resolve_modules(model, list(mask)).items():
        if getattr(module, split_key(key)[1]).detach()[~mask[key].to(module.weight.device)].any():
            where = f"{source}: {key}" if source is not None else key
            raise MaskMismatchError(
                f"{where}: the model has non-zero weights where the mask prunes (not a model "
                "fine-tuned with this ticket)"
            )


def _changed(
    mine: dict[str, Tensor], base: dict[str, Tensor], model: nn.Module, mask: Mask
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The stored tensors and each one's form, for every tensor of `mine` that differs from `base`."""
    prefix = encoder_prefix(model)
    tensors, forms, seen = {}, {}, set()
    for key, t in mine.items():
        if id(t) in seen:  # a tied tensor (an MLM decoder's embeddings): stored once, under its first name
            continue
        seen.add(id(t))
        if key not in base:
            raise TicketlabError(f"{key}: a tensor the base model has not (another architecture?)")
        local = key.removeprefix(prefix) if key.startswith(prefix) else None
        kept = mask.get(local)
        encoded = _encode(t.cpu(), base[key].cpu(), kept)
        if encoded is not None:
            forms[key], parts = encoded
            tensors.update({key + suffix: v for suffix, v in parts.items()})
    return tensors, forms


def load_ticket(
    path: str | os.PathLike, *, base: str | os.PathLike | None = None, check_hash: bool = True
) -> nn.Module:
    """The model `save_ticket` wrote: the base (recorded, or `base`), the ticket on it, the stored
    weights; it computes exactly what the saved model did. A base whose weights differ is refused."""
    path = Path(path).expanduser()
    record = _read_record(path)
    config = dict(record["config"])
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    base = str(base or record["base_model"])
    model = _load_base(base, record["head"], config)
    if check_hash:
        _check_base(record["base_tensors"], model, f"{path} on {base}")
    mask, _ = load_mask(path)
    apply_mask(model, mask)
    _write(model, _read_weights(path), record["forms"], path)
    return model.eval()


def _read_record(path: Path) -> dict[str, Any]:
    if not is_ticket(path):
        raise MaskFileError(f"{path}: not a ticket (no {TICKET_NAME})")
    record = read_json(path / TICKET_NAME, "ticket record")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise MaskFileError(f"{path / TICKET_NAME}: not a ticketlab ticket record")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise MaskFileError(f"{path / TICKET_NAME}: format version is newer than this ticketlab reads")
    missing = [k for k in ("base_model", "base_tensors", "head", "config", "forms") if k not in record]
    if missing or not isinstance(record["config"], dict) or "model_type" not in record["config"]:
        raise MaskFileError(
            f"{path / TICKET_NAME}: invalid ticket record (missing {missing or ['model_type']})"
        )
    return record


def _read_weights(path: Path) -> dict[str, Tensor]:
    try:
        with open_safetensors(path / WEIGHTS_NAME, "ticket weights", MaskFileError) as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises its own error types
        raise MaskFileError(f"{path / WEIGHTS_NAME}: missing, corrupt or truncated ({e})") from None


def _write(model: nn.Module, tensors: dict[str, Tensor], forms: dict[str, Any], path: Path) -> None:
    """Put each stored tensor into the model's tensor (the dense one, under a mask), in its form."""
    modules = dict(model.named_modules())
    for key, form in forms.items():
        module_name, _, name = key.rpartition(".")
        module = modules.get(module_name)
        target = dense_tensor(module, name) if module is not None else None
        if target is None or key not in tensors or not isinstance(form, dict):
            raise MaskFileError(f"{path / WEIGHTS_NAME}: {key} is not in the model or the file")
        if form.get("codec") not in CODECS:
            raise MaskFileError(f"{path / TICKET_NAME}: {key} has an unknown codec {form.get('codec')!r}")
        with torch.no_grad():
            if form.get("codec") == "raw":
                target.copy_(tensors[key])
                continue
            rows = tensors.get(key + ROWS) if form.get("rows") else None
            kept = _kept(module, name) if form.get("kept") else None
            sel = _selected(tuple(target.shape), rows, kept).to(target.device)
            computed = getattr(module, name).detach()  # what the base computes: the reference
            target[sel] = _diff_unpack(tensors[key], computed[sel].cpu()).to(target.device)


def _kept(module: nn.Module, name: str) -> Tensor:
    p = _mask_param(module, name)
    if p is None:
        raise MaskFileError(f"{name}: stored as kept values of a mask, but not masked")
    return p.current_mask()
