"""Provenance of a sweep's runs: which code made them (`code_version`: ticketlab's version and git
commit), where and on what (`here`, `device`) and which mask exactly a result came from
(`mask_hash`, of the mask's content). The runner records them with every finished run; super
tickets and ticket sharing record the code version too.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from ...core.files.atomic import HOST
from ...core.files.inputs import open_safetensors
from ...masks.identity import bits_digest

# --------------------------------------------------------------------------- provenance


_CODE: dict[str, Any] | None = None


def code_version() -> dict[str, Any]:
    """ticketlab's version and, when it runs from a git checkout, the commit and whether it is dirty."""
    global _CODE
    if _CODE is None:
        _CODE = {"ticketlab": __version__}
        src = Path(__file__).resolve().parent
        try:
            commit = subprocess.run(
                ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            if commit.returncode == 0:
                dirty = subprocess.run(
                    ["git", "-C", str(src), "status", "--porcelain", "--", str(src.parent)],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                _CODE.update(git_commit=commit.stdout.strip(), git_dirty=bool(dirty.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    return _CODE


def device() -> str:
    """What this process computed on: the GPU's name where it used one, else the CPU's vector
    instructions. A study whose runs were made on several machines can tell them apart (their
    scores differ by more than rounding: CUDA draws dropout from another generator than the CPU).
    A process that has not touched CUDA does not start it here (a sweep's coordinator would take
    GPU memory from the workers it launches)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {torch.backends.cpu.get_cpu_capability()}"


def here() -> dict[str, Any]:
    """Where this process runs (host, `device`, pid): the part of a run's provenance that a launched
    run's worker reports as its own."""
    return {"host": HOST, "device": device(), "pid": os.getpid()}


MASK_HASH = "sha256-mask:"  # of the content (a plain "sha256:" hash is of a file's bytes)


def mask_hashes(provenance: dict[str, Any]) -> dict[str, str]:
    """A search's mask hashes by where they were saved: 'final', or the step."""
    out = {f"step {k}": v for k, v in (provenance.get("intermediate_hashes") or {}).items()}
    return {"final": provenance["mask_hash"], **out} if provenance.get("mask_hash") else out


def mask_hash(mask_dir: Path) -> str:
    """sha256 of a mask's content (names, shapes, packed bits): which mask exactly a result came from.
    Not of the file's bytes: one mask has other encodings (another writer's header order or padding)."""
    with open_safetensors(mask_dir / "masks.safetensors", "masks file") as f:
        h = bits_digest(json.loads(f.metadata()["shapes"]), {k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    return MASK_HASH + h.hexdigest()
