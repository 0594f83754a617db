"""The mask-training benchmark's rows still take the library's step: each row trains on a tiny model.

Timings are never tested; this checks only that every row of `benchmarks/bench_mask_training.py`
builds and steps against the library as it is (a benchmark that no longer runs is found here, not
on a borrowed GPU), and that the TAMT rows keep each matrix at its kept count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import bench_mask_training  # noqa: E402
import mask_training_rows as rows  # noqa: E402
from ticketlab.models.load import load_tokenizer  # noqa: E402


@pytest.mark.parametrize("method", rows.METHODS)
def test_every_row_trains_what_it_names(tiny_bert_dir, method):
    torch.manual_seed(0)
    runner = rows.make_runner(method, str(tiny_bert_dir))
    batch = rows.make_batch(load_tokenizer(tiny_bert_dir), batch_size=2, length=16)
    trained = [p for g in runner.opt.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in trained]
    for _ in range(2):
        runner.step(batch)
    assert runner.steps == 2
    assert all(not torch.equal(a, p) for a, p in zip(before, trained, strict=True) if p.numel() > 1000)
    if method == "dense":
        return
    assert len(runner.rethreshold_s) == 2  # every TAMT and peer row re-thresholds after its step
    assert runner.thresholders or method.startswith("peer-")
    for t in runner.thresholders:  # TAMT's: each matrix keeps exactly its count
        kept = sum(int((p.scores >= p.threshold).sum()) for p in t.params)
        assert kept == t.n_keep


def test_the_benchmark_prints_a_line_per_row(tiny_bert_dir, monkeypatch, capsys):
    argv = ["bench", "--model", str(tiny_bert_dir), "--batch-size", "2", "--length", "16"]
    argv += ["--steps", "1", "--warmup", "0", "--threads", "1", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", argv + ["--methods", "dense", "tamt-mlm", "tamt-kd"])
    bench_mask_training.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model ") and "batch 2 x 16" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["dense", "tamt-mlm", "tamt-kd"]
    assert all("re-threshold" in line for line in lines[2:])
