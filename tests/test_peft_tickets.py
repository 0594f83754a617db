"""A LoRA adapter over a ticket (`ticketlab.masks.peft_tickets`): exact save/reload onto the
ticket, refusal on another base, PEFT's merge refused on masked layers, merging under the mask."""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import BertForSequenceClassification

from conftest import make_model, tiny_bert_config
from ticketlab.core.errors import MaskMismatchError, TicketlabError
from ticketlab.masks import Mask, apply_mask, current_mask, find_targets, is_masked
from ticketlab.masks.peft_tickets import (
    RECORD,
    get_peft_model,
    load_peft_model,
    merge_under_mask,
    ticket_record,
)
from ticketlab.models.arch import encoder_of

peft = pytest.importorskip("peft")
X = torch.randint(5, 40, (3, 9), generator=torch.Generator().manual_seed(3))


def ticketed(mask_seed: int | None = 1, head_seed: int = 0) -> BertForSequenceClassification:
    """A tiny classifier (its head from `head_seed`: a fresh head each load) with a 70% ticket."""
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    with torch.random.fork_rng():
        torch.manual_seed(head_seed)
        model.classifier.reset_parameters()
    if mask_seed is None:
        return model
    params = dict(encoder_of(model).named_parameters())
    g = torch.Generator().manual_seed(mask_seed)
    return apply_mask(
        model, Mask({k: torch.rand(params[k].shape, generator=g) > 0.7 for k in find_targets(model)})
    )


def lora(model):
    config = peft.LoraConfig(
        task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False
    )
    return get_peft_model(model, config).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(X).logits


def test_an_adapter_over_a_ticket_reloads_exactly(tmp_path):
    adapted = lora(ticketed())
    want = logits(adapted)
    adapted.save_pretrained(tmp_path / "lora")
    assert (tmp_path / "lora" / RECORD).is_file()
    reloaded = load_peft_model(ticketed(head_seed=5), tmp_path / "lora").eval()
    assert (logits(reloaded) - want).abs().max().item() == 0.0


@pytest.mark.parametrize("other", ["dense", "another ticket"])
def test_an_adapter_refuses_another_base_in_one_line(tmp_path, other):
    lora(ticketed()).save_pretrained(tmp_path / "lora")
    base = ticketed(mask_seed=None if other == "dense" else 2)
    with pytest.raises(MaskMismatchError, match=r"the adapter was trained on a \d+\.\d% ticket") as e:
        load_peft_model(base, tmp_path / "lora")
    assert "\n" not in str(e.value)
    assert ("no mask" in str(e.value)) == (other == "dense")
    load_peft_model(base, tmp_path / "lora", check_ticket=False)  # asked for: loaded


@pytest.mark.parametrize("wrapper", ["ticketlab", "plain peft"])
def test_peft_merge_on_a_ticket_is_refused_in_one_line(wrapper):
    """PEFT adds the update to `base_layer.weight.data`, a temporary on a parametrized layer: before,
    merge_and_unload merged nothing and said nothing, with ticketlab's wrapper or PEFT's own."""
    config = peft.LoraConfig(
        task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False
    )
    adapted = lora(ticketed()) if wrapper == "ticketlab" else peft.get_peft_model(ticketed(), config)
    with pytest.raises(TicketlabError, match="cannot merge into a ticketed") as e:
        adapted.merge_and_unload()
    assert "\n" not in str(e.value)
    dense = peft.get_peft_model(ticketed(mask_seed=None), config).eval()  # unmasked: PEFT's merge
    want = logits(dense)
    torch.testing.assert_close(logits(dense.merge_and_unload()), want, rtol=0, atol=1e-5)


def test_merge_under_mask_keeps_the_ticket():
    adapted = lora(ticketed())
    before = current_mask(ticketed())
    query = adapted.get_base_model().bert.encoder.layer[0].attention.self.query
    want = (
        (query.base_layer.weight + query.get_delta_weight("default"))
        * query.base_layer.parametrizations.weight[0].mask
    ).detach()
    merged = merge_under_mask(adapted)
    assert is_masked(merged) and type(merged) is BertForSequenceClassification
    w = merged.bert.encoder.layer[0].attention.self.query.weight
    torch.testing.assert_close(w, want, rtol=0, atol=1e-6)
    mask = current_mask(merged)
    assert all(torch.equal(mask[k], before[k]) for k in before)
    assert not w[~mask["encoder.layer.0.attention.self.query.weight"]].any()
    assert ticket_record(merged)["ticket"] != ticket_record(ticketed())["ticket"]  # the weights moved


def test_without_peft_one_line_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # what an environment without PEFT imports
    with pytest.raises(TicketlabError, match=r"pip install 'ticketlab\[peft\]'") as e:
        get_peft_model(ticketed(), object())
    assert "\n" not in str(e.value)


def test_a_layer_initialised_anew_on_each_load_is_named(tmp_path):
    """A LoRA adapter reloaded onto the ticketed base moved logits by 0.088: an MLM checkpoint has no
    pooler, so each `from_pretrained` of a classifier draws a new one, which LoRA does not save."""
    from transformers import BertForMaskedLM

    from ticketlab.models.load import load_model

    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(tmp_path / "base")

    def base(seed: int):
        torch.manual_seed(seed)
        model = load_model(tmp_path / "base", "seq-cls", num_labels=2)
        g = torch.Generator().manual_seed(1)
        params = dict(encoder_of(model).named_parameters())
        return apply_mask(
            model, Mask({k: torch.rand(params[k].shape, generator=g) > 0.7 for k in find_targets(model)})
        )

    config = dict(task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False)
    get_peft_model(base(0), peft.LoraConfig(**config)).save_pretrained(tmp_path / "lora")
    with pytest.raises(MaskMismatchError, match="base's bert.pooler.dense.weight differs") as e:
        load_peft_model(base(1), tmp_path / "lora")
    assert "modules_to_save" in str(e.value) and "\n" not in str(e.value)
    adapted = get_peft_model(base(0), peft.LoraConfig(**config, modules_to_save=["pooler"])).eval()
    adapted.save_pretrained(tmp_path / "lora2")
    reloaded = load_peft_model(base(1), tmp_path / "lora2").eval()
    assert (logits(reloaded) - logits(adapted)).abs().max().item() == 0.0


def test_trainer_checkpoints_of_an_adapter_record_the_ticket(tmp_path):
    from transformers import Trainer, TrainingArguments

    adapted = lora(ticketed())
    data = [{"input_ids": X[i], "labels": i % 2} for i in range(len(X))]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        report_to=[],
        use_cpu=True,
        max_steps=1,
        save_steps=1,
        logging_strategy="no",
    )
    Trainer(model=adapted, args=args, train_dataset=data).train()
    checkpoint = tmp_path / "run" / "checkpoint-1"
    assert (checkpoint / RECORD).is_file()
    load_peft_model(ticketed(), checkpoint)  # the same ticket: accepted


def test_an_adapter_of_the_dense_model_is_refused_on_a_ticket(tmp_path):
    lora(ticketed(mask_seed=None)).save_pretrained(tmp_path / "lora")
    with pytest.raises(
        MaskMismatchError, match=r"trained on no mask \(the dense model\), this model carries a"
    ):
        load_peft_model(ticketed(), tmp_path / "lora")
