"""Masks beside hub models, the way PEFT adapters are: fetched by repo id, pushed by one call
(`push_mask`, in `masks.push`: it reads the mask first, with `masks.io`, which reads through here).

A mask argument that names no local directory and reads as `org/repo`, `org/repo/sub/folder` or
either with `@revision` is fetched through `huggingface_hub` (its cache: offline, a mask fetched
once still loads; `HF_HUB_OFFLINE=1` uses nothing else), only the files under the subfolder. A mask
records its base model as the hub id it was loaded from (`MaskConfig.base_model`), so a ticket made
on one machine loads on another.

    ticketlab finetune --model bert-base-uncased --mask someone/tickets/omp70 ...
    from ticketlab.masks import push_mask
    push_mask("masks/omp70", "me/tickets/omp70")     # creates me/tickets if needed
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import snapshot_download

from ..core.errors import MaskFileError
from ..core.hub import cache_only
from .names import looks_local, split_hub_name


def hub_error(e: Exception) -> str:
    """The first line of a hub error (huggingface_hub's messages run to several, with a traceback's
    worth of context), or its type where it says nothing."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def mask_dir(name: str | os.PathLike) -> Path:
    """The local directory of a mask argument: itself, or the hub mask it names, fetched (cached)."""
    path = Path(name).expanduser()
    if path.exists() or looks_local(str(name)):
        return path
    repo, sub, revision = split_hub_name(str(name))
    try:
        patterns = [f"{sub}/*"] if sub else None
        root = snapshot_download(repo, revision=revision, allow_patterns=patterns, **cache_only())
    except Exception as e:  # offline and not cached, no such repo, no access: huggingface_hub's own types
        raise MaskFileError(
            f"{name}: no local mask directory of that name, and the hub did not give it ({hub_error(e)})"
        ) from None
    found = Path(root) / sub if sub else Path(root)
    if not found.is_dir():
        raise MaskFileError(f"{name}: the hub repo {repo} has no folder {sub}")
    return found
