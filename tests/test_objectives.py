"""MLM corruption, MLM loss on masked positions only, KD loss (TAMT Eq. 6), MLM+KD."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import BertForMaskedLM, BertModel, ElectraForPreTraining, RobertaForMaskedLM

from conftest import VOCAB, make_model, tiny_bert_config, tiny_roberta_config, write_tokenizer
from families import FAMILIES, family_config, family_mlm_class
from ticketlab.core.errors import ConfigError, MaskFileError
from ticketlab.lm import objectives
from ticketlab.lm.evaluation import HEAD_FILE, load_head_state
from ticketlab.lm.mlm_head import head_parameters, mlm_head
from ticketlab.lm.objectives import (
    IGNORE_INDEX,
    MLMCollator,
    kd_loss,
    kd_sums,
    mlm_kd_loss,
    mlm_loss,
    pretraining_loss,
    pretraining_sums,
)
from ticketlab.masks import apply_mask
from ticketlab.methods import omp_mask
from ticketlab.models.arch import ARCHS, Arch, HeadLayout, register_arch


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


def examples(tok, n=6, length=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(5, len(tok), (n, length), generator=g)
    out = []
    for i in range(n):
        body = words[i, : length - 3 * i % 7].tolist()
        out.append({"input_ids": torch.tensor([tok.cls_token_id, *body, tok.sep_token_id])})
    return out


def test_collator_is_deterministic_per_example(tok):
    coll = MLMCollator(tok)
    ex = examples(tok)
    a = coll(ex, [11, 12, 13, 14, 15, 16])
    b = coll(ex, [11, 12, 13, 14, 15, 16])
    assert all(torch.equal(a[k], b[k]) for k in a)
    # an example's corruption depends on its seed only, not on the rest of the batch
    alone = coll([ex[3]], [14])
    n = alone["input_ids"].shape[1]
    assert torch.equal(alone["input_ids"][0], a["input_ids"][3, :n])
    assert torch.equal(alone["labels"][0], a["labels"][3, :n])
    c = coll(ex, [21, 22, 23, 24, 25, 26])
    assert not torch.equal(a["labels"], c["labels"])


def test_collator_pads_and_never_picks_special_tokens(tok):
    coll = MLMCollator(tok, mlm_probability=0.5)
    ex = examples(tok)
    batch = coll(ex, list(range(len(ex))))
    for i, e in enumerate(ex):
        n = len(e["input_ids"])
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
        assert batch["labels"][i, 0] == IGNORE_INDEX and batch["labels"][i, n - 1] == IGNORE_INDEX
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
        chosen = batch["labels"][i] != IGNORE_INDEX
        assert torch.equal(batch["labels"][i][chosen], e["input_ids"][chosen[:n]])
        # unchosen positions are untouched
        same = ~chosen[:n]
        assert torch.equal(batch["input_ids"][i, :n][same], e["input_ids"][same])


def test_collator_rates_are_15_percent_and_80_10_10(tok):
    coll = MLMCollator(tok)
    ex = examples(tok, n=1, length=4000)
    ids = ex[0]["input_ids"]
    out, labels = coll.corrupt(ids, seed=7)
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    assert abs(n / (len(ids) - 2) - 0.15) < 0.02
    masked = (out[chosen] == tok.mask_token_id).float().mean()
    kept = (out[chosen] == ids[chosen]).float().mean()
    assert abs(masked - 0.8) < 0.04 and 0.1 - 0.04 < kept < 0.1 + 0.04 + 0.01  # a random draw may equal
    assert MLMCollator(tok, mlm_probability=0.0)(ex, [1])["labels"].eq(IGNORE_INDEX).all()


def test_mlm_loss_on_masked_positions_equals_full_head_loss(tok):
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=1)
    batch = MLMCollator(tok, mlm_probability=0.3)(examples(tok), list(range(6)))
    loss, logs = mlm_loss(model, batch)
    full = model(**batch)  # HF: logits at every position, CE over labels != -100
    torch.testing.assert_close(loss, full.loss, rtol=1e-5, atol=1e-6)
    chosen = batch["labels"] != IGNORE_INDEX
    acc = (full.logits.argmax(-1)[chosen] == batch["labels"][chosen]).float().mean()
    assert logs["mlm_acc"] == pytest.approx(float(acc))
    assert logs["mlm_loss"] == pytest.approx(float(full.loss.detach()), rel=1e-5)
    loss.backward()
    assert model.cls.predictions.transform.dense.weight.grad is not None


def test_mlm_loss_roberta(tok):
    model = make_model(RobertaForMaskedLM, tiny_roberta_config(), seed=2)
    batch = MLMCollator(tok, mlm_probability=0.3)(examples(tok), list(range(6)))
    batch["input_ids"][batch["attention_mask"] == 0] = model.config.pad_token_id
    torch.testing.assert_close(mlm_loss(model, batch)[0], model(**batch).loss, rtol=1e-5, atol=1e-6)
    names = set(head_parameters(model))
    assert "lm_head.dense.weight" in names and "lm_head.bias" in names
    assert not any("decoder.weight" in n for n in names)  # tied to the (masked) word embeddings


def test_head_parameters_of_bert_exclude_the_tied_decoder():
    model = make_model(BertForMaskedLM, tiny_bert_config())
    assert [name for name, _ in mlm_head(model).parts] == ["cls"]
    assert set(head_parameters(model)) == {
        "cls.predictions.bias",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.LayerNorm.bias",
    }
    with pytest.raises(ConfigError, match="no MLM head"):
        mlm_head(make_model(BertModel, tiny_bert_config()))


def test_kd_loss_is_zero_without_mask_and_positive_with_one(tok):
    """KD reads the clean text by default (TAMT's KD data, masked_lm_prob 0): teacher and student on the
    uncorrupted ids, computed here by hand; `kd_input="corrupted"` on the MLM-corrupted ones."""
    model = make_model(BertForMaskedLM, tiny_bert_config(hidden_dropout_prob=0.1), seed=3)
    batch = MLMCollator(tok, keep_clean=True)(examples(tok), list(range(6)))
    assert not torch.equal(batch["input_ids"], batch["clean_input_ids"])  # 15% corrupted
    assert float(kd_loss(model, batch)[0]) == 0.0
    assert kd_loss(model, batch)[1]["kd_loss"] == 0.0
    apply_mask(model, omp_mask(model, 0.5))
    model.eval()
    loss, logs = kd_loss(model, batch)
    assert loss > 0.01 and logs["kd_loss"] == pytest.approx(float(loss.detach()))
    # the teacher is the same model with the masks off: in eval mode, exactly the dense forward
    dense = make_model(BertForMaskedLM, tiny_bert_config(hidden_dropout_prob=0.1), seed=3)

    def by_hand(ids):
        kw = {"input_ids": ids, "attention_mask": batch["attention_mask"]}
        t = dense.bert(**kw, output_hidden_states=True).hidden_states[1:]
        s = model.bert(**kw, output_hidden_states=True).hidden_states[1:]
        ref, n = kd_sums(s, t, batch["attention_mask"])
        return ref / n

    torch.testing.assert_close(loss, by_hand(batch["clean_input_ids"]))
    corrupted = pretraining_loss("kd", kd_input="corrupted")(model, batch)[0]
    torch.testing.assert_close(corrupted, by_hand(batch["input_ids"]))
    assert abs(float(corrupted.detach()) - float(loss.detach())) > 1e-4
    assert model.training is False  # eval_mode restored the caller's mode
    # a corrupted batch without its clean ids is refused, not distilled on the corrupted text
    plain = {k: v for k, v in batch.items() if k != "clean_input_ids"}
    with pytest.raises(ConfigError, match="keep_clean"):
        kd_loss(model, plain)


def test_mlm_loss_uses_the_dense_decoder(tok):
    """TAMT masks the input word embeddings only: the MLM logits come from the pre-trained (dense)
    decoder, computed here by hand; `decoder="masked"` uses the masked shared matrix."""
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=6).eval()
    words = model.bert.embeddings.word_embeddings.weight.detach().clone()  # the dense matrix
    mask = omp_mask(model, 0.9)
    apply_mask(model, mask)
    batch = MLMCollator(tok, mlm_probability=0.3)(examples(tok), list(range(6)))
    kw = {k: batch[k] for k in ("input_ids", "attention_mask")}
    hidden = model.bert(**kw).last_hidden_state  # the encoder reads the masked embeddings
    chosen = batch["labels"] != IGNORE_INDEX
    head = model.cls.predictions

    def by_hand(decoder_weight):
        h = head.transform(hidden[chosen])
        logits = h @ decoder_weight.T + head.bias
        return F.cross_entropy(logits, batch["labels"][chosen])

    dense = mlm_loss(model, batch)[0]
    torch.testing.assert_close(dense, by_hand(words))
    masked = pretraining_loss("mlm", decoder="masked")(model, batch)[0]
    torch.testing.assert_close(masked, by_hand(words * mask["embeddings.word_embeddings.weight"]))
    assert abs(float(masked.detach()) - float(dense.detach())) > 0.01
    # the embeddings stay masked in the encoder (the dense decoder is the head's only)
    assert torch.equal(
        model.bert.embeddings.word_embeddings.weight, words * mask["embeddings.word_embeddings.weight"]
    )


def test_kd_teacher_in_train_mode_draws_dropout_as_a_second_dense_model_would(tok):
    """TAMT's train_kd.py never puts its teacher in eval mode: `teacher="train"` (TAMT-KD's default,
    `TamtConfig.teacher_mode`) runs the teacher forward in the training model's mode, so its
    dropout draws what a separate dense model in train mode draws after the student (by hand here);
    the library's default, an eval-mode teacher, gives another loss on the same draws."""
    from ticketlab.methods.tamt.config import TamtConfig
    from ticketlab.methods.tamt.register import _tamt_settings

    config = tiny_bert_config(hidden_dropout_prob=0.3)
    model = make_model(BertForMaskedLM, config, seed=3)
    apply_mask(model, omp_mask(model, 0.5))
    model.train()
    batch = MLMCollator(tok, keep_clean=True)(examples(tok), list(range(6)))
    torch.manual_seed(7)
    loss = pretraining_loss("kd", teacher="train")(model, batch)[0]
    dense = make_model(BertForMaskedLM, config, seed=3).train()
    kw = {"input_ids": batch["clean_input_ids"], "attention_mask": batch["attention_mask"]}
    torch.manual_seed(7)
    with torch.no_grad():
        student = model.bert(**kw, output_hidden_states=True).hidden_states[1:]
        teacher = dense.bert(**kw, output_hidden_states=True).hidden_states[1:]
    total, n = kd_sums(student, teacher, batch["attention_mask"])
    torch.testing.assert_close(loss.detach(), total / n)
    torch.manual_seed(7)
    in_eval = pretraining_loss("kd")(model, batch)[0]
    assert abs(float(in_eval.detach()) - float(loss.detach())) > 1e-3
    assert model.training  # the mode is the model's own, untouched
    with pytest.raises(ConfigError, match="teacher"):
        pretraining_loss("kd", teacher="dropout")
    # TAMT's default, in the identity of a search with a KD loss only
    # (TAMT-MLM+KD's train_mlm.py teacher comes from transformers' from_pretrained: eval mode)
    assert TamtConfig(sparsity=0.5, objective="kd").teacher_mode == "train"
    assert TamtConfig(sparsity=0.5, objective="mlm+kd").teacher_mode == "eval"
    assert _tamt_settings(TamtConfig(sparsity=0.5, objective="kd"))["kd_teacher"] == "train"
    assert _tamt_settings(TamtConfig(sparsity=0.5, objective="kd", kd_teacher="eval"))["kd_teacher"] == "eval"
    assert _tamt_settings(TamtConfig(sparsity=0.5, objective="mlm+kd"))["kd_teacher"] == "eval"
    assert "kd_teacher" not in _tamt_settings(TamtConfig(sparsity=0.5, objective="mlm"))


