"""Masks on HF models: targets, the Mask type, parametrized application, squash, ties."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
)

from conftest import make_model, tiny_bert_config, tiny_roberta_config
from ticketlab.core.errors import ConfigError, MaskMismatchError
from ticketlab.masks import (
    Mask,
    apply_mask,
    current_mask,
    find_targets,
    is_masked,
    masks_disabled,
    remove_mask,
)
from ticketlab.methods import omp_mask, random_mask

LAYER_TARGETS = {
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
}


def ids(n: int = 2, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(5, 60, (n, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg", [tiny_bert_config, tiny_roberta_config])
def test_default_targets_are_embeddings_and_six_matrices_per_layer(cfg):
    config = cfg()
    cls = BertForMaskedLM if config.model_type == "bert" else RobertaForMaskedLM
    keys = set(find_targets(make_model(cls, config)))
    expected = {"embeddings.word_embeddings.weight"} | {
        f"encoder.layer.{i}.{t}.weight" for i in range(config.num_hidden_layers) for t in LAYER_TARGETS
    }
    assert keys == expected


def test_one_mask_fits_every_head():
    """The same keys under every head, the pooler's where the model has one (a default target, as in
    the reference code): a mask that prunes it fits a model built without one (*ForMaskedLM), checked against
    the hash of its other weights."""
    from ticketlab.masks import MaskConfig, check_fits

    config = tiny_bert_config()
    heads = [BertForSequenceClassification, BertModel]  # with a pooler; *ForQuestionAnswering has none
    mlm_keys = set(find_targets(make_model(BertForMaskedLM, config)))
    assert set(find_targets(make_model(BertForQuestionAnswering, config))) == mlm_keys
    key_sets = [set(find_targets(make_model(cls, config))) for cls in heads]
    assert all(k == mlm_keys | {"pooler.dense.weight"} for k in key_sets)
    roberta = make_model(RobertaForSequenceClassification, tiny_roberta_config())
    assert set(find_targets(roberta)) == mlm_keys  # same names (a BERT mask layout fits); no pooler
    base = make_model(BertModel, config)
    mask = omp_mask(base, 0.5)
    mc = MaskConfig.for_model(base, mask, method="omp", sparsity=0.5, base_model="m")
    mlm = make_model(BertForMaskedLM, config)
    mlm.bert.load_state_dict(base.state_dict(), strict=False)  # the base model's encoder, no pooler
    check_fits(mask, mc, mlm)
    apply_mask(mlm, mask)
    assert set(current_mask(mlm)) == mlm_keys
    assert (
        "encoder_hash"
        not in MaskConfig.for_model(
            mlm, current_mask(mlm), method="omp", sparsity=0.5, base_model="m"
        ).to_dict()
    )
    old = MaskConfig.from_dict({k: v for k, v in mc.to_dict().items() if k != "encoder_hash"})
    with pytest.raises(MaskMismatchError, match="prunes the pooler, which this model lacks"):
        check_fits(mask, old, mlm)
    with pytest.raises(MaskMismatchError, match="weights differ"):  # the check is made, not skipped
        check_fits(mask, mc, make_model(BertForMaskedLM, config, seed=1))


def test_targets_by_list_and_regex():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    assert set(find_targets(model, ["query", "key"])) == {
        f"encoder.layer.{i}.attention.self.{t}.weight" for i in range(2) for t in ("query", "key")
    }
    assert set(find_targets(model, r"encoder\.layer\.1\.intermediate\.dense")) == {
        "encoder.layer.1.intermediate.dense.weight"
    }
    with pytest.raises(ConfigError, match="match no"):
        find_targets(model, ["nonexistent"])
    with pytest.raises(ConfigError, match="invalid targets regex"):
        find_targets(model, "(")


def test_mask_counts_similarity_and_algebra():
    a = Mask({"w": torch.tensor([True, True, False, False]), "v": torch.tensor([[True, False]])})
    b = Mask({"w": torch.tensor([True, False, True, False]), "v": torch.tensor([[True, True]])})
    assert a.numel == 6 and a.kept == 3 and a.sparsity == pytest.approx(0.5)
    assert a.per_matrix() == {"w": 0.5, "v": 0.5}
    # kept sets: a = {w0, w1, v0}, b = {w0, w2, v0, v1}: |∩| = 2, |∪| = 5
    assert a.jaccard(b) == pytest.approx(2 / 5)
    assert a.distance(b) == pytest.approx(3 / 5)
    assert (a & b).kept == 2 and (a | b).kept == 5
    assert a == Mask({k: v.clone() for k, v in a.items()}) and a != b
    assert "overall" in a.summary() and "50.0%" in a.summary()
    with pytest.raises(MaskMismatchError):
        a.jaccard(Mask({"w": torch.ones(3, dtype=torch.bool)}))
    with pytest.raises(MaskMismatchError):  # set algebra needs the same targets
        a & Mask({"w": torch.ones(4, dtype=torch.bool)})


def test_applied_mask_zeroes_weights_and_keeps_module_types():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    mask = random_mask(model, 0.5, seed=1)
    apply_mask(model, mask)
    assert is_masked(model)
    query = model.bert.encoder.layer[0].attention.self.query
    assert isinstance(query, nn.Linear)
    key = "encoder.layer.0.attention.self.query.weight"
    assert torch.all(query.weight[~mask[key]] == 0)
    assert torch.all(query.weight[mask[key]] == query.parametrizations.weight.original[mask[key]])
    assert current_mask(model) == mask


def test_tied_decoder_shares_the_embedding_mask_and_stays_tied_after_squash():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    mask = omp_mask(model, 0.6)
    apply_mask(model, mask)
    emb = model.bert.embeddings.word_embeddings
    dec = model.cls.predictions.decoder
    assert torch.equal(dec.weight, emb.weight)  # the decoder sees the masked embedding
    remove_mask(model, squash=True)
    assert dec.weight is emb.weight  # still one Parameter
    assert torch.all(emb.weight[~mask["embeddings.word_embeddings.weight"]] == 0)


def test_remove_mask_restores_dense_weights_or_squashes():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    x = ids()
    with torch.no_grad():
        dense_out = model(input_ids=x).logits
    mask = omp_mask(model, 0.7)
    apply_mask(model, mask)
    with torch.no_grad():
        masked_out = model(input_ids=x).logits
        with masks_disabled(model):
            assert torch.equal(model(input_ids=x).logits, dense_out)  # KD teacher = dense model
        assert torch.equal(model(input_ids=x).logits, masked_out)  # switched back on afterwards
    assert not torch.allclose(masked_out, dense_out)
    remove_mask(model, squash=False)
    assert not is_masked(model)
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())
    apply_mask(model, mask)
    remove_mask(model, squash=True)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x).logits, masked_out, atol=1e-6)


def test_pruned_weights_stay_exactly_zero_through_training():
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    mask = omp_mask(model, 0.8)
    apply_mask(model, mask)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    for step in range(5):
        loss = model(input_ids=ids(4, seed=step), labels=torch.tensor([0, 1, 0, 1])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    modules = find_targets(model)
    for key, module in modules.items():
        assert torch.all(module.weight[~mask[key]] == 0), key
    before = {k: m.parametrizations.weight.original.detach().clone() for k, m in modules.items()}
    remove_mask(model, squash=True)
    for key, module in modules.items():
        assert torch.all(module.weight[~mask[key]] == 0), key
        assert torch.equal(module.weight[mask[key]], before[key][mask[key]])  # trained survivors kept


def test_applying_twice_or_to_wrong_shapes_fails_clearly():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    mask = omp_mask(model, 0.5)
    apply_mask(model, mask)
    with pytest.raises(MaskMismatchError, match="already masked"):
        apply_mask(model, mask)
    other = make_model(BertForMaskedLM, tiny_bert_config(hidden_size=48, intermediate_size=96))
    with pytest.raises(MaskMismatchError, match="shape"):
        apply_mask(other, mask)
    with pytest.raises(MaskMismatchError, match="do not exist"):
        apply_mask(other, Mask({"encoder.layer.9.output.dense.weight": torch.ones(32, 64, dtype=torch.bool)}))


@pytest.mark.parametrize("named", [False, True])
def test_taking_masks_off_a_deep_copy_leaves_the_original_masked(named):
    """A deep copy of a parametrized module shares torch's injected class; removing a parametrization
    deletes its property from that class. `remove_mask` / `delete_mask` on the copy must not break
    the original (`masks.compact` of a ticketed model copies it and squashes the copy)."""
    import copy

    from ticketlab.masks import add_mask, delete_mask

    model = make_model(BertForMaskedLM, tiny_bert_config())
    mask = omp_mask(model, 0.5)  # the word embeddings too: tied to the MLM decoder
    if named:
        add_mask(model, "a", mask)
    else:
        apply_mask(model, mask)
    with torch.no_grad():
        before = model(input_ids=ids()).logits
    dup = copy.deepcopy(model)
    if named:
        delete_mask(dup, "a")
    else:
        remove_mask(dup, squash=True)
    assert not is_masked(dup) and is_masked(model) and current_mask(model) == mask
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids()).logits, before)


def test_jaccard_of_masks_over_different_targets_counts_the_uncovered_as_kept():
    """Chen et al.'s masks leave the word embeddings dense: against a mask that prunes them, the
    embeddings count as all kept on Chen's side (a mask is what it leaves of the weights)."""
    layer = torch.tensor([True, False, True, False])
    emb = torch.tensor([True, False, False, False])
    chen = Mask({"layer.weight": layer})
    tamt = Mask({"layer.weight": layer, "emb.weight": emb})
    # kept: chen {l0, l2} + all 4 embeddings; tamt {l0, l2, e0}: 3 in common out of 6
    assert chen.jaccard(tamt) == tamt.jaccard(chen) == pytest.approx(3 / 6)
    with pytest.raises(MaskMismatchError, match="differ in shape"):
        chen.jaccard(Mask({"layer.weight": torch.ones(3, dtype=torch.bool)}))


def test_per_matrix_mean_jaccard_is_tamts_compare_mask():
    a = Mask({"big": torch.tensor([True] * 8 + [False] * 8), "small": torch.tensor([True, False])})
    b = Mask({"big": torch.tensor([True] * 8 + [False] * 8), "small": torch.tensor([False, True])})
    assert a.matrix_mean_jaccard(b) == pytest.approx((1.0 + 0.0) / 2)  # each matrix weighs the same
    assert a.jaccard(b) == pytest.approx(8 / 10)  # pooled: the big matrix weighs by its size
