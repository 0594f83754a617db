"""DDP: two CPU processes (gloo) end with the same mask as each other and as one process with the
same global batch.

Why exact equality holds: the data order and the MLM corruption depend only on (seed, step, example),
not on the process count; every process's loss is normalised by the *global* token counts (one
all-reduce), so DDP's average of the two half-batch gradients is the full-batch gradient up to float
summation order (~1e-7 relative); Adam turns that into score differences of ~1e-11, far below the
gap between neighbouring scores at the threshold of a tiny model; both processes hold identical
scores after the all-reduce and derive identical masks. The tiny model has no dropout (dropout
draws differ between one and two processes). If a tie at the threshold ever flipped, the masks would
differ in a handful of weights; the test would then show it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import BertForMaskedLM

from conftest import WORDS, make_model, tiny_bert_config, write_tokenizer
from ticketlab.cli import main
from ticketlab.masks import load_mask

pytestmark = pytest.mark.slow


def _launcher() -> list[str] | None:
    script = Path(sys.executable).parent / "ticketlab"
    if not script.is_file():
        script = shutil.which("ticketlab")
    if script is None:
        return None
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(root / "model")
    write_tokenizer(root / "model")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) for _ in range(300)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    return root


def search_args(root: Path, out: Path) -> list[str]:
    return [
        "search",
        "tamt",
        "--model",
        str(root / "model"),
        "--corpus",
        str(root / "corpus.txt"),
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--objective",
        "mlm+kd",
        "--sparsity",
        "0.7",
        "--steps",
        "5",
        "--lr",
        "3e-3",  # large enough for masks to change within 5 steps
        "--cache-dir",
        str(root / "cache"),
        "--no-progress",
        "--out",
        str(out),
    ]


def test_two_processes_match_one(setup):
    launcher = _launcher()
    if launcher is None:
        pytest.skip("the ticketlab console script is not installed")
    one = setup / "one"
    assert main(search_args(setup, one)) == 0
    two = setup / "two"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*launcher, *search_args(setup, two)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    mask1, config1 = load_mask(one)
    mask2, config2 = load_mask(two)
    assert config1.search["processes"] == 1 and config2.search["processes"] == 2
    assert config2.search["ranks_agree"] is True  # both processes ended with the same mask
    assert mask1 == mask2
    assert mask1.sparsity == pytest.approx(0.7, abs=1e-3)
    # the same losses were seen (global-count normalisation); float summation order aside
    e1, e2 = config1.search["final_eval"], config2.search["final_eval"]
    assert e1["mlm_loss"] == pytest.approx(e2["mlm_loss"], rel=1e-5)
    assert e1["kd_loss"] == pytest.approx(e2["kd_loss"], rel=1e-4)


def test_unjoined_processes_are_refused(setup, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched as two, but accelerate sees one process
    assert main(search_args(setup, setup / "bad")) == 2
    assert "ACCELERATE_USE_CPU=true" in capsys.readouterr().err


def test_gradient_accumulation_runs(setup):
    out = setup / "accum"
    assert main([*search_args(setup, out), "--grad-accum", "2"]) == 0
    mask, config = load_mask(out)
    assert config.search["grad_accum"] == 2 and mask.sparsity == pytest.approx(0.7, abs=1e-3)


def test_dropout_is_the_condition_of_one_process_s_mask():
    """The README's condition: several processes give one process's mask for a model without dropout
    (the model above); with dropout each process draws its own dropout masks, and a search run by
    several processes says so in one line."""
    from ticketlab.methods.search import dropout_note

    plain = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    dropped = make_model(BertForMaskedLM, tiny_bert_config(hidden_dropout_prob=0.1), seed=0)
    assert dropout_note(plain, 2) is None and dropout_note(dropped, 1) is None
    note = dropout_note(dropped, 2)
    assert note is not None and "dropout 0.1" in note and "\n" not in note
