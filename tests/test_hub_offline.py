"""Offline, a hub id is read from huggingface_hub's cache alone, decided by one request per process.

huggingface_hub retries an unreachable hub for half a minute before it looks in its cache; a
mistyped path that reads as a hub id, or a task without `--data-dir`, waited that long to be refused.
"""

from __future__ import annotations

import pytest

from conftest import error_line
from ticketlab.core import hub


def test_one_request_decides_and_the_variable_alone_when_it_is_set(monkeypatch):
    asked = []

    class Session:
        def head(self, url, timeout):
            asked.append((url, timeout))
            raise OSError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: Session())
    monkeypatch.setattr(hub, "_reachable", hub._probe)  # the real request, each time
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub.online() is False and asked == [("https://huggingface.co", hub.PROBE_TIMEOUT_S)]
    assert hub.cache_only() == {"local_files_only": True}
    monkeypatch.setattr(Session, "head", lambda self, url, timeout: asked.append(url))
    assert hub.online() is True and hub.cache_only() == {}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked.clear()
    assert hub.online() is False and asked == []  # the variable alone decides: no request


@pytest.mark.parametrize("reachable", [False, True])
def test_a_hub_model_is_read_from_the_cache_alone_offline(tmp_path, capsys, monkeypatch, reachable):
    import transformers

    calls = []

    def from_pretrained(name, **kwargs):
        calls.append(kwargs)
        raise OSError(f"{name} is not in the cache")

    monkeypatch.setattr(hub, "_reachable", lambda: reachable)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "prune", "omp", "--model", "some-org/model", "--sparsity", 0.5, "--out", "m")
    assert calls == [{"local_files_only": True} if not reachable else {}]
    assert line.startswith("ticketlab prune: error: some-org/model: cannot load config")
    hint = "hub ids need network access" if reachable else "the hub cannot be reached and its cache"
    assert hint in line and not (tmp_path / "m").exists()


def test_datasets_is_offline_where_the_hub_cannot_be_reached(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_reachable", lambda: True)
    assert hub.datasets_module().config.HF_HUB_OFFLINE is False
    monkeypatch.setattr(hub, "_reachable", lambda: False)
    assert hub.datasets_module().config.HF_HUB_OFFLINE is True
