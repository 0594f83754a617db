"""Every encoder family of `ticketlab.arch` on tiny random models of its own config class: default
targets, units (gates, their weight-mask equivalent, compaction) and the verbs a new user tries first.

The unit layout is checked against an independent computation: a pruned head's value rows (where
the family keeps them: separate V, the third block of ModernBERT's Wqkv, the third of each head's
triple in DeBERTa's in_proj) and value bias set to zero give a zero context for that head, which is
what a closed head gate gives. A layout read wrongly zeroes another head's rows and the outputs part.
"""

from __future__ import annotations

import pytest
import torch

from conftest import run, write_tokenizer
from families import FAMILIES, family_config, family_mlm_class
from ticketlab.arch import ARCHS, FUSED, INTERLEAVED, Arch, register_arch
from ticketlab.errors import MaskMismatchError, TicketlabError
from ticketlab.masking import apply_mask, find_targets
from ticketlab.masking.units import UnitMask, to_weight_mask
from ticketlab.structure import structure_of
from ticketlab.structured import apply_unit_mask, compact, load_compacted, remove_gates, save_compacted

STRUCTURED = [f for f in FAMILIES if f != "albert"]  # ALBERT's one shared layer: refused


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = family_mlm_class(family)(family_config(family)).eval()
    for p in model.parameters():  # random biases too: a bias a ticket forgets shows in the outputs
        if p.ndim == 1 and (p == 0).all():
            torch.nn.init.normal_(p, std=0.02)
    return model


def inputs(model) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def hidden(model) -> torch.Tensor:
    with torch.no_grad():
        return model.base_model(**inputs(model)).last_hidden_state  # [2, 9, d]


def units_of(model, seed: int = 0) -> UnitMask:
    """Head 0 of layer 0 and a third of the neurons of every layer pruned."""
    s = structure_of(model)
    g = torch.Generator().manual_seed(seed)
    head = torch.ones(s.num_layers, s.num_heads, dtype=torch.bool)
    head[0, 0] = False
    neuron = torch.rand(s.num_layers, s.intermediate_size, generator=g) > 1 / 3
    return UnitMask(head=head, neuron=neuron)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_targets_are_the_word_embeddings_and_every_layers_matrices(family):
    model = tiny(family)
    arch = ARCHS[model.config.model_type]
    found = find_targets(model)
    layers = 1 if arch.shared else model.config.num_hidden_layers
    assert len(found) == 1 + layers * len(arch.layer_modules)
    assert f"{arch.embeddings}.weight" in found
    assert all(k == f"{arch.embeddings}.weight" or k.startswith(arch.layers + ".") for k in found)


