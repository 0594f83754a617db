"""SIGTERM (a scheduler's time limit, `kill`, `timeout`) ends a verb as Ctrl-C does: the run under
way is given back to its store and one line says how to resume; then the signal goes on, to the
handler there before or, with none, to the end of the process with status 143."""

from __future__ import annotations

import signal

import pytest

from ticketlab import cli
from ticketlab.cli import info
from ticketlab.cli.terminate import Terminated, sigterm_interrupts
from ticketlab.studies import rows
from ticketlab.studies.run_ids import make_run
from ticketlab.studies.store import Store

RESUME = "ticketlab info: terminated (SIGTERM); finished work is saved, run the same command to resume\n"


@pytest.fixture
def terminated_info(tmp_path, monkeypatch):
    """`info MASK`, whose verb receives a SIGTERM; the test's own SIGTERM handling is put back after."""
    (tmp_path / "mask").mkdir()
    monkeypatch.setattr(info, "run", lambda args: signal.raise_signal(signal.SIGTERM) or 0)
    before = signal.getsignal(signal.SIGTERM)
    yield ["info", str(tmp_path / "mask")]
    signal.signal(signal.SIGTERM, before)


def test_sigterm_ends_a_verb_as_ctrl_c_does_then_the_process(terminated_info, capsys):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with pytest.raises(SystemExit) as exit_:
        cli.main(terminated_info)
    assert exit_.value.code == 143 and capsys.readouterr().err == RESUME
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_goes_on_to_the_embedding_programs_handler(terminated_info, capsys):
    seen = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    assert cli.main(terminated_info) == 143
    assert seen == [signal.SIGTERM] and capsys.readouterr().err == RESUME


def test_an_ignored_sigterm_stays_ignored(terminated_info, capsys):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a parent shields this process
    assert cli.main(terminated_info) == 0 and capsys.readouterr().err == ""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


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
