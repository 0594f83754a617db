"""N:M masks: N of every M consecutive weights along the input dimension, as a pattern of the one
selection (OMP, random, TAMT), recorded in the mask file, kept by fine-tuning, exported for 2:4."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config
from test_tamt import batch_of, search_args, tiny_run, tok  # noqa: F401 (tiny_run, tok: fixtures)
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, MaskFileError
from ticketlab.lm.objectives import pretraining_loss
from ticketlab.masks import current_mask, load_mask, save_mask
from ticketlab.masks.io import CONFIG_NAME
from ticketlab.masks.pattern import NM, parse_pattern
from ticketlab.methods import keep_top, omp_mask, random_mask
from ticketlab.methods.tamt.search import (
    Scratch,
    TamtConfig,
    attach_scores,
    initial_mask,
    make_thresholders,
    prepare_tamt,
    rethreshold,
)
from ticketlab.tasks.objective import load_task_model
from ticketlab.train.config import TrainConfig
from ticketlab.train.loop import train
from ticketlab.verbs.prune import PruneConfig


def tiny():
    return make_model(BertForMaskedLM, tiny_bert_config(), seed=0)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_nm(mask, nm: NM) -> None:
    for k, t in mask.items():
        per_group = t.reshape(-1, nm.m).sum(1)
        assert torch.all(per_group == nm.n), f"{k}: groups keep {per_group.unique().tolist()}"


@pytest.mark.parametrize("pattern", ["1:4", "2:4", "3:8", "1:2"])
@pytest.mark.parametrize("method", [omp_mask, random_mask])
def test_one_shot_masks_keep_exactly_n_of_every_m(pattern, method):
    nm = parse_pattern(pattern)
    mask = method(tiny(), None, pattern=pattern)
    assert_nm(mask, nm)
    assert mask.sparsity == pytest.approx(nm.sparsity)


def test_omp_keeps_the_largest_magnitudes_of_each_group_and_ties_keep_the_lower_position():
    w = torch.tensor([[0.1, -0.9, 0.5, 0.2, 3.0, 3.0, 3.0, 3.0]])
    assert keep_top({"w": w.abs()}, None, pattern="2:4")["w"].tolist() == [
        [False, True, True, False, True, True, False, False]
    ]
    model = tiny()
    mask = omp_mask(model, 0.5, pattern="2:4")  # a sparsity that agrees is taken
    w = model.bert.encoder.layer[0].intermediate.dense.weight.abs().reshape(-1, 4)
    keep = mask["encoder.layer.0.intermediate.dense.weight"].reshape(-1, 4)
    assert torch.all(w[keep].reshape(-1, 2).min(1).values >= w[~keep].reshape(-1, 2).max(1).values)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"pattern": "4:4"}, "0 < N < M"),
        ({"pattern": "0:4"}, "0 < N < M"),
        ({"pattern": "2-4"}, "N:M"),
        ({"pattern": "2:4", "sparsity": 0.7}, "disagrees with pattern 2:4"),
        ({"pattern": "2:4", "ranking": "global"}, "local ranking"),
        ({"pattern": "2:5"}, "not a multiple of 5"),  # the hidden size, 32, is not
        ({}, "give a sparsity"),
    ],
)
def test_bad_patterns_are_refused_in_one_line(kw, message):
    kw = {"sparsity": None, **kw}
    with pytest.raises(ConfigError, match=message) as e:
        omp_mask(tiny(), **kw)
    assert "\n" not in str(e.value)
    if "multiple" not in message:  # the configs refuse it when built (divisibility needs the model)
        with pytest.raises(ConfigError, match=message):
            PruneConfig(model="m", method="omp", out="o", **kw)
        with pytest.raises(ConfigError, match=message):
            TamtConfig(**kw)


def test_prune_cli_records_the_pattern_and_info_shows_it(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "nm"
    code, printed, _ = run(
        capsys, "prune", "random", "--model", tiny_bert_dir, "--pattern", "2:4", "--out", out
    )
    assert code == 0 and "50.00% (2:4)" in printed
    mask, config = load_mask(out)
    assert config.pattern == "2:4" and config.sparsity == 0.5
    assert json.loads((out / CONFIG_NAME).read_text())["pattern"] == "2:4"
    assert_nm(mask, NM(2, 4))
    code, printed, _ = run(capsys, "info", out)
    assert code == 0 and "pattern:    2:4 (2 of every 4" in printed
    code, printed, _ = run(capsys, "info", out, "--json")
    assert json.loads(printed)["config"]["pattern"] == "2:4"


def test_a_mask_file_from_before_patterns_loads_as_elementwise(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "old"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", out)[0] == 0
    raw = json.loads((out / CONFIG_NAME).read_text())
    del raw["pattern"]  # as written by an older ticketlab
    (out / CONFIG_NAME).write_text(json.dumps(raw))
    assert load_mask(out)[1].pattern is None
    code, printed, _ = run(capsys, "info", out)
    assert code == 0 and "pattern:    elementwise" in printed


def test_a_file_whose_masks_break_its_pattern_is_refused(tiny_bert_dir, tmp_path):
    out = tmp_path / "nm"
    assert main(["prune", "omp", "--model", str(tiny_bert_dir), "--pattern", "2:4", "--out", str(out)]) == 0
    mask, config = load_mask(out)
    broken = {k: t.clone() for k, t in mask.items()}
    key = "encoder.layer.1.output.dense.weight"
    broken[key][0, :8] = torch.tensor([True, True, True, False, True, False, False, False])  # 3 + 1
    save_mask(type(mask)(broken), config, tmp_path / "broken")
    with pytest.raises(MaskFileError, match=f"'{key}' does not keep 2 of every 4"):
        load_mask(tmp_path / "broken")
    bad = json.loads((out / CONFIG_NAME).read_text())
    bad["sparsity"] = 0.7
    (out / CONFIG_NAME).write_text(json.dumps(bad))
    with pytest.raises(MaskFileError, match="disagrees with pattern 2:4"):
        load_mask(out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pattern", "2:4", "--sparsity", "0.7"], "disagrees with pattern 2:4"),
        (["--pattern", "3:3"], "0 < N < M"),
        (["--pattern", "1:3"], "not a multiple of 3"),
        ([], "give a sparsity"),
    ],
)
def test_prune_cli_refusals_are_one_line(tiny_bert_dir, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "prune", "omp", "--model", tiny_bert_dir, *argv, "--out", tmp_path / "m")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- TAMT


@pytest.mark.parametrize("path", ["whole", "chunked", "row-blocks", "generic"])
@pytest.mark.parametrize(("pattern", "score_dtype"), [("2:4", "float32"), ("1:4", "bfloat16")])
def test_tamt_keeps_exactly_n_of_every_m_after_every_step(tok, monkeypatch, path, pattern, score_dtype):  # noqa: F811
    if path == "chunked":
        monkeypatch.setattr(Scratch, "CHUNK", 7)
    if path == "row-blocks":  # blocks of 3 rows: the per-group thresholds are sliced with them
        monkeypatch.setattr(Scratch, "BLOCK", 3 * tiny_bert_config().hidden_size + 5)
    nm = parse_pattern(pattern)
    model = tiny()
    config = TamtConfig(None, pattern=pattern, objective="mlm+kd", score_dtype=score_dtype)
    if path == "generic":
        masks = attach_scores(model, initial_mask(model, config), fused=False, pattern=pattern)
        groups = [{"params": [p.scores for p in masks.values()]}]
    else:
        masks, groups = prepare_tamt(model, config)
    thresholders = make_thresholders(masks, config.sparsity, config.ranking, config.pattern)
    opt = torch.optim.AdamW(groups, lr=3e-2)  # large: masks move within a few steps
    start = current_mask(model)
    assert_nm(start, nm)
    for step in range(5):
        loss = pretraining_loss("mlm+kd")(model, batch_of(tok, seed=step))[0]
        loss.backward()
        opt.step()
        opt.zero_grad()
        rethreshold(thresholders)
        mask = current_mask(model)
        assert_nm(mask, nm)
        for k, p in masks.items():  # every kept score of a group is >= every pruned one of it
            s, m = p.scores.detach().float().reshape(-1, nm.m), mask[k].reshape(-1, nm.m)
            kept = s.masked_fill(~m, float("inf")).min(1).values
            pruned = s.masked_fill(m, -float("inf")).max(1).values
            assert torch.all(kept > pruned), (step, k)
        # the forward computes W ⊙ M with this mask
        key = "encoder.layer.0.intermediate.dense.weight"
        w = model.bert.encoder.layer[0].intermediate.dense.parametrizations.weight.original
        assert torch.equal(model.bert.encoder.layer[0].intermediate.dense.weight, w * mask[key])
    assert current_mask(model) != start


def test_tamt_ties_inside_a_group_keep_the_lower_positions():
    model = tiny()
    config = TamtConfig(None, pattern="2:4", objective="kd", init="random")
    masks, _ = prepare_tamt(model, config)
    p = next(iter(masks.values()))
    with torch.no_grad():
        p.scores.fill_(0.5)  # every group ties
    rethreshold(make_thresholders(masks, 0.5, "local", "2:4"))
    assert p.mask.reshape(-1, 4).tolist()[0] == [True, True, False, False]
    assert torch.all(p.mask.reshape(-1, 4)[:, :2]) and not torch.any(p.mask.reshape(-1, 4)[:, 2:])


def test_fused_layers_give_the_generic_gradients_with_per_group_thresholds(tok):  # noqa: F811
    def grads(fused):
        model = tiny()
        config = TamtConfig(None, pattern="2:4", objective="mlm+kd", init="random")
        masks = attach_scores(model, initial_mask(model, config), fused=fused, pattern="2:4")
        model.eval()
        pretraining_loss("mlm+kd")(model, batch_of(tok))[0].backward()
        return {k: p.scores.grad for k, p in masks.items()}

    fused, generic = grads(True), grads(False)
    for k, g in generic.items():
        torch.testing.assert_close(fused[k], g, rtol=1e-5, atol=1e-8, msg=lambda m, k=k: f"{k}: {m}")


def test_search_cli_with_a_pattern(tiny_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "tamt"
    args = search_args(tiny_run, out, "--pattern", "2:4", "--steps", "4", "--lr", "3e-2", "--no-eval")
    assert main(args) == 0
    mask, config = load_mask(out)
    assert config.pattern == "2:4" and config.sparsity == 0.5 and config.method == "tamt-mlm"
    assert_nm(mask, NM(2, 4))
    # the pattern is a setting of the search: the same directory with an elementwise 50% is refused
    other = search_args(tiny_run, out, "--sparsity", "0.5", "--steps", "4", "--lr", "3e-2", "--no-eval")
    assert main(other) == 2 and "other settings" in capsys.readouterr().err
    bad = search_args(tiny_run, tmp_path / "x", "--pattern", "2:4", "--sparsity", "0.6", "--steps", "4")
    assert main(bad) == 2 and "disagrees with pattern 2:4" in capsys.readouterr().err


# --------------------------------------------------------------------------- fine-tuning, export


def test_fine_tuning_keeps_the_pattern(tiny_bert_dir, tmp_path):
    from ticketlab.models.load import load_tokenizer
    from ticketlab.tasks.objective import task_objective

    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    rows = [f"the movie is {'good' if i % 2 else 'bad'} .\t{i % 2}" for i in range(48)]
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    mask_dir = tmp_path / "nm"
    assert (
        main(["prune", "omp", "--model", str(tiny_bert_dir), "--pattern", "2:4", "--out", str(mask_dir)]) == 0
    )
    mask, _ = load_mask(mask_dir)
    model, _ = load_task_model(tiny_bert_dir, "sst2", seed=1, mask=mask_dir)
    obj = task_objective("sst2", load_tokenizer(tiny_bert_dir), tmp_path / "glue", max_length=32)
    cfg = TrainConfig(max_steps=4, batch_size=16, lr=1e-2, progress=False, metric=obj.metric)
    modules = dict(model.base_model.named_modules())
    before = {k: modules[k.removesuffix(".weight")].weight.detach().clone() for k in mask}
    train(model, model.parameters(), obj.dataset, obj.collate_fn, obj.loss_fn, cfg)
    for k, keep in mask.items():
        w = modules[k.removesuffix(".weight")].weight.detach().cpu()
        assert torch.count_nonzero(w[~keep]) == 0, k  # N:M exact: at most 2 of every 4 nonzero
        assert torch.all((w != 0).reshape(-1, 4).sum(1) <= 2), k
        assert not torch.equal(w[keep], before[k].cpu()[keep]), k  # the kept weights trained
    assert_nm(current_mask(model), NM(2, 4))


def test_semi_structured_export_refusals(tiny_bert_dir, tmp_path, capsys):
    elementwise, one_four, two_four = tmp_path / "e", tmp_path / "14", tmp_path / "24"
    for out, shape in ((elementwise, ["--sparsity", "0.5"]), (one_four, ["--pattern", "1:4"])):
        assert main(["prune", "omp", "--model", str(tiny_bert_dir), *shape, "--out", str(out)]) == 0
    assert (
        main(["prune", "omp", "--model", str(tiny_bert_dir), "--pattern", "2:4", "--out", str(two_four)]) == 0
    )
    capsys.readouterr()
    for mask, message in (
        (elementwise, "needs a 2:4 mask, this one is elementwise"),
        (one_four, "needs a 2:4 mask, this one is 1:4"),
    ):
        argv = [
            "export",
            "--model",
            tiny_bert_dir,
            "--mask",
            mask,
            "--out",
            tmp_path / "x",
            "--semi-structured",
        ]
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the refusal without one is not reachable")
    argv = ["export", "--model", tiny_bert_dir, "--mask", two_four, "--out", tmp_path / "x"]
    code, _, err = run(capsys, *argv, "--semi-structured", "bf16")
    assert code == 2 and "needs a CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
