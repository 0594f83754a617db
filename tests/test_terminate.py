"""SIGTERM (a scheduler's time limit, `kill`, `timeout`) ends a verb as Ctrl-C does: the run under
way is given back to its store, one line says how to resume, and the exit status is 143."""

from __future__ import annotations

import signal

import pytest

from ticketlab import cli
from ticketlab.cli import info
from ticketlab.cli.terminate import Terminated, sigterm_interrupts
from ticketlab.studies import rows
from ticketlab.studies.run_ids import make_run
from ticketlab.studies.store import Store


def test_sigterm_ends_a_verb_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    (tmp_path / "mask").mkdir()
    monkeypatch.setattr(info, "run", lambda args: signal.raise_signal(signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["info", str(tmp_path / "mask")]) == 143
    assert capsys.readouterr().err == (
        "ticketlab info: terminated (SIGTERM); finished work is saved, run the same command to resume\n"
    )
    assert signal.getsignal(signal.SIGTERM) is before  # the library's caller keeps its own handling


def test_ctrl_c_still_says_interrupted(tmp_path, monkeypatch, capsys):
    (tmp_path / "mask").mkdir()

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "run", interrupted)
    assert cli.main(["info", str(tmp_path / "mask")]) == 130
    assert capsys.readouterr().err.startswith("ticketlab info: interrupted; ")


def test_a_run_terminated_under_way_is_given_back_to_its_store(tmp_path):
    """Given back, the next sweep starts it at once, on any host (not after its heartbeat goes stale)."""
    run = make_run("finetune", "r0", {"i": 0})
    with Store(tmp_path) as st, sigterm_interrupts(), pytest.raises(Terminated):
        rows.execute(st, run, lambda: signal.raise_signal(signal.SIGTERM))
    with Store(tmp_path) as st:
        assert st.get(run.id).status == "pending"
