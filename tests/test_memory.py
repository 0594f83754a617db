"""`core.memory.keep_freed_memory`: glibc's thresholds raised where nobody chose the allocator, left
alone where the user did (glibc's variables, a preloaded allocator) or where there is no mallopt;
the CLI applies it before running a verb."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from ticketlab import cli
from ticketlab.core import memory


class FakeMallopt:
    """A ctypes function that records its calls (and answers `result`)."""

    def __init__(self, calls: list, result: int):
        self.calls, self.result = calls, result

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


class FakeLibc:
    """A C library with a recording mallopt, or none."""

    def __init__(self, result: int = 1, has_mallopt: bool = True):
        self.calls: list[tuple[int, int]] = []
        if has_mallopt:
            self.mallopt = FakeMallopt(self.calls, result)


@pytest.fixture()
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: fake)
    return fake


def test_both_thresholds_are_raised_where_nobody_chose_the_allocator(libc):
    assert memory.keep_freed_memory({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}) is True
    assert libc.calls == [(-3, 1 << 30), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, then M_TRIM_THRESHOLD


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"MALLOC_TOP_PAD_": "0"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
        {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
    ],
)
def test_the_users_allocator_settings_are_left_alone(libc, env):
    assert memory.keep_freed_memory(env) is False
    assert libc.calls == []


def test_a_c_library_without_mallopt_or_refusing_it_changes_nothing(monkeypatch):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: FakeLibc(has_mallopt=False))
    assert memory.keep_freed_memory({}) is False
    refusing = FakeLibc(result=0)  # e.g. an older glibc's 32 MB cap on the mmap threshold
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: refusing)
    assert memory.keep_freed_memory({}) is False
    assert refusing.calls == [(-3, 1 << 30)]  # the trim threshold is not touched after a refusal


def test_the_cli_applies_it_before_running_a_verb(monkeypatch, tmp_path, capsys):
    called = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: called.append(True))
    assert cli.main(["info", str(tmp_path / "no-such-mask")]) == 2
    assert called == [True]
    assert "no-such-mask" in capsys.readouterr().err


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_the_settings():
    code = "from ticketlab.core.memory import keep_freed_memory as k; print(k())"
    env = {k: v for k, v in os.environ.items() if k not in memory.USER_SETTINGS}  # conftest names one
    env.pop("LD_PRELOAD", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert run.stdout.strip() == "True"
    # the suite's own processes: glibc's default named (conftest), so left alone
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
