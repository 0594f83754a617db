"""A mask's content identity: its bits (names, shapes, packed flags) and the fields of its config
that change what it computes (`IDENTITY_FIELDS`), never its provenance (when it was made, with
which library versions). Re-running `prune` with the same arguments gives the same identity, so a
fine-tuning that recorded the mask resumes, and `prune` leaves a folder holding that mask as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from torch import Tensor

from ..core.errors import TicketlabError
from ..core.files.inputs import open_safetensors, read_json
from ..core.files.keys import content_key
from .io import CONFIG_NAME, MASKS_NAME, Mask, MaskConfig, pack

# What changes what a mask computes besides its bits: which weights it covers, in which form.
IDENTITY_FIELDS = ("kind", "units", "pattern", "targets", "model_type")
# What a mask's config records of how it was made, which a second run of the same command changes.
PROVENANCE_FIELDS = ("created", "versions")


def bits_digest(shapes: Mapping[str, Any], packed: Mapping[str, Tensor]) -> Any:
    """sha256 (a hashlib object, to go on) of a mask's names, shapes and packed bits. Not of the
    file's bytes: one mask has other encodings (another writer's header order or padding)."""
    h = hashlib.sha256()
    h.update(json.dumps(dict(shapes), sort_keys=True).encode())
    for name in sorted(packed):
        h.update(name.encode() + b"\0" + packed[name].numpy().tobytes())
    return h


def _identity(shapes: Mapping[str, Any], packed: Mapping[str, Tensor], config: Mapping[str, Any]) -> str:
    h = bits_digest(shapes, packed)
    h.update(json.dumps({k: config.get(k) for k in IDENTITY_FIELDS}, sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()


def mask_identity(mask: Mask, config: MaskConfig) -> str:
    """The content identity of a mask in memory, as `mask_key` gives it for the folder it is saved to."""
    packed, meta = pack(mask)
    return _identity(json.loads(meta["shapes"]), packed, config.to_dict())


def mask_key(path: str | os.PathLike) -> str | None:
    """The content identity of the mask folder `path` (`mask_identity`). A folder that does not read
    as a mask is keyed by its bytes (`content_key`); None where it is not local."""
    path = Path(path).expanduser()
    try:
        config = read_json(path / CONFIG_NAME, "mask config")
        with open_safetensors(path / MASKS_NAME, "masks file") as f:
            shapes = json.loads((f.metadata() or {})["shapes"])
            packed = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        return _identity(shapes, packed, config)
    except (TicketlabError, SafetensorError, OSError, KeyError, ValueError, TypeError, AttributeError):
        return content_key([path])


def same_mask(path: str | os.PathLike, mask: Mask, config: MaskConfig) -> bool:
    """Whether the folder `path` holds this mask made the same way: the same identity and the same
    config but for its provenance (and what saving it fills in)."""
    key = mask_key(path) if (Path(path) / CONFIG_NAME).is_file() else None
    if key is None or key != mask_identity(mask, config):
        return False
    skip = {*PROVENANCE_FIELDS, "achieved_sparsity", "format_version"}
    saved = read_json(Path(path) / CONFIG_NAME, "mask config")
    mine = json.loads(json.dumps(config.to_dict(), default=str))
    return {k: v for k, v in saved.items() if k not in skip} == {
        k: v for k, v in mine.items() if k not in skip
    }
