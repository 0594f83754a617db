"""Super tickets: importance scores, winning / losing / random tickets, rewinding, selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.structured.importance import Importance, compute_importance, normalize_heads
from ticketlab.structured.tickets import LEVELS, check_level, keep_units, n_pruned, select

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
    per_example = (x[:, :4] * model.head.reshape(-1)).sum(-1) + (x[:, 4:] * model.ffn).sum(-1)
    return per_example.mean()


def collate_x(examples, seeds=None):
    return {"x": torch.stack(examples)}


def test_importance_hand_built_case():
    # batch 1 (examples 0, 1) pushes every gate by +1 or +2, batch 2 by -1 or -3
    data = [torch.tensor([1.0, 2, 0, 0, 1, 0])] * 2 + [torch.tensor([-1.0, -3, 0, 4, 0, 1])] * 2
    imp = compute_importance(model := LinearGates(), model, data, collate_x, linear_loss, batch_size=2)
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
    imp = compute_importance(model, model, data, collate_x, linear_loss, batch_size=1, normalize=False)
    assert imp.head[0, 0].item() == pytest.approx(1.0)  # (|+1| + |-1|) / 2
    # one batch of both: the batch-mean gradient is 0 (per-batch expectation, documented)
    imp2 = compute_importance(model, model, data, collate_x, linear_loss, batch_size=2, normalize=False)
    assert imp2.head[0, 0].item() == pytest.approx(0.0)
    assert model.head.grad is None and not model.head.requires_grad  # nothing left behind


def test_importance_weights_batches_by_size():
    data = [torch.tensor([1.0, 0, 0, 0, 0, 0])] * 2 + [torch.tensor([-4.0, 0, 0, 0, 0, 0])]
    model = LinearGates()
    imp = compute_importance(model, model, data, collate_x, linear_loss, batch_size=2, normalize=False)
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
    assert back.meta == {"task": "toy"} and back.granularity == "layer"


# --------------------------------------------------------------------------- ticket selection


def _importance(heads: torch.Tensor, ffn: torch.Tensor) -> Importance:
    return Importance(heads, heads, ffn=ffn, n_examples=1)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["winning", "losing", "random"])
def test_exact_counts(level, kind):
    gen = torch.Generator().manual_seed(0)
    imp = _importance(torch.rand(12, 12, generator=gen), torch.rand(12, generator=gen))
    ticket = select(imp, level, kind, seed=3)
    assert (~ticket.head).sum().item() == round(level * 144) == n_pruned(level, 144)
    assert (~ticket.ffn).sum().item() == round(level * 12) and ticket.neuron is None


def test_winning_prunes_lowest_losing_highest():
    scores = torch.tensor([[0.5, 0.1, 0.9], [0.3, 0.7, 0.2]])
    win = keep_units(scores, 0.5, "winning")
    lose = keep_units(scores, 0.5, "losing")
    assert win.tolist() == [[True, False, True], [False, True, False]]  # 0.1, 0.2, 0.3 pruned
    assert lose.tolist() == [[False, True, False], [True, False, True]]  # 0.9, 0.7, 0.5 pruned


def test_ties_keep_exact_counts():
    keep = keep_units(torch.zeros(4, 4), 0.3, "winning")
    assert (~keep).sum().item() == 5 and not keep.view(-1)[:5].any()  # index order among ties


def test_random_tickets_are_seeded():
    s = torch.rand(6, 4)
    a, b, c = (keep_units(s, 0.5, "random", seed) for seed in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c) and (~a).sum() == 12
    with pytest.raises(ConfigError, match="seed"):
        keep_units(s, 0.5, "random")


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
    from ticketlab.structured import attach_gates

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

    imp = compute_importance(model, gates, data, collate, classification_loss, batch_size=4, normalize=False)
    assert gates.head.grad is None and not gates.head.requires_grad

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
