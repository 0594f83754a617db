"""Whether the Hugging Face hub can be reached: asked once per process, before the first download.

A model, tokenizer, mask or dataset named by a hub id is downloaded into huggingface_hub's cache,
or read from it. Where the hub cannot be reached (no network, a firewall, `HF_HUB_OFFLINE=1`),
huggingface_hub retries each request for half a minute before it looks in the cache, and a verb
given a mistyped path (`models/minilm-mlm` from another folder reads as the hub id `models/
minilm-mlm`) or no `--data-dir` waited that long to say so. One request decides instead: offline,
every hub id is read from the cache alone (`from_pretrained(local_files_only=True)`, `datasets`'
offline mode), so what was downloaded before still loads and what was not is refused at once.

Torch-free; huggingface_hub and datasets are imported only when a hub id is used.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

PROBE_TIMEOUT_S = 3.0  # one HEAD request to the hub's endpoint; an answer of any status is online
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's own reading of HF_HUB_OFFLINE


def online() -> bool:
    """Whether the hub can be reached: False under `HF_HUB_OFFLINE`, else one request decides."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        return False
    return _reachable()


def _probe() -> bool:
    """One HEAD request to the hub's endpoint (`_reachable`: once per process)."""
    # lazy: only a hub id asks; huggingface_hub's client has its proxies, certificates and endpoint
    from huggingface_hub import constants, utils

    try:
        utils.get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except Exception:  # no DNS, no route, refused, timed out: huggingface_hub's client raises many
        return False
    return True


_reachable = functools.cache(_probe)


def cache_only() -> dict[str, Any]:
    """`from_pretrained`'s and `snapshot_download`'s keyword for a hub id: the cache alone offline."""
    return {} if online() else {"local_files_only": True}


def offline_hint() -> str:
    """What a failed load of a hub id adds: why it failed at once, and what works without the hub."""
    if online():
        return "hub ids need network access: pass a local directory offline"
    return "the hub cannot be reached and its cache does not hold it: pass a local directory"


def datasets_module() -> ModuleType:
    """`datasets`, in its offline mode (its cache alone) when the hub cannot be reached."""
    import datasets  # lazy: local files (the common case) load without it; a second to import

    if not online():
        datasets.config.HF_HUB_OFFLINE = True  # read at each call, not only at import
    return datasets


def path_shaped(name: str) -> bool:
    """`name` can only be a path of this machine, never a hub id (`name` or `org/name`): it starts
    like a path (., /, ~), has more than one slash, or a backslash."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
