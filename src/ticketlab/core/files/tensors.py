"""Tensors as safetensors bytes, one content one file: `safetensors_bytes` (written with
`atomic.atomic_write_bytes`). Its own module as it needs torch, which `atomic` does not."""

from __future__ import annotations

import json
from typing import Any

from safetensors.torch import save


def safetensors_bytes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """`safetensors.torch.save(tensors, metadata)` with the header's metadata in sorted order. The
    library writes metadata from a hash map, in an order that differs from one save to the next: one
    mask saved twice would be two files, and a file's checksum would not name its content. The data
    offsets count from the end of the header, so the header is written again around the same data."""
    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as the library pads it
    return b"".join((len(text).to_bytes(8, "little"), text, memoryview(raw)[8 + n :]))  # one copy