@pytest.mark.parametrize("family", STRUCTURED)
def test_a_closed_head_gate_is_the_head_without_its_values(family):
    model = tiny(family)
    s, arch = structure_of(model), ARCHS[model.config.model_type]
    units = UnitMask(head=torch.ones(s.num_layers, s.num_heads, dtype=torch.bool))
    h = 0  # not the last head: with two heads, the last one's value rows coincide in two layouts
    units.head[0, h] = False
    gated = tiny(family)
    apply_unit_mask(gated, units)
    layer = model.base_model.get_submodule(arch.layers)[0]
    a, dh = s.all_head_size, s.head_size
    with torch.no_grad():
        if arch.qkv_layout == FUSED:  # [3, H, dh]
            module, rows = layer.get_submodule(arch.qkv[0]), slice(2 * a + h * dh, 2 * a + (h + 1) * dh)
        elif arch.qkv_layout == INTERLEAVED:  # [H, 3, dh]
            module, rows = layer.get_submodule(arch.qkv[0]), slice((3 * h + 2) * dh, (3 * h + 3) * dh)
        else:
            module, rows = layer.get_submodule(arch.qkv[2]), slice(h * dh, (h + 1) * dh)
        module.weight[rows] = 0
        if module.bias is not None:
            module.bias[rows] = 0
        attention = layer.get_submodule(arch.qkv[0].rpartition(".")[0])
        v_bias = getattr(attention, "v_bias", None)
        if v_bias is not None:  # DeBERTa keeps the value bias apart from in_proj
            v_bias[h * dh : (h + 1) * dh] = 0
    torch.testing.assert_close(hidden(model), hidden(gated), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", STRUCTURED)
def test_gates_weight_masks_and_compaction_compute_the_same(family, tmp_path):
    model = tiny(family)
    units = units_of(model)
    weights = to_weight_mask(units, structure_of(model))
    masked = tiny(family)
    apply_mask(masked, weights)
    gated = tiny(family)
    apply_unit_mask(gated, units)
    torch.testing.assert_close(hidden(masked), hidden(gated), rtol=1e-4, atol=1e-5)
    remove_gates(gated)
    ffn_only = UnitMask(head=torch.ones_like(units.head), neuron=units.neuron)
    apply_unit_mask(gated, ffn_only)
    small = compact(tiny(family), ffn_only)
    torch.testing.assert_close(hidden(small), hidden(gated), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    arch = ARCHS[model.config.model_type]
    if not arch.compact_heads:
        with pytest.raises(TicketlabError, match="compaction of attention heads"):
            compact(tiny(family), units)
        return
    empty = UnitMask(head=units.head.clone(), neuron=units.neuron)
    empty.head[-1] = False  # the last layer keeps no head
    for ticket in (units, empty):
        remove_gates(gated)
        apply_unit_mask(gated, ticket)
        if ticket is empty and not arch.no_heads:
            with pytest.raises(TicketlabError, match="without heads"):
                compact(tiny(family), ticket)
            continue
        small = compact(tiny(family), ticket)
        torch.testing.assert_close(hidden(small), hidden(gated), rtol=1e-4, atol=1e-5)
        save_compacted(small, tmp_path / "small")  # and back: the manifest rebuilds every layer
        torch.testing.assert_close(hidden(load_compacted(tmp_path / "small")), hidden(small))


def test_albert_units_are_refused_in_one_line():
    with pytest.raises(MaskMismatchError, match="one shared layer"):
        structure_of(tiny("albert"))


def test_a_family_of_your_own_is_registered_from_python():
    """A model type ticketlab does not know: refused naming --targets and register_arch; registered,
    every default works."""
    from ticketlab.masking.targets import default_targets

    with pytest.raises(TicketlabError, match="--targets.*register_arch"):
        default_targets("mybert")
    names = ("embeddings", "layers", "qkv", "attn_out", "ffn_in", "ffn_out")
    register_arch("mybert", Arch(**{f: getattr(ARCHS["distilbert"], f) for f in names}))
    try:
        model = tiny("distilbert")
        model.config.model_type = "mybert"
        assert len(find_targets(model)) == 1 + 6 * model.config.num_hidden_layers
        assert structure_of(model).family == "mybert"
    finally:
        del ARCHS["mybert"]


@pytest.mark.parametrize("family", FAMILIES)
def test_prune_info_and_export_run_on_every_family(family, tmp_path, capsys):
    path = tmp_path / "model"
    tiny(family).save_pretrained(path)
    write_tokenizer(path)
    mask, out = tmp_path / "mask", tmp_path / "exported"
    assert run(capsys, "prune", "omp", "--model", path, "--sparsity", "0.5", "--out", mask)[0] == 0
    code, printed, _ = run(capsys, "info", mask)
    assert code == 0 and "50" in printed
    assert run(capsys, "export", "--model", path, "--mask", mask, "--out", out)[0] == 0
    reloaded = family_mlm_class(family).from_pretrained(out)
    arch = ARCHS[reloaded.config.model_type]
    w = reloaded.base_model.get_submodule(f"{arch.layers}.0.{arch.ffn_in}").weight
    assert 0.3 < float((w == 0).float().mean()) < 0.7
