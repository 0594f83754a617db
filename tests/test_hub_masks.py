"""Masks by hub id, offline: a hub cache laid out as huggingface_hub writes it serves `--mask
org/repo/sub`; a mask not cached is one line; pushing reads the mask first and uploads its folder."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import huggingface_hub
import pytest

from conftest import run
from ticketlab.core.errors import MaskFileError, TicketlabError
from ticketlab.masks import load_mask, push_mask
from ticketlab.masks.names import split_hub_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def omp(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "omp50"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", out)[0] == 0
    return out


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_names_split_into_repo_subfolder_and_revision():
    assert split_hub_name("me/tickets") == ("me/tickets", None, None)
    assert split_hub_name("me/tickets/bert/omp70@v1") == ("me/tickets", "bert/omp70", "v1")
    with pytest.raises(MaskFileError, match="not a hub mask"):
        split_hub_name("me/../x")


def test_a_cached_hub_mask_loads_offline_and_a_missing_one_is_one_line(omp, offline_cache, capsys):
    repo = offline_cache / "models--me--tickets"
    shutil.copytree(omp, repo / "snapshots" / COMMIT / "bert" / "omp50")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    mask, config = load_mask("me/tickets/bert/omp50")
    assert mask == load_mask(omp)[0] and config.sparsity == 0.5
    code, out, _ = run(capsys, "info", "me/tickets/bert/omp50")
    assert code == 0 and "omp" in out
    code, _, err = run(capsys, "info", "me/other/omp50")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "me/other/omp50: no local mask directory of that name, and the hub did not give it" in err
    code, _, err = run(capsys, "info", "me/tickets/bert/missing")
    assert code == 2 and "the hub repo me/tickets has no folder bert/missing" in err


def test_local_paths_never_go_to_the_hub(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("hub asked"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "masks").mkdir()
    for name in ("./x/y", "masks/omp70", "omp70", str(tmp_path / "a" / "b")):
        code, _, err = run(capsys, "info", name)
        assert code == 2 and "mask directory not found" in err


def test_push_reads_the_mask_then_uploads_its_folder(omp, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ticketlab.core.hub._reachable", lambda: True)
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw))

        def create_commit(self, **kw):
            calls.append(("upload", kw))
            return "https://huggingface.co/me/tickets/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    (omp / ".partial").write_text("a temporary: never pushed")
    assert push_mask(omp, "me/tickets/bert/omp50", private=True).endswith("/commit/1")
    _, (_, repo, kw), (_, up) = calls
    assert repo == "me/tickets" and kw == {"private": True, "exist_ok": True}
    assert up["repo_id"] == "me/tickets" and "omp" in up["commit_message"]
    sent = {op.path_in_repo: op.path_or_fileobj for op in up["operations"]}
    files = sorted(f.name for f in omp.iterdir() if not f.name.startswith("."))
    assert sorted(sent) == sorted(f"bert/omp50/{name}" for name in [*files, "README.md"])
    assert all(sent[f"bert/omp50/{name}"] == str(omp / name) for name in files)
    assert not (omp / "README.md").exists()  # the card goes to the hub, not into the user's folder
    calls.clear()
    code, out, _ = run(capsys, "push", omp, "me/tickets/omp50", "--message", "mine")
    assert code == 0 and "pushed" in out and calls[2][1]["commit_message"] == "mine"
    calls.clear()
    (tmp_path / "broken").mkdir()
    with pytest.raises(MaskFileError):
        push_mask(tmp_path / "broken", "me/tickets")
    mine = tmp_path / "mine"  # a link in the folder: what it points to would go public as the mask's
    shutil.copytree(omp, mine)
    (tmp_path / "private.txt").write_text("not for the hub")
    (mine / "notes.txt").symlink_to(tmp_path / "private.txt")
    with pytest.raises(TicketlabError, match=f"^{mine / 'notes.txt'}: a symbolic link in the mask folder"):
        push_mask(mine, "me/tickets")
    assert calls == []


@pytest.mark.parametrize("network", ["offline", "unreachable", "refused"])
def test_push_without_the_hub_is_one_line_and_exit_2(omp, monkeypatch, capsys, network):
    """HF_HUB_OFFLINE or no answer from the hub: refused before the mask is read; the hub answering
    but taking nothing (here a closed local port behind a reachable probe): its reason. One line each,
    exit 2, and no note about the mask's local base (that advice follows a push that happened)."""
    if network == "offline":  # the hub would answer: the variable alone refuses
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr("ticketlab.core.hub._reachable", lambda: True)
    if network == "refused":
        monkeypatch.setattr("ticketlab.core.hub._reachable", lambda: True)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    code, out, err = run(capsys, "push", omp, "me/tickets/omp50", "--token", "hf_x")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    if network == "refused":
        assert err.startswith("ticketlab push: error: me/tickets/omp50: the hub did not take the mask (")
    else:
        assert err.strip() == (
            "ticketlab push: error: me/tickets/omp50: the hub cannot be reached (offline, or "
            "HF_HUB_OFFLINE): pushing needs it"
        )


