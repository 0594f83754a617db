"""Structured units: gates vs slicing, converted weight masks vs gates, unit mask files, compaction."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch.nn.utils import parametrize
from transformers import (
    AutoModelForMaskedLM,
    BertForMaskedLM,
    BertForSequenceClassification,
    RobertaForMaskedLM,
)
from transformers.pytorch_utils import prune_linear_layer

import ticketlab
from conftest import make_model, tiny_bert_config, tiny_roberta_config, write_tokenizer
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, MaskFileError, MaskMismatchError, TicketlabError
from ticketlab.masks import (
    MaskConfig,
    UnitMask,
    apply_mask,
    apply_unit_mask,
    attach_gates,
    compact,
    current_mask,
    get_gates,
    is_masked,
    load_compacted,
    load_mask,
    load_mask_onto,
    load_unit_mask,
    load_unit_mask_onto,
    masks_disabled,
    parameter_count,
    remove_gates,
    remove_mask,
    save_compacted,
    save_mask,
    save_unit_mask,
    structure_of,
    to_weight_mask,
    unit_mask_config,
    weights_hash,
)
from ticketlab.masks.compacted import pad_neurons
from ticketlab.models.load import load_config, load_model

ATOL = 1e-5
MODELS = {
    "bert": (BertForMaskedLM, lambda **kw: tiny_bert_config(**kw)),
    "roberta": (RobertaForMaskedLM, lambda **kw: tiny_roberta_config(**kw)),
}


def tiny(arch: str = "bert", attn: str = "eager", seed: int = 0, **kw):
    cls, config = MODELS[arch]
    # 4 heads of size 8 and 3 layers: enough to prune some heads of a layer and keep others.
    model = make_model(cls, config(**{"num_attention_heads": 4, "num_hidden_layers": 3, **kw}), seed=seed)
    model.set_attn_implementation(attn)
    with torch.no_grad():  # HF initialises biases to zero, which would hide what happens to them
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return model


def inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # padding: gates and slicing must agree under an attention mask too
    return {"input_ids": ids, "attention_mask": mask}


def hidden(model, x=None) -> torch.Tensor:
    with torch.no_grad():
        return model.base_model(**(x or inputs())).last_hidden_state


def random_units(model, granularity: str, keep: float = 0.6, seed: int = 0) -> UnitMask:
    g = torch.Generator().manual_seed(seed)
    units = UnitMask.ones(structure_of(model), granularity)
    return UnitMask(**{n: torch.rand(t.shape, generator=g) < keep for n, t in units.tensors().items()})


def slice_head(model, layer: int, head: int) -> None:
    """Remove one head by hand: its Q/K/V rows and attention-output columns."""
    att = model.base_model.encoder.layer[layer].attention
    dh = att.self.attention_head_size
    keep = torch.tensor([i for i in range(att.self.all_head_size) if i // dh != head])
    for name in ("query", "key", "value"):
        setattr(att.self, name, prune_linear_layer(getattr(att.self, name), keep, dim=0))
    att.output.dense = prune_linear_layer(att.output.dense, keep, dim=1)
    att.self.num_attention_heads -= 1
    att.self.all_head_size -= dh


def slice_neurons(model, layer: int, drop: list[int]) -> None:
    lay = model.base_model.encoder.layer[layer]
    keep = torch.tensor([i for i in range(lay.intermediate.dense.out_features) if i not in drop])
    lay.intermediate.dense = prune_linear_layer(lay.intermediate.dense, keep, dim=0)
    lay.output.dense = prune_linear_layer(lay.output.dense, keep, dim=1)


# ---------------------------------------------------------------------------------------------- gates


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_zero_head_gate_equals_slicing_the_head_out(arch, attn):
    model = tiny(arch, attn)
    sliced = copy.deepcopy(model)
    slice_head(sliced, layer=1, head=2)
    gates = attach_gates(model)
    gates.head[1, 2] = 0.0
    assert not torch.allclose(hidden(model), hidden(remove_gates(copy.deepcopy(model))), atol=1e-3)
    torch.testing.assert_close(hidden(model), hidden(sliced), atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_zero_neuron_gates_equal_slicing_the_neurons_out(arch):
    model = tiny(arch)
    sliced = copy.deepcopy(model)
    slice_neurons(sliced, layer=0, drop=[3, 17, 40])
    gates = attach_gates(model, granularity="neuron")
    assert gates.ffn is None and gates.neuron.shape == (3, 64)
    gates.neuron[0, [3, 17, 40]] = 0.0
    torch.testing.assert_close(hidden(model), hidden(sliced), atol=ATOL, rtol=0)


def test_zero_ffn_gate_leaves_layernorm_of_the_attention_output():
    model = tiny()
    reference = copy.deepcopy(model)
    with torch.no_grad():  # FFN-out weight *and bias* zero: the layer computes LayerNorm(attention output)
        reference.bert.encoder.layer[2].output.dense.weight.zero_()
        reference.bert.encoder.layer[2].output.dense.bias.zero_()
    gates = attach_gates(model, granularity="layer")
    assert gates.neuron is None and gates.ffn.shape == (3,)
    gates.ffn[2] = 0.0
    torch.testing.assert_close(hidden(model), hidden(reference), atol=ATOL, rtol=0)


def test_open_disabled_and_removed_gates_leave_the_model_as_it_was():
    model = tiny()
    before = hidden(model)
    gates = attach_gates(model, granularity="both")
    assert torch.equal(hidden(model), before)  # all gates are ones
    gates.head.zero_()
    with masks_disabled(model):
        assert torch.equal(hidden(model), before)
    assert not torch.allclose(hidden(model), before)
    assert get_gates(model.bert) is gates  # found from the encoder as well as from the head
    remove_gates(model)
    assert get_gates(model) is None and torch.equal(hidden(model), before)


def test_gradients_reach_every_gate():
    model = tiny()
    gates = attach_gates(model, granularity="both").requires_grad_()
    model.bert(**inputs()).last_hidden_state.pow(2).sum().backward()
    for name, t in gates.tensors().items():
        assert t.grad is not None and t.grad.shape == t.shape and t.grad.abs().sum() > 0, name
    gates.zero_grad()
    assert gates.head.grad is None


def test_gates_follow_the_activations_dtype():
    model = tiny().to(torch.bfloat16)
    gates = attach_gates(model, granularity="both")
    gates.head[0, 1] = 0.0
    assert hidden(model).dtype == torch.bfloat16


def test_gates_fit_any_head_and_refuse_twice():
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    attach_gates(model)
    with pytest.raises(MaskMismatchError, match="already has gates"):
        attach_gates(model)
    with pytest.raises(ConfigError, match="granularity"):
        attach_gates(remove_gates(model), granularity="rows")


# ------------------------------------------------------------------------------- converted weight masks


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("granularity", ["layer", "neuron", "both", "none"])
def test_converted_weight_mask_equals_the_gates(arch, granularity):
    units = random_units(tiny(arch), granularity, seed=3)
    gated, masked = tiny(arch), tiny(arch)
    attach_gates(gated, units=units)
    weight_mask = to_weight_mask(units, structure_of(masked))
    apply_mask(masked, weight_mask)
    torch.testing.assert_close(hidden(masked), hidden(gated), atol=ATOL, rtol=0)
    assert get_gates(gated).to_unit_mask() == units


def test_converted_ffn_layer_masks_the_ffn_output_bias():
    """A pruned FFN sub-layer as weights takes FFN-out's bias with it: LayerNorm(attention output), as
    its gate computes, not what pruning every neuron of the layer computes (the bias stays there)."""
    model = tiny()
    units = UnitMask.ones(structure_of(model), "layer")
    units.ffn[1] = False
    weights = to_weight_mask(units, structure_of(model))
    assert set(weights.biases()) == {f"encoder.layer.{l}.output.dense.bias" for l in range(3)}
    assert not weights["encoder.layer.1.output.dense.bias"].any()
    assert weights["encoder.layer.0.output.dense.bias"].all()
    masked, gated, every_neuron = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    apply_mask(masked, weights)
    attach_gates(gated, units=units)
    attach_gates(every_neuron, "neuron").neuron[1] = 0.0
    torch.testing.assert_close(hidden(masked), hidden(gated), atol=ATOL, rtol=0)
    assert not torch.allclose(hidden(masked), hidden(every_neuron), atol=1e-3)
    with masks_disabled(masked):  # the one switch (the KD teacher) lets the bias through too
        assert torch.equal(hidden(masked), hidden(model))
    assert current_mask(masked) == weights  # bias entries read back like weights


def test_bias_entries_do_not_count_as_weights():
    """Sparsity, counts, the per-matrix table, similarity and the recorded hash are over weights:
    a structured ticket's `achieved_sparsity` and `base_model_hash` are what they were."""
    model = tiny()
    layer = random_units(model, "layer", seed=4)
    weights = to_weight_mask(layer, structure_of(model))
    plain = weights.weights()
    assert len(weights) == len(plain) + 3 and not plain.biases()
    assert (weights.numel, weights.kept, weights.sparsity) == (plain.numel, plain.kept, plain.sparsity)
    assert weights.per_matrix() == plain.per_matrix() and "3 masked bias vectors" in weights.summary()
    neuron = to_weight_mask(random_units(model, "neuron", seed=4), structure_of(model))
    assert weights.jaccard(neuron) == plain.jaccard(neuron)  # FFN sub-layers vs neurons: comparable
    assert weights_hash(model, list(weights)) == weights_hash(model, list(plain))
    config = unit_mask_config(model, layer, method="random", level=0.4, base_model="tiny")
    assert config.achieved_sparsity == round(plain.sparsity, 6) and config.format_version == 1