def test_the_kd_teacher_has_unit_gates_off_too(tok):
    """One switch turns every mask off: a gated model's KD teacher is the dense model, not the gated
    one (which would make the KD loss of a structured ticket 0)."""
    from ticketlab.masks import attach_gates, masks_disabled
    from ticketlab.masks.units import UnitMask

    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=3)
    batch = MLMCollator(tok, mlm_probability=0.0)(examples(tok), list(range(6)))  # clean: what KD reads
    kw = {k: batch[k] for k in ("input_ids", "attention_mask")}
    dense = model.bert(**kw).last_hidden_state
    units = UnitMask(head=torch.ones(2, 2, dtype=torch.bool))
    units.head[0, 1] = False
    attach_gates(model, units=units)  # gates (importance); a ticket in use is weights, switched alike
    assert not torch.allclose(model.bert(**kw).last_hidden_state, dense)
    with masks_disabled(model):
        torch.testing.assert_close(model.bert(**kw).last_hidden_state, dense)
    with masks_disabled(model), masks_disabled(model):  # nested switches restore what they found
        pass
    assert not torch.allclose(model.bert(**kw).last_hidden_state, dense)
    loss = kd_loss(model, batch)[0]  # against the dense teacher (exactly 0 were the gates left on)
    teacher = make_model(BertForMaskedLM, tiny_bert_config(), seed=3).bert
    teacher_states = teacher(**kw, output_hidden_states=True).hidden_states[1:]
    student = model.bert(**kw, output_hidden_states=True).hidden_states[1:]
    ref, n = kd_sums(student, teacher_states, batch["attention_mask"])
    assert float(loss.detach()) > 0
    torch.testing.assert_close(loss, ref / n)


