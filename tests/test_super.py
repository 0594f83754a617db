"""Super tickets: importance scores, winning / losing / random tickets, rewinding, selection."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ticketlab.core.errors import ConfigError, MaskFileError, TicketlabError
from ticketlab.methods.super_tickets.importance import Importance, compute_importance, normalize_heads
from ticketlab.methods.super_tickets.levels import LEVELS
from ticketlab.methods.super_tickets.tickets import check_level, keep_units, n_pruned, select, unit_count

# --------------------------------------------------------------------------- importance, hand-built


class LinearGates(nn.Module):
    """A 'model' whose loss is linear in its gates: L(x) = Σ head ⊙ x[:4] + Σ ffn ⊙ x[4:], so
    ∂L(batch)/∂gate is the batch mean of the matching input column."""

    def __init__(self):
        super().__init__()
        self.head = torch.ones(2, 2)  # [L, H]
        self.ffn = torch.ones(2)  # [L]


def linear_loss(model: LinearGates, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    x = batch["x"]  # (B, 6)
    head, ffn = model.head, model.ffn
    if head.dim() == 4:  # gates per example and token, [L, B, 1, H] and [L, B, 1, 1]
        head, ffn = head[:, :, 0].permute(1, 0, 2).flatten(1), ffn[:, :, 0, 0].T
    else:
        head = head.reshape(-1)
    per_example = (x[:, :4] * head).sum(-1) + (x[:, 4:] * ffn).sum(-1)
    return per_example.mean()


def collate_x(examples, seeds=None):
    return {"x": torch.stack(examples)}


def test_importance_hand_built_case():
    # batch 1 (examples 0, 1) pushes every gate by +1 or +2, batch 2 by -1 or -3
    data = [torch.tensor([1.0, 2, 0, 0, 1, 0])] * 2 + [torch.tensor([-1.0, -3, 0, 4, 0, 1])] * 2
    model = LinearGates()
    imp = compute_importance(model, model, data, collate_x, linear_loss, batch_size=2, per="batch")
    # E|∂L/∂ξ| over the two batches (equal sizes): (|g1| + |g2|) / 2
    raw = torch.tensor([[1.0, 2.5], [0.0, 2.0]])
    assert torch.allclose(imp.head_raw, raw)
    assert torch.allclose(imp.ffn, torch.tensor([0.5, 0.5]))
    assert torch.allclose(imp.head, raw / raw.norm(dim=-1, keepdim=True))
    assert imp.granularity == "layer" and imp.n_examples == 4


def test_importance_uses_fresh_gradients_per_batch():
    """The reference code sums |accumulated grad|: batch 2 would count |g1 + g2| = 0, not |g2| = 1."""
    data = [torch.tensor([1.0, 0, 0, 0, 0, 0]), torch.tensor([-1.0, 0, 0, 0, 0, 0])]
    model = LinearGates()
    kw = {"normalize": False, "per": "batch"}
    imp = compute_importance(model, model, data, collate_x, linear_loss, batch_size=1, **kw)
    assert imp.head[0, 0].item() == pytest.approx(1.0)  # (|+1| + |-1|) / 2
    # one batch of both: the batch-mean gradient is 0 (per-batch expectation, documented)
    imp2 = compute_importance(model, model, data, collate_x, linear_loss, batch_size=2, **kw)
    assert imp2.head[0, 0].item() == pytest.approx(0.0)
    assert model.head.grad is None and not model.head.requires_grad  # nothing left behind


def test_importance_per_example_lets_no_sign_cancel_in_a_batch():
    """I = E_x |∂L(x)/∂ξ| (Liang et al.): the default takes |·| per example, whatever the batch."""
    data = [torch.tensor([1.0, 0, 0, 0, 0, 0]), torch.tensor([-1.0, 0, 0, 0, 2, 0])]
    model = LinearGates()
    for batch_size in (1, 2):
        imp = compute_importance(model, model, data, collate_x, linear_loss, batch_size=batch_size)
        assert imp.head_raw[0, 0].item() == pytest.approx(1.0) and imp.ffn[0].item() == pytest.approx(1.0)
        assert imp.meta["per"] == "example"
    assert model.head.shape == (2, 2) and model.head.grad is None and not model.head.requires_grad


def test_importance_weights_batches_by_size():
    data = [torch.tensor([1.0, 0, 0, 0, 0, 0])] * 2 + [torch.tensor([-4.0, 0, 0, 0, 0, 0])]
    model = LinearGates()
    imp = compute_importance(
        model, model, data, collate_x, linear_loss, batch_size=2, normalize=False, per="batch"
    )
    assert imp.head[0, 0].item() == pytest.approx((1.0 * 2 + 4.0 * 1) / 3)


def test_normalize_heads_per_layer():
    s = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    n = normalize_heads(s)
    assert torch.allclose(n[0], torch.tensor([0.6, 0.8])) and torch.equal(n[1], torch.zeros(2))


def test_importance_save_load(tmp_path):
    model = LinearGates()
    data = [torch.arange(6.0)]
    imp = compute_importance(model, model, data, collate_x, linear_loss, meta={"task": "toy"})
    back = Importance.load(imp.save(tmp_path / "imp"))
    assert torch.equal(back.head, imp.head) and torch.equal(back.ffn, imp.ffn)
    assert back.meta == {"task": "toy", "per": "example"} and back.granularity == "layer"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t, m: t.update(head_raw=torch.tensor([[1.0, math.nan]])),
            "head_raw: importance scores are finite",
        ),
        (lambda t, m: t.update(ffn=torch.tensor([-1.0])), "ffn: importance scores are finite magnitudes"),
        (lambda t, m: t.update(ffn=torch.tensor([1, 2])), "not a ticketlab importance file"),  # 2 layers?
        (lambda t, m: t.update(head=torch.tensor([[1, 2]])), "head: importance scores are finite"),  # ints
        (lambda t, m: m.clear() or m.update(n_examples="x"), "importance.json: not a ticketlab importance"),
    ],
)
def test_importance_files_hold_finite_magnitudes(tmp_path, edit, message):
    """What `load` reads is refused in one line naming the file unless `save` could have written it."""
    heads = torch.tensor([[1.0, 3.0]])
    saved = Importance(heads, heads, ffn=torch.tensor([2.0]), n_examples=4).save(tmp_path / "imp")
    tensors, meta = dict(load_file(saved / "importance.safetensors")), {"n_examples": 4}
    edit(tensors, meta)
    save_file(tensors, saved / "importance.safetensors")
    (saved / "importance.json").write_text(json.dumps(meta))
    with pytest.raises(MaskFileError, match=message):
        Importance.load(saved)
    (saved / "importance.json").write_text("[1, 2]")
    with pytest.raises(MaskFileError, match="importance.json: not a ticketlab importance file"):
        Importance.load(saved)


# --------------------------------------------------------------------------- ticket selection


def _importance(heads: torch.Tensor, ffn: torch.Tensor) -> Importance:
    return Importance(heads, heads, ffn=ffn, n_examples=1)


# Liang et al.'s scripts on BERT-base (12 layers x 12 heads): mask_{heads}_heads / mask_{k}_ffn at 0.1 ... 0.8
LIANG_BERT_BASE = [(14, 1), (28, 2), (43, 3), (57, 4), (72, 5), (86, 6), (100, 7), (115, 8)]


@pytest.mark.parametrize("kind", ["winning", "losing", "random"])
def test_liang_counts_on_bert_base_and_no_layer_loses_all_heads(kind):
    gen = torch.Generator().manual_seed(0)
    # the least important head of every layer in layer 0: a ranking alone would empty layer 0 first
    heads = torch.rand(12, 12, generator=gen) + torch.arange(12).repeat_interleave(12).view(12, 12)
    imp = _importance(heads, torch.rand(12, generator=gen))
    got = []
    for level in LEVELS:
        ticket = select(imp, level, kind, seed=3)  # the default: Liang's counts
        got.append((int((~ticket.head).sum()), int((~ticket.ffn).sum())))
        assert ticket.head.any(dim=1).all(), (level, kind)  # every layer keeps a head
    assert got == LIANG_BERT_BASE
    # ticketlab's first counts, kept as units="round"
    old = [
        (int((~t.head).sum()), int((~t.ffn).sum()))
        for t in (select(imp, v, kind, 3, "round") for v in LEVELS)
    ]
    assert old == [(round(v * 144), round(v * 12)) for v in LEVELS] != LIANG_BERT_BASE


def test_liang_guard_protects_each_layers_last_head_in_the_ranking():
    scores = torch.tensor([[0.1, 0.2], [0.3, 0.9]])
    keep = keep_units(scores, 0.8, "winning")  # int(3.2) = 3 capped at 4 - 2 layers = 2
    assert keep.tolist() == [[False, True], [False, True]]  # 0.2 protects layer 0, 0.9 layer 1
    lose = keep_units(scores, 0.8, "losing")
    assert lose.tolist() == [[True, False], [True, False]]  # the lowest of each layer is kept
    assert unit_count(0.8, "head", (2, 2), "round") == 3
    assert unit_count(0.9, "head", (10,)) == 9  # a flat tensor of heads: one layer, one head kept
    assert keep_units(scores, 0.8, "winning", units="round").sum() == 1  # no guard


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["winning", "losing", "random"])
def test_exact_counts_round(level, kind):
    gen = torch.Generator().manual_seed(0)
    imp = _importance(torch.rand(12, 12, generator=gen), torch.rand(12, generator=gen))
    ticket = select(imp, level, kind, seed=3, units="round")
    assert (~ticket.head).sum().item() == round(level * 144) == n_pruned(level, 144)
    assert (~ticket.ffn).sum().item() == round(level * 12) and ticket.neuron is None


def test_winning_prunes_lowest_losing_highest():
    scores = torch.tensor([[0.5, 0.1, 0.9], [0.3, 0.7, 0.2]])
    win = keep_units(scores, 0.5, "winning")
    lose = keep_units(scores, 0.5, "losing")
    assert win.tolist() == [[True, False, True], [False, True, False]]  # 0.1, 0.2, 0.3 pruned
    assert lose.tolist() == [[False, True, False], [True, False, True]]  # 0.9, 0.7, 0.5 pruned


def test_ties_keep_exact_counts():
    keep = keep_units(torch.zeros(4, 4), 0.3, "winning", units="round")
    assert (~keep).sum().item() == 5 and not keep.view(-1)[:5].any()  # index order among ties
    keep = keep_units(torch.zeros(4, 4), 0.3, "winning")  # int(4.8) = 4 in index order, but layer 0
    assert (~keep).view(-1).nonzero().view(-1).tolist() == [0, 1, 2, 4]  # keeps its last head (3)


def test_random_tickets_are_seeded():
    s = torch.rand(6, 4)
    a, b, c = (keep_units(s, 0.5, "random", seed) for seed in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c) and (~a).sum() == 12 and a.any(dim=1).all()
    with pytest.raises(ConfigError, match="seed"):
        keep_units(s, 0.5, "random")


def test_random_tickets_draw_exact_counts_by_default_or_with_replacement_as_the_reference():
    """The paper's random tickets are "of the same size" as the winning ones: by default a random
    ticket prunes the winning ticket's 100 of BERT-base's 144 heads (0.7), one kept in every layer.
    Liang et al.'s gen_random_head / gen_random_ffn draw that count with replacement and no guard
    (`draw="replacement"`): the heads pruned are the distinct draws (by hand), 144·(1 - (143/144)^100)
    = 72.3 on average, and 12·(1 - (11/12)^7) = 5.5 of the 7 FFN sub-layers."""

    heads = torch.zeros(12, 12)
    exact = keep_units(heads, 0.7, "random", 5)
    assert int((~exact).sum()) == int((~keep_units(torch.rand(12, 12), 0.7, "winning")).sum()) == 100
    assert exact.any(dim=1).all()
    drawn = keep_units(heads, 0.7, "random", 5, draw="replacement")
    by_hand = torch.randint(144, (100,), generator=torch.Generator().manual_seed(5))
    assert set((~drawn).view(-1).nonzero().view(-1).tolist()) == set(by_hand.tolist())
    n_heads = [int((~keep_units(heads, 0.7, "random", k, draw="replacement")).sum()) for k in range(300)]
    assert sum(n_heads) / 300 == pytest.approx(144 * (1 - (143 / 144) ** 100), abs=1.0)
    ffn = torch.zeros(12)
    n_ffn = [
        int((~keep_units(ffn, 0.7, "random", k, unit="ffn", draw="replacement")).sum()) for k in range(300)
    ]
    assert int((~keep_units(ffn, 0.7, "random", 0, unit="ffn")).sum()) == 7
    assert sum(n_ffn) / 300 == pytest.approx(12 * (1 - (11 / 12) ** 7), abs=0.25)
    with pytest.raises(ConfigError, match="draw"):
        keep_units(heads, 0.7, "random", 5, draw="twice")


@pytest.mark.parametrize("level", [0, 0.0, 1, 1.0, -0.1, 1.5, True, "0.3"])
def test_level_outside_open_interval_is_one_clear_error(level):
    with pytest.raises(ConfigError, match=r"level must be a fraction in \(0, 1\)"):
        check_level(level)


def test_unknown_kind():
    with pytest.raises(ConfigError, match="winning, random, losing"):
        keep_units(torch.rand(3), 0.5, "best")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- importance on a gated BERT


def test_importance_on_gated_bert_matches_finite_differences():
    from transformers import BertForSequenceClassification

    from conftest import make_model, tiny_bert_config
    from ticketlab.masks import attach_gates

    def classification_loss(model, batch):  # in float64 throughout (finetune's casts logits to float32)
        return torch.nn.functional.cross_entropy(model(input_ids=batch["input_ids"]).logits, batch["labels"])

    config = tiny_bert_config(num_labels=2, initializer_range=0.3)  # outputs that depend on every unit
    model = make_model(BertForSequenceClassification, config).double()
    gates = attach_gates(model, granularity="layer")
    gen = torch.Generator().manual_seed(0)
    data = [
        {"input_ids": torch.randint(5, 40, (7,), generator=gen), "labels": torch.tensor(i % 2)}
        for i in range(6)
    ]

    def collate(examples, seeds=None):
        return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}

    def scores(per: str) -> Importance:
        return compute_importance(
            model, gates, data, collate, classification_loss, batch_size=4, normalize=False, per=per
        )

    imp, by_example, by_token = scores("batch"), scores("example"), scores("token")
    assert gates.head.grad is None and not gates.head.requires_grad and gates.head.shape == (2, 2)

    def batch_loss(batch_idx: list[int]) -> float:
        with torch.no_grad():
            return classification_loss(model, collate([data[i] for i in batch_idx])).item()

    def fd(
        tensor: torch.Tensor, index: tuple, batch_idx: list[int], eps: float = 2**-12
    ) -> float:  # exact in the float32 gates
        tensor[index] = 1 + eps
        up = batch_loss(batch_idx)
        tensor[index] = 1 - eps
        down = batch_loss(batch_idx)
        tensor[index] = 1.0
        return (up - down) / (2 * eps)

    batches = [[0, 1, 2, 3], [4, 5]]
    for tensor, score, index in ((gates.head, imp.head, (1, 0)), (gates.ffn, imp.ffn, (0,))):
        want = sum(abs(fd(tensor, index, b)) * len(b) for b in batches) / 6
        assert score[index].item() == pytest.approx(want, rel=1e-4)
    # per example: the mean of |∂L(x)/∂ξ| of each example alone, by brute force
    for name, index in (("head", (1, 0)), ("ffn", (0,))):
        want = sum(abs(fd(getattr(gates, name), index, [i])) for i in range(6)) / 6
        assert getattr(by_example, name)[index].item() == pytest.approx(want, rel=1e-4)
    # per token: Σ_t |∂L(x)/∂ξ_t| with one gate per token ([L, 1, T, H], as the hooks broadcast)
    want = 0.0
    for i in range(6):
        for t in range(7):
            token_gates = torch.ones(2, 1, 7, 2)
            gates.head = token_gates
            want += abs(fd(token_gates, (1, 0, t, 0), [i]))
    gates.head = torch.ones(2, 2)
    assert by_token.head_raw[1, 0].item() == pytest.approx(want / 6, rel=1e-4)
    assert (by_token.head_raw >= by_example.head_raw - 1e-9).all()
    assert not torch.allclose(by_example.head_raw, imp.head_raw, rtol=1e-3)  # batch-mean is another score


# --------------------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def sst2_root(tmp_path_factory):
    from test_finetune import sentiment_rows

    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    for split, n, seed in (("train", 48, 0), ("dev", 40, 1)):
        rows = "\n".join(sentiment_rows(n, seed))
        (root / "SST-2" / f"{split}.tsv").write_text(f"sentence\tlabel\n{rows}\n")
    return root


def _super_config(tiny_bert_dir, root, **kw):
    from ticketlab.studies.supertickets import SuperConfig
    from ticketlab.verbs.finetune import FinetuneConfig

    ft = FinetuneConfig(
        model=str(tiny_bert_dir),
        task="sst2",
        data_dir=str(root),
        max_steps=4,
        batch_size=8,
        eval_every=2,
        lr=1e-3,
        progress=False,
    )
    return SuperConfig(ft, **{"seeds": [1, 2], "levels": [0.6], **kw})


def test_a_dev_set_too_small_to_split_is_refused_before_the_study_folder(tiny_bert_dir, sst2_root, tmp_path):
    """select_fraction 0.05 of 40 dev examples leaves 2 to select on: refused before the first
    fine-tuning, and before the study's folder and store are made (not as the full model's failure)."""
    from ticketlab.core.errors import ConfigError
    from ticketlab.studies.supertickets import run_super

    with pytest.raises(
        ConfigError, match="SST-2/dev.tsv: select_fraction 0.05 of a dev set of 40 examples leaves 2"
    ):
        run_super(_super_config(tiny_bert_dir, sst2_root, select_fraction=0.05), tmp_path / "s")
    config = _super_config(tiny_bert_dir, sst2_root, select_fraction=0.5)
    config.finetune = config.finetune.replace(eval_samples=6)  # the first 6 are scored: 3 and 3
    with pytest.raises(ConfigError, match="select_fraction 0.5 of a dev set of 6 examples leaves 3"):
        run_super(config, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_default_levels_fit_a_two_layer_model(tiny_bert_dir, sst2_root, caplog):
    """The default levels on a model too small for some of them (two layers: 4 heads, 2 FFN
    sub-layers): those that prune no unit, or what a lower one prunes, are dropped in one note rather
    than refused ("level 0.1 prunes 0 of the model's 2 FFN sub-layers")."""
    from ticketlab.studies.supertickets import study_levels

    default = _super_config(tiny_bert_dir, sst2_root, levels=None)
    with caplog.at_level("WARNING"):
        assert study_levels(default) == [0.6]  # 2 of 4 heads (one per layer kept), 1 of 2 FFN
    (note,) = [r.getMessage() for r in caplog.records]
    assert note == (
        "default levels dropped for this model (0.1, 0.2: each prunes 0 of the model's 4 attention "
        "heads; 0.3, 0.4, 0.5: each prunes 0 of the model's 2 FFN sub-layers; 0.7, 0.8: each prunes what "
        "0.6 prunes); running 0.6"
    )
    caplog.clear()
    rounded = _super_config(tiny_bert_dir, sst2_root, levels=None, units="round")
    assert study_levels(rounded) == [0.3, 0.4, 0.7]  # round(p · 4) heads, round(p · 2) FFN
    with pytest.raises(
        ConfigError, match=r"level 0.1 prunes 0 of the model's 4 attention heads.*\[0.6, 0.999\]"
    ):
        study_levels(_super_config(tiny_bert_dir, sst2_root, levels=[0.1, 0.6]))  # given: refused


def test_a_super_study_killed_after_scoring_its_full_model_resumes_without_a_word(
    tiny_bert_dir, sst2_root, tmp_path, monkeypatch, caplog
):
    """Killed after the full model's weights were scored and removed (before its row was recorded):
    the rerun finds the fine-tuning done and its scores saved, and says nothing of weights not kept."""
    import logging

    from ticketlab.studies import supertickets
    from ticketlab.studies.supertickets import run_super

    real = supertickets.remove_ours

    def killed(path):
        real(path)
        raise KeyboardInterrupt

    config = _super_config(tiny_bert_dir, sst2_root, seeds=[1], kinds=["winning"])
    monkeypatch.setattr(supertickets, "remove_ours", killed)
    with pytest.raises(KeyboardInterrupt):
        run_super(config, tmp_path / "study")
    monkeypatch.setattr(supertickets, "remove_ours", real)
    with caplog.at_level(logging.WARNING, logger="ticketlab"):
        result = run_super(config, tmp_path / "study")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert result.full["n"] == 1 and not list((tmp_path / "study").glob("runs/*/model"))


def test_super_study_end_to_end_and_rewinding(tiny_bert_dir, sst2_root, tmp_path, monkeypatch, caplog):
    import importlib
    import logging

    from ticketlab.core.outputs import claim_dir
    from ticketlab.masks.unit_io import load_unit_mask
    from ticketlab.models.load import load_model
    from ticketlab.studies.report import write_report
    from ticketlab.studies.report.results import load_results
    from ticketlab.studies.store import Store
    from ticketlab.studies.supertickets import run_super

    ft = importlib.import_module("ticketlab.verbs.finetune")  # the module (the package exports a function)
    starts = []  # the weights every fine-tuning starts from
    real_train = ft.train

    def spy(model, *a, **kw):  # the effective weights (W ⊙ M under a mask) by module
        modules = [
            (n, m) for n, m in model.named_modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
        ]
        weights = {n: m.weight.detach().clone() for n, m in modules if "parametrizations" not in n}
        starts.append(weights)
        return real_train(model, *a, **kw)

    monkeypatch.setattr(ft, "train", spy)
    out = tmp_path / "study"
    claim_dir(out, kind="sweep")
    with Store(out) as store:  # a sweep's store: the study joins it, the sweep's spec and plan stay
        store.set_meta("spec", {"name": "my-sweep"})
        store.set_meta("plan", [])
    with caplog.at_level(logging.INFO, logger="ticketlab"):
        result = run_super(_super_config(tiny_bert_dir, sst2_root), out)
    # a line as each row starts and one as it finishes, as a sweep says them
    lines = [r.getMessage() for r in caplog.records if r.name == "ticketlab.studies.super_rows.progress"]
    row_lines = [line for line in lines if line.startswith("[")]
    assert len(row_lines) == 14 and row_lines[0].startswith("[1/14] fine-tuning ft_sst2_full_ft")
    assert row_lines[1].startswith("[2/14] ticket st-winning_l60_seed")
    assert row_lines[-1].startswith("[14/14] ")
    done = [line for line in lines if line.startswith("    done in ")]
    assert len(done) == 14 and "(accuracy " in done[0] and "(sparsity " in done[1]

    # per seed: the full model, then winning, random and losing at 60%
    assert len(starts) == 8
    with Store(out) as store:
        rows = store.runs()
    assert sorted(r.kind for r in rows).count("search") == 6 and all(r.status == "done" for r in rows)
    assert {r.config["method"] for r in rows} == {"full", "st-winning", "st-random", "st-losing"}
    for r in rows:
        if r.kind == "finetune":
            assert r.metrics["n_dev"] == {"dev": 36, "select_dev": 4}  # 10% of 40 selects
    assert [p.level for p in result.picks] == [0.6, 0.6] and result.super["n"] == 2
    assert result.full["n"] == 2 and set(result.tickets) == {"st-winning", "st-random", "st-losing"}
    full_dir = next(r for r in rows if r.config["method"] == "full").metrics["importance_dir"]
    assert (out / full_dir / "importance.safetensors").is_file()
    assert Importance.load(out / full_dir).meta["per"] == "example"  # the paper's E_x |dL/dξ|
    assert all(r.config["importance"] == "example" for r in rows if r.config["method"] == "full")
    assert not list(out.glob("runs/*/model"))  # the full models' weights went after scoring

    # rewinding: a ticket starts where the full model of its seed started, i.e. from the pre-trained
    # weights (pruned ones zero) and the same seeded task head
    pretrained = dict(load_model(tiny_bert_dir, head="base").named_modules())
    full_start, rewind_start = starts[0], starts[1]
    units, _ = load_unit_mask(next(out.glob("masks/st-winning_l60_seed1_*")))
    assert (~units.head).sum() == 2 and (~units.ffn).sum() == 1
    zeros = 0
    for name, w in rewind_start.items():
        kept = w != 0
        zeros += int((~kept).sum())
        assert torch.equal(w[kept], full_start[name][kept]), name
        base = pretrained.get(name.removeprefix("bert."))
        if name.startswith("bert.") and "pooler" not in name:  # the MLM checkpoint has no pooler
            assert torch.equal(full_start[name], base.weight), name
    assert zeros > 0 and "classifier" in rewind_start

    # resumable: a second call runs nothing again
    starts.clear()
    again = run_super(_super_config(tiny_bert_dir, sst2_root), out)
    assert starts == [] and again.super == result.super

    res = load_results(out)
    assert res.spec == {"name": "my-sweep"} and len(res.scores) == 8
    report = write_report(out)
    assert "fig4_phase_transition.png" in report.figures, report.skipped
    text = report.path.read_text()
    assert "## Super tickets" in text
    # a study of structured tickets has no OMP mask and no claim of TAMT's: the report asks for neither
    assert "add `omp`" not in text and "TAMT ≥ IMP > OMP" not in text
    assert "its tickets are heads and FFN units" in text


def test_stored_importance_of_another_kind_is_refused(tiny_bert_dir, sst2_root, tmp_path):
    """Scores of another kind (batch means) are never reused as per-example scores, nor are scores
    that do not say what they are means over."""
    from ticketlab.studies.super_rows import importance_key
    from ticketlab.studies.supertickets import _importance

    scores = (torch.ones(2, 2), torch.ones(2, 2), torch.ones(2), None, 4)
    Importance(*scores, {"task": "sst2"}).save(tmp_path / "unsaid")
    unsaid = "holds importance scores that do not say per what, not per-example"
    with pytest.raises(TicketlabError, match=unsaid):
        _importance(_super_config(tiny_bert_dir, sst2_root), None, 1, tmp_path / "unsaid")
    Importance(*scores, {"task": "sst2", "per": "batch"}).save(tmp_path / "imp")
    with pytest.raises(TicketlabError, match="holds per-batch importance scores, not per-example"):
        _importance(_super_config(tiny_bert_dir, sst2_root), None, 1, tmp_path / "imp")
    batch = _super_config(tiny_bert_dir, sst2_root, importance="batch")
    assert _importance(batch, None, 1, tmp_path / "imp").n_examples == 4
    assert importance_key(batch) == {"importance": "batch"}
    with pytest.raises(ConfigError, match="importance must be one of example, token, batch"):
        _super_config(tiny_bert_dir, sst2_root, importance="mean")


def test_super_config_errors(tiny_bert_dir, sst2_root):
    with pytest.raises(ConfigError, match=r"level must be a fraction in \(0, 1\)"):
        _super_config(tiny_bert_dir, sst2_root, levels=[0.5, 1.0])
    with pytest.raises(ConfigError, match="winning"):
        _super_config(tiny_bert_dir, sst2_root, kinds=["random"])
    with pytest.raises(ConfigError, match="seeds"):
        _super_config(tiny_bert_dir, sst2_root, seeds=[1, 1])


def test_pick_super_per_seed_on_selection_scores():
    from ticketlab.studies.super_rows import pick_super

    rows = [
        (1, 0.1, 70.0, 60.0, "a"),
        (1, 0.3, 80.0, 50.0, "b"),
        (1, 0.5, 80.0, 90.0, "c"),
        (2, 0.2, 10.0, 5.0, "d"),
    ]
    picks = pick_super(rows)
    assert (picks[1].level, picks[1].score, picks[1].run_id) == (0.3, 50.0, "b")  # ties: the lower level
    assert picks[2].level == 0.2


def test_neuron_granularity_tickets():
    from transformers import BertForSequenceClassification

    from conftest import make_model, tiny_bert_config
    from ticketlab.masks import attach_gates
    from ticketlab.tasks.objective import classification_loss

    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    gates = attach_gates(model, granularity="neuron")
    data = [{"input_ids": torch.arange(5, 12), "labels": torch.tensor(i % 2)} for i in range(4)]

    def collate(examples, seeds=None):
        return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}

    imp = compute_importance(model, gates, data, collate, classification_loss, batch_size=2)
    assert imp.ffn is None and imp.neuron.shape == (2, 64) and imp.granularity == "neuron"
    ticket = select(imp, 0.3, "winning")
    assert ticket.granularity == "neuron" and (~ticket.neuron).sum() == int(0.3 * 128)
    assert imp.neuron[ticket.neuron].min() >= imp.neuron[~ticket.neuron].max()  # the lowest went


def test_sweep_method_st_random_and_its_phase_transition(tiny_bert_dir, tmp_path):
    import sweep_fakes as fakes
    from ticketlab.masks.unit_io import load_unit_mask
    from ticketlab.studies import run_sweep
    from ticketlab.studies.report import write_report

    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        methods=["full", "st-random"],
        sparsities=[0.25, 0.5],
        search_curve=None,
        data_curve=None,
        pretrain_eval=None,
    )
    result = run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None)
    assert result.ok
    tickets = sorted((tmp_path / "sweep" / "masks").iterdir())
    assert len(tickets) == 4  # 2 levels x 2 search seeds
    for d in tickets:
        units, config = load_unit_mask(d)
        # Liang's counts (the default): int(p · 4) heads, at most one per layer; int(10p · 2 / 12) FFN
        assert (~units.head).sum() == {0.25: 1, 0.5: 2}[config.sparsity] and units.head.any(dim=1).all()
        assert (~units.ffn).sum() == 0 and config.search["units"] == "liang"
    report = write_report(tmp_path / "sweep")
    assert "fig4_phase_transition.png" in report.figures
    assert "](figures/fig4_phase_transition.png)" in report.path.read_text()


def test_record_study_extends_the_same_protocol_and_replaces_another(tmp_path):
    from ticketlab.studies.store import Store
    from ticketlab.studies.supertickets import record_study

    with Store(tmp_path) as store:
        record_study(store, "super-mrpc", ["a", "b"], {"name": "super-mrpc"}, {"lr": 1})
        record_study(store, "super-mrpc", ["b", "c"], {"name": "other"}, {"lr": 1})  # more levels
        record_study(store, "super-sst2", ["x"], {}, {"lr": 1})
        assert store.get_meta("studies") == {"super-mrpc": ["a", "b", "c"], "super-sst2": ["x"]}
        record_study(store, "super-mrpc", ["d"], {}, {"lr": 2})  # another protocol
        assert store.get_meta("studies")["super-mrpc"] == ["d"]
        assert store.get_meta("spec") == {"name": "super-mrpc"}  # the first spec stays


def test_importance_only_scores_heads_and_units_and_the_full_study_goes_on_from_it(
    tiny_bert_dir, sst2_root, tmp_path, capsys, monkeypatch
):
    """`super --importance-only`: each seed's full model fine-tuned and scored, no ticket; the same
    command without the flag reuses both (one fine-tuning per ticket, none for the full model)."""
    import importlib

    from ticketlab.cli import main

    ft = importlib.import_module("ticketlab.verbs.finetune")
    runs, real_train = [], ft.train
    monkeypatch.setattr(ft, "train", lambda *a, **kw: runs.append(1) or real_train(*a, **kw))
    out = tmp_path / "study"
    argv = ["super", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir", str(sst2_root)]
    argv += ["--max-steps", "4", "--batch-size", "8", "--lr", "1e-3", "--no-progress", "--seeds", "1"]
    argv += ["--levels", "0.6", "--kinds", "winning", "--out", str(out)]
    assert main([*argv, "--importance-only"]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said[0] == "[1/1] fine-tuning ft_sst2_full_ft1 ..." and said[1].startswith("    done in ")
    printed = said[2:]  # after the progress lines, as it goes: the result
    assert (
        len(printed) == 1
        and printed[0].startswith(f"seed 1: {out}/runs/")
        and "least important heads: L" in printed[0]
    )
    where = printed[0].split(": ", 1)[1].split(" (")[0]
    assert Importance.load(where).head.shape == (2, 2) and not list(out.glob("masks/*")) and len(runs) == 1
    assert main(argv) == 0
    assert len(runs) == 2 and len(list(out.glob("masks/*"))) == 1  # the ticket's fine-tuning only