def test_masked_biases_squash_restore_and_save_as_plain_keys(tmp_path):
    model = tiny()
    units = UnitMask.ones(structure_of(model), "layer")
    units.ffn[2] = False
    weights = to_weight_mask(units, structure_of(model))
    gated = copy.deepcopy(model)
    attach_gates(gated, units=units)
    apply_mask(model, weights)
    model.save_pretrained(tmp_path / "saved")  # b ⊙ m under the plain key `...output.dense.bias`
    reloaded = BertForMaskedLM.from_pretrained(tmp_path / "saved")
    assert not reloaded.bert.encoder.layer[2].output.dense.bias.any()
    torch.testing.assert_close(hidden(reloaded), hidden(gated), atol=ATOL, rtol=0)
    dense = remove_mask(apply_mask(tiny(), weights), squash=False).bert.encoder.layer[2].output.dense
    assert torch.equal(dense.bias, tiny().bert.encoder.layer[2].output.dense.bias)  # restored
    squashed = remove_mask(model, squash=True).bert.encoder.layer[2].output.dense
    assert not squashed.bias.any() and not parametrize.is_parametrized(squashed)


def test_a_mask_file_with_bias_entries_is_format_2_and_round_trips(tmp_path):
    model = tiny()
    units = random_units(model, "both", seed=6)
    weights = to_weight_mask(units, structure_of(model))
    config = MaskConfig.for_model(model, weights, method="omp", sparsity=0.3, base_model="tiny")
    save_mask(weights, config, tmp_path / "with-bias")
    save_mask(weights.weights(), config, tmp_path / "weights")
    loaded, saved = load_mask(tmp_path / "with-bias")
    assert loaded == weights and saved.format_version == 2  # older ticketlabs refuse it in one line
    assert load_mask(tmp_path / "weights")[1].format_version == 1  # every other file as before
    gated, masked = tiny(), tiny()
    attach_gates(gated, units=units)
    load_mask_onto(masked, tmp_path / "with-bias")
    torch.testing.assert_close(hidden(masked), hidden(gated), atol=ATOL, rtol=0)
    info = json.loads((tmp_path / "with-bias" / "mask_config.json").read_text())
    info["format_version"] = 3
    (tmp_path / "with-bias" / "mask_config.json").write_text(json.dumps(info))
    with pytest.raises(MaskFileError, match="format version 3 is newer"):
        load_mask(tmp_path / "with-bias")
    info["format_version"] = 0
    (tmp_path / "with-bias" / "mask_config.json").write_text(json.dumps(info))
    with pytest.raises(MaskFileError, match="format version 0 is older than any ticketlab wrote"):
        load_mask(tmp_path / "with-bias")


