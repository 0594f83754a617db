"""A masked model saved with `save_pretrained` (or a transformers `Trainer`) reloads with a plain
`from_pretrained`: pruned weights exactly zero, every other tensor as it was; and such a checkpoint
loads back onto a ticketed model (`Trainer.train(resume_from_checkpoint=...)`), its mask kept."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    BertForMaskedLM,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from conftest import make_model, tiny_bert_config
from ticketlab.core.errors import TicketlabError
from ticketlab.masks import (
    Mask,
    UnitMask,
    apply_mask,
    apply_unit_mask,
    attach_gates,
    current_mask,
    find_targets,
    is_masked,
    masks_disabled,
    remove_gates,
    remove_mask,
    structure_of,
)
from ticketlab.methods.tamt.search import attach_scores
from ticketlab.models.arch import encoder_of


def masked_model() -> tuple[BertForMaskedLM, Mask]:
    model = make_model(BertForMaskedLM, tiny_bert_config())
    params = dict(encoder_of(model).named_parameters())
    g = torch.Generator().manual_seed(1)
    mask = Mask({k: torch.rand(params[k].shape, generator=g) > 0.5 for k in find_targets(model)})
    return apply_mask(model, mask), mask


def computed(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as the model computes with it (masked ones as W ⊙ M)."""
    out = {}
    for name, module in model.named_modules():
        for key in ("weight", "bias"):
            t = getattr(module, key, None)
            if isinstance(t, torch.Tensor):
                out[f"{name}.{key}"] = t.detach().clone()
    return out


def assert_reloads_as_computed(saved: torch.nn.Module, path, cls=AutoModelForMaskedLM) -> None:
    reloaded, info = cls.from_pretrained(path, output_loading_info=True)
    want, got = computed(saved), computed(reloaded)
    assert not info["unexpected_keys"] and not set(info["missing_keys"]) & want.keys(), info
    assert want.keys() <= got.keys()  # (AutoModel adds a pooler the MLM model's encoder lacks)
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_save_pretrained_writes_masked_weights(tmp_path):
    model, mask = masked_model()
    keys_before = set(model.state_dict())
    model.save_pretrained(tmp_path / "ckpt")
    assert_reloads_as_computed(model, tmp_path / "ckpt")
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "ckpt")
    for key, keep in mask.items():
        w = encoder_of(reloaded).get_parameter(key)
        assert (w[~keep] == 0).all() and w[keep].count_nonzero() > 0, key
    # the model is still masked, and its own state dict (checkpoints, resume) is torch's as before
    assert set(model.state_dict()) == keys_before
    assert any(".parametrizations.weight.original" in k for k in keys_before)


def test_encoder_alone_saves_masked_weights(tmp_path):
    model, _ = masked_model()
    model.bert.save_pretrained(tmp_path / "enc")
    assert_reloads_as_computed(model.bert, tmp_path / "enc", cls=AutoModel)


def test_tamt_score_masks_save_as_weights(tmp_path):
    model, mask = masked_model()
    remove_mask(model, squash=False)
    scores = attach_scores(model, mask)  # fused forwards and scores: M = 1[S >= t]
    with torch.no_grad():
        for s in scores.values():
            s.scores.add_(torch.randn_like(s.scores) * 0.01)  # as after some training steps
    model.save_pretrained(tmp_path / "tamt")
    assert_reloads_as_computed(model, tmp_path / "tamt")


def test_trainer_save_model(tmp_path):
    model, _ = masked_model()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True)
    Trainer(model=model, args=args).save_model(str(tmp_path / "trainer"))
    assert_reloads_as_computed(model, tmp_path / "trainer")


def test_a_structured_ticket_saves_as_weights(tmp_path):
    """A ticket is applied as its weight form: saved like any masked model, zeros in place (a pruned
    FFN sub-layer's FFN-out bias included)."""
    model = make_model(BertForMaskedLM, tiny_bert_config())
    units = UnitMask.ones(structure_of(model), "layer")
    units.head[0, 1], units.ffn[1] = False, False
    apply_unit_mask(model, units)
    model.save_pretrained(tmp_path / "ticket")
    assert_reloads_as_computed(model, tmp_path / "ticket")
    reloaded = BertForMaskedLM.from_pretrained(tmp_path / "ticket")
    assert not reloaded.bert.encoder.layer[1].output.dense.bias.any()