def test_kd_sums_by_hand_and_padding_is_ignored():
    s = [torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])]  # [B=1, T=3, H=2], one layer
    t = [torch.tensor([[[1.0, 0.0], [1.0, 0.0], [-1.0, 2.0]]])]
    mask = torch.tensor([[1, 1, 0]])
    total, n = kd_sums(s, t, mask)
    assert float(total) == pytest.approx(0.0 + 1.0) and int(n) == 2  # cos = 1, 0; the pad is left out
    total2, n2 = kd_sums(s * 2, t * 2, mask)
    assert float(total2) == pytest.approx(2.0) and int(n2) == 4  # L=2 layers


def test_kd_excludes_padding_in_a_real_batch(tok):
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=4)
    apply_mask(model, omp_mask(model, 0.6))
    ex = examples(tok)
    coll = MLMCollator(tok, mlm_probability=0.0)
    together = pretraining_sums(model, coll(ex, [0] * 6), mlm=False, kd=True)
    parts = [pretraining_sums(model, coll([e], [0]), mlm=False, kd=True) for e in ex]
    torch.testing.assert_close(together.kd_sum, sum(p.kd_sum for p in parts), rtol=1e-4, atol=1e-5)
    assert int(together.kd_count) == sum(int(p.kd_count) for p in parts)