def test_a_masked_bias_gets_no_weight_decay():
    from ticketlab.train.schedule import decay_groups

    model = tiny()
    apply_mask(model, to_weight_mask(UnitMask.ones(structure_of(model), "layer"), structure_of(model)))
    no_decay = {id(p) for p in decay_groups(model, 0.01)[1]["params"]}
    assert id(model.bert.encoder.layer[0].output.dense.parametrizations.bias.original) in no_decay
    assert id(model.bert.encoder.layer[0].output.dense.parametrizations.weight.original) not in no_decay


def test_converted_mask_counts():
    model = tiny()
    units = UnitMask.ones(structure_of(model), "neuron")
    units.head[0, :2] = False  # 2 of 12 heads
    units.neuron[2, :16] = False  # 16 of 192 neurons
    mask = to_weight_mask(units, structure_of(model))
    q = mask["encoder.layer.0.attention.self.query.weight"]
    o = mask["encoder.layer.0.attention.output.dense.weight"]
    assert q.shape == (32, 32) and int((~q).sum()) == 16 * 32 and not q[:16].any() and q[16:].all()
    assert not o[:, :16].any() and o[:, 16:].all()
    assert not mask["encoder.layer.2.output.dense.weight"][:, :16].any()
    assert units.level() == pytest.approx({"head": 2 / 12, "neuron": 16 / 192})


# ------------------------------------------------------------------------------------ structured files


def ticket(tmp_path, model, units, name="ticket", level=0.4):
    config = unit_mask_config(model, units, method="random", level=level, base_model="tiny", seed=0)
    return save_unit_mask(units, config, tmp_path / name)


def test_structured_file_round_trip_and_weight_mask_view(tmp_path):
    model = tiny()
    units = random_units(model, "both", seed=1)
    path = ticket(tmp_path, model, units)
    loaded, config = load_unit_mask(path)
    assert loaded == units and config.kind == "structured" and config.units["granularity"] == "both"
    assert config.units["kept"]["heads"][0] == torch.nonzero(units.head[0]).flatten().tolist()
    weights, same = load_mask(path)  # what every verb sees: the equivalent weight mask
    assert weights == to_weight_mask(units, structure_of(model)) and same.kind == "structured"
    assert config.achieved_sparsity == pytest.approx(weights.sparsity, abs=1e-6)


