"""Pushing a mask directory to the hub (`ticketlab push`): reading it first (`masks.io`, which
fetches hub masks through `masks.hub`), then uploading its folder in one commit, with a model card
(README.md with Hub metadata, `masks.card`) unless the folder has a README.md of its own.

    from ticketlab.masks import push_mask
    push_mask("masks/omp70", "me/tickets/omp70")     # creates me/tickets if needed
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import huggingface_hub

from ..core.errors import TicketlabError
from ..core.files.atomic import to_json
from ..core.files.inputs import first_link, read_json
from ..core.hub import online, path_shaped
from .card import CARD, base_license, model_card
from .hub import hub_error, mask_dir
from .io import CONFIG_NAME, load_mask
from .names import split_hub_name

log = logging.getLogger(__name__)


def push_mask(
    mask: str | os.PathLike,
    repo: str,
    *,
    base_model: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a mask directory to the hub as `org/repo` or into `org/repo/sub/folder`, creating the
    repo if needed; the mask is read first, so a corrupt one never leaves. Returns the commit URL.

    `base_model`: the hub id of the model the mask was found on, recorded in the pushed copies of its
    configs (the masks a search saved on its way, `steps/step-N`, too) and in its card, for a mask
    found on a local copy of that model (which records the copy's path, found on no other machine);
    the local folder is not changed. The weights hash the mask records still checks the model it is
    loaded onto."""
    if base_model is not None:  # names refused first, then no hub, then the mask: one line each
        _check_hub_id(base_model)
    repo_id, sub, revision = _target(repo)
    local = mask_dir(mask)  # a hub mask: its cached folder (links into the hub's cache: its own)
    if Path(mask).expanduser().exists():
        _refuse_links(local)
    loaded, config = load_mask(local)
    recorded, licence = config.base_model, base_license(config.base_model)  # the local base's card
    if base_model is not None:
        config = dataclasses.replace(config, base_model=base_model)
    card = model_card(config, kind="mask", sparsity=loaded.sparsity, licence=licence)
    rebased = (recorded, base_model) if base_model is not None else None
    operations = upload_operations(local, sub, card, rebased=rebased)
    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            revision=revision,
            commit_message=commit_message or f"ticketlab mask: {config.method} at {config.sparsity:.0%}",
        )
    # No network, no login, no write access: huggingface_hub's own types (OSError subclasses, httpx
    # transport errors, HTTP errors; they change between its versions), one line.
    except Exception as e:
        raise TicketlabError(f"{repo}: the hub did not take the mask ({hub_error(e)})") from None
    if base_model is None and not _is_hub_id(recorded):  # advice, once the push is done
        log.warning(
            f"note: {mask} records its base model as the local path {recorded}: loading it from the "
            "hub then needs the model passed (--model); --base-model HUB_ID records the id"
        )
    return str(getattr(info, "commit_url", info))


def _refuse_links(local: Path) -> None:
    """One line for a symbolic link in a local mask folder: what it points to (a private file, a
    folder of the user's) would be uploaded as the mask's."""
    link = first_link(local)
    if link is not None:
        raise TicketlabError(
            f"{link}: a symbolic link in the mask folder (push sends the files the folder holds, not "
            "what a link points to); replace it by the file, or remove it"
        )


def _target(repo: str) -> tuple[str, str | None, str | None]:
    """(repo id, subfolder, revision) of `repo`, or one line: not a repo's name, or no hub to reach."""
    repo_id, sub, revision = split_hub_name(repo)
    if not _is_hub_id(repo_id):
        raise TicketlabError(f"{repo}: not a hub repo's name (org/repo, or org/repo/sub/folder)")
    if not online():
        raise TicketlabError(
            f"{repo}: the hub cannot be reached (offline, or HF_HUB_OFFLINE): pushing needs it"
        )
    return repo_id, sub, revision


def _is_hub_id(name: str) -> bool:
    """`name` reads as a model's hub id (`name` or `org/name`), not a path of one machine."""
    if path_shaped(name) or ":" in name:
        return False
    try:
        huggingface_hub.utils.validate_repo_id(name)
    except ValueError:  # huggingface_hub's HFValidationError is a ValueError
        return False
    return True


def _check_hub_id(name: str) -> None:
    """One line saying `name` is not a model's hub id, where it is not one."""
    if not _is_hub_id(name):
        raise TicketlabError(f"{name}: not a model's hub id (name or org/name) to record as the base")


def upload_operations(
    local: Path, sub: str | None, card: str, *, rebased: tuple[str, str] | None = None
) -> list[huggingface_hub.CommitOperationAdd]:
    """One commit's files: the mask folder's (its hidden entries left out: ticketlab's output marker,
    temporaries) and, unless it has a README.md of its own, the model card (`masks.card`). With
    `rebased` (old, new): each mask config that records base `old`, sent with base `new`, every other
    field as in the file. Card and configs go to the hub only: the user's folder is not written to."""
    files = [
        f
        for f in sorted(local.rglob("*"))
        if f.is_file() and not any(p.startswith(".") for p in f.relative_to(local).parts)
    ]

    def there(name: str) -> str:
        return f"{sub}/{name}" if sub else name

    ops = [
        huggingface_hub.CommitOperationAdd(there(f.relative_to(local).as_posix()), _content(f, rebased))
        for f in files
    ]
    if not (local / CARD).is_file():
        ops.append(huggingface_hub.CommitOperationAdd(there(CARD), card.encode()))
    return ops


def _content(f: Path, rebased: tuple[str, str] | None) -> str | bytes:
    """What is sent for file `f`: its path, or a mask config recording base `old` rewritten to `new`."""
    if rebased is None or f.name != CONFIG_NAME:
        return str(f)
    fields = read_json(f, "mask config")
    if not isinstance(fields, dict) or fields.get("base_model") != rebased[0]:
        return str(f)
    return (to_json(fields | {"base_model": rebased[1]}, indent=2) + "\n").encode()
