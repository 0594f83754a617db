"""Pushing a mask directory to the hub (`ticketlab push`): reading it first (`masks.io`, which
fetches hub masks through `masks.hub`), then uploading its folder.

    from ticketlab.masks import push_mask
    push_mask("masks/omp70", "me/tickets/omp70")     # creates me/tickets if needed
"""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub

from ..core.errors import TicketlabError
from .hub import hub_error, split_hub_name
from .io import load_mask


def push_mask(
    mask: str | os.PathLike,
    repo: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a mask directory to the hub as `org/repo` or into `org/repo/sub/folder`, creating the
    repo if needed; the mask is read first, so a corrupt one never leaves. Returns the commit URL."""
    local = Path(mask).expanduser()
    config = load_mask(local)[1]
    repo_id, sub, revision = split_hub_name(repo)
    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(local),
            path_in_repo=sub,
            revision=revision,
            commit_message=commit_message or f"ticketlab mask: {config.method} at {config.sparsity:.0%}",
            ignore_patterns=[".*"],  # ticketlab's output marker, temporaries
        )
    # No network, HF_HUB_OFFLINE, no login, no write access: huggingface_hub's own types (OSError
    # subclasses, httpx transport errors, HTTP errors; they change between its versions), one line.
    except Exception as e:
        raise TicketlabError(f"{repo}: the hub did not take the mask ({hub_error(e)})") from None
    return str(getattr(info, "commit_url", info))
