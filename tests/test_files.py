"""files.py: outputs never destroy what is not theirs, one line for every bad output path, no
leftovers after a kill, the user's umask, one process per run directory."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.core.files import (
    atomic_write_bytes,
    corpus_cache_dir,
    default_cache_dir,
    exclusive,
    remove_stale,
)
from ticketlab.masks import io as mask_io
from ticketlab.masks import load_mask


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # no progress bars
    assert len(lines) == 1 and lines[0].startswith("ticketlab ") and "Traceback" not in err, err
    return lines[0]


def test_outputs_never_replace_what_is_not_theirs(tiny_bert_dir, tmp_path, capsys):
    """An --out holding unrelated files, or an input, is refused; our own output is replaced."""
    theirs = tmp_path / "k"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5"]
    assert "not a ticketlab mask" in one_line_error(capsys, *prune, "--out", theirs)
    assert (theirs / "notes.txt").read_text() == "mine"
    assert "would overwrite the input" in one_line_error(capsys, *prune, "--out", tiny_bert_dir)

    mask = tmp_path / "m"
    assert run(capsys, *prune, "--out", mask)[0] == 0
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.7", "--out", mask)[0] == 0
    assert load_mask(mask)[1].sparsity == 0.7  # an earlier mask is replaced

    export = ["export", "--model", tiny_bert_dir, "--mask", mask]
    assert "would overwrite the input" in one_line_error(capsys, *export, "--out", tiny_bert_dir)
    assert "would overwrite the input" in one_line_error(capsys, *export, "--out", mask)
    assert (tiny_bert_dir / "config.json").is_file() and (mask / "mask_config.json").is_file()
    assert "not a ticketlab exported model" in one_line_error(capsys, *export, "--out", theirs)
    assert run(capsys, *export, "--out", tmp_path / "e")[0] == 0
    assert run(capsys, *export, "--out", tmp_path / "e")[0] == 0  # an earlier export is replaced

    search = ["search", "tamt", "--model", tiny_bert_dir, "--sparsity", "0.5", "--steps", "1"]
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sees the dog .\n" * 40)
    assert "not a ticketlab search" in one_line_error(
        capsys, *search, "--corpus", corpus, "--max-length", "16", "--out", mask
    )


def test_odd_output_paths_give_one_line(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    """--out naming a file, the current directory, or (for a file output) a directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("x")
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out"]
    assert "exists and is not a directory" in one_line_error(capsys, *prune, "f")
    assert "current directory" in one_line_error(capsys, *prune, ".")
    assert "is a directory" in one_line_error(
        capsys, "evaluate-pretrain", "--model", tiny_bert_dir, "--corpus", "f", "--out", tmp_path
    )


