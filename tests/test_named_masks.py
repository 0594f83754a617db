"""Named masks per model, one active (PEFT's add_adapter / set_adapter shape): they switch, and the
ones not in force never move."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config
from ticketlab.core.errors import MaskMismatchError
from ticketlab.masks import Mask, apply_mask, current_mask, find_targets, masks_disabled, remove_mask
from ticketlab.masks.named import (
    active_mask,
    active_tensors,
    add_mask,
    delete_mask,
    mask_names,
    named_mask,
    pack_bits,
    set_active_mask,
    unpack_bits,
)
from ticketlab.masks.units import UnitMask, to_weight_mask
from ticketlab.models.structure import structure_of


def tiny(seed: int = 0) -> BertForMaskedLM:
    model = make_model(BertForMaskedLM, tiny_bert_config(num_attention_heads=4), seed=seed)
    with torch.no_grad():  # random biases: a masked FFN-out bias shows in the outputs
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return model


def random_mask(model, seed: int) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({k: torch.rand(m.weight.shape, generator=g) > 0.4 for k, m in find_targets(model).items()})


def unit_mask(model) -> Mask:
    """A structured ticket's weight form: heads, neurons and FFN sub-layer 1 with FFN-out's bias."""
    units = UnitMask.ones(structure_of(model), "both")
    units.head[0, 1] = False
    units.neuron[0, :20] = False
    units.ffn[1] = False
    return to_weight_mask(units, structure_of(model))


def out(model) -> torch.Tensor:
    ids = torch.randint(5, 60, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=ids).logits  # [2, 10, V]


def dense_copy(model) -> BertForMaskedLM:
    """A fresh model holding `model`'s dense (unmasked) weights."""
    copy = tiny()
    state = {
        n.replace(".parametrizations.", ".").removesuffix(".original"): p
        for n, p in model.state_dict().items()
    }
    copy.load_state_dict({k: v for k, v in state.items() if not k.endswith(".mask")}, strict=True)
    return copy


def test_bits_are_numpy_packbits():
    t = torch.rand(7, 13, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = pack_bits(t)
    assert packed.dtype == torch.uint8 and packed.numel() == (7 * 13 + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(t.numpy().ravel()))
    assert torch.equal(unpack_bits(packed, (7, 13)), t)


def test_named_masks_switch_and_the_inactive_ones_never_move():
    model = tiny()
    a, b = random_mask(model, 1), unit_mask(model)
    add_mask(model, "a", a)
    add_mask(model, "b", b)
    assert mask_names(model) == ["a", "b"] and active_mask(model) == "a"  # the first one is in force
    set_active_mask(model, "b")
    set_active_mask(model, "a")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = torch.randint(5, 60, (4, 10), generator=torch.Generator().manual_seed(1))
    for _ in range(3):  # train with "a" in force
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert named_mask(model, "b") == b and named_mask(model, "a") == a  # bit-identical
    for name, mask in (("b", b), ("a", a), ("b", b)):  # switching = applying that mask alone
        set_active_mask(model, name)
        alone = apply_mask(dense_copy(model), mask)
        assert torch.equal(out(model), out(alone)), name
    in_force = current_mask(model)  # b's entries, and the word embeddings (only a covers them) whole
    assert Mask({k: in_force[k] for k in b}) == b and in_force["embeddings.word_embeddings.weight"].all()
    with masks_disabled(model):  # the one switch: the dense model
        assert torch.equal(out(model), out(dense_copy(model)))


def test_masks_not_in_force_are_bits():
    model = tiny()
    masks = [random_mask(model, s) for s in range(3)]
    for i, m in enumerate(masks):
        add_mask(model, f"t{i}", m)
    named = model.bert._ticketlab_named_masks
    weights = masks[0].numel
    stored = sum(t.numel() * t.element_size() for per in named.bits.values() for t in per.values())
    assert stored <= 3 * (weights / 8 + len(masks[0]))  # 1/8 byte per weight and mask (+ padding)
    in_force = active_tensors(model)
    assert set(in_force) == set(masks[0]) and sum(t.numel() for t in in_force.values()) == weights  # once


def test_an_edit_of_the_mask_in_force_is_kept_and_touches_no_other():
    model = tiny()
    a, b = random_mask(model, 1), random_mask(model, 2)
    add_mask(model, "a", a)
    add_mask(model, "b", b)
    key = "encoder.layer.0.attention.self.query.weight"
    active_tensors(model)[key][0].fill_(False)  # pruned in place while "a" is in force (as IMP does)
    set_active_mask(model, "b")
    assert named_mask(model, "b") == b
    edited = named_mask(model, "a")
    assert not edited[key][0].any() and torch.equal(edited[key][1:], a[key][1:])


def test_a_tensor_a_mask_does_not_cover_is_kept_whole():
    model = tiny()
    ffn_out = "encoder.layer.1.output.dense"
    add_mask(model, "weights", random_mask(model, 1))
    add_mask(model, "units", unit_mask(model), activate=True)  # covers FFN-out's biases too
    assert not model.bert.get_submodule(ffn_out).bias.any()
    set_active_mask(model, "weights")
    assert torch.equal(
        model.bert.get_submodule(ffn_out).bias, dense_copy(model).bert.get_submodule(ffn_out).bias
    )


def test_delete_and_refusals():
    model = tiny()
    before = out(model)
    add_mask(model, "a", random_mask(model, 1))
    add_mask(model, "b", random_mask(model, 2))
    with pytest.raises(MaskMismatchError, match="exists already"):
        add_mask(model, "a", random_mask(model, 3))
    with pytest.raises(MaskMismatchError, match="no mask named 'c'"):
        set_active_mask(model, "c")
    with pytest.raises(MaskMismatchError, match="in force"):
        delete_mask(model, "a")
    delete_mask(model, "b")
    delete_mask(model, "a")  # the last one: the dense model, nothing parametrized
    assert mask_names(model) == [] and active_mask(model) is None and torch.equal(out(model), before)
    assert not any(".parametrizations." in n for n, _ in model.named_parameters())
    other = tiny()
    apply_mask(other, random_mask(other, 1))
    with pytest.raises(MaskMismatchError, match="not by a named mask"):
        add_mask(other, "a", random_mask(other, 2))
    add_mask(remove_mask(other), "a", random_mask(other, 2))  # remove_mask takes named masks off too
    remove_mask(other)
    assert mask_names(other) == []