def test_structured_ticket_loads_onto_a_fresh_model_like_its_weight_mask(tmp_path):
    units = random_units(tiny(), "neuron", seed=2)
    path = ticket(tmp_path, tiny(), units)
    ticketed, masked = tiny(), tiny()
    loaded, _ = load_unit_mask_onto(ticketed, path)  # checks structure, shapes and base-weights hash
    assert loaded == units
    load_mask_onto(masked, path)  # the unstructured route every existing verb takes: the same masks
    assert current_mask(ticketed) == current_mask(masked)
    torch.testing.assert_close(hidden(masked), hidden(ticketed), atol=0, rtol=0)


def test_ticket_for_another_model_is_refused(tmp_path):
    path = ticket(tmp_path, tiny(), random_units(tiny(), "layer"))
    with pytest.raises(MaskMismatchError, match="weights differ"):
        load_unit_mask_onto(tiny(seed=1), path)
    with pytest.raises(MaskMismatchError, match="ticket is for 3 layers of 4 heads x 8"):
        load_unit_mask_onto(make_model(BertForMaskedLM, tiny_bert_config(num_hidden_layers=3)), path)
    with pytest.raises(MaskMismatchError, match="head units have shape"):
        compact(tiny(num_hidden_layers=2), load_unit_mask(path)[0])


def test_bad_level_and_corrupt_structured_files_give_one_clear_error(tmp_path):
    model = tiny()
    units = random_units(model, "layer")
    for level in (0, 1.0, 1.5, -0.1, True):
        with pytest.raises(ConfigError, match=r"level must be a fraction of units pruned in \(0, 1\)"):
            unit_mask_config(model, units, method="random", level=level, base_model="tiny")
    path = ticket(tmp_path, model, units)
    config = json.loads((path / "mask_config.json").read_text())
    kept = json.loads(json.dumps(config["units"]["kept"]))
    config["units"]["kept"]["heads"][0] = [0]
    (path / "mask_config.json").write_text(json.dumps(config))
    with pytest.raises(MaskFileError, match="kept units in the mask config disagree"):
        load_mask(path)
    for pruned in ({"head": "half"}, [1], {**config["units"]["pruned"], "head": 0.99}):  # what `info` prints
        bad = json.loads(json.dumps(config))
        bad["units"]["kept"] = kept
        bad["units"]["pruned"] = pruned
        (path / "mask_config.json").write_text(json.dumps(bad))
        with pytest.raises(MaskFileError, match="pruned fractions in the mask config disagree"):
            load_mask(path)
    plain = tmp_path / "plain"
    save_mask(
        to_weight_mask(units, structure_of(model)),
        MaskConfig.for_model(
            model, to_weight_mask(units, structure_of(model)), method="omp", sparsity=0.3, base_model="tiny"
        ),
        plain,
    )
    with pytest.raises(MaskFileError, match="not a structured ticket"):
        load_unit_mask(plain)


# ------------------------------------------------------------------------------------------ compaction


def hard_units(model, granularity="both") -> UnitMask:
    """Some of everything: a layer without heads, a pruned FFN sub-layer, pruned neurons elsewhere."""
    units = random_units(model, granularity, seed=5)
    units.head[0] = False
    units.head[1, 0] = True
    if units.ffn is not None:
        units.ffn[2], units.ffn[0] = False, True
    return units


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("granularity", ["layer", "neuron", "both"])
def test_compacted_outputs_equal_the_gated_ones(arch, granularity):
    units = hard_units(tiny(arch), granularity)
    gated = tiny(arch)
    attach_gates(gated, units=units)
    small = compact(tiny(arch), units)
    assert parameter_count(small) < parameter_count(tiny(arch))
    torch.testing.assert_close(hidden(small), hidden(gated), atol=ATOL, rtol=0)
    lay = small.base_model.encoder.layer
    assert lay[1].attention.self.query.out_features == 8 * int(units.head[1].sum())
    if granularity != "neuron":
        assert lay[2].intermediate.dense.out_features == 0


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_compacted_model_saves_and_reloads_with_the_same_outputs(tmp_path, attn):
    units = hard_units(tiny())
    reference = tiny(attn=attn)
    attach_gates(reference, units=units)
    save_compacted(compact(tiny(attn=attn), units), tmp_path / "small")
    manifest = json.loads((tmp_path / "small" / "ticketlab_compact.json").read_text())
    assert manifest["layers"][0]["heads"] == [] and manifest["layers"][2]["ffn"] is False
    reloaded = load_compacted(tmp_path / "small")
    assert type(reloaded) is BertForMaskedLM
    torch.testing.assert_close(hidden(reloaded), hidden(reference), atol=ATOL, rtol=0)
    with torch.no_grad():  # the MLM head (tied decoder) came back too
        torch.testing.assert_close(
            reloaded(**inputs()).logits, reference(**inputs()).logits, atol=1e-4, rtol=0
        )
    clf = load_compacted(tmp_path / "small", head="seq-cls", num_labels=3)
    torch.testing.assert_close(hidden(clf), hidden(reference), atol=ATOL, rtol=0)