def test_mlm_plus_kd_is_the_sum_and_grads_reach_the_student(tok):
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=5)
    apply_mask(model, omp_mask(model, 0.5))
    batch = MLMCollator(tok, keep_clean=True)(examples(tok), list(range(6)))
    both, logs = mlm_kd_loss(model, batch)
    torch.testing.assert_close(both, mlm_loss(model, batch)[0] + kd_loss(model, batch)[0])
    assert set(logs) == {"mlm_loss", "mlm_acc", "kd_loss"}
    both.backward()
    w = model.bert.encoder.layer[0].intermediate.dense.parametrizations.weight.original
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_objective_names_are_checked():
    with pytest.raises(ConfigError, match="objective must be one of"):
        pretraining_loss("mse")


def test_loss_with_no_masked_token_is_zero_not_nan(tok):
    model = make_model(BertForMaskedLM, tiny_bert_config())
    batch = MLMCollator(tok, mlm_probability=0.0)(examples(tok, n=2), [0, 1])
    loss, logs = mlm_loss(model, batch)
    assert loss.item() == 0.0 and logs["mlm_loss"] == 0.0
    assert not torch.isnan(F.relu(loss))


# --------------------------------------------------------------------------- every family's MLM head


def family_model(family: str, seed: int = 0):
    return make_model(family_mlm_class(family), family_config(family), seed=seed)


