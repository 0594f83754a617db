"""Console output: progress bars stay small in log files, and dev evaluations reach the console."""

from __future__ import annotations

import io
import logging
import random
import time
from pathlib import Path

import pytest

import ticketlab
from ticketlab.core.progress import QUIET_INTERVAL_S, logs_to, progress_bar

SRC = Path(__file__).resolve().parents[1] / "src" / "ticketlab"


def test_bars_into_a_file_redraw_rarely():
    """Not a terminal (a log file, a pipe): a bar writes its start and its end, not every update."""
    stream = io.StringIO()
    with progress_bar(total=30, file=stream, desc="work") as bar:
        for _ in range(30):
            time.sleep(0.01)  # 0.3 s: tqdm's default (a redraw every 0.1 s) writes 3-4 more
            bar.update(1)
    assert stream.getvalue().count("\r") <= 2, stream.getvalue()
    assert QUIET_INTERVAL_S >= 30


def test_every_bar_is_made_in_one_place():
    """No module makes a tqdm bar of its own: they would write every update into log files."""
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "progress.py" and "tqdm" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


@pytest.mark.parametrize("progress", [True, False])
def test_search_reports_dev_evaluations_on_the_console(tiny_bert_dir, tmp_path, caplog, progress):
    """Each dev evaluation of a search is one line on the `ticketlab` logger (the CLI prints it),
    with or without a progress bar (`--no-progress` hides the bar only)."""
    rng = random.Random(0)
    words = "the a cat dog bird man woman king queen runs sees likes good bad big small .".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(60)) + "\n")
    caplog.set_level(logging.INFO, logger="ticketlab")
    config = ticketlab.SearchConfig(
        model=str(tiny_bert_dir),
        method=ticketlab.TamtConfig(sparsity=0.5),
        corpus=[corpus],
        steps=4,
        eval_every=2,
        max_length=16,
        batch_size=4,
        out=tmp_path / "mask",
        progress=progress,
    )
    ticketlab.search(config)
    lines = [r.getMessage() for r in caplog.records if " dev: " in r.getMessage()]
    assert [line.split(" dev: ")[0] for line in lines] == ["search tamt step 2/4", "search tamt step 4/4"]
    assert all("mlm_loss " in line and "\n" not in line for line in lines)


def test_a_logger_is_as_it_was_after_the_block_that_set_it():
    """`logs_to` sets a logger's level (and a handler, alone without propagation) for its block, and
    leaves it as it was after, also when the block fails: the CLI's `main` run inside a program (a
    notebook, a test) leaves that program's logging as it found it."""
    logger, out = logging.getLogger("ticketlab.test-logs-to"), io.StringIO()
    logger.setLevel(logging.ERROR)
    handler = logging.StreamHandler(out)
    with pytest.raises(RuntimeError), logs_to(logger.name, logging.INFO, handler, propagate=False):
        assert logger.getEffectiveLevel() == logging.INFO and not logger.propagate
        logger.info("a note")
        raise RuntimeError
    assert out.getvalue() == "a note\n"
    assert (logger.level, logger.propagate, logger.handlers) == (logging.ERROR, True, [])