@pytest.mark.parametrize("version", ["1", None, 1.5, -1, "absent"])
def test_a_manifest_version_that_is_not_a_whole_number_is_one_line(tmp_path, version):
    """The version is compared with the one this ticketlab reads: a string, null or none cannot be."""
    from ticketlab.core.errors import MaskFileError

    save_compacted(compact(tiny(), hard_units(tiny())), tmp_path / "small")
    path = tmp_path / "small" / "ticketlab_compact.json"
    saved = json.loads(path.read_text())
    saved.pop("format_version") if version == "absent" else saved.update(format_version=version)
    path.write_text(json.dumps(saved))
    with pytest.raises(MaskFileError, match=f"^{path}: format_version must be a whole number"):
        load_compacted(tmp_path / "small")


def test_plain_from_pretrained_refuses_a_compacted_model(tmp_path):
    """Without ticketlab (no Auto registration: tests/test_hf_auto.py), an unknown model type."""
    save_compacted(compact(tiny(), hard_units(tiny())), tmp_path / "small")
    load = f"AutoModelForMaskedLM.from_pretrained({str(tmp_path / 'small')!r})"
    code = f"from transformers import AutoModelForMaskedLM; {load}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "ticketlab-compact" in done.stderr
    with pytest.raises(RuntimeError, match="mismatched_sizes"):
        BertForMaskedLM.from_pretrained(tmp_path / "small")


# --------------------------------------------------------------------------------------------- the CLI


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_info_compare_export_and_compact_take_structured_tickets(tiny_bert_dir, tmp_path, capsys):
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    units = UnitMask.ones(structure_of(model), "both")
    units.head[1, 0], units.ffn[0], units.neuron[1, :16] = False, False, False
    other = UnitMask.ones(structure_of(model), "both")
    other.head[0, 1] = False
    a = ticket(tmp_path, model, units, "a", level=0.25)
    b = ticket(tmp_path, model, other, "b", level=0.25)

    code, out, _ = cli(capsys, "info", a)
    assert code == 0 and "structured ticket, FFN granularity both" in out
    assert "    1         1/2  0" in out and "pruned" in out and "3/4 heads" in out.replace("  ", " ")
    code, out, _ = cli(capsys, "compare", a, b, "--json")
    assert code == 0 and json.loads(out)["units"]["head"][0][1] == pytest.approx(2 / 4)

    code, out, _ = cli(capsys, "export", "--model", tiny_bert_dir, "--mask", a, "--out", tmp_path / "exp")
    assert code == 0
    exported = BertForMaskedLM.from_pretrained(tmp_path / "exp")
    assert not exported.bert.encoder.layer[0].intermediate.dense.weight.any()

    code, out, err = cli(capsys, "compact", "--model", tiny_bert_dir, "--mask", a, "--out", tmp_path / "c")
    assert code == 0, err
    assert "3/4 heads" in out
    gated = BertForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    attach_gates(gated, units=units)
    torch.testing.assert_close(hidden(load_compacted(tmp_path / "c")), hidden(gated), atol=ATOL, rtol=0)


