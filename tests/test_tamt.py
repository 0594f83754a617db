"""TAMT: straight-through scores over frozen weights, exact sparsity every step, OMP/random init,
incremental thresholding equal to a fresh selection, the search (head delta, save-at, resume)."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import subprocess
import sys

import pytest
import torch
from torch import nn
from transformers import BertForMaskedLM

from conftest import WORDS, make_model, tiny_bert_config, write_tokenizer
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.core.files.atomic import HOST
from ticketlab.lm.evaluation import HEAD_FILE, load_head_state
from ticketlab.lm.mlm_head import head_parameters
from ticketlab.lm.objectives import MLMCollator, mlm_loss, pretraining_loss
from ticketlab.masks import (
    BinaryMask,
    Mask,
    apply_mask,
    current_mask,
    load_mask,
    masks_disabled,
    remove_mask,
)
from ticketlab.methods import omp_mask, random_mask
from ticketlab.methods.tamt import band
from ticketlab.methods.tamt.search import (
    ScoreMask,
    Scratch,
    TamtConfig,
    Thresholder,
    attach_scores,
    frozen_mask_warning,
    initial_mask,
    make_thresholders,
    prepare_tamt,
    rethreshold,
)
from ticketlab.methods.tamt.thresholds import _rank
from ticketlab.train.checkpoint import restore_trained
from ticketlab.train.loop import CHECKPOINT
from ticketlab.train.optim import AdamW


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


def batch_of(tok, n=4, length=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ex = [{"input_ids": torch.randint(5, len(tok), (length,), generator=g)} for _ in range(n)]
    return MLMCollator(tok, mlm_probability=0.3, keep_clean=True)(ex, list(range(n)))


def top_ref(xs: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """The n highest of all values of the flat tensors `xs`, ties to the lower position: a full stable
    sort, the reference for the incremental selection."""
    flat = torch.cat(xs)
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.argsort(flat, descending=True, stable=True)[:n]] = True
    return list(keep.split([x.numel() for x in xs]))


def set_mask(p: ScoreMask, mask: torch.Tensor) -> None:
    """Make p's mask `mask`: scores 1 where kept, 0 elsewhere, threshold between."""
    with torch.no_grad():
        p.scores.copy_(torch.where(mask, 1.0, 0.0))
        p.threshold.fill_(0.5)


def tamt_model(sparsity=0.7, **kw):
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    masks, groups = prepare_tamt(model, TamtConfig(sparsity, **kw))
    return model, masks, groups


def test_omp_init_equals_omp_and_random_init_equals_random_mask():
    ref = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    model, masks, _ = tamt_model(0.7)
    assert current_mask(model) == omp_mask(ref, 0.7, count="floor")  # TAMT's masker: int(s·n) pruned
    assert current_mask(tamt_model(0.7, count="round")[0]) == omp_mask(ref, 0.7)
    p = masks["encoder.layer.0.intermediate.dense.weight"]
    assert p.scores.unique().tolist() == pytest.approx([0.0, 0.02])  # α·φ where kept, 0 elsewhere
    assert torch.equal(p.scores > 0, p.mask)
    rmodel, _, _ = tamt_model(0.5, init="random", seed=3)
    assert current_mask(rmodel) == random_mask(ref, 0.5, seed=3, count="floor")


def test_forward_is_w_times_m_and_teacher_is_dense(tok):
    model, masks, _ = tamt_model(0.6)
    ref = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    apply_mask(ref, current_mask(model))
    batch = batch_of(tok)
    kw = {k: batch[k] for k in ("input_ids", "attention_mask")}
    torch.testing.assert_close(model(**kw).logits, ref(**kw).logits)
    dense = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    with masks_disabled(model):
        torch.testing.assert_close(model(**kw).logits, dense(**kw).logits)


def test_ste_gradients_reach_the_scores_and_not_the_weights(tok):
    model, masks, _ = tamt_model(0.5)
    batch = batch_of(tok)
    # the copy below bakes the mask into the matrix the decoder shares: the masked decoder's loss
    masked_decoder = pretraining_loss("mlm", decoder="masked")
    masked_decoder(model, batch)[0].backward()
    key = "encoder.layer.1.attention.self.value.weight"
    p = masks[key]
    w = model.bert.encoder.layer[1].attention.self.value.parametrizations.weight.original
    assert w.grad is None and not w.requires_grad
    assert p.scores.grad is not None and p.scores.grad.abs().sum() > 0
    # by hand: dL/dS = dL/d(W⊙M) ⊙ W, with W⊙M as a plain leaf in a BinaryMask-free copy
    ref = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    with torch.no_grad():
        for k, q in masks.items():
            mod = ref.bert.get_submodule(k.removesuffix(".weight"))
            mod.weight.mul_(q.mask)
    for param in ref.parameters():
        param.requires_grad_(False)
    lin = ref.bert.encoder.layer[1].attention.self.value
    lin.weight.requires_grad_(True)
    mlm_loss(ref, batch)[0].backward()
    torch.testing.assert_close(p.scores.grad, lin.weight.grad * w, rtol=1e-4, atol=1e-7)
    # the tied word embeddings collect the gradient of both uses (input embedding and MLM decoder)
    assert masks["embeddings.word_embeddings.weight"].scores.grad.abs().sum() > 0


def test_trainable_parameters_per_objective():
    _, _, groups = tamt_model(0.5, objective="mlm")
    names = [g["name"] for g in groups]
    assert names == ["scores", "mlm_head"] and len(groups[1]["params"]) == 5
    _, _, kd_groups = tamt_model(0.5, objective="kd")
    assert [g["name"] for g in kd_groups] == ["scores"]
    _, _, frozen = tamt_model(0.5, objective="mlm+kd", train_head=False)
    assert [g["name"] for g in frozen] == ["scores"]
    _, _, slow_head = tamt_model(0.5, objective="mlm", head_lr=5e-5)
    assert "lr" not in slow_head[0] and slow_head[1]["lr"] == 5e-5


@pytest.mark.parametrize("ranking", ["local", "global"])
def test_sparsity_is_exact_after_every_step(tok, ranking):
    model, masks, groups = tamt_model(0.7, ranking=ranking)
    thresholders = make_thresholders(masks, 0.7, ranking)
    opt = torch.optim.AdamW(groups, lr=3e-3)  # large enough for masks to move in a few steps
    loss_fn = pretraining_loss("mlm+kd")
    start = current_mask(model)
    for step in range(6):
        loss_fn(model, batch_of(tok, seed=step))[0].backward()
        opt.step()
        opt.zero_grad()
        rethreshold(thresholders)
        mask = current_mask(model)
        if ranking == "local":
            for k, t in mask.items():
                assert int(t.sum()) == t.numel() - round(0.7 * t.numel()), (step, k)
        else:
            assert mask.kept == mask.numel - round(0.7 * mask.numel)
        # every kept score is >= every pruned score (per matrix, or over all of them)
        groups_ = [[k] for k in masks] if ranking == "local" else [list(masks)]
        for g in groups_:
            s = torch.cat([masks[k].scores.detach().reshape(-1) for k in g])
            m = torch.cat([masks[k].mask.reshape(-1) for k in g])
            assert s[m].min() >= s[~m].max()
    assert current_mask(model) != start  # the masks did move


def test_signed_scores_rank_not_magnitudes():
    scores = torch.tensor([[0.02, -0.05, 0.01, 0.0]])
    p = ScoreMask(scores, 0.015)
    Thresholder([p], 2)()
    assert p.mask.tolist() == [[True, False, True, False]]  # -0.05 is pruned despite |S| = 0.05