def test_closed_unit_gates_are_refused_in_one_line(tmp_path):
    """Gates (importance) are hooks: saved as weights, they would reload as the dense model."""
    model = make_model(BertForMaskedLM, tiny_bert_config())
    units = UnitMask.ones(structure_of(model), "layer")
    units.head[0, 1] = False
    attach_gates(model, units=units)
    with pytest.raises(TicketlabError, match="closed unit gates") as e:
        model.save_pretrained(tmp_path / "gated")
    assert "\n" not in str(e.value) and not (tmp_path / "gated").exists()
    with masks_disabled(model):  # the dense model is what it computes now: saved as it is
        model.save_pretrained(tmp_path / "dense")
    remove_gates(model)
    model.save_pretrained(tmp_path / "removed")
    assert_reloads_as_computed(model, tmp_path / "removed")


# --------------------------------------------------------------------------- resuming onto a ticket


def ticketed_classifier() -> BertForSequenceClassification:
    """A tiny classifier with a fixed 70% ticket (the same every call: a fresh model to resume onto)."""
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    params = dict(encoder_of(model).named_parameters())
    g = torch.Generator().manual_seed(1)
    return apply_mask(
        model, Mask({k: torch.rand(params[k].shape, generator=g) > 0.7 for k in find_targets(model)})
    )


def train_ticket(out, steps: int, resume=None) -> BertForSequenceClassification:
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(5, 40, (12,), generator=g), "labels": i % 2} for i in range(32)]
    args = TrainingArguments(
        output_dir=str(out),
        report_to=[],
        use_cpu=True,
        max_steps=steps,
        save_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_strategy="no",
        seed=0,
    )
    model = ticketed_classifier()
    Trainer(model=model, args=args, train_dataset=data).train(resume_from_checkpoint=resume)
    return model


def test_trainer_resumes_exactly_onto_a_ticketed_model(tmp_path):
    """The checkpoint holds plain keys (save_pretrained); before the load hook, the fresh ticketed model
    kept its pre-trained weights and the resumed run differed from the uninterrupted one (by 0.034)."""
    whole = computed(train_ticket(tmp_path / "a", steps=6))
    ckpt = tmp_path / "a" / "checkpoint-3"
    resumed = train_ticket(tmp_path / "c", steps=6, resume=ckpt)
    assert is_masked(resumed)
    for key, t in computed(resumed).items():
        assert torch.equal(whole[key], t), key
    for key, keep in current_mask(resumed).items():
        w = encoder_of(resumed).get_submodule(key.rpartition(".")[0]).weight
        assert (w[~keep] == 0).all() and w[keep].count_nonzero() > 0, key


def test_a_plain_checkpoint_loads_strictly_onto_a_ticket(tmp_path):
    model = ticketed_classifier()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(tmp_path / "ckpt")
    fresh = ticketed_classifier()
    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    fresh.load_state_dict(state)  # strict: the mask's own tensors are kept, not missing
    assert torch.equal(
        current_mask(fresh)["encoder.layer.0.output.dense.weight"],
        current_mask(model)["encoder.layer.0.output.dense.weight"],
    )
    for key, t in computed(model).items():
        assert torch.equal(computed(fresh)[key], t), key
    fresh.load_state_dict(model.state_dict())  # its own parametrized keys load as before


def test_a_checkpoint_of_another_ticket_warns_in_one_line(tmp_path):
    dense = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    model = ticketed_classifier()
    with pytest.warns(UserWarning, match="non-zero weights where the mask prunes") as caught:
        model.load_state_dict(dense.state_dict())
    assert all("\n" not in str(w.message) for w in caught)
    assert not (
        model.bert.encoder.layer[0].output.dense.weight[
            ~current_mask(model)["encoder.layer.0.output.dense.weight"]
        ]
    ).any()