def test_cli_compact_writes_the_dtype_of_its_base_and_loaders_compute_in_float32(
    tiny_bert_dir, tmp_path, capsys
):
    """A float16 base gives a float16 compacted model (a float32 one was larger than its base), with
    the same values; ticketlab's loaders cast it to float32, as they cast the base."""
    BertForMaskedLM.from_pretrained(tiny_bert_dir).half().save_pretrained(tmp_path / "fp16")
    write_tokenizer(tmp_path / "fp16")
    model = load_model(tmp_path / "fp16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    units = UnitMask.ones(structure_of(model), "both")
    units.head[1, 0], units.neuron[1, :16] = False, False
    a = ticket(tmp_path, model, units, "a", level=0.25)
    code, _, err = cli(capsys, "compact", "--model", tmp_path / "fp16", "--mask", a, "--out", tmp_path / "c")
    assert code == 0, err
    assert {t.dtype for t in load_file(tmp_path / "c" / "model.safetensors").values()} == {torch.float16}
    assert {p.dtype for p in load_compacted(tmp_path / "c").parameters()} == {torch.float16}
    loaded = load_model(tmp_path / "c")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    gated = load_model(tmp_path / "fp16").eval()
    attach_gates(gated, units=units)
    torch.testing.assert_close(hidden(loaded), hidden(gated), atol=ATOL, rtol=0)
    argv = ("compact", "--model", tiny_bert_dir, "--mask", a, "--out", tmp_path / "d", "--ignore-hash")
    code, _, err = cli(capsys, *argv)
    assert code == 0, err  # a float32 base stays float32
    assert {t.dtype for t in load_file(tmp_path / "d" / "model.safetensors").values()} == {torch.float32}
    argv = ("compact", "--model", tmp_path / "fp16", "--mask", a, "--out", tmp_path / "e", "--multiple", "7")
    code, _, err = cli(capsys, *argv)
    assert code == 0, err  # layer 1's FFN padded with zero neurons to a multiple of 7: the same outputs
    width, kept = units.neuron.shape[1], int(units.neuron[1].sum())
    padded = load_model(tmp_path / "e")
    assert padded.base_model.encoder.layer[1].intermediate.dense.out_features == min(width, -(-kept // 7) * 7)
    assert kept % 7 and kept < width
    torch.testing.assert_close(hidden(padded), hidden(gated), atol=ATOL, rtol=0)


def test_load_compacted_honours_the_dtype_it_is_given(tmp_path):
    """A float16 compacted model loads in the dtype asked for (a timing against a float32 base
    compares like with like), from a dtype or its name, as from_pretrained and the Auto classes do;
    "auto" keeps the file's; a dtype that is not a floating-point one is refused before loading."""
    model = tiny().half()
    units = UnitMask.ones(structure_of(model), "both")
    units.head[1, 0], units.neuron[1, :16] = False, False
    save_compacted(compact(model, units), tmp_path / "c")
    for dtype in (torch.float32, "float32", "torch.float32"):
        assert {p.dtype for p in load_compacted(tmp_path / "c", dtype=dtype).parameters()} == {torch.float32}
    assert {p.dtype for p in load_compacted(tmp_path / "c", torch_dtype=torch.bfloat16).parameters()} == {
        torch.bfloat16
    }
    assert {p.dtype for p in load_compacted(tmp_path / "c", dtype="auto").parameters()} == {torch.float16}
    auto = AutoModelForMaskedLM.from_pretrained(tmp_path / "c", dtype=torch.float32)
    assert {p.dtype for p in auto.parameters()} == {torch.float32}
    for bad in (torch.int8, "float33", 32):
        with pytest.raises(TicketlabError, match="dtype: a floating-point torch dtype"):
            load_compacted(tmp_path / "c", dtype=bad)


def test_cli_compact_times_ones_own_ticket_against_its_dense_model(tiny_bert_dir, tmp_path, capsys):
    """`compact --time`: the encoder's forward, dense and compacted, interleaved on one random batch
    (what is timed and how often; no assertion on the durations themselves)."""
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    units = UnitMask.ones(structure_of(model), "both")
    units.head[1, 0], units.neuron[1, :16] = False, False
    a = ticket(tmp_path, model, units, "a", level=0.25)
    argv = ("compact", "--model", tiny_bert_dir, "--mask", a, "--out", tmp_path / "c", "--time")
    code, out, err = cli(capsys, *argv, "--time-reps", "3", "--time-batch-size", "2", "--time-length", "8")
    assert code == 0, err
    assert "encoder forward, 2 x 8 tokens on cpu, median (min) of 3: dense " in out and " ms (" in out
    done = ticketlab.compact(ticketlab.CompactConfig(model=str(tiny_bert_dir), mask=a, out=tmp_path / "d"))
    assert done.timing is None  # timed only when asked
    config = ticketlab.CompactConfig(model=str(tiny_bert_dir), mask=a, out=tmp_path / "e", time_reps=2)
    timing = ticketlab.compact(config).timing
    assert set(timing) == {"dense", "compacted"} and all(
        len(t.wall) == len(t.cpu) == 2 for t in timing.values()
    )
    # the timing's settings without the timing: refused, not ignored
    code, _, err = cli(
        capsys,
        "compact",
        "--model",
        tiny_bert_dir,
        "--mask",
        a,
        "--out",
        tmp_path / "f",
        "--time-length",
        "8",
    )
    assert code == 2 and "--time-length sets the timing: add --time" in err and not (tmp_path / "f").exists()
    with pytest.raises(ConfigError, match="time_batch_size, time_length and device set the timing"):
        ticketlab.CompactConfig(model="m", mask="k", out="o", time_batch_size=2)
    # padding FFN widths, for a ticket that prunes whole FFN sub-layers: refused
    layers = UnitMask.ones(structure_of(model), "layer")
    layers.head[1, 0] = False
    b = ticket(tmp_path, model, layers, "b", level=0.25)
    code, _, err = cli(
        capsys, "compact", "--model", tiny_bert_dir, "--mask", b, "--out", tmp_path / "g", "--multiple", "64"
    )
    assert (
        code == 2
        and "prunes whole FFN sub-layers (granularity layer)" in err
        and not (tmp_path / "g").exists()
    )
    with pytest.raises(ConfigError, match="device: not a torch device"):
        ticketlab.CompactConfig(model="m", mask="k", out="o", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device: cuda, but torch sees no CUDA GPU here"):
            ticketlab.CompactConfig(model="m", mask="k", out="o", device="cuda")


def test_forward_times_interleave_the_models_after_one_warm_up_each():
    from ticketlab.models.timing import forward_times

    calls = []

    class Named(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, input_ids, attention_mask):
            calls.append(self.name)

    batch = {"input_ids": torch.zeros(1, 2, dtype=torch.long), "attention_mask": torch.ones(1, 2)}
    found = forward_times({"a": Named("a"), "b": Named("b")}, batch, reps=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"] and [len(found[k].wall) for k in "ab"] == [3, 3]


def test_cli_compact_errors_are_one_line(tiny_bert_dir, tmp_path, capsys):
    other = tiny()
    path = ticket(tmp_path, other, random_units(other, "layer"))
    code, _, err = cli(capsys, "compact", "--model", tiny_bert_dir, "--mask", path, "--out", tmp_path / "c")
    assert code == 2 and "ticket is for 3 layers" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(
        capsys, "compact", "--model", tiny_bert_dir, "--mask", tmp_path, "--out", tmp_path / "d"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_ticketlab_loaders_take_a_compacted_model(tmp_path):
    """`load_model` / `load_config` (every verb's loaders) rebuild a compacted directory."""
    units = hard_units(tiny())
    reference = tiny()
    attach_gates(reference, units=units)
    save_compacted(compact(tiny(), units), tmp_path / "small")
    assert load_config(tmp_path / "small").model_type == "bert"
    clf = load_model(tmp_path / "small", head="seq-cls", num_labels=3, ignore_mismatched_sizes=True)
    assert clf.config.num_labels == 3 and clf.classifier.out_features == 3
    torch.testing.assert_close(hidden(clf), hidden(reference), atol=ATOL, rtol=0)
    save_compacted(clf, tmp_path / "clf")  # a compacted model with a task head saves and reloads too
    again = load_model(tmp_path / "clf", head="seq-cls", num_labels=2, ignore_mismatched_sizes=True)
    assert again.classifier.out_features == 2
    torch.testing.assert_close(hidden(again), hidden(reference), atol=ATOL, rtol=0)
    with pytest.raises(MaskFileError, match="classifier"):
        load_model(tmp_path / "clf", head="seq-cls", num_labels=2)


@pytest.mark.parametrize("granularity", ["neuron", "both"])
def test_compaction_to_a_multiple_pads_ffns_with_zero_neurons_and_keeps_the_outputs(granularity):
    units = hard_units(tiny(), granularity)
    width = structure_of(tiny()).intermediate_size
    kept = units.ffn_neurons().sum(dim=1)  # [L]
    assert any(k % 4 for k in kept.tolist())  # the padding has something to do
    small = compact(tiny(), units, multiple=4)
    widths = [layer.intermediate.dense.out_features for layer in small.base_model.encoder.layer]
    assert widths == [min(width, -(-k // 4) * 4) for k in kept.tolist()]
    assert widths != kept.tolist() and all(w % 4 == 0 or w == width for w in widths)
    torch.testing.assert_close(hidden(small), hidden(compact(tiny(), units)), atol=ATOL, rtol=0)
    ticketed = apply_unit_mask(tiny(), units)  # a masked model pads as the bare one does
    torch.testing.assert_close(hidden(compact(ticketed, units, multiple=4)), hidden(small), atol=ATOL, rtol=0)
    assert compact(tiny(), units, multiple=width).base_model.encoder.layer[
        1
    ].intermediate.dense.out_features in (
        0,
        width,
    )
    with pytest.raises(TicketlabError, match="multiple: must be at least 1"):
        compact(tiny(), units, multiple=0)


def test_pad_neurons_adds_the_first_pruned_neurons_up_to_the_multiple():
    neurons = torch.tensor([[True, False, True, False, False, True], [False] * 6, [True] * 5 + [False]])
    padded = pad_neurons(neurons, 4)
    assert padded.tolist() == [[True, True, True, False, False, True], [False] * 6, [True] * 6]
    assert torch.equal(pad_neurons(neurons, 1), neurons)


def test_compaction_leaves_the_model_it_is_given_unless_asked():
    units = hard_units(tiny())
    model = tiny()
    before = {k: t.clone() for k, t in model.state_dict().items()}
    small = compact(model, units)
    assert small is not model and parameter_count(small) < parameter_count(model)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], t) for k, t in before.items())
    assert compact(model, units, inplace=True) is model and parameter_count(model) == parameter_count(small)


def test_compaction_keeps_the_dtype_and_refuses_a_gated_model():
    units = hard_units(tiny())
    small = compact(tiny().to(torch.bfloat16), units)
    assert {p.dtype for p in small.parameters()} == {torch.bfloat16}
    assert hidden(small).dtype == torch.bfloat16
    gated = tiny()
    attach_gates(gated)
    with pytest.raises(TicketlabError, match="remove the gates"):
        compact(gated, units)


# ------------------------------------------------------------ a ticket in use: weights, not hooks


def has_hooks(model) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def gated_copy(model, units: UnitMask):
    """The model with the ticket's gates (hooks): what its weight form must compute."""
    gated = copy.deepcopy(model)
    attach_gates(gated, units.granularity, units=units)
    return gated


@pytest.mark.parametrize("granularity", ["layer", "neuron", "both"])
def test_apply_unit_mask_is_a_parametrization_that_saves_with_zeros(tmp_path, granularity):
    model = tiny()
    units = hard_units(model, granularity)
    gated = gated_copy(model, units)
    assert apply_unit_mask(model, units) is model
    assert get_gates(model) is None and not has_hooks(model)
    assert current_mask(model) == to_weight_mask(units, structure_of(model))
    torch.testing.assert_close(hidden(model), hidden(gated), atol=ATOL, rtol=0)
    model.save_pretrained(tmp_path / "ticket")  # like any masked model: zeros in place
    reloaded = BertForMaskedLM.from_pretrained(tmp_path / "ticket")
    layers = reloaded.bert.encoder.layer
    assert not layers[0].attention.self.query.weight.any()  # layer 0 keeps no head
    assert not layers[0].attention.output.dense.weight.any()
    if granularity != "neuron":  # a pruned FFN sub-layer: both matrices and FFN-out's bias
        assert not layers[2].output.dense.weight.any() and not layers[2].output.dense.bias.any()
    torch.testing.assert_close(hidden(reloaded), hidden(gated), atol=ATOL, rtol=0)
    with masks_disabled(model):  # the one switch: the dense model
        assert torch.equal(hidden(model), hidden(tiny()))


def test_load_unit_mask_onto_masks_the_weights(tmp_path):
    units = hard_units(tiny(), "both")
    path = ticket(tmp_path, tiny(), units)
    model = tiny()
    loaded, config = load_unit_mask_onto(model, path)  # checks structure, shapes and base-weights hash
    assert loaded == units and config.kind == "structured"
    assert get_gates(model) is None and not has_hooks(model)
    assert current_mask(model) == to_weight_mask(units, structure_of(model))
    torch.testing.assert_close(hidden(model), hidden(gated_copy(tiny(), units)), atol=ATOL, rtol=0)
    model.save_pretrained(tmp_path / "saved")
    reloaded = BertForMaskedLM.from_pretrained(tmp_path / "saved")
    assert not reloaded.bert.encoder.layer[2].output.dense.bias.any()
    torch.testing.assert_close(hidden(reloaded), hidden(model), atol=ATOL, rtol=0)


def test_a_ticket_loaded_for_finetuning_is_weights_and_exports_with_zeros(tiny_bert_dir, tmp_path):
    """`finetune` / `evaluate` put a ticket on the task model as its weight form (no hooks); the
    fine-tuned model is saved as plain weights, zeros in place, and computes what the gates do."""
    from ticketlab.tasks.objective import load_task_model

    base = BertForMaskedLM.from_pretrained(tiny_bert_dir)
    units = UnitMask.ones(structure_of(base), "layer")
    units.head[0, 1], units.ffn[1] = False, False
    path = ticket(tmp_path, base, units, level=0.3)
    model, config = load_task_model(tiny_bert_dir, "sst2", seed=1, mask=path)
    assert config.kind == "structured" and get_gates(model) is None and not has_hooks(model)
    reference, _ = load_task_model(tiny_bert_dir, "sst2", seed=1)
    attach_gates(reference, units=units)
    model.eval(), reference.eval()
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(**x).logits, reference(**x).logits, atol=ATOL, rtol=0)
    model.save_pretrained(tmp_path / "ft")
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "ft").eval()
    assert not reloaded.bert.encoder.layer[1].output.dense.bias.any()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**x).logits, reference(**x).logits, atol=ATOL, rtol=0)


def test_importance_gates_sit_on_a_ticket_in_weight_form():
    """Importance needs gradients with respect to units: gates (hooks) on top of the weight form.
    The pruned units score exactly 0 (nothing they gate reaches the output)."""
    from ticketlab.methods.super_tickets.importance import compute_importance

    model = tiny()
    units = hard_units(model, "layer")
    apply_unit_mask(model, units)
    gates = attach_gates(model, "layer")
    assert has_hooks(model)
    data = [{"input_ids": inputs(s)["input_ids"][0]} for s in range(4)]

    def collate(examples, seeds=None):
        return {"input_ids": torch.stack([e["input_ids"] for e in examples])}

    def loss(m, batch):
        return m.base_model(**batch).last_hidden_state.pow(3).mean(dim=(1, 2)).mean()

    imp = compute_importance(model, gates, data, collate, loss, batch_size=2, normalize=False)
    assert (imp.head_raw[~units.head] == 0).all() and (imp.head_raw[units.head] > 0).all()
    assert (imp.ffn[~units.ffn] == 0).all() and (imp.ffn[units.ffn] > 0).all()


def test_one_switch_turns_a_ticket_and_gates_off():
    model = tiny()
    dense = hidden(model)
    apply_unit_mask(model, hard_units(model))
    gates = attach_gates(model, "layer")
    gates.head[1, 0] = 0.0
    with masks_disabled(model):
        assert torch.equal(hidden(model), dense)
    assert not torch.allclose(hidden(model), dense, atol=1e-3)


def test_a_ticketed_model_compacts_like_the_bare_one():
    units = hard_units(tiny())
    ticketed = apply_unit_mask(tiny(), units)
    small = compact(ticketed, units)
    assert is_masked(ticketed) and not is_masked(small)
    torch.testing.assert_close(hidden(small), hidden(compact(tiny(), units)), atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden(small), hidden(ticketed), atol=ATOL, rtol=0)