def test_unwritable_output_is_one_line_and_leaves_nothing(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    """No permission, a read-only or full disk: one line naming the path, nothing half-written."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out"]
    assert "cannot write" in one_line_error(capsys, *prune, blocker / "m")
    monkeypatch.setenv("TICKETLAB_CACHE", str(blocker / "cache"))  # an unwritable cache costs time only
    (tmp_path / "c.txt").write_text("the cat sees the dog .\n" * 8)
    evaluate = [
        "evaluate-pretrain",
        "--model",
        tiny_bert_dir,
        "--corpus",
        tmp_path / "c.txt",
        "--max-length",
        16,
    ]
    assert run(capsys, *evaluate, "--no-kd")[0] == 0
    (tmp_path / "c.txt").unlink()

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    def full_safetensors(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with monkeypatch.context() as m:  # safetensors wraps the OSError in its own error
        m.setattr(mask_io, "save_file", full_safetensors)
        assert "m: cannot write (No space left on device" in one_line_error(capsys, *prune, tmp_path / "m")
    monkeypatch.setattr(os, "replace", full)
    line = one_line_error(capsys, *prune, tmp_path / "m")
    assert "No space left on device" in line and str(tmp_path / "m") in line
    with pytest.raises(TicketlabError, match="cannot write"):
        atomic_write_bytes(tmp_path / "x.bin", b"1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no temporaries left


def test_stale_temporaries_are_removed_and_outputs_follow_the_umask(tiny_bert_dir, tmp_path, capsys):
    """A temporary whose writer was killed goes at the next write there; modes follow the umask."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)
    host = os.uname().nodename
    stale = tmp_path / f".checkpoint.pt.tl-{pid}@{host}-abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".checkpoint.pt.tl-{os.getpid()}@{host}-def456.tmp"
    live.write_bytes(b"being written")
    assert remove_stale(tmp_path) == [stale]
    assert live.exists() and not stale.exists()

    old = os.umask(0o022)
    try:
        assert (
            run(
                capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", tmp_path / "m"
            )[0]
            == 0
        )
    finally:
        os.umask(old)
    for p in [tmp_path / "m", *(tmp_path / "m").iterdir()]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o044 == 0o044, (p, oct(mode))  # readable by group and others


def test_one_process_per_run_directory(tmp_path):
    """A second process on a directory a run holds is refused in one line; re-entrant."""
    with exclusive(tmp_path, "search"), exclusive(tmp_path, "search"):
        code = (
            "import sys; from ticketlab.core.files import exclusive\n"
            "from ticketlab.core.errors import TicketlabError\n"
            f"try:\n    exclusive({str(tmp_path)!r}, 'search').__enter__()\n"
            "except TicketlabError as e:\n    print(e); sys.exit(3)\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 3, other.stderr
        assert f"pid {os.getpid()}" in other.stdout and "running this search" in other.stdout
    with exclusive(tmp_path, "search"):  # released: taken again
        pass
    assert Path(tmp_path / ".lock").exists()


def test_names_from_files_with_control_characters_are_refused():
    """A task id with a newline or an escape sequence would make a run directory no shell lists
    plainly (and a terminal may act on the escape): one line, like '../x'."""
    from ticketlab.core.errors import TicketlabError
    from ticketlab.core.outputs import safe_component

    assert safe_component("sst2-ünïcode", "task id") == "sst2-ünïcode"
    assert safe_component("مهمة-\u200d-日本", "task id") == "مهمة-\u200d-日本"  # joiners are text
    c1 = ("nel\x85", "csi\x9b2J", "pad\x80")  # C1 controls: NEL breaks lines, CSI starts escapes
    separators = ("line\u2028sep", "para\u2029sep")  # splitlines() and terminals break there
    spoofs = ("evil\u202egnp.exe", "iso\u2066late", "lone\udc80")  # bidi override; a bad byte
    c0 = ("a\nb", "x\x1b[2J", "tab\there", "del\x7f", "nul\0")
    for bad in (*c0, *c1, *separators, *spoofs, "../x", ".hidden", ""):
        with pytest.raises(TicketlabError, match="not usable as a file name"):
            safe_component(bad, "task id")


def test_a_json_file_with_a_huge_integer_is_one_line(tmp_path):
    from ticketlab.core.errors import TicketlabError
    from ticketlab.core.files import read_json

    (tmp_path / "c.json").write_text('{"steps": ' + "9" * 5000 + "}")
    with pytest.raises(TicketlabError, match=r"c\.json: corrupt config"):
        read_json(tmp_path / "c.json", "config")


def test_the_cache_is_ticketlab_cache_then_xdg_then_home(tmp_path, monkeypatch):
    """The order `--cache-dir`'s help states: $TICKETLAB_CACHE, $XDG_CACHE_HOME/ticketlab, ~/.cache."""
    monkeypatch.delenv("TICKETLAB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ticketlab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus_cache_dir() == tmp_path / "xdg" / "ticketlab" / "corpus"
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "own"))
    assert corpus_cache_dir() == tmp_path / "own" / "corpus"
    assert corpus_cache_dir(tmp_path / "given") == tmp_path / "given"
