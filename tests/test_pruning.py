"""One-shot pruning: exact sparsity, local vs global ranking, seeded random masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertForMaskedLM, RobertaForMaskedLM

from conftest import make_model, tiny_bert_config, tiny_roberta_config
from ticketlab.core.errors import ConfigError
from ticketlab.methods import keep_top, omp_mask, random_mask


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.7, 0.9, 0.99])
@pytest.mark.parametrize("ranking", ["local", "global"])
def test_sparsity_is_exact(sparsity, ranking):
    model = make_model(BertForMaskedLM, tiny_bert_config())
    for mask in (omp_mask(model, sparsity, ranking=ranking), random_mask(model, sparsity, ranking=ranking)):
        if ranking == "local":
            for key, t in mask.items():
                assert int((~t).sum()) == round(sparsity * t.numel()), key
        else:
            assert mask.numel - mask.kept == round(sparsity * mask.numel)


def test_local_and_global_ranking_on_hand_made_weights():
    scores = {"big": torch.tensor([[4.0, 5.0], [6.0, 7.0]]), "small": torch.tensor([[0.1, 0.4], [0.2, 0.3]])}
    local = keep_top(scores, 0.5, "local")
    assert local["big"].tolist() == [[False, False], [True, True]]
    assert local["small"].tolist() == [[False, True], [False, True]]
    glob = keep_top(scores, 0.5, "global")  # the 4 smallest of all 8 are all in "small"
    assert glob["big"].all() and not glob["small"].any()
    glob = keep_top(scores, 0.25, "global")
    assert glob["big"].all() and glob["small"].tolist() == [[False, True], [False, True]]


def test_ties_never_change_the_count():
    scores = {"w": torch.tensor([0.02, 0.0, 0.02, 0.0, 0.02, 0.02])}  # TAMT's two-valued init
    mask = keep_top(scores, 1 / 3, "local")
    assert mask["w"].tolist() == [True, False, True, False, True, True]


def test_omp_keeps_the_largest_magnitudes_and_roberta_works():
    model = make_model(RobertaForMaskedLM, tiny_roberta_config())
    mask = omp_mask(model, 0.7)
    w = model.roberta.encoder.layer[1].intermediate.dense.weight.abs()
    kept = mask["encoder.layer.1.intermediate.dense.weight"]
    assert w[kept].min() >= w[~kept].max()


def test_random_mask_is_seeded():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    assert random_mask(model, 0.7, seed=3) == random_mask(model, 0.7, seed=3)
    a, b = random_mask(model, 0.7, seed=3), random_mask(model, 0.7, seed=4)
    assert a != b
    # two independent masks keeping p = 0.3: expected Jaccard p / (2 - p) ≈ 0.176
    assert a.jaccard(b) == pytest.approx(0.3 / 1.7, abs=0.02)


def test_bad_sparsity_and_ranking_are_rejected():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="sparsity"):
            omp_mask(model, bad)
    with pytest.raises(ConfigError, match="ranking"):
        omp_mask(model, 0.5, ranking="layerwise")


def test_omp_on_a_parametrized_model_ranks_the_dense_weights():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    first = omp_mask(model, 0.5)
    from ticketlab.masks import apply_mask

    apply_mask(model, first)
    assert omp_mask(model, 0.5) == first  # not confused by the zeros the mask puts in `weight`
    assert isinstance(model.bert.encoder.layer[0].output.dense, nn.Linear)
