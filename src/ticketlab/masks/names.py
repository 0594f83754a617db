"""What a mask argument names, told without the hub's client: a local directory, or a hub mask
(`org/repo[/sub/folder][@revision]`, fetched by `masks.hub`). Light, so that the command line
refuses a mistyped local path before a verb imports anything heavy."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import MaskFileError


def split_hub_name(name: str) -> tuple[str, str | None, str | None]:
    """(repo id, subfolder or None, revision or None) of `org/repo[/sub/folder][@revision]`."""
    name, _, revision = name.partition("@")
    parts = [p for p in name.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise MaskFileError(f"{name}: not a hub mask (org/repo, or org/repo/sub/folder)")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None, revision or None


def looks_local(name: str) -> bool:
    """A name meant as a local path: explicit (./, /, ~, a backslash), one component, or `dir/...`
    whose first component is a local directory (a typo'd path, not a hub id)."""
    if name.startswith((".", "/", "~")) or "\\" in name or "/" not in name:
        return True
    return Path(name.split("/", 1)[0]).is_dir()


def check_mask_source(name: str | os.PathLike, what: str = "mask directory") -> None:
    """A mask argument meant as a local path that is not there, refused in one line naming `what`
    was looked for; a hub mask is checked where it is fetched."""
    path = Path(name).expanduser()
    if not path.exists() and looks_local(str(name)):
        raise MaskFileError(f"{path}: {what} not found")
