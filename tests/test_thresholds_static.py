"""The re-threshold's step of fixed shapes (`methods/tamt/band.py`): its masks against an eager per-matrix
top-k (signed scores, ties to the lower position) over seeds, score dtypes and rankings, N:M too;
and the step under `torch.compile(fullgraph=True)`: no graph break, the same masks."""

from __future__ import annotations

import pytest
import torch

from ticketlab.methods.tamt import band
from ticketlab.methods.tamt.scores import ScoreMask
from ticketlab.methods.tamt.thresholds import (
    Rethreshold,
    Thresholder,
    make_thresholders,
    rethreshold,
    settle,
)

SHAPES = [(48, 40), (24, 16), (40, 64)]


def topk_ref(xs: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """The n highest of all values of the flat tensors `xs` (signed), ties to the lower position: a
    stable descending sort (torch.topk breaks ties in no stated order)."""
    flat = torch.cat(xs).float()
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, descending=True, stable=True).indices[:n]] = True
    return list(keep.split([x.numel() for x in xs]))


def _masks(seed: int, dtype: torch.dtype, pattern: str | None = None) -> dict[str, ScoreMask]:
    """Scores on a grid of 0.001 (ties at every cut), some rows never to move (as unseen tokens')."""
    g = torch.Generator().manual_seed(seed)
    nm = None
    if pattern:
        from ticketlab.masks.pattern import parse_pattern

        nm = parse_pattern(pattern)
    return {
        f"m{i}": ScoreMask((torch.rand(s, generator=g) * 20).round() * 1e-3, 0.01, dtype, nm)
        for i, s in enumerate(SHAPES)
    }


def _move(masks: dict[str, ScoreMask], seed: int) -> None:
    """An optimizer-like step: most scores move by a few 1e-4, a third of the rows not at all."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in masks.values():
            upd = torch.randn(p.scores.shape, generator=g) * 3e-4
            upd[torch.rand(p.scores.shape[0], generator=g) < 0.3] = 0
            p.scores += upd.to(p.scores.dtype)


def _before(masks, thresholders, ranking):
    """The reference is taken on the scores before the step lowers its tie's losers."""
    ps = list(masks.values())
    groups = [[p] for p in ps] if ranking == "local" else [ps]
    return [
        topk_ref([p.scores.detach().reshape(-1).clone() for p in g], th.n_keep)
        for g, th in zip(groups, thresholders, strict=True)
    ]


def _run(masks, thresholders, ranking, step_fn, steps=6, seed=0):
    ps = list(masks.values())
    groups = [[p] for p in ps] if ranking == "local" else [ps]
    for step in range(steps):
        refs = _before(masks, thresholders, ranking)
        step_fn()
        for g, ref in zip(groups, refs, strict=True):
            for p, r in zip(g, ref, strict=True):
                assert torch.equal(p.mask.reshape(-1), r), step
        _move(masks, 100 * seed + step)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ranking", ["local", "global"])
def test_masks_are_the_eager_topk_every_step(monkeypatch, seed, dtype, ranking):
    monkeypatch.setattr(band, "_MIN_CAP", 256)  # a band of fixed size smaller than the matrices
    masks = _masks(seed, dtype)
    ths = make_thresholders(masks, 0.6, ranking)
    _run(masks, ths, ranking, lambda: rethreshold(ths), seed=seed)
    assert not any(t.band.whole for t in ths)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nm_masks_are_the_topk_of_every_group(dtype):
    masks = _masks(3, dtype, "2:4")
    ths = make_thresholders(masks, 0.5, pattern="2:4")
    _run_nm(masks, lambda: rethreshold(ths))


def _nm_ref(p: ScoreMask) -> torch.Tensor:
    """2 of every 4 consecutive scores: the 2 highest, ties to the lower position."""
    x = p.scores.detach().reshape(-1, 4).float()
    keep = torch.zeros_like(x, dtype=torch.bool)
    keep.scatter_(1, torch.sort(x, dim=1, descending=True, stable=True).indices[:, :2], True)
    return keep.reshape(p.scores.shape)


