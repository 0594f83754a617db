"""core/files/: outputs never destroy what is not theirs, one line for every bad output path, no
leftovers after a kill, the user's umask, one process per run directory."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.core.files.atomic import atomic_write_bytes, remove_stale, writing
from ticketlab.core.files.caches import corpus_cache_dir, default_cache_dir
from ticketlab.core.files.inputs import read_json
from ticketlab.core.files.owned import exclusive, open_append
from ticketlab.core.files.tensors import safetensors_bytes
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
    """An --out holding unrelated files, an input, or a mask of other settings is refused."""
    theirs = tmp_path / "k"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5"]
    assert "not a ticketlab mask" in one_line_error(capsys, *prune, "--out", theirs)
    assert (theirs / "notes.txt").read_text() == "mine"
    assert "would overwrite the input" in one_line_error(capsys, *prune, "--out", tiny_bert_dir)

    mask = tmp_path / "m"
    assert run(capsys, *prune, "--out", mask)[0] == 0
    line = one_line_error(capsys, *prune[:-1], "0.7", "--out", mask)
    assert "holds a mask with other settings" in line
    assert load_mask(mask)[1].sparsity == 0.5  # an earlier mask of other settings is kept

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

    def full_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:  # a file inside the output's temporary: named as in the output
        m.setattr(os, "fsync", full_fsync)
        line = one_line_error(capsys, *prune, tmp_path / "m")
        assert f"{tmp_path / 'm' / 'masks.safetensors'}: cannot write (No space left on device" in line
    no_space = pytest.raises(TicketlabError, match=r"m/x: cannot write \(No space")  # safetensors' error
    with no_space, writing(tmp_path / ".m.tl-1@host-abc.tmp" / "x"):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
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
    # a temporary made beside another one carries its name: its writer is the last one named
    nested = tmp_path / f"..publish.tl-{os.getpid()}@{host}-aaa111.tmp.tl-{pid}@{host}-bbb222.tmp"
    nested.mkdir()
    (nested / "half.safetensors").write_bytes(b"half a mask")
    assert sorted(remove_stale(tmp_path)) == sorted([stale, nested])
    assert live.exists() and not stale.exists() and not nested.exists()

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
            "import sys; from ticketlab.core.files.owned import exclusive\n"
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
        with pytest.raises(TicketlabError, match="not usable as a file name|holds a newline or control"):
            safe_component(bad, "task id")


def test_a_json_file_with_a_huge_integer_is_one_line(tmp_path):
    from ticketlab.core.errors import TicketlabError
    from ticketlab.core.files.inputs import read_json

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


@contextlib.contextmanager
def at_most(seconds: int):
    """Fail, instead of waiting forever, where a read blocks (a FIFO that nobody writes)."""

    def stop(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_log_opened_to_append_is_never_a_users_file_nor_a_fifo(tmp_path):
    """A log's path hard-linked to a user's file gained every log line of the run; a FIFO there
    waited forever. Both are one line naming the log, and the user's file is as it was."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    log = tmp_path / "run" / "evaluate.log"
    log.parent.mkdir()
    os.link(notes, log)
    with pytest.raises(TicketlabError, match=f"{log}: a hard link to another file, not a log"):
        open_append(log)
    assert notes.read_text() == "mine\n"
    log.unlink()
    os.mkfifo(log)
    with at_most(10), pytest.raises(TicketlabError, match=f"{log}: not a regular file, not a log"):
        open_append(log)
    log.unlink()
    with open_append(log) as f:  # its own file: made, appended to
        f.write("step 1\n")
    assert log.read_text() == "step 1\n"


