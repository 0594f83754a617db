"""Pushing a mask directory to the hub (`ticketlab push`): reading it first (`masks.io`, which
fetches hub masks through `masks.hub`), then uploading its folder in one commit, with a model card
(README.md with Hub metadata, `masks.card`) unless the folder has a README.md of its own.

    from ticketlab.masks import push_mask
    push_mask("masks/omp70", "me/tickets/omp70")     # creates me/tickets if needed
"""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub

from ..core.errors import TicketlabError
from .card import CARD, model_card
from .hub import hub_error
from .io import load_mask
from .names import split_hub_name


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
    loaded, config = load_mask(local)
    repo_id, sub, revision = split_hub_name(repo)
    operations = upload_operations(local, sub, model_card(config, kind="mask", sparsity=loaded.sparsity))
    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            revision=revision,
            commit_message=commit_message or f"ticketlab mask: {config.method} at {config.sparsity:.0%}",
        )
    # No network, HF_HUB_OFFLINE, no login, no write access: huggingface_hub's own types (OSError
    # subclasses, httpx transport errors, HTTP errors; they change between its versions), one line.
    except Exception as e:
        raise TicketlabError(f"{repo}: the hub did not take the mask ({hub_error(e)})") from None
    return str(getattr(info, "commit_url", info))


def upload_operations(local: Path, sub: str | None, card: str) -> list[huggingface_hub.CommitOperationAdd]:
    """One commit's files: the mask folder's (its hidden entries left out: ticketlab's output marker,
    temporaries) and, unless it has a README.md of its own, the model card (`masks.card`), which goes
    to the hub only: the user's folder is not written to."""
    files = [
        f
        for f in sorted(local.rglob("*"))
        if f.is_file() and not any(p.startswith(".") for p in f.relative_to(local).parts)
    ]

    def there(name: str) -> str:
        return f"{sub}/{name}" if sub else name

    ops = [huggingface_hub.CommitOperationAdd(there(f.relative_to(local).as_posix()), str(f)) for f in files]
    if not (local / CARD).is_file():
        ops.append(huggingface_hub.CommitOperationAdd(there(CARD), card.encode()))
    return ops