def family_batch(tok, model):
    batch = MLMCollator(tok, mlm_probability=0.3)(examples(tok), list(range(6)))
    batch["input_ids"][batch["attention_mask"] == 0] = model.config.pad_token_id
    return batch


def outside_encoder(model) -> set[str]:
    """Names of the parameters that are not the encoder's: all of them make up the MLM head."""
    shared = {id(p) for p in model.base_model.parameters()}
    return {n for n, p in model.named_parameters() if id(p) not in shared}


@pytest.mark.parametrize("family", FAMILIES)
def test_mlm_loss_is_the_models_own_for_every_family(tok, family):
    """The test that cannot lie about the head: the model's own forward with labels is the reference."""
    model = family_model(family, seed=1)
    batch = family_batch(tok, model)
    loss, logs = mlm_loss(model, batch)
    own = model(**batch)
    torch.testing.assert_close(loss, own.loss, rtol=1e-5, atol=1e-6)
    chosen = batch["labels"] != IGNORE_INDEX
    acc = (own.logits.argmax(-1)[chosen] == batch["labels"][chosen]).float().mean()
    assert logs["mlm_acc"] == pytest.approx(float(acc))
    # the head's trainable parameters are everything outside the encoder (transform, norm, bias, ...)
    names = set(head_parameters(model))
    assert names == outside_encoder(model) and len(names) >= 3, names
    loss.backward()
    assert all(p.grad is not None for p in head_parameters(model).values())


@pytest.mark.parametrize("family", FAMILIES)
def test_head_file_saves_and_loads_the_whole_head(tok, family, tmp_path):
    """mlm_head.safetensors (TAMT-MLM's trained head) holds every head tensor and restores the loss."""
    model = family_model(family, seed=2)
    batch = family_batch(tok, model)
    torch.manual_seed(0)
    trained = {k: v.detach() + torch.randn_like(v) for k, v in head_parameters(model).items()}
    assert set(trained) == outside_encoder(model)  # the whole head, not the decoder's bias alone
    save_file(trained, str(tmp_path / HEAD_FILE))
    with torch.no_grad():
        for k, p in head_parameters(model).items():
            p.copy_(trained[k])
    want = mlm_loss(model, batch)[0]
    fresh = family_model(family, seed=2)
    assert not torch.allclose(mlm_loss(fresh, batch)[0], want)
    assert load_head_state(fresh, tmp_path) == len(head_parameters(model))
    torch.testing.assert_close(mlm_loss(fresh, batch)[0], want)


def test_old_bert_and_roberta_head_files_still_load(tmp_path):
    """Head files written before the whole-head lookup keep their names and load unchanged."""
    bert = ["bias", "transform.dense.weight", "transform.dense.bias"]
    bert += ["transform.LayerNorm.weight", "transform.LayerNorm.bias"]
    roberta = ["bias", "dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias"]
    for cls, config, keys in (
        (BertForMaskedLM, tiny_bert_config(), [f"cls.predictions.{k}" for k in bert]),
        (RobertaForMaskedLM, tiny_roberta_config(), [f"lm_head.{k}" for k in roberta]),
    ):
        model = make_model(cls, config)
        params = dict(model.named_parameters())
        old = {k: torch.full_like(params[k], 0.25) for k in keys}
        save_file(old, str(tmp_path / "old.safetensors"))
        assert load_head_state(model, tmp_path / "old.safetensors") == 5
        assert all(torch.equal(params[k], old[k]) for k in keys)