def test_inputs_that_are_not_regular_files_are_one_line_naming_them(tiny_bert_dir, tmp_path, capsys):
    """A FIFO or a device given as an input waited forever or read without end: a task's data file
    linked to /dev/zero, a FIFO for a mask's config or a sweep spec, a FIFO in the model folder
    (named itself, not the data read after it). One line naming that file, exit 2."""
    import shutil

    from test_runner import write_sst2

    write_sst2(tmp_path / "glue")
    train = tmp_path / "glue" / "SST-2" / "train.tsv"
    train.unlink()
    train.symlink_to("/dev/zero")
    finetune = ["finetune", "--model", tiny_bert_dir, "--task", "sst2", "--data-dir", tmp_path / "glue"]
    with at_most(30):
        line = one_line_error(
            capsys, *finetune, "--max-length", 32, "--max-steps", 1, "--out", tmp_path / "ft"
        )
    assert f"{train}: " in line and "is a device, not a regular file" in line
    mask = tmp_path / "mask"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", 0.5, "--out", mask)[0] == 0
    (mask / "mask_config.json").unlink()
    os.mkfifo(mask / "mask_config.json")
    with at_most(30):
        line = one_line_error(capsys, "info", mask)
    assert f"{mask / 'mask_config.json'}: mask config is a FIFO, not a regular file" in line
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    (model / "vocab.txt").unlink(missing_ok=True)
    os.mkfifo(model / "vocab.txt")
    with at_most(30):
        line = one_line_error(
            capsys, "prune", "omp", "--model", model, "--sparsity", 0.5, "--out", tmp_path / "m2"
        )
    assert f"{model / 'vocab.txt'}: model file is a FIFO, not a regular file" in line
    spec = tmp_path / "spec.yaml"
    os.mkfifo(spec)
    with at_most(30):
        line = one_line_error(capsys, "sweep", spec, "--dry-run")
    assert f"{spec}: sweep spec is a FIFO, not a regular file" in line
    corpus = tmp_path / "corpus.txt"
    os.mkfifo(corpus)
    evaluate = ["evaluate-pretrain", "--model", tiny_bert_dir, "--corpus", corpus, "--max-length", 16]
    with at_most(30):
        line = one_line_error(capsys, *evaluate, "--out", tmp_path / "e.json")
    assert f"{corpus}: corpus file is a FIFO, not a regular file" in line
    assert not (tmp_path / "ft").exists() and not (tmp_path / "m2").exists()


def test_a_key_given_twice_in_json_is_refused_as_in_yaml(tiny_bert_dir, tmp_path, capsys):
    """JSON took the last of a key given twice (a mask's `method`, a task's `text_a`), silently; YAML
    refuses it. The one JSON reader refuses it too, naming the file and the key."""
    mask = tmp_path / "mask"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", 0.5, "--out", mask)[0] == 0
    path = mask / "mask_config.json"
    path.write_text(path.read_text().replace("{", '{\n  "method": "random",', 1))
    line = one_line_error(capsys, "info", mask)
    assert f"{path}: corrupt mask config (the key 'method' is given twice)" in line
    task = tmp_path / "task.json"
    task.write_text('{"id": "mine", "text_a": "a", "text_a": "b", "labels": ["0", "1"]}')
    with pytest.raises(TicketlabError, match="the key 'text_a' is given twice"):
        read_json(task, "task spec")


def test_one_content_is_one_safetensors_file_and_reads_back(tmp_path):
    """safetensors writes a header's metadata from a hash map, in another order at each save;
    `safetensors_bytes` sorts it: one mask saved eight times is one file, and reads back as saved."""
    import torch

    from ticketlab.core.files.inputs import open_safetensors
    from ticketlab.masks import Mask, MaskConfig, save_mask

    gen = torch.Generator().manual_seed(0)
    mask = Mask(
        {"a.weight": torch.rand(8, 5, generator=gen) > 0.5, "b.weight": torch.rand(3, generator=gen) > 0.5}
    )
    config = MaskConfig(
        "omp", 0.5, base_model="x", base_model_hash="sha256:x", model_type="bert", targets="t"
    )
    files = {
        (save_mask(mask, config, tmp_path / f"m{i}") / "masks.safetensors").read_bytes() for i in range(8)
    }
    assert len(files) == 1
    assert int.from_bytes(files.pop()[:8], "little") % 8 == 0  # the data 8-byte aligned, as saved
    loaded, _ = load_mask(tmp_path / "m0")
    assert all(torch.equal(loaded[k], mask[k]) for k in mask)
    meta = {f"k{i}": "é" * i for i in range(6)}
    blobs = {safetensors_bytes({"t": torch.arange(3.0)}, metadata=meta) for _ in range(8)}
    assert len(blobs) == 1
    atomic_write_bytes(tmp_path / "t.safetensors", blobs.pop())
    with open_safetensors(tmp_path / "t.safetensors", "test file") as f:
        assert f.metadata() == meta and torch.equal(f.get_tensor("t"), torch.arange(3.0))