def test_a_repo_name_the_hub_would_refuse_is_refused_first(omp, capsys):
    code, _, err = run(capsys, "push", omp, "some org/tickets")
    assert code == 2 and err.strip() == (
        "ticketlab push: error: some org/tickets: not a hub repo's name (org/repo, or org/repo/sub/folder)"
    )


def test_push_records_the_hub_id_of_a_base_found_on_a_local_copy(omp, commits, caplog):
    """A mask found on a local model records the copy's absolute path, which no other machine has:
    `base_model` sends the config and card with the model's hub id instead, every other field as in
    the file, the user's folder unchanged; without it the push says so."""
    (omp / "steps").mkdir()  # a mask a search saved on its way records the same base
    shutil.copytree(omp, omp / "steps" / "step-1", ignore=shutil.ignore_patterns("steps", ".*"))
    before = {f.relative_to(omp): f.read_bytes() for f in omp.rglob("*") if f.is_file()}
    local_base = json.loads(before[Path("mask_config.json")])["base_model"]
    assert Path(local_base).is_absolute()
    with caplog.at_level(logging.WARNING, logger="ticketlab.masks.push"):
        push_mask(omp, "me/tickets")
    assert "records its base model as the local path" in caplog.text and "--base-model" in caplog.text
    assert commits[0]["mask_config.json"] == str(omp / "mask_config.json")  # the file itself
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ticketlab.masks.push"):
        push_mask(omp, "me/tickets", base_model="org/tiny-bert")
    assert caplog.text == ""
    for config in ("mask_config.json", "steps/step-1/mask_config.json"):
        want = json.loads(before[Path(config)]) | {"base_model": "org/tiny-bert"}
        assert commits[1][config] == (json.dumps(want, indent=2) + "\n").encode()  # only the base differs
    card = commits[1]["README.md"].decode()
    assert "base_model: org/tiny-bert" in card and local_base not in card
    assert {f.relative_to(omp): f.read_bytes() for f in omp.rglob("*") if f.is_file()} == before
    assert load_mask(omp)[1].base_model == local_base


@pytest.mark.parametrize("base", ["/models/bert", "./bert", "a/b/c", "bad name"])
def test_a_base_model_that_is_not_a_hub_id_is_refused_before_the_hub(omp, monkeypatch, capsys, base):
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: pytest.fail("the hub was called"))
    code, out, err = run(capsys, "push", omp, "me/tickets", "--base-model", base)
    assert (
        code == 2
        and err.strip()
        == f"ticketlab push: error: {base}: not a model's hub id (name or org/name) to record as the base"
    )


@pytest.mark.parametrize(
    "base, hub",
    [("org/bert", True), ("bert-base-uncased", True), ("/home/me/bert", False), ("C:\\models\\bert", False)]
    + [("./bert", False), ("~/bert", False), ("a/b/c", False)],
)
def test_a_recorded_base_is_told_a_hub_id_or_a_path_of_one_machine(base, hub):
    from ticketlab.masks.push import _is_hub_id

    assert _is_hub_id(base) is hub


def test_a_hub_mask_is_pushed_from_its_cached_folder(omp, offline_cache, commits):
    """`push org/repo/sub` (a mask fetched from the hub, to copy it elsewhere) uploads the cached
    folder's files, not a folder of that name in the working directory, which does not exist."""
    repo = offline_cache / "models--me--tickets"
    shutil.copytree(omp, repo / "snapshots" / COMMIT / "bert" / "omp50")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    push_mask("me/tickets/bert/omp50", "you/tickets")
    assert sorted(commits[0]) == sorted(
        ["README.md", *(f.name for f in omp.iterdir() if not f.name.startswith("."))]
    )