def test_a_head_file_of_the_decoder_alone_is_refused(tmp_path):
    """An ELECTRA head file of the decoder's bias alone (a head trained without its transform) would
    be mixed with the base model's transform without a word: refused in one line."""
    model = family_model("electra")
    save_file({"generator_lm_head.bias": torch.zeros(len(VOCAB))}, str(tmp_path / HEAD_FILE))
    with pytest.raises(MaskFileError, match="holds 1 of the model's 5 MLM-head tensors.*--mlm-head original"):
        load_head_state(model, tmp_path)


def test_a_model_without_mlm_head_is_refused_in_one_line():
    """ELECTRA's discriminator has no MLM head: MLM refuses, saying KD needs none."""
    discriminator = make_model(ElectraForPreTraining, family_config("electra"))
    with pytest.raises(ConfigError, match="ElectraForPreTraining has no MLM head.*KD objective") as e:
        head_parameters(discriminator)
    assert "\n" not in str(e.value)
    kd = pretraining_sums(discriminator, {"input_ids": torch.tensor([[2, 7, 8, 3]])}, mlm=False, kd=True)
    assert float(kd.kd_sum) == 0.0


def without_head(family: str) -> Arch:
    """The family's entry with no MLM head named (as a family of your own registers it)."""
    return replace(ARCHS[family], mlm_heads=())


def test_a_head_in_several_modules_of_an_unknown_family_is_refused_not_guessed(monkeypatch):
    """Without its layout, a head spread over several modules cannot be ordered: refuse, never use the
    decoder alone (the silent error this lookup replaced)."""
    monkeypatch.setitem(ARCHS, "electra", without_head("electra"))
    with pytest.raises(ConfigError, match="generator_predictions, generator_lm_head.*register_arch"):
        mlm_head(family_model("electra"))
    monkeypatch.setitem(ARCHS, "bert", without_head("bert"))  # one head module: that module is the head
    assert [name for name, _ in mlm_head(family_model("bert")).parts] == ["cls"]


def test_a_family_registered_with_register_arch_alone_gets_its_whole_mlm_head(tok):
    """The family's one entry says everything about it, its MLM head included: a model type of your
    own whose head is spread over several modules (which no guess orders) gets its whole head, and the
    loss is the model's own."""
    model = family_model("electra", seed=1)
    model.config.model_type = "my-encoder"
    with pytest.raises(ConfigError, match="has no MLM head.*register_arch"):
        mlm_head(model)  # unknown: refused, naming the way forward
    names = ("embeddings", "layers", "qkv", "attn_out", "ffn_in", "ffn_out")  # ELECTRA has BERT's layout
    head = HeadLayout(("generator_predictions", "generator_lm_head"))
    register_arch("my-encoder", Arch(**{f: getattr(ARCHS["bert"], f) for f in names}, mlm_heads=(head,)))
    try:
        assert [name for name, _ in mlm_head(model).parts] == list(head.parts)
        assert set(head_parameters(model)) == outside_encoder(model)
        batch = family_batch(tok, model)
        torch.testing.assert_close(mlm_loss(model, batch)[0], model(**batch).loss, rtol=1e-5, atol=1e-6)
    finally:
        del ARCHS["my-encoder"]


def test_the_head_layout_has_one_place():
    """The old per-family table of objectives says where it went (the architecture map);
    an entry's head must be HeadLayouts (module names alone would fail later, far from the mistake)."""
    with pytest.raises(AttributeError, match="mlm_heads.*register_arch"):
        objectives.MLM_HEADS  # noqa: B018
    with pytest.raises(TypeError, match="tuple of HeadLayout"):
        replace(ARCHS["bert"], mlm_heads=("cls",))


def test_a_layout_that_leaves_a_parameter_out_is_refused(monkeypatch):
    decoder_only = (HeadLayout(("generator_lm_head",)),)
    monkeypatch.setitem(ARCHS, "electra", replace(ARCHS["electra"], mlm_heads=decoder_only))
    with pytest.raises(
        ConfigError, match="generator_predictions.* is neither in the encoder nor in the head"
    ):
        mlm_head(family_model("electra"))
