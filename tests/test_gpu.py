"""Mask training on a CUDA device: the same masks as on the CPU, and few host synchronisations.

Skipped without a GPU (CI has none); run them where one is: `pytest tests/test_gpu.py`."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from ticketlab.methods.tamt.search import ScoreMask, Scratch, Thresholder, rethreshold
from ticketlab.train.optim import AdamW

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SHAPES = [(300, 200), (64, 100), (128, 128), (30, 170), (300, 200)]


def _masks(device: str, dtype: torch.dtype = torch.float32, *, ties: bool = True) -> list[ScoreMask]:
    g = torch.Generator().manual_seed(0)
    scratch = Scratch()
    ps = []
    for s in SHAPES:  # scores on a grid of 1e-3 have many ties at every cut
        n = s[0] * s[1]
        grid = torch.randint(0, 20, s, generator=g) if ties else torch.randperm(n, generator=g).view(s)
        scores = grid * (1e-3 if ties else 0.02 / n)  # without ties: n distinct values
        p = ScoreMask(scores, -1.0, dtype).to(device)  # all kept until the first re-threshold
        p.scratch = scratch
        ps.append(p)
    return ps


def _syncs(fn) -> list[str]:
    """The source lines of the host synchronisations that `fn()` makes (torch's own lines left out:
    switching the debug mode back counts as one)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    where = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    return [w for w in where if f"{os.sep}torch{os.sep}" not in w]


def test_rethreshold_on_gpu_gives_the_cpu_masks():
    cpu, gpu = _masks("cpu"), _masks("cuda")
    th_cpu = [Thresholder([p], p.scores.numel() // 3) for p in cpu]
    th_gpu = [Thresholder([p], p.scores.numel() // 3) for p in gpu]
    g = torch.Generator().manual_seed(1)
    for step in range(8):
        rethreshold(th_cpu)
        rethreshold(th_gpu)
        for a, b in zip(cpu, gpu, strict=True):
            assert torch.equal(a.mask, b.mask.cpu()), step
        with torch.no_grad():
            for a, b in zip(cpu, gpu, strict=True):  # the same drift on both, on the 1e-3 grid
                upd = torch.randint(-2, 3, a.scores.shape, generator=g).float() * 1e-3
                a.scores += upd
                b.scores += upd.cuda()


def test_a_settled_rethreshold_reads_the_device_once():
    """One host read a step (the flags of all matrices), not one per matrix (5)."""
    ps = _masks("cuda", ties=False)
    ths = [Thresholder([p], p.scores.numel() // 3) for p in ps]
    rethreshold(ths)  # the first selection, from scratch
    rethreshold(ths)  # the first step of fixed shapes
    torch.cuda.synchronize()
    where = _syncs(lambda: rethreshold(ths))
    assert len(where) == 1, where


def test_matrices_that_moved_are_settled_with_one_read():
    """Every matrix whose count moved is settled by the step of fixed shapes: the host reads the
    device once a step (the flags), together or alone, and each matrix ends where it ends alone."""
    together, alone = _masks("cuda", ties=False), _masks("cuda", ties=False)
    ths = [Thresholder([p], p.scores.numel() // 3) for p in together]
    ths_alone = [Thresholder([p], p.scores.numel() // 3) for p in alone]
    g = torch.Generator().manual_seed(2)
    for step in range(4):
        torch.cuda.synchronize()
        n_together = len(_syncs(lambda: rethreshold(ths)))
        n_alone = [len(_syncs(lambda th=th: rethreshold([th]))) for th in ths_alone]
        for a, b, ta, tb in zip(together, alone, ths, ths_alone, strict=True):
            assert torch.equal(a.scores, b.scores) and ta.threshold == tb.threshold, step
        if step > 0:  # step 0 selects from scratch, matrix by matrix
            assert n_together == 1 and set(n_alone) == {1}, (step, n_together, n_alone)
        with torch.no_grad():
            for a, b in zip(together, alone, strict=True):
                upd = (torch.randn(a.scores.shape, generator=g) * 1e-3).cuda()
                a.scores += upd
                b.scores += upd
    assert sum(t.fallbacks for t in ths) == 0


def test_bf16_scores_step_on_gpu_keeps_exact_sparsity():
    ps = _masks("cuda", torch.bfloat16)
    ths = [Thresholder([p], p.scores.numel() // 3) for p in ps]
    opt = AdamW([p.scores for p in ps], lr=1e-3)
    rethreshold(ths)
    start = [p.mask.clone() for p in ps]
    for _ in range(5):
        for p in ps:
            p.scores.grad = torch.randn_like(p.scores)
        opt.step()
        rethreshold(ths)
        for p, th in zip(ps, ths, strict=True):
            assert int(p.mask.sum()) == th.n_keep
    assert any(not torch.equal(p.mask, s) for p, s in zip(ps, start, strict=True))
