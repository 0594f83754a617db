"""Mask files: round trips, size, provenance checks, corrupt input, export to a plain HF checkpoint."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForMaskedLM, BertForMaskedLM, BertForSequenceClassification

from conftest import make_model, tiny_bert_config
from ticketlab.core.errors import MaskFileError, MaskMismatchError
from ticketlab.masks import (
    MaskConfig,
    apply_mask,
    check_fits,
    export_pretrained,
    find_targets,
    load_mask,
    load_mask_onto,
    save_mask,
    weights_hash,
)
from ticketlab.masks.io import CONFIG_NAME, MASKS_NAME
from ticketlab.methods import omp_mask, random_mask


def config_for(model, mask, **kw) -> MaskConfig:
    base = dict(
        method="omp",
        sparsity=round(mask.sparsity, 2),
        base_model="tiny",
        model_type="bert",
        base_model_hash=weights_hash(model, list(mask)),
        targets="default",
    )
    return MaskConfig(**{**base, **kw})


@pytest.fixture()
def saved(tmp_path, tiny_bert_dir):
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir)
    mask = omp_mask(model, 0.7)
    save_mask(mask, config_for(model, mask), tmp_path / "mask")
    return tmp_path / "mask", mask


def test_round_trip_onto_a_freshly_loaded_model_gives_identical_outputs(saved, tiny_bert_dir):
    path, mask = saved
    loaded, config = load_mask(path)
    assert (
        loaded == mask and config.method == "omp" and config.achieved_sparsity == pytest.approx(0.7, abs=1e-3)
    )
    x = torch.randint(5, 60, (2, 10))
    outputs = []
    for seed in (1, 2):  # the classifier head is random: seed it differently, the encoder must agree
        torch.manual_seed(seed)
        model = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2).eval()
        load_mask_onto(model, path)
        with torch.no_grad():
            outputs.append(model.bert(input_ids=x).last_hidden_state)
    assert torch.equal(outputs[0], outputs[1])
    ref = BertForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    apply_mask(ref, mask)
    with torch.no_grad():
        assert torch.equal(ref.bert(input_ids=x).last_hidden_state, outputs[0])


def test_file_is_bit_packed(tmp_path):
    model = make_model(BertForMaskedLM, tiny_bert_config(hidden_size=128, intermediate_size=512))
    mask = omp_mask(model, 0.7)
    save_mask(mask, config_for(model, mask), tmp_path / "packed")
    save_file(dict(mask.items()), str(tmp_path / "bool.safetensors"))  # one byte per weight
    packed = (tmp_path / "packed" / MASKS_NAME).stat().st_size
    assert packed <= (tmp_path / "bool.safetensors").stat().st_size / 7


def test_other_base_weights_are_refused_unless_overridden(saved):
    path, mask = saved
    other = make_model(BertForMaskedLM, tiny_bert_config(), seed=123)  # same shapes, other weights
    with pytest.raises(MaskMismatchError, match="weights differ"):
        load_mask_onto(other, path)
    load_mask_onto(other, path, check_hash=False)
    w = other.bert.encoder.layer[0].output.dense.weight
    assert torch.all(w[~mask["encoder.layer.0.output.dense.weight"]] == 0)


def test_a_mask_for_another_model_is_refused_with_the_file_named(saved):
    path, _ = saved
    wider = make_model(BertForMaskedLM, tiny_bert_config(hidden_size=48, intermediate_size=96))
    with pytest.raises(MaskMismatchError, match=f"{path}.*shape"):
        load_mask_onto(wider, path)
    deeper_mask, config = load_mask(path)
    shallow = make_model(BertForMaskedLM, tiny_bert_config(num_hidden_layers=1))
    with pytest.raises(MaskMismatchError, match="do not exist"):
        check_fits(deeper_mask, config, shallow, source=path)


def test_hash_covers_only_target_weights():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    keys = list(find_targets(model))
    h = weights_hash(model, keys)
    with torch.no_grad():
        model.bert.embeddings.LayerNorm.weight.add_(1.0)  # not a target
    assert weights_hash(model, keys) == h
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.weight[0, 0] += 1e-3
    assert weights_hash(model, keys) != h


def test_mask_config_validates():
    with pytest.raises(ValueError, match="sparsity"):
        MaskConfig(
            method="omp", sparsity=1.2, base_model="m", base_model_hash="h", model_type="bert", targets="x"
        )
    with pytest.raises(ValueError, match="ranking"):
        MaskConfig(
            method="omp",
            sparsity=0.5,
            base_model="m",
            base_model_hash="h",
            model_type="bert",
            targets="x",
            ranking="rowwise",
        )


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / MASKS_NAME).write_bytes((p / MASKS_NAME).read_bytes()[:100]), "corrupt or truncated"),
        (lambda p: (p / MASKS_NAME).write_bytes(b"\x00garbage" * 10), "corrupt or truncated"),
        (lambda p: (p / MASKS_NAME).unlink(), "masks file not found"),
        (lambda p: (p / MASKS_NAME).unlink() or (p / MASKS_NAME).mkdir(), "masks file is a directory"),
        (lambda p: (p / CONFIG_NAME).write_text("{not json"), "corrupt mask config"),
        (lambda p: (p / CONFIG_NAME).unlink(), "mask config not found"),
        (lambda p: (p / CONFIG_NAME).rename(p / "config.json"), "a model directory, not a mask"),
        (lambda p: (p / CONFIG_NAME).write_text(json.dumps({"method": "omp"})), "missing field"),
        (
            lambda p: (p / CONFIG_NAME).write_text(
                json.dumps({**json.loads((p / CONFIG_NAME).read_text()), "sparsity": 3})
            ),
            "sparsity",
        ),
        (lambda p: save_file({"w": torch.zeros(3, dtype=torch.uint8)}, str(p / MASKS_NAME)), "shapes"),
        (
            lambda p: save_file(
                {"w": torch.zeros(3, dtype=torch.uint8)},
                str(p / MASKS_NAME),
                metadata={"shapes": json.dumps({"w": [10, 10]})},
            ),
            "wrong size",
        ),
    ],
)
def test_corrupt_files_give_one_clear_error(saved, damage, message):
    path, _ = saved
    damage(path)
    with pytest.raises(MaskFileError, match=message) as err:
        load_mask(path)
    assert str(path) in str(err.value)


def test_the_files_of_two_masks_in_one_folder_are_refused(saved, tiny_bert_dir, tmp_path):
    """masks.safetensors copied over from another mask: the config's achieved sparsity, written from
    the tensors, no longer matches them, and the folder is refused rather than shown or applied as one
    mask."""
    path, _ = saved
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir)
    other = random_mask(model, 0.5, seed=0)
    save_mask(other, config_for(model, other, method="random", seed=0), tmp_path / "other")
    (path / MASKS_NAME).write_bytes((tmp_path / "other" / MASKS_NAME).read_bytes())
    with pytest.raises(MaskFileError) as err:
        load_mask(path)
    assert str(err.value).startswith(f"{path}: {CONFIG_NAME} records achieved sparsity 0.7")
    assert str(err.value).endswith("files of two masks? Copy both from one mask's folder")


def test_missing_directory(tmp_path):
    with pytest.raises(MaskFileError, match="not found"):
        load_mask(tmp_path / "nope")


def test_save_is_atomic_and_replaces(saved, tiny_bert_dir):
    path, mask = saved
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir)
    other = random_mask(model, 0.5)
    save_mask(other, config_for(model, other, method="random"), path)
    assert load_mask(path)[0] == other
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


def test_export_round_trip_keeps_zeros(saved, tiny_bert_dir, tmp_path):
    path, mask = saved
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    _, config = load_mask(path)
    x = torch.randint(5, 60, (2, 10))
    apply_mask(model, mask)
    with torch.no_grad():
        masked = model(input_ids=x).logits
    export_pretrained(model, tmp_path / "export", config=dataclasses.replace(config))
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "export").eval()
    for key, module in find_targets(reloaded).items():
        assert torch.all(module.weight[~mask[key]] == 0), key
        assert int((module.weight == 0).sum()) >= int((~mask[key]).sum())
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=x).logits, masked, atol=1e-5)
    assert (tmp_path / "export" / "ticketlab_mask.json").is_file()