def _drift(p: ScoreMask, seed: int, scale: float, frozen_rows: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        upd = torch.randn(p.scores.shape, generator=g) * scale
        upd[torch.rand(p.scores.shape[0], generator=g) < frozen_rows] = 0  # untouched rows keep ties
        p.scores += upd


@pytest.mark.parametrize("shape", [(40, 30), (700, 600)])
def test_incremental_threshold_equals_fresh_selection_with_ties(shape):
    n = shape[0] * shape[1]
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 4]] = True
    keep = keep.view(shape)
    p = ScoreMask(torch.where(keep, 0.02, 0.0), 0.01)
    w = torch.randn(shape)
    th = Thresholder([p], n // 4)
    for step in range(12):
        _drift(p, step, 4e-3 if step % 3 else 1e-5, frozen_rows=0.5)
        ref = top_ref([p.scores.detach().reshape(-1).clone()], n // 4)
        th()
        assert torch.equal(p.mask.reshape(-1), ref[0]), step
        assert torch.equal(p(w), w * p.mask)


@pytest.mark.parametrize("band_size", [None, 64])
def test_a_group_ranked_together_is_exactly_a_fresh_selection(monkeypatch, band_size):
    """Global ranking: two matrices share one threshold; their masks are the reference's every step,
    ties (rows that never move) included, with every score in the band or a few (`band.capacity`)."""
    if band_size:
        monkeypatch.setattr(band, "_MIN_CAP", band_size)
    g = torch.Generator().manual_seed(1)
    ps = [ScoreMask((torch.rand(s, generator=g) * 20).round() * 1e-3, 0.01) for s in [(50, 40), (30, 20)]]
    n = 2600 // 3
    th = Thresholder(ps, n)
    for step in range(6):
        ref = top_ref([p.scores.detach().reshape(-1).clone() for p in ps], n)
        th()
        assert all(torch.equal(p.mask.reshape(-1), r) for p, r in zip(ps, ref, strict=True)), step
        assert all(float(p.threshold) == th.threshold for p in ps)
        for i, p in enumerate(ps):
            _drift(p, 10 * step + i, 2e-3, frozen_rows=0.2)


def test_threshold_moves_into_the_gap_so_small_steps_rank_nothing():
    """Adam moves every score by about ±lr: kept scores that dip must not cross t, nor the step
    need a repair (`Thresholder.repair`: a selection from scratch)."""
    g = torch.Generator().manual_seed(0)
    keep = torch.rand(300, 200, generator=g) < 0.3
    p = ScoreMask(torch.where(keep, 0.02, 0.0), 0.01)
    th = Thresholder([p], int(keep.sum()))
    th()
    assert not th.band.whole
    for step in range(6):
        with torch.no_grad():
            p.scores += torch.where(torch.rand(keep.shape, generator=g) < 0.5, 1e-4, -1e-4)
        th()
        s = p.scores.detach()
        assert s[p.mask].min() > th.threshold > s[~p.mask].max(), step
    assert torch.equal(p.mask, keep) and th.fallbacks == 0


def test_ties_keep_the_lower_positions_and_the_losers_stay_behind():
    """A tie at the cut: the lower positions are kept, and the others lowered one step below the
    threshold, so M = 1[S >= t] is exact; they then stay behind their tie-mates (no churn)."""
    p = ScoreMask(torch.tensor([0.02, 0.02, 0.02, 0.02, 0.03]), 0.01)
    th = Thresholder([p], 3)
    th()
    below = float(torch.nextafter(torch.tensor(0.02), torch.tensor(0.0)))
    assert p.mask.tolist() == [True, True, False, False, True] and th.threshold == pytest.approx(0.02)
    assert p.scores.tolist() == [pytest.approx(0.02)] * 2 + [below] * 2 + [pytest.approx(0.03)]
    with torch.no_grad():
        p.scores[0] = 0.0  # a kept one leaves: the better of the two that lost the tie comes back
    th()
    assert p.mask.tolist() == [False, True, True, False, True]
    s = p.scores.detach()
    assert float(s[2]) == th.threshold == below and float(s[3]) < below  # its tie-mate steps down again
    q = ScoreMask(torch.tensor([0.0, 0.0, -0.01]), -1.0)  # a tie at 0 steps below 0, clear of subnormals
    Thresholder([q], 1)()
    assert q.mask.tolist() == [True, False, False] and float(q.scores[1].detach()) == -torch.finfo().tiny


def test_scores_at_minus_infinity_at_the_cut_are_a_diverged_search():
    p = ScoreMask(torch.tensor([1.0, -math.inf, -math.inf]), 0.01)
    with pytest.raises(TicketlabError, match="diverged"):
        Thresholder([p], 2)()


@pytest.mark.parametrize("largest", [True, False])
def test_rank_orders_ties_by_position(largest):
    """The sort-based ranking against a Python sort by the tie rule's key, on values with many ties."""
    g = torch.Generator().manual_seed(3)
    vals = torch.randint(0, 5, (400,), generator=g).float() * 0.01
    v = vals.tolist()
    if largest:  # the largest first, then the lower position
        want = sorted(range(400), key=lambda i: (-v[i], i))
    else:  # the smallest first, then the higher position
        want = sorted(range(400), key=lambda i: (v[i], -i))
    assert _rank(vals, largest=largest).tolist() == want


def _count_reads(monkeypatch) -> list[str]:
    """Every read of a tensor's value into Python from now on, by name."""
    reads = []
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _r=real, _n=name: reads.append(_n) or _r(self, *a)
        )
    return reads


@pytest.mark.parametrize("band_size", [None, 64])
@pytest.mark.parametrize("reads_count", [True, False])
def test_rethreshold_reads_one_flag_a_step_and_each_mask_stays_exact(monkeypatch, band_size, reads_count):
    """Local ranking over several matrices, ties at every cut: every mask is what a fresh selection of
    its own gives, whether the step reads each count (a CPU) or settles every matrix (as on a GPU),
    and there a step that needs no repair reads one value from the device (the flag)."""
    if band_size:
        monkeypatch.setattr(band, "_MIN_CAP", band_size)
    if not reads_count:
        monkeypatch.setattr(band, "READS_COUNT", set())
    g = torch.Generator().manual_seed(2)
    shapes = [(60, 50), (20, 30), (40, 40), (10, 70), (60, 50)]
    ps = [ScoreMask((torch.rand(s, generator=g) * 20).round() * 1e-3, -1.0) for s in shapes]
    ths = [Thresholder([p], p.scores.numel() // 3) for p in ps]
    reads = _count_reads(monkeypatch)
    for step in range(8):
        refs = [
            top_ref([p.scores.detach().reshape(-1).clone()], th.n_keep) for p, th in zip(ps, ths, strict=True)
        ]
        repairs = sum(th.fallbacks for th in ths)
        reads.clear()
        rethreshold(ths)
        if step > 0 and sum(th.fallbacks for th in ths) == repairs:
            assert len(reads) <= (1 + len(ps) if reads_count else 1), step
        for p, ref in zip(ps, refs, strict=True):
            assert torch.equal(p.mask.reshape(-1), ref[0]), step
        for i, p in enumerate(ps):
            _drift(p, 10 * step + i, 2e-3, frozen_rows=0.3)


@pytest.mark.parametrize("n", [1, 7, 2**18, 2**18 + 3])
def test_counts_at_least_count_every_chunk(n, monkeypatch):
    monkeypatch.setattr(Scratch, "COUNT_CHUNK", 1000)
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    x[::3] = 0.1  # ties at a cut count as kept
    x[1::5] = float("nan")  # never >= a cut
    for y in (x, x.bfloat16()):
        cuts = torch.tensor([0.1, -0.3], dtype=y.dtype)
        want = [int((y >= c).sum()) for c in cuts]
        assert Scratch().counts_at_least(y, cuts).tolist() == want
        assert [Scratch().count_at_least(y, c) for c in cuts] == want


@pytest.mark.parametrize("n", [5, 2**12 + 3])
def test_within_and_positions_match_torch_on_every_chunk(n, monkeypatch):
    """A CPU's band (numpy's comparisons, a chunk at a time) and its first k positions are torch's:
    scores at lo inside, at hi outside, NaN never; fewer than k found, or more."""
    monkeypatch.setattr(Scratch, "COUNT_CHUNK", 1000)
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    x[::4], x[1::7], x[2::9] = -0.5, 0.5, float("nan")
    for y in (x, x.bfloat16()):
        lo, hi = torch.tensor(-0.5, dtype=y.dtype), torch.tensor(0.5, dtype=y.dtype)
        want = (y >= lo) & (y < hi)
        got = Scratch().within(y, lo, hi)
        assert torch.equal(got[:n], want)
        all_at = torch.nonzero(want).squeeze(1)
        for k in (1, all_at.numel() // 2, all_at.numel() + 5):
            expected = torch.full((k,), -1, dtype=torch.int64)
            expected[: min(k, all_at.numel())] = all_at[:k]
            assert torch.equal(band._positions(want, k), expected)


def test_cache_follows_external_weight_and_mask_changes(tok):
    model, masks, _ = tamt_model(0.5)
    p = masks["encoder.layer.0.output.dense.weight"]
    lin = model.bert.encoder.layer[0].output.dense
    w = lin.parametrizations.weight.original
    before = lin.weight.detach().clone()
    with torch.no_grad():
        w.mul_(2.0)  # an in-place change of W invalidates the cached W ⊙ M
    torch.testing.assert_close(lin.weight.detach(), before * 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    set_mask(p, ~p.mask)
    torch.testing.assert_close(lin.weight.detach(), w.detach() * p.mask)
    model.load_state_dict(state)
    torch.testing.assert_close(lin.weight.detach(), before * 2)


# --------------------------------------------------------------------------- the search (CLI)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A saved tiny BERT, its tokenizer and a small text corpus."""
    root = tmp_path_factory.mktemp("tamt-run")
    model_dir = root / "model"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(model_dir)
    write_tokenizer(model_dir)
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) for _ in range(300)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    return root


def search_args(run, out, *extra):
    return [
        "search",
        "tamt",
        "--model",
        str(run / "model"),
        "--corpus",
        str(run / "corpus.txt"),
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--cache-dir",
        str(run / "cache"),
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_search_writes_mask_head_and_steps(tiny_run, tmp_path, capsys):
    out = tmp_path / "tamt"
    args = search_args(tiny_run, out, "--sparsity", "0.6", "--steps", "6", "--lr", "3e-3", "--save-at", "2,6")
    assert main(args) == 0
    mask, config = load_mask(out)
    assert config.method == "tamt-mlm" and config.search["steps"] == 6 and config.search["ranks_agree"]
    assert abs(mask.sparsity - 0.6) < 1e-3
    assert (out / HEAD_FILE).is_file() and (out / "steps" / "step-000002" / HEAD_FILE).is_file()
    assert load_mask(out / "steps" / "step-000006")[0] == mask
    assert load_mask(out / "steps" / "step-000002")[1].search["step"] == 2
    assert not (out / "run" / "checkpoint.pt").exists()  # deleted once the mask is written
    events = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "mask_saved" and e["step"] == 2 for e in events)
    assert any("eval" in e and "kd_loss" in e["eval"] for e in events)
    # the trained head is a delta over the base model's head
    model = BertForMaskedLM.from_pretrained(tiny_run / "model")
    before = model.cls.predictions.transform.dense.weight.detach().clone()
    assert load_head_state(model, out) == 5
    assert not torch.equal(before, model.cls.predictions.transform.dense.weight)
    # a finished search is not repeated; other settings in the same directory are refused
    assert main(args) == 0 and "finished before" in capsys.readouterr().out
    other = search_args(tiny_run, out, "--sparsity", "0.5", "--steps", "6", "--lr", "3e-3")
    assert main(other) == 2
    assert "other settings" in capsys.readouterr().err
    # a step the finished run did not save: no more masks come of it, said (not "nothing to do")
    more = search_args(tiny_run, out, "--sparsity", "0.6", "--steps", "6", "--lr", "3e-3", "--save-at", "2,4")
    assert main(more) == 2
    assert "finished, past the steps [4] (save_at) without their masks" in capsys.readouterr().err
    assert not (out / "steps" / "step-000004").exists()


def test_a_search_on_a_hub_corpus_records_it_and_resumes_on_it(tiny_run, tmp_path, fake_hub, capsys):
    """`--corpus hub:NAME:CONFIG` (faked offline): the search trains on the train split, scores on the
    validation split, and a rerun on the same id is the same run (no "other settings"), its mask kept;
    a dataset the hub does not have is one line, exit 2, and leaves no output behind."""
    out = tmp_path / "hub"
    args = search_args(tiny_run, out, "--sparsity", "0.5", "--steps", "2", "--lr", "3e-3")
    args[args.index("--corpus") + 1] = "hub:org/tiny-wiki:raw"
    assert main(args) == 0
    search = load_mask(out)[1].search
    assert search["corpus"] == ["hub:org/tiny-wiki:raw"] and search["dev"] == "dataset split"
    assert {c for c in fake_hub if c[0] == "load"} == {
        ("load", "org/tiny-wiki", "raw", "train"),
        ("load", "org/tiny-wiki", "raw", "validation"),
    }
    mask = load_mask(out)[0]
    assert main(args) == 0 and load_mask(out)[0] == mask
    args[args.index("--corpus") + 1] = "hub:org/nope"
    args[args.index("--out") + 1] = str(tmp_path / "nope")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("ticketlab search: error: hub:org/nope: cannot load from the hub (Dataset 'org/nope'")
        and "\n" not in err
    )
    assert not (tmp_path / "nope").exists()


def test_the_schedule_goes_on_past_the_stop_as_tamts(tiny_run, tmp_path, capsys):
    """TAMT's masks are checkpoints of one long schedule (Tab. 2: 17,000 of 27,920 steps at 70%): by
    default a search of N steps at 70% stops where the paper's did, its lr still (H - N)/H of its
    peak; --schedule-steps N gives the schedule that ends at the stop (ticketlab's earlier default).
    The cost is in the paper's units too: steps x batch x length tokens."""
    lr, horizon = 3e-3, round(6 * 27920 / 17000)  # 10

    def run(out, *extra):
        args = ["--sparsity", "0.7", "--steps", "6", "--lr", str(lr), "--log-every", "1", "--no-eval"]
        assert main(search_args(tiny_run, out, *args, *extra)) == 0
        lines = (out / "run" / "log.jsonl").read_text().splitlines()
        lrs = {e["step"]: e["lr"] for e in map(json.loads, lines) if "lr" in e}
        settings = json.loads((out / "run" / "settings.json").read_text())
        return load_mask(out)[1].search, lrs, settings

    search, lrs, settings = run(tmp_path / "paper")
    assert search["schedule_steps"] == horizon and settings["schedule_steps"] == horizon
    assert lrs[6] == pytest.approx(lr * (horizon - 6) / horizon) and lrs[3] == pytest.approx(lr * 7 / 10)
    assert search["tokens_per_step"] == 8 * 32 and search["search_tokens"] == 6 * 8 * 32
    assert "1,536 tokens" in capsys.readouterr().out
    search, lrs, settings = run(tmp_path / "stop", "--schedule-steps", "6")
    assert search["schedule_steps"] == 6 and settings["schedule_steps"] == 6
    assert lrs[6] == 0.0 and lrs[3] == pytest.approx(lr / 2)
    # a directory searched with a schedule that ends at the stop is not resumed under TAMT's
    args = ["--sparsity", "0.7", "--steps", "6", "--lr", str(lr), "--log-every", "1", "--no-eval"]
    assert main(search_args(tiny_run, tmp_path / "stop", *args)) == 2
    assert "other settings" in capsys.readouterr().err


def test_the_pooler_is_masked_where_the_checkpoint_has_one(tiny_run, tmp_path, capsys):
    """Both papers prune the pooler. TAMT's masker holds it at its OMP start (no pre-training loss reads
    it); an MLM model is built without it, so the search and the evaluation take the checkpoint's. A
    checkpoint saved without a pooler (from *ForMaskedLM) has none to prune: a random one is no target."""
    from transformers import BertForPreTraining

    from ticketlab.masks import find_targets
    from ticketlab.models.load import load_model

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "corpus.txt").write_text((tiny_run / "corpus.txt").read_text())
    make_model(BertForPreTraining, tiny_bert_config(), seed=0).save_pretrained(run / "model")
    write_tokenizer(run / "model")
    base = load_model(run / "model", head="base")
    assert "pooler.dense.weight" in find_targets(base)
    assert "pooler.dense.weight" not in find_targets(load_model(tiny_run / "model", head="base"))
    out = tmp_path / "tamt"
    args = ["--sparsity", "0.7", "--steps", "6", "--lr", "3e-2", "--save-at", "2"]
    assert main(search_args(run, out, *args)) == 0
    mask = load_mask(out)[0]
    omp = omp_mask(base, 0.7, count="floor")  # TAMT's OMP start prunes int(s·n), as its masker
    assert torch.equal(mask["pooler.dense.weight"], omp["pooler.dense.weight"])  # held at its OMP start
    assert not torch.equal(
        mask["encoder.layer.0.output.dense.weight"], omp["encoder.layer.0.output.dense.weight"]
    )
    common = ["--corpus", str(run / "corpus.txt"), "--max-length", "32", "--cache-dir", str(tmp_path / "c")]
    capsys.readouterr()
    assert main(["evaluate-pretrain", "--mask", str(out), *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["kd_loss"] > 0


def test_paper_budget_is_tab2s_step_of_one_27920_step_schedule(tmp_path):
    from ticketlab.methods import ImpConfig
    from ticketlab.methods.tamt.search import PAPER_STEPS, paper_fraction, paper_schedule_steps
    from ticketlab.verbs.search import SearchConfig

    def config(method, **kw):
        return SearchConfig(model="m", method=method, out=tmp_path / "o", corpus=["c.txt"], **kw)

    for sparsity, steps in {0.5: 11000, 0.7: 17000, 0.9: 22000}.items():
        c = config(TamtConfig(sparsity), steps=None, paper=True)
        assert (c.steps, c.schedule_steps, c.horizon) == (steps, 27920, 27920)
        assert c.train_config(5e-5).schedule_steps == 27920
        assert paper_schedule_steps(steps, sparsity) == 27920  # the default horizon at the paper's budget
    assert paper_fraction(0.65) == pytest.approx((14000 + 17000) / 2 / 27920)
    assert paper_fraction(0.95) == PAPER_STEPS[0.9] / 27920 and paper_fraction(0.1) == 3000 / 27920
    assert config(TamtConfig(0.7), steps=300).horizon == round(300 * 27920 / 17000)
    assert config(TamtConfig(0.7), steps=300, schedule_steps=300).train_config(1.0).schedule_steps is None
    with pytest.raises(ConfigError, match="Tab. 2 gives steps"):
        config(TamtConfig(0.65), steps=None, paper=True)
    with pytest.raises(ConfigError, match="leave steps and schedule_steps out"):
        config(TamtConfig(0.7), steps=100, paper=True)
    with pytest.raises(ConfigError, match="paper budget"):
        config(ImpConfig(0.7), steps=None, paper=True)
    with pytest.raises(ConfigError, match=r"steps required \(or the paper's budget"):
        config(TamtConfig(0.7), steps=None)
    with pytest.raises(ConfigError, match="steps required$"):  # IMP has no paper budget to offer
        config(ImpConfig(0.7), steps=None)
    with pytest.raises(ConfigError, match="ends before"):
        config(TamtConfig(0.7), steps=300, schedule_steps=200)
    assert config(ImpConfig(0.7), steps=300).horizon == 300  # IMP: the schedule ends at the stop


@pytest.mark.parametrize("score_dtype", ["float32", "bfloat16"])  # bf16: the rounding's RNG resumes too
def test_resume_after_interruption_gives_the_same_mask(
    tiny_run, tmp_path, monkeypatch, score_dtype, caplog, capsys
):
    common = (
        "--score-dtype",
        score_dtype,
        "--objective",
        "mlm+kd",
        "--sparsity",
        "0.7",
        "--steps",
        "6",
        "--lr",
        "3e-3",
        "--save-every",
        "2",
    )
    assert main(search_args(tiny_run, tmp_path / "whole", *common)) == 0

    import ticketlab.methods.tamt.search as tamt_module

    real, calls = tamt_module.Rethreshold, []

    class Interrupting(real):  # the search's after-step re-threshold, interrupted at its fifth call
        def __call__(self, *args):
            calls.append(1)
            if len(calls) == 5:
                raise KeyboardInterrupt
            super().__call__(*args)

    monkeypatch.setattr(tamt_module, "Rethreshold", Interrupting)
    out = tmp_path / "cut"
    assert main(search_args(tiny_run, out, *common)) == 130
    assert (out / "run" / "checkpoint.pt").is_file() and not (out / "mask_config.json").exists()
    monkeypatch.setattr(tamt_module, "Rethreshold", real)
    # a mask asked for at a step the checkpoint has passed: none can come of this run, said before training
    assert main(search_args(tiny_run, out, *common, "--save-at", "2,5")) == 2
    assert "resumes at step 4, past the steps [2] (save_at) without their masks" in capsys.readouterr().err
    assert not (out / "steps").exists()
    caplog.clear()
    assert main(search_args(tiny_run, out, *common)) == 0
    assert f"resuming from {out / 'run' / 'checkpoint.pt'}" in caplog.messages  # as finetune says it
    result = json.loads((out / "run" / "train_result.json").read_text())
    assert result["resumed_from"] == 4 and result["steps"] == 6
    assert load_mask(out)[0] == load_mask(tmp_path / "whole")[0]


def test_a_search_killed_before_its_mask_was_written_records_its_training_on_the_rerun(
    tiny_run, tmp_path, monkeypatch
):
    """Killed after the loop's result and before the mask was published: the rerun writes the mask
    from the trained state and records the training (its scores, its time) as a whole run does."""
    import ticketlab.methods.search as search_module

    common = ("--sparsity", "0.5", "--steps", "4", "--lr", "3e-3", "--eval-every", "2")
    assert main(search_args(tiny_run, tmp_path / "whole", *common)) == 0
    real = search_module.publish_mask

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(search_module, "publish_mask", killed)
    out = tmp_path / "cut"
    assert main(search_args(tiny_run, out, *common)) == 130
    assert (out / "run" / "train_result.json").is_file() and not (out / "mask_config.json").exists()
    monkeypatch.setattr(search_module, "publish_mask", real)
    assert main(search_args(tiny_run, out, *common)) == 0
    (mask, mc), (want, whole) = load_mask(out), load_mask(tmp_path / "whole")
    assert mask == want and "train_time_s" in mc.search
    for key in ("final_eval", "initial_eval"):
        assert mc.search[key] == whole.search[key], key
    # killed while publishing: the finished search's rerun removes what the dead writer left
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    left = out / f".publish.tl-{int(dead.stdout)}@{HOST}-abc123.tmp"
    left.mkdir()
    assert main(search_args(tiny_run, out, *common)) == 0
    assert not left.exists()
    # killed after its mask, before its tidy-up: the rerun removes the checkpoint, unless asked to keep it
    checkpoint = out / "run" / "checkpoint.pt"
    checkpoint.write_bytes(b"left")
    assert main(search_args(tiny_run, out, *common, "--keep-checkpoint")) == 0
    assert checkpoint.is_file()
    assert main(search_args(tiny_run, out, *common)) == 0
    assert not checkpoint.exists()


def test_kd_search_and_bad_input(tiny_run, tmp_path, capsys):
    out = tmp_path / "kd"
    assert main(search_args(tiny_run, out, "--objective", "kd", "--sparsity", "0.5", "--steps", "3")) == 0
    mask, config = load_mask(out)
    # the default: Table 1's KD lr (2e-5), raised for a search of 3 steps to one that moves the mask
    raised = TamtConfig(0.5, objective="kd").default_lr(3, config.search["schedule_steps"])
    assert config.method == "tamt-kd" and config.search["lr"] == raised > 2e-5
    assert not (out / HEAD_FILE).exists()
    assert (
        main(search_args(tiny_run, tmp_path / "x", "--sparsity", "0.5", "--steps", "3", "--save-at", "9"))
        == 2
    )
    assert "save-at steps must be in [1, 3]" in capsys.readouterr().err
    long = search_args(tiny_run, tmp_path / "y", "--sparsity", "0.5", "--steps", "3")
    long[long.index("--max-length") + 1] = "999"
    assert main(long) == 2
    assert "exceeds the model's 64 positions" in capsys.readouterr().err


def test_binary_masks_are_not_score_masks():
    # ScoreMask is a MaskParametrization: current_mask / masks_disabled treat it like BinaryMask
    model, masks, _ = tamt_model(0.5)
    assert all(isinstance(p, ScoreMask) and not isinstance(p, BinaryMask) for p in masks.values())
    assert current_mask(model).sparsity == pytest.approx(0.5, abs=1e-3)


# --------------------------------------------------------------------------- evaluate-pretrain


def test_evaluate_pretraining_is_token_weighted_and_reproducible(tiny_run):
    from ticketlab.data.corpus import load_lm_blocks
    from ticketlab.lm.evaluation import evaluate_pretraining
    from ticketlab.models.load import load_tokenizer

    tok = load_tokenizer(tiny_run / "model")
    blocks, _ = load_lm_blocks([tiny_run / "corpus.txt"], tok, 32, use_cache=False, progress=False)
    blocks = blocks.take(10)
    model = BertForMaskedLM.from_pretrained(tiny_run / "model")
    coll = MLMCollator(tok)
    one = evaluate_pretraining(model, blocks, coll, batch_size=len(blocks))
    small = evaluate_pretraining(model, blocks, coll, batch_size=3)
    assert one["mlm_loss"] == pytest.approx(small["mlm_loss"], rel=1e-5)  # a mean over tokens, not batches
    assert one["masked_tokens"] == small["masked_tokens"] > 0 and one["kd_loss"] == 0.0
    other_seed = evaluate_pretraining(model, blocks, coll, batch_size=4, seed=1)
    assert other_seed["mlm_loss"] != pytest.approx(one["mlm_loss"])


def _mlm_loss_with_original_head(tiny_run, mask_dir, cache):
    """A mask's MLM dev loss computed here: the base model as saved (its pre-trained head), the mask
    on its encoder, a dense decoder; the same blocks and corruption as `evaluate-pretrain`."""
    from ticketlab.data.corpus import load_lm_blocks
    from ticketlab.lm.evaluation import evaluate_pretraining
    from ticketlab.masks import load_mask
    from ticketlab.models.load import load_tokenizer

    tok = load_tokenizer(tiny_run / "model")
    blocks, _ = load_lm_blocks([tiny_run / "corpus.txt"], tok, 32, cache_dir=cache, progress=False)
    model = BertForMaskedLM.from_pretrained(tiny_run / "model")
    apply_mask(model, load_mask(mask_dir)[0])
    return evaluate_pretraining(model, blocks, MLMCollator(tok), kd=False)["mlm_loss"]


def test_evaluate_pretrain_cli(tiny_run, tmp_path, capsys):
    out = tmp_path / "tamt"
    assert main(search_args(tiny_run, out, "--sparsity", "0.6", "--steps", "4", "--lr", "3e-3")) == 0
    capsys.readouterr()
    common = [
        "--corpus",
        str(tiny_run / "corpus.txt"),
        "--max-length",
        "32",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    model = ["--model", str(tiny_run / "model")]
    assert main(["evaluate-pretrain", *model, "--full", "--mask", str(out), *common, "--json"]) == 0
    full, plain = json.loads(capsys.readouterr().out)
    assert full["name"] == "full" and full["kd_loss"] == 0.0 and full["sparsity"] == 0.0
    # TAMT's evaluation (--load_mlm_head false): the original head, whatever the mask's directory holds
    assert "mlm_head" not in plain and plain["kd_loss"] > 0
    assert plain["sparsity"] == pytest.approx(0.6, abs=1e-3)
    by_hand = _mlm_loss_with_original_head(tiny_run, out, tmp_path / "c")
    assert plain["mlm_loss"] == pytest.approx(by_hand, rel=1e-5)
    trained = ["--mlm-head", "trained"]
    assert main(["evaluate-pretrain", "--mask", str(out), *trained, *common, "--json"]) == 0
    [masked] = json.loads(capsys.readouterr().out)  # the base model comes from the mask's config
    assert masked["mlm_head"] == "trained" and plain["mlm_loss"] != pytest.approx(masked["mlm_loss"])
    assert plain["kd_loss"] == pytest.approx(masked["kd_loss"])  # KD does not involve the head
    assert main(["evaluate-pretrain", "--mask", str(out), "--ignore-mlm-head", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["mlm_loss"] == pytest.approx(plain["mlm_loss"])
    # asking for the trained head and ignoring it at once: refused, where the second silently won
    assert main(["evaluate-pretrain", "--mask", str(out), *trained, "--ignore-mlm-head", *common]) == 2
    assert "contradict each other" in capsys.readouterr().err
    other = tmp_path / "other-model"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=7).save_pretrained(other)
    write_tokenizer(other)
    assert main(["evaluate-pretrain", "--model", str(other), "--mask", str(out), *common]) == 2
    assert "weights differ" in capsys.readouterr().err
    assert main(["evaluate-pretrain", "--mask", str(out), "--max-length", "4", *common[:2]]) == 2
    # a mask of other weights after one that fits: refused before the first row is scored
    import ticketlab.verbs.evaluate_subnetwork as rows

    theirs = tmp_path / "theirs"
    assert main(["prune", "omp", "--model", str(other), "--sparsity", "0.5", "--out", str(theirs)]) == 0
    scored = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rows, "evaluate_subnetwork", lambda *a: scored.append(a) or {})
        argv = [
            "evaluate-pretrain",
            *model,
            "--mask",
            str(out),
            str(theirs),
            *common,
            "--out",
            str(tmp_path / "r.json"),
        ]
        assert main(argv) == 2
    assert not scored and f"{theirs}" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
    # options that only change how masks are scored, where none is, and the KD input without KD
    for extra, message in (
        (["--decoder", "masked"], "--decoder says how masks are scored, and none is given"),
        (["--mlm-head", "trained"], "--mlm-head says how masks are scored"),
        (["--mask", str(out), "--no-kd", "--kd-input", "corrupted"], "--kd-input is the KD loss's input"),
    ):
        assert main(["evaluate-pretrain", *model, *extra, *common]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("score_dtype", ["float32", "bfloat16"])
def test_mask_training_lowers_the_mlm_loss_of_a_fixed_batch(tok, score_dtype):
    model, masks, groups = tamt_model(0.5, objective="mlm", train_head=False, score_dtype=score_dtype)
    thresholders = make_thresholders(masks, 0.5)
    opt = AdamW(groups, lr=2e-3)  # the scores only: any gain comes from the mask
    batch = batch_of(tok, n=8, seed=11)
    model.eval()  # no dropout: the loss is a function of the mask alone
    first = float(mlm_loss(model, batch)[0].detach())
    for _ in range(20):
        mlm_loss(model, batch)[0].backward()
        opt.step()
        opt.zero_grad()
        rethreshold(thresholders)
    # 0.058 here (0.1+ with the masked decoder, whose mask moves the logits directly)
    assert float(mlm_loss(model, batch)[0].detach()) < first - 0.04


@pytest.mark.parametrize("objective", ["mlm", "kd"])
def test_score_gradients_predict_the_effect_of_flipping_a_mask_entry(tok, objective):
    """dL/dM_i is the first-order change of the loss when weight i is added (or minus it, removed)."""
    model, masks, _ = tamt_model(0.5, objective=objective, train_head=False)
    model.eval()
    loss_fn = pretraining_loss(objective)
    batch = batch_of(tok, n=8, seed=11)
    base = loss_fn(model, batch)[0]
    base.backward()
    p = masks["encoder.layer.1.intermediate.dense.weight"]
    grad, kept = p.scores.grad.reshape(-1), p.mask.reshape(-1).clone()
    inf = torch.tensor(float("inf"))
    picks = [
        torch.where(kept, inf, grad).argmin(),  # pruned weight whose return helps most
        torch.where(kept, -inf, grad).argmax(),  # pruned weight whose return hurts most
        torch.where(kept, grad, -inf).argmax(),  # kept weight whose removal helps most
        torch.where(kept, grad, inf).argmin(),  # kept weight whose removal hurts most
    ]
    for i in (int(x) for x in picks):
        predicted = float(grad[i]) * (-1.0 if kept[i] else 1.0)
        flipped = kept.clone()
        flipped[i] = ~flipped[i]
        set_mask(p, flipped.view_as(p.scores))
        actual = float(loss_fn(model, batch)[0].detach() - base.detach())
        set_mask(p, kept.view_as(p.scores))
        assert actual == pytest.approx(predicted, rel=0.25), (objective, i)


@pytest.mark.parametrize("decoder", ["masked", "dense"])
def test_tied_embedding_scores_get_both_gradients(tok, decoder):
    """With the masked decoder the tied word embeddings' scores collect the gradient of both uses (input
    embedding and MLM decoder); with TAMT's dense decoder, of the input side only."""
    model, masks, _ = tamt_model(0.5)
    batch = batch_of(tok)
    pretraining_loss("mlm", decoder=decoder)(model, batch)[0].backward()
    p = masks["embeddings.word_embeddings.weight"]
    ref = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    for param in ref.parameters():
        param.requires_grad_(False)
    emb = ref.bert.embeddings.word_embeddings.weight  # tied to the decoder
    w = emb.detach().clone()
    if decoder == "dense":  # untied: the decoder keeps the dense matrix, the mask goes to the input
        ref.cls.predictions.decoder.weight = nn.Parameter(w.clone(), requires_grad=False)
    with torch.no_grad():
        for k, q in masks.items():
            ref.bert.get_submodule(k.removesuffix(".weight")).weight.mul_(q.mask)
    emb.requires_grad_(True)
    mlm_loss(ref, batch)[0].backward()
    assert (ref.cls.predictions.decoder.weight is emb) == (decoder == "masked")
    torch.testing.assert_close(p.scores.grad, emb.grad * w, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- fused masked layers


def _score_grads(fused: bool, objective: str, tok, dtype=torch.float32) -> dict[str, torch.Tensor]:
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    config = TamtConfig(0.6, objective=objective)
    masks = attach_scores(model, initial_mask(model, config), fused=fused, dtype=dtype)
    head = head_parameters(model)
    for p in head.values():
        p.requires_grad_(True)
    model.eval()
    pretraining_loss(objective)(model, batch_of(tok))[0].backward()
    return {**{k: p.scores.grad for k, p in masks.items()}, **{k: p.grad for k, p in head.items()}}


@pytest.mark.parametrize("objective", ["mlm", "kd", "mlm+kd"])
@pytest.mark.parametrize("path", ["whole", "chunked", "row-blocks"])
def test_fused_layers_give_the_generic_paths_gradients(tok, objective, path, monkeypatch):
    if path == "chunked":  # every tiny matrix takes the chunked W ⊙ M path of large CPU matrices
        monkeypatch.setattr(Scratch, "CHUNK", 7)
    if path == "row-blocks":  # every matrix is multiplied in blocks of 3 rows (the last one shorter)
        monkeypatch.setattr(Scratch, "BLOCK", 3 * tiny_bert_config().hidden_size + 5)
    fused, generic = _score_grads(True, objective, tok), _score_grads(False, objective, tok)
    assert fused.keys() == generic.keys() and "embeddings.word_embeddings.weight" in fused
    for k, g in generic.items():
        if g is None:  # the KD objective does not reach the MLM head
            assert fused[k] is None, k
            continue
        # the input gradient summed over ~20 row blocks rounds in another order than one matmul
        tol = dict(rtol=1e-4, atol=1e-7) if path == "row-blocks" else dict(rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(fused[k], g, **tol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("path", ["whole", "row-blocks"])
def test_bf16_scores_get_the_float32_gradients_rounded(tok, path, monkeypatch):
    """`score_dtype="bfloat16"`: ∂L/∂S is computed in fp32 and stored in bf16, on every path."""
    if path == "row-blocks":
        monkeypatch.setattr(Scratch, "BLOCK", 3 * tiny_bert_config().hidden_size + 5)
    ref = _score_grads(True, "mlm+kd", tok)
    for fused in (True, False):
        grads = _score_grads(fused, "mlm+kd", tok, torch.bfloat16)
        for k, g in ref.items():
            if k.startswith("cls."):  # the head's own parameters stay fp32
                continue
            assert grads[k].dtype == torch.bfloat16, k
            # bf16 rounding: 2^-9 relative, and the tied embedding sums two rounded contributions
            scale = float(g.abs().max())
            torch.testing.assert_close(grads[k].float(), g, rtol=8e-3, atol=5e-3 * scale, msg=k)
            rel = (grads[k].float() - g).abs() / g.abs()
            assert float(rel[g != 0].median()) < 2.0**-8, k  # typically half that: rounding, no more


def test_bf16_scores_rethreshold_exactly_at_a_bf16_threshold():
    """A threshold is compared in the scores' dtype: a float32 midpoint between two neighbouring bf16
    scores would round onto one of them, and every later step would have to re-rank."""
    lo, hi = 0.01953125, 0.0196533203125  # neighbours in bf16
    p = ScoreMask(torch.tensor([0.03, 0.02, 0.0, 0.0]), 0.01, torch.bfloat16)
    th = Thresholder([p], 2)
    th()
    with torch.no_grad():  # the second kept score falls to lo, a pruned one rises to hi, just above it
        p.scores.copy_(torch.tensor([0.03, lo, hi, 0.0]))
    th()
    assert p.mask.tolist() == [True, False, True, False] and th.threshold == hi
    assert int(torch.ge(p.scores, th.threshold).sum()) == 2  # the next step's count is right as is
    n = 300 * 200  # and with many bf16 ties, the same masks as a fresh selection
    keep = torch.rand(300, 200, generator=torch.Generator().manual_seed(0)) < 0.3
    p = ScoreMask(torch.where(keep, 0.02, 0.0), 0.01, torch.bfloat16)
    th = Thresholder([p], n // 3)
    for step in range(6):
        _drift(p, step, 3e-4, frozen_rows=0.3)
        ref = top_ref([p.scores.detach().reshape(-1).clone()], n // 3)
        th()
        assert torch.equal(p.mask.reshape(-1), ref[0]), step


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_linear_in_row_blocks_computes_what_it_computes_whole(dtype, monkeypatch):
    """The tied decoder's path (rows in blocks) under autocast too: same output dtype and values,
    same input and score gradients, as one block."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(16, 50)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(50, 16, generator=g))
    lin_model = nn.Sequential(lin)
    masks = attach_scores(lin_model, Mask({"0.weight": torch.rand(50, 16, generator=g) > 0.5}))
    x = torch.randn(2, 7, 16, generator=g)

    def run(block: int):
        monkeypatch.setattr(Scratch, "BLOCK", block)
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            y = lin_model(xi)
        (y.float() ** 2).sum().backward()
        grad_s = masks["0.weight"].scores.grad
        masks["0.weight"].scores.grad = None
        return y, xi.grad, grad_s

    whole, blocks = run(1 << 22), run(7 * 16)  # 8 blocks, the last of 1 row
    assert blocks[0].dtype == whole[0].dtype == (torch.float32 if dtype == torch.float32 else dtype)
    for b, w in zip(blocks, whole, strict=True):  # bf16: a few units in the last place of the largest
        scale = 1e-4 if dtype == torch.float32 else 2e-2
        atol = scale * float(w.detach().abs().max())
        torch.testing.assert_close(b.float(), w.float(), rtol=scale, atol=atol)


def test_a_linear_given_no_rows_has_gradients_of_nothing():
    """A batch with no masked position sends the MLM decoder zero rows: its input gradient is empty
    and its score gradient zero (a sweep's TAMT-MLM search on a short corpus ended in a reshape
    error, 'the unspecified dimension size -1 can be any value')."""
    lin_model = nn.Sequential(nn.Linear(16, 50))
    masks = attach_scores(lin_model, Mask({"0.weight": torch.rand(50, 16) > 0.5}))
    x = torch.zeros(0, 16, requires_grad=True)
    hidden = x * 2  # a non-leaf input, as the encoder's output is
    lin_model(hidden).sum().backward()
    assert x.grad.shape == (0, 16) and not masks["0.weight"].scores.grad.any()


def _saved_masked_copies(model, masks, tok) -> int:
    """How many tensors equal to some W ⊙ M the graph holds between forward and backward."""
    encoder = model.bert
    wm = [encoder.get_submodule(k.removesuffix(".weight")).weight.detach() for k in masks]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = mlm_loss(model, batch_of(tok))[0]
    loss.backward()
    views = [v for w in wm for v in (w, w.T)]  # a linear saves its weight transposed
    return sum(1 for t in saved for v in views if t.shape == v.shape and torch.equal(t, v))


def test_fused_layers_save_no_masked_copy_of_a_weight(tok):
    """Between forward and backward the graph holds W (a reference) and M, never a copy of W ⊙ M."""
    model, masks, _ = tamt_model(0.6)
    assert _saved_masked_copies(model, masks, tok) == 0
    generic = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    gmasks = attach_scores(generic, initial_mask(generic, TamtConfig(0.6)), fused=False)
    assert _saved_masked_copies(generic, gmasks, tok) > 0  # what the generic path holds
    remove_mask(model)
    assert all("forward" not in m.__dict__ for m in model.modules())  # the fused forwards went too


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA's embedding backward adds with atomics")
def test_optimizer_in_backward_trains_the_same_masks(tok):
    """Stepping each score tensor inside the backward (memory flag) is the same AdamW, bit for bit
    (on a CPU: on a GPU two runs of the same step already differ in the last bits)."""
    from ticketlab.train.config import TrainConfig
    from ticketlab.train.loop import train

    data = [{"input_ids": batch_of(tok, n=1, seed=s)["input_ids"][0]} for s in range(8)]
    runs = []
    for in_backward in (False, True):
        model, masks, groups = tamt_model(0.5, objective="mlm+kd")
        thresholders = make_thresholders(masks, 0.5)
        config = TrainConfig(
            max_steps=4,
            batch_size=4,
            lr=1e-2,  # Adam moves a score by about lr per step: enough to cross α·φ - 0
            max_grad_norm=None,
            optimizer_in_backward=in_backward,
            progress=False,
            save_every=None,
        )
        train(
            model,
            groups,
            data,
            MLMCollator(tok, keep_clean=True),
            pretraining_loss("mlm+kd"),
            config,
            after_step=lambda s, t=thresholders: rethreshold(t),
        )
        runs.append((current_mask(model), {k: p.scores.detach().clone() for k, p in masks.items()}))
    (mask_a, scores_a), (mask_b, scores_b) = runs
    assert mask_a == mask_b and mask_a != current_mask(tamt_model(0.5)[0])  # the same, and it moved
    for k, s in scores_a.items():
        assert torch.equal(s, scores_b[k]), k
    with pytest.raises(ConfigError, match="max_grad_norm None"):
        TrainConfig(max_steps=1, optimizer_in_backward=True)  # clipping is on by default


def test_search_with_optimizer_in_backward(tiny_run, tmp_path, capsys):
    out = tmp_path / "tamt"
    flags = ("--sparsity", "0.6", "--steps", "3", "--lr", "3e-3", "--no-eval", "--optimizer-in-backward")
    assert main(search_args(tiny_run, out, *flags)) == 0
    settings = json.loads((out / "run" / "settings.json").read_text())
    assert settings["optimizer_in_backward"] is True and load_mask(out)[0].sparsity == pytest.approx(
        0.6, abs=1e-3
    )
    assert main(search_args(tiny_run, tmp_path / "ddp", *flags, "--grad-accum", "2")) == 2
    assert "grad_accum 1" in capsys.readouterr().err


def test_search_with_bf16_scores_stepped_in_the_backward(tiny_run, tmp_path):
    """The least-memory configuration: bf16 scores, optimizer inside the backward."""
    out = tmp_path / "tamt"
    flags = ("--sparsity", "0.6", "--steps", "4", "--lr", "2e-2", "--no-eval", "--optimizer-in-backward")
    assert main(search_args(tiny_run, out, *flags, "--score-dtype", "bfloat16")) == 0
    mask, config = load_mask(out)
    assert config.search["score_dtype"] == "bfloat16" and mask.sparsity == pytest.approx(0.6, abs=1e-3)
    assert json.loads((out / "run" / "settings.json").read_text())["score_dtype"] == "bfloat16"
    omp = omp_mask(make_model(BertForMaskedLM, tiny_bert_config(), seed=0), 0.6)
    assert mask != omp  # the scores moved


def test_a_search_too_short_to_move_any_score_across_the_gap_is_flagged():
    """The paper's lr over 200 steps moves a score ~0.005 in all: the Eq. 5 gap of 0.02 is never crossed."""
    from ticketlab.train.config import TrainConfig

    def warning(lr: float, steps: int, **kw) -> str | None:
        return frozen_mask_warning(TamtConfig(0.7, **kw), TrainConfig(max_steps=steps, batch_size=4, lr=lr))

    assert "the result will be the initial omp mask" in warning(5e-5, 200)
    assert "initial random mask" in warning(5e-5, 200, init="random")
    assert warning(5e-4, 200) is None and warning(5e-5, 17_000) is None
    assert warning(5e-5, 200, threshold=0.001) is None  # a smaller gap is crossed


def test_the_default_lr_moves_a_mask_on_a_short_search_and_is_table_1s_on_a_long_one():
    """Table 1's lr over 50 steps moves a score 0.0017, a twelfth of the Eq. 5 gap: the default raises it
    to the lr at which one score travels the whole gap, and keeps Table 1's where that already does."""
    from ticketlab.methods.tamt.config import score_travel
    from ticketlab.methods.tamt.search import paper_schedule_steps
    from ticketlab.train.config import TrainConfig

    for objective, paper in (("mlm", 5e-5), ("kd", 2e-5)):
        config = TamtConfig(0.7, objective=objective)
        for steps in (10, 50, 200):
            horizon = paper_schedule_steps(steps, 0.7)
            lr = config.default_lr(steps, horizon)
            assert lr > paper and lr * score_travel(steps, horizon) == pytest.approx(0.02, rel=0.03)
            train = TrainConfig(max_steps=steps, batch_size=4, lr=lr, schedule_steps=horizon)
            assert frozen_mask_warning(config, train) is None
        assert config.default_lr(17_000, 27_920) == paper and config.default_lr(2000, 3285) == paper


def test_a_short_search_at_the_default_lr_moves_the_mask_and_says_its_lr(tiny_run, tmp_path, caplog):
    args = ("--sparsity", "0.6", "--steps", "6", "--no-eval")
    assert main(search_args(tiny_run, tmp_path / "table1", *args, "--lr", "5e-5")) == 0
    caplog.clear()
    with caplog.at_level("WARNING", logger="ticketlab"):
        assert main(search_args(tiny_run, tmp_path / "default", *args)) == 0
    assert "initial omp mask" not in caplog.text
    settings = json.loads((tmp_path / "default" / "run" / "settings.json").read_text())
    assert settings["lr"] == TamtConfig(0.6).default_lr(6, settings["schedule_steps"]) > 5e-5
    initial = load_mask(tmp_path / "table1")[0]  # Table 1's lr: the OMP start, unchanged
    assert load_mask(tmp_path / "default")[0] != initial


def test_an_lr_given_too_small_to_move_a_mask_is_said_before_the_work_with_one_that_would(
    tiny_run, tmp_path, caplog, monkeypatch
):
    import ticketlab.methods.tamt.search as tamt

    def no_model(*a, **k):
        raise RuntimeError("loaded the model")

    monkeypatch.setattr(tamt, "load_mlm_model", no_model)
    out = tmp_path / "tamt"
    with caplog.at_level("WARNING", logger="ticketlab"), pytest.raises(RuntimeError, match="loaded"):
        main(search_args(tiny_run, out, "--sparsity", "0.7", "--steps", "50", "--lr", "5e-5"))
    assert "initial omp mask" in caplog.text and "Give --lr 0.00058 or more" in caplog.text


def test_a_checkpoint_with_stored_masks_is_refused_by_name(tmp_path):
    """Checkpoints from before the masks became thresholds hold `...mask` buffers: resuming from one
    (a search's end, or `train`) must say so rather than drop them and write a mask at φ."""
    model, masks, _ = tamt_model(0.7)
    key = "bert.encoder.layer.0.output.dense.parametrizations.weight.0.mask"
    ckpt = tmp_path / CHECKPOINT
    saved = {"step": 3, "model": {key: torch.ones(1, dtype=torch.bool)}}
    torch.save({**saved, "optimizer": {}, "scheduler": {}, "rng": {}, "result": {}}, ckpt)
    with pytest.raises(TicketlabError, match=f"{ckpt}: checkpoint does not match this model .*{key}"):
        restore_trained(model, ckpt, None)


def test_a_search_that_ends_worse_on_its_objective_than_its_initial_mask_says_so(
    tiny_run, tmp_path, monkeypatch, caplog
):
    """The initial mask is scored before the first step; a search whose final dev objective (KD loss
    for TAMT-KD) is worse gets one warning line, also in its mask config's record. The dev scores
    are scripted here (the initial 0.284, then 0.718: what a too-high lr gave on minilm-mlm)."""
    import ticketlab.methods.search_inputs as inputs

    scripted = iter([0.284, 0.5, 0.718])
    monkeypatch.setattr(inputs, "evaluate_blocks", lambda *a, **k: {"kd_loss": next(scripted)})
    caplog.set_level(logging.INFO, logger="ticketlab")
    out = tmp_path / "kd"
    argv = search_args(
        tiny_run, out, "--objective", "kd", "--sparsity", "0.5", "--steps", "4", "--eval-every", "2"
    )
    assert main(argv) == 0
    search = load_mask(out)[1].search
    assert (
        search["initial_eval"] == {"step": 0, "kd_loss": 0.284} and search["final_eval"]["kd_loss"] == 0.718
    )
    warning = search["objective_warning"]
    assert "dev kd_loss 0.718 at step 4 against 0.284 at step 0" in warning and "\n" not in warning
    assert [r.getMessage() for r in caplog.records if "ended worse" in r.getMessage()] == [warning]


def test_a_search_that_ends_better_than_its_initial_mask_records_both_and_says_nothing(
    tiny_run, tmp_path, caplog
):
    out = tmp_path / "mlm"
    caplog.set_level(logging.INFO, logger="ticketlab")
    argv = search_args(tiny_run, out, "--sparsity", "0.5", "--steps", "2", "--lr", "1e-9", "--threshold", "1")
    assert main(argv) == 0  # so small an lr that the mask cannot move: the same loss at both ends
    search = load_mask(out)[1].search
    assert search["initial_eval"]["step"] == 0 and search["initial_eval"]["mlm_loss"] > 0
    assert search["initial_eval"]["mlm_loss"] == pytest.approx(search["final_eval"]["mlm_loss"], rel=1e-6)
    assert "objective_warning" not in search and "ended worse" not in caplog.text


def test_tamt_prunes_int_of_s_n_as_its_masker_and_round_on_request():
    """TAMT's masker prunes int(s·n) weights of a matrix (`controlled_init` in its masking/maskers.py):
    a TAMT search's default (`count="floor"`), from its OMP start through every re-threshold; 70% of a
    32x32 matrix is 716 pruned (0.6992), where round(s·n) prunes 717 (0.7002, torch's pruning and
    `prune omp`). By hand on one linear layer."""
    from ticketlab.methods.ranking import pruned_count
    from ticketlab.methods.tamt.register import _tamt_settings

    assert (pruned_count(0.7, 1024, "floor"), pruned_count(0.7, 1024, "round")) == (716, 717)
    assert pruned_count(0.7, 1024) == 717  # the library's default: torch's pruning
    with pytest.raises(ConfigError, match="count"):
        pruned_count(0.7, 1024, "ceil")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32))
    weight = model[0].weight.detach().abs().reshape(-1)
    for count, pruned in (("floor", 716), ("round", 717)):
        config = TamtConfig(sparsity=0.7, objective="kd", targets=["0"], count=count)
        start = initial_mask(model, config)["0.weight"].reshape(-1)
        assert int((~start).sum()) == pruned
        assert set(torch.nonzero(~start).reshape(-1).tolist()) == set(weight.argsort()[:pruned].tolist())
        masks, _ = prepare_tamt(nn.Sequential(nn.Linear(32, 32)), config)
        rethreshold(make_thresholders(masks, 0.7, "local", None, count))
        assert int((~masks["0.weight"].mask).sum()) == pruned
    assert TamtConfig(sparsity=0.7).count == "floor"
    assert _tamt_settings(TamtConfig(sparsity=0.7))["count"] == "floor"
    assert _tamt_settings(TamtConfig(sparsity=0.7, count="round"))["count"] == "round"


def test_a_search_reads_the_text_it_needs_and_its_mask_says_how_much(tiny_run, tmp_path, caplog, capsys):
    """2 steps of 8 x 32 tokens draw 512 tokens: the search reads twice that plus the dev tail carved
    from it (`needed_tokens`), not the whole corpus, and the mask's record says so; 0 reads it all."""
    from ticketlab.data.corpus import needed_tokens

    args = ("--sparsity", "0.6", "--steps", "2", "--no-eval")
    with caplog.at_level("INFO", logger="ticketlab"):
        assert main(search_args(tiny_run, tmp_path / "capped", *args)) == 0
    read = load_mask(tmp_path / "capped")[1].search["corpus_read"]
    cap = needed_tokens(2, 8, 32, carved=0.05)
    assert read == {"tokens_read": cap, "max_tokens": cap, "capped": True}
    assert "read the first 1,078 tokens of the corpus" in caplog.text
    # the time of the training steps, named as such, beside the command's own wall time
    assert re.search(r"in 2 steps \(512 tokens, \d+ s of training; \d+ s in all\)", capsys.readouterr().out)
    assert main(search_args(tiny_run, tmp_path / "whole", *args, "--corpus-tokens", "0")) == 0
    whole = load_mask(tmp_path / "whole")[1].search["corpus_read"]
    assert not whole["capped"] and whole["tokens_read"] > cap and whole["max_tokens"] is None
