"""rundir.RunDir: the one handle on a resumable run's directory (claim, lock, identity, finished
result, cleanup). Its users' own behaviour is tested with them (test_mtl, test_tamt, test_pretrain,
test_runner, test_launchers); here the handle itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.train.run_dir import RunDir

INPUTS = {"corpus content": "the corpus at c.txt"}


def test_claim_refuses_a_folder_that_is_not_ours(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(TicketlabError, match="is not a ticketlab search"):
        RunDir(tmp_path / "mine", "search").claim("search")
    run = RunDir(tmp_path / "new", "search")
    assert run.claim("search") == tmp_path / "new"
    assert run.claim("search") == tmp_path / "new"  # ours: claimed again on a resume


def test_identity_recorded_then_checked(tmp_path):
    run = RunDir(tmp_path, "pre-training")
    run.check({"lr": 1e-3, "corpus content": "sha256:a"}, INPUTS)
    assert (tmp_path / "settings.json").is_file()
    run.check({"lr": 1e-3, "corpus content": "sha256:a"}, INPUTS)  # the same run: goes on
    with pytest.raises(ConfigError, match=r"holds a pre-training with other settings \(differs in: lr"):
        run.check({"lr": 2e-3, "corpus content": "sha256:a"}, INPUTS)
    with pytest.raises(ConfigError) as e:  # the same settings: a changed input is said alone
        run.check({"lr": 1e-3, "corpus content": "sha256:b"}, INPUTS)
    assert str(e.value).startswith(f"{tmp_path}: the corpus at c.txt changed since this pre-training started")
    with pytest.raises(ConfigError) as e:  # other settings first, the input after them
        run.check({"lr": 2e-3, "corpus content": "sha256:b"}, INPUTS)
    assert str(e.value).startswith(
        f"{tmp_path} holds a pre-training with other settings (differs in: lr 0.001 -> 0.002); "
        "the corpus at c.txt changed too (corpus content: sha256:a -> sha256:b); "
    )


def test_a_run_of_other_processes_records_nothing(tmp_path):
    RunDir(tmp_path, "search").check({"lr": 1}, {}, write=False)
    assert not (tmp_path / "settings.json").exists()


def test_files_named_relative_to_the_directory(tmp_path):
    """A search keeps its own files under run/ and is named by its directory in messages."""
    run = RunDir(tmp_path, "search", identity="run/settings.json", result="run/r.json", lock_in="run")
    run.check({"lr": 1}, {})
    assert (tmp_path / "run" / "settings.json").is_file()
    with pytest.raises(ConfigError, match=f"^{tmp_path} holds a search with other settings"):
        run.check({"lr": 2}, {})
    with run.held():
        assert (tmp_path / "run" / ".lock").is_file()


def test_finished_result_and_checkpoint(tmp_path):
    run = RunDir(tmp_path, "fine-tuning")
    assert run.finished() is None
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    run.finish({"score": 0.5}, keep_checkpoint=True)
    assert (tmp_path / "checkpoint.pt").is_file() and run.finished() == {"score": 0.5}
    run.finish({"score": 0.6})
    assert not (tmp_path / "checkpoint.pt").exists() and run.finished() == {"score": 0.6}
    run.forget()
    assert run.finished() is None
    (tmp_path / "result.json").write_text("{")
    with pytest.raises(TicketlabError, match="corrupt fine-tuning result"):
        run.finished()


def test_checkpoints_of_another_writer_are_left_alone(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    RunDir(tmp_path, "sweep run", result="sweep_result.json", checkpoint=None).finish({"metrics": {}})
    assert (tmp_path / "checkpoint.pt").is_file()


def test_cleanup_removes_only_ours(tmp_path):
    run = RunDir(tmp_path / "work", "pre-training")
    run.claim("pre-training work directory")
    run.check({"lr": 1}, {})
    run.finish({"steps": 1})
    (run.path / "plan.json").write_text("{}")
    (run.path / "notes.txt").write_text("mine")
    assert run.cleanup(["plan.json"]) == ["notes.txt"]
    assert sorted(p.name for p in run.path.iterdir()) == ["notes.txt"]
    (run.path / "notes.txt").unlink()
    run.finish({"steps": 1})
    assert run.cleanup() == [] and not run.path.exists()


def test_held_keeps_a_second_process_out(tmp_path):
    run = RunDir(tmp_path, "ticket-sharing run")
    with run.held():
        with run.held():  # re-entrant in one process (the training loop inside takes it again)
            assert run.holder() is None  # our own
        code = textwrap.dedent(
            f"""
            import sys
            from ticketlab.train.run_dir import RunDir
            run = RunDir({str(tmp_path)!r}, "ticket-sharing run")
            print(run.holder())
            try:
                with run.held():
                    pass
            except Exception as e:
                print(e)
            """
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    holder, refused = out.stdout.strip().splitlines()
    assert holder.startswith("pid ")
    assert refused.startswith(
        f"{tmp_path.resolve()}: another process ({holder}) is running this ticket-sharing run"
    )
    assert RunDir(tmp_path, "x").holder() is None  # given back