def _run_nm(masks, step_fn, steps=4):
    for step in range(steps):
        refs = {k: _nm_ref(p) for k, p in masks.items()}
        step_fn()
        for k, p in masks.items():
            assert torch.equal(p.mask, refs[k]), (step, k)
        _move(masks, step)


def test_positions_in_two_levels_are_those_of_nonzero_static(monkeypatch):
    """The CPU's two-level scan (8-byte words holding any, then their bytes) against one scan."""
    g = torch.Generator().manual_seed(0)
    for n, density, k in [
        (64 * 64, 0.01, 64),
        (64 * 64, 0.2, 64),
        (8 * 1000, 0.001, 100),
        (64 * 70 + 3, 0.01, 64),
    ]:
        mask = torch.rand(n, generator=g) < density
        want = torch.nonzero_static(mask, size=k, fill_value=-1).squeeze(1)
        assert torch.equal(band._positions(mask, k), want), (n, density, k)


def test_a_band_that_cannot_show_the_cut_is_settled_from_scratch(monkeypatch):
    """More tied scores at the cut than the band holds: the step changes nothing and says so, and
    the selection from scratch settles it exactly; the band's width is then changed for next time."""
    monkeypatch.setattr(band, "_MIN_CAP", 32)
    p = ScoreMask(torch.where(torch.arange(4000) % 3 == 0, 0.02, 0.0).view(40, 100), 0.01)
    th = Thresholder([p], 1000)  # 1334 scores tie at 0.02: 334 of them lose
    th()
    ref = topk_ref([p.scores.detach().reshape(-1)], 1000)[0]
    assert torch.equal(p.mask.reshape(-1), ref) and int(p.mask.sum()) == 1000
    with torch.no_grad():
        p.scores[:, :50] += 0.01  # some losers jump above: the tie at 0.02 outgrows the band
    before = th.fallbacks
    ref = topk_ref([p.scores.detach().reshape(-1).clone()], 1000)[0]
    th()
    assert torch.equal(p.mask.reshape(-1), ref) and th.fallbacks == before + 1


def test_the_step_compiles_whole_and_gives_the_same_masks(monkeypatch):
    """`settle` (every group's step, the band's branch under `torch.cond`) traced with no graph
    break, and compiled (fullgraph) it keeps the masks of the eager top-k, local, global and N:M."""
    monkeypatch.setattr(band, "_MIN_CAP", 256)
    for ranking, pattern, dtype in [
        ("local", None, torch.float32),
        ("global", None, torch.bfloat16),
        ("local", "2:4", torch.float32),
    ]:
        masks = _masks(5, dtype, pattern)
        ths = make_thresholders(masks, 0.5 if pattern else 0.6, ranking, pattern)
        rethreshold(ths)  # the first selection, from scratch (eager)
        explained = torch._dynamo.explain(settle)(ths)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
        torch._dynamo.reset()
        step = Rethreshold(ths, compile="eager")  # dynamo's graph, run as traced (no C++ build)
        if pattern:
            _run_nm(masks, step, steps=3)
        else:
            _run(masks, ths, ranking, step, steps=4, seed=5)
        torch._dynamo.reset()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adjacent_values_are_nextafter_from_the_bits(dtype):
    """`band.adjacent` (from the bits, as a compiled graph computes it too) is torch.nextafter for
    finite values of either sign; at 0 it steps to the smallest normal, clear of the subnormals."""
    x = torch.tensor([0.02, -0.02, 1.0, -3.5, 1e-30, -1e-30, 7e4], dtype=dtype)
    for down, to in [(True, -torch.inf), (False, torch.inf)]:
        want = torch.nextafter(x, torch.full_like(x, to))
        assert torch.equal(band.adjacent(x, down=down), want), down
    zero = torch.zeros(1, dtype=dtype)
    tiny = torch.finfo(dtype).smallest_normal
    assert band.adjacent(zero, down=True).item() == -tiny and band.adjacent(zero, down=False).item() == tiny
