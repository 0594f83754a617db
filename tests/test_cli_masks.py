"""The mask verbs of the CLI, run in-process: prune, info, compare, export, and their errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from transformers import AutoModelForMaskedLM

from ticketlab.cli import _verb_modules, main
from ticketlab.core.errors import ConfigError, MaskMismatchError, TicketlabError
from ticketlab.masks import find_targets, load_mask


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_verb_has_help(capsys):
    for verb in _verb_modules():
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0
        assert "usage: ticketlab " + verb in capsys.readouterr().out


def test_prune_info_compare_export(tiny_bert_dir, tmp_path, capsys):
    omp, rnd = tmp_path / "omp", tmp_path / "rand"
    # both global (Chen et al.'s one-shot pruning): the same targets, the word embeddings dense
    prune_omp = ["prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.7", "--ranking", "global"]
    code, out, _ = run(capsys, *prune_omp, "--out", omp)
    assert code == 0 and "70.0" in out
    code, _, _ = run(
        capsys,
        "prune",
        "random",
        "--model",
        tiny_bert_dir,
        "--sparsity",
        "70%",
        "--seed",
        1,
        "--ranking",
        "global",
        "--out",
        rnd,
    )
    assert code == 0
    mask, config = load_mask(rnd)
    assert config.method == "random" and config.ranking == "global" and config.seed == 1
    assert mask.numel - mask.kept == round(0.7 * mask.numel)

    code, out, _ = run(capsys, "info", omp)
    assert code == 0
    assert "overall" in out and "70.0%" in out and "encoder.layer.1.output.dense.weight" in out
    assert "method:     omp (ranking global)\n" in out and "None" not in out  # no unset setting shown
    assert "(of the weights the mask prunes; other targets hash others)" in out
    _, seeded, _ = run(capsys, "info", rnd)
    assert "method:     random (ranking global, seed 1)\n" in seeded
    base = [line for line in out.splitlines() if line.startswith("base model:")]
    assert base == [line for line in seeded.splitlines() if line.startswith("base model:")]  # one model
    code, out, _ = run(capsys, "info", omp, "--json")
    assert json.loads(out)["config"]["method"] == "omp"

    code, out, _ = run(capsys, "compare", omp, rnd, "--json")
    matrix = json.loads(out)["jaccard"]
    assert matrix[0][0] == 1.0 and matrix[0][1] == matrix[1][0] and 0.05 < matrix[0][1] < 0.35
    code, out, _ = run(capsys, "compare", omp, rnd, "--json", "--per-matrix")  # TAMT's compare_mask.py
    per = [mask_of(omp)[k] for k in mask_of(omp)], [mask_of(rnd)[k] for k in mask_of(omp)]
    mean = sum(int((a & b).sum()) / int((a | b).sum()) for a, b in zip(*per, strict=True)) / len(per[0])
    assert code == 0 and json.loads(out)["jaccard"][0][1] == pytest.approx(mean)

    code, out, _ = run(capsys, "export", "--model", tiny_bert_dir, "--mask", omp, "--out", tmp_path / "exp")
    assert code == 0 and "mlm" in out
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "exp")
    for key, module in find_targets(reloaded, [k.removesuffix(".weight") for k in mask_of(omp)]).items():
        assert torch.all(module.weight[~mask_of(omp)[key]] == 0)
    assert (tmp_path / "exp" / "tokenizer.json").is_file() or (tmp_path / "exp" / "vocab.txt").is_file()


def mask_of(path):
    return load_mask(path)[0]


def test_user_errors_are_one_line_and_exit_2(tiny_bert_dir, tmp_path, capsys):
    code, _, err = run(
        capsys, "prune", "omp", "--model", tmp_path / "missing", "--sparsity", "0.5", "--out", tmp_path / "m"
    )
    assert code == 2 and "model directory not found" in err and "Traceback" not in err
    code, _, err = run(capsys, "info", tmp_path / "missing")
    assert code == 2 and "mask directory not found" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mask_config.json").write_text("{")
    code, _, err = run(capsys, "info", bad)
    assert code == 2 and str(bad / "mask_config.json") in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["prune", "omp", "--model", str(tiny_bert_dir), "--sparsity", "1.5", "--out", str(bad)])
    assert e.value.code == 2
    assert "sparsity must be in [0, 1)" in capsys.readouterr().err
    code, _, err = run(capsys, "compare", tmp_path / "one")
    assert code == 2


def test_the_mask_verbs_are_the_python_api(tiny_bert_dir, tmp_path):
    """`ticketlab info / compare / export / compact` are `ticketlab.info(InfoConfig)` ... : what the
    command lines print is what the functions return."""
    import ticketlab as tl
    from ticketlab.masks import UnitMask, structure_of
    from ticketlab.masks.unit_io import save_unit_mask, unit_mask_config

    omp, rnd = tmp_path / "omp", tmp_path / "rand"
    tl.prune(tl.PruneConfig(str(tiny_bert_dir), "omp", 0.5, omp))
    tl.prune(tl.PruneConfig(str(tiny_bert_dir), "random", 0.5, rnd))
    shown = tl.info(tl.InfoConfig(omp))
    assert shown.to_dict()["config"]["method"] == "omp" and shown.lines()[0] == f"mask:       {omp}"
    done = tl.compare(tl.CompareConfig([omp, rnd], distance=True))
    assert done.labels == ["omp", "rand"] and done.matrix[0][0] == 0.0 and "distance" in done.to_dict()
    part = tmp_path / "part"  # other weights: refused naming the pair, as the mismatch it is
    tl.prune(tl.PruneConfig(str(tiny_bert_dir), "omp", 0.5, part, targets=["query"]))
    with pytest.raises(MaskMismatchError, match=f"^{part} vs {omp}: masks cover different weights"):
        tl.compare(tl.CompareConfig([omp, part]))
    with pytest.raises(TicketlabError, match="two or more mask directories; got 1: "):
        tl.CompareConfig([omp])
    # the same mask as if found on other weights: refused unless asked for; like-named folders told apart
    other = shutil.copytree(omp, tmp_path / "b" / "omp")
    config = json.loads((other / "mask_config.json").read_text())
    config["base_model_hash"] = "sha256:" + "0" * 64
    (other / "mask_config.json").write_text(json.dumps(config))
    with pytest.raises(TicketlabError, match=f"^{other} vs {omp}: found on other weights .* --ignore-hash"):
        tl.compare(tl.CompareConfig([omp, other]))
    done = tl.compare(tl.CompareConfig([omp, other], check_hash=False))
    assert done.labels == [f"{tmp_path.name}/omp", "b/omp"] and done.matrix[0][1] == 1.0
    exported = tl.export(tl.ExportConfig(str(tiny_bert_dir), omp, tmp_path / "exp"))
    assert exported.head == "mlm" and exported.sparsity == pytest.approx(load_mask(omp)[0].sparsity)
    with pytest.raises(ConfigError, match="not both"):
        tl.ExportConfig(str(tiny_bert_dir), omp, tmp_path / "x", semi_structured="fp16", base="b")
    typo = f"{tiny_bert_dir}x"  # beside the real folder: not a hub id; refused before the mask is read
    refused = pytest.raises(TicketlabError, match="x: model directory not found")
    with pytest.MonkeyPatch.context() as mp, refused:
        mp.setattr("ticketlab.verbs.export.load_mask", lambda *a: pytest.fail("the mask was read"))
        tl.export(tl.ExportConfig(str(tiny_bert_dir), omp, tmp_path / "t", base=typo))

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir)
    units = UnitMask.ones(structure_of(model))
    units.head[0, 0] = False  # one head of the first layer pruned
    config = unit_mask_config(model, units, method="manual", level=0.1, base_model=str(tiny_bert_dir))
    save_unit_mask(units, config, tmp_path / "ticket")
    done = tl.compact(tl.CompactConfig(str(tiny_bert_dir), tmp_path / "ticket", tmp_path / "small"))
    assert (done.heads, done.all_heads) == (units.head.numel() - 1, units.head.numel())
    assert done.parameters < done.parameters_before and (tmp_path / "small").is_dir()


def test_prune_into_a_folder_holding_another_mask_refuses_and_keeps_it(
    tiny_bert_dir, tmp_path, capsys, monkeypatch
):
    """A mask folder holds the mask of one command: `prune` with other settings refuses, in one line
    and before loading the model, and keeps the mask; targets, which only the model resolves, are
    told apart before the pruning. The same settings with the model's path spelt otherwise go on."""
    import ticketlab.methods.one_shot as one_shot

    mask = tmp_path / "m"
    prune = ["prune", "omp", "--model", tiny_bert_dir, "--out", mask]
    assert run(capsys, *prune, "--sparsity", "0.5")[0] == 0
    kept = (mask / "mask_config.json").read_text()
    loads = one_shot.load_model
    monkeypatch.setattr(one_shot, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    code, _, err = run(capsys, *prune, "--sparsity", "0.7")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{mask} holds a mask with other settings (differs in: sparsity 0.5 -> 0.7)" in err
    code, _, err = run(capsys, "prune", "random", *prune[2:], "--sparsity", "0.5")
    assert code == 2 and "method 'omp' -> 'random', seed None -> 0" in err, err
    code, _, err = run(capsys, *prune, "--sparsity", "0.5", "--targets", r".*\.query")
    assert code == 2 and "differs in: targets" in err, err
    monkeypatch.setattr(one_shot, "load_model", loads)
    registered = one_shot.methods

    def no_pruning(verb):
        found = registered(verb)
        return {**found, "omp": dataclasses.replace(found["omp"], run=lambda *a, **k: pytest.fail("pruned"))}

    monkeypatch.setattr(one_shot, "methods", no_pruning)
    code, _, err = run(capsys, *prune, "--sparsity", "0.5", "--no-pooler")  # the defaults, resolved
    assert code == 2 and "differs in: targets" in err, err
    monkeypatch.undo()
    assert (mask / "mask_config.json").read_text() == kept
    spelt = f"{tiny_bert_dir}/./"
    assert run(capsys, "prune", "omp", "--model", spelt, "--sparsity", "0.5", "--out", mask)[0] == 0
    assert json.loads((mask / "mask_config.json").read_text())["sparsity"] == 0.5


def test_export_writes_the_dtype_of_its_base(tiny_bert_dir, tmp_path, capsys):
    """A float16 base gives a float16 checkpoint, as compact does (float32 would double its size);
    its config says so, and the pruned weights are zeros in it."""
    from safetensors.torch import load_file

    from conftest import write_tokenizer

    AutoModelForMaskedLM.from_pretrained(tiny_bert_dir).half().save_pretrained(tmp_path / "fp16")
    write_tokenizer(tmp_path / "fp16")
    code, _, err = run(
        capsys, "prune", "omp", "--model", tmp_path / "fp16", "--sparsity", "0.5", "--out", tmp_path / "m"
    )
    assert code == 0, err
    code, _, err = run(
        capsys, "export", "--model", tmp_path / "fp16", "--mask", tmp_path / "m", "--out", tmp_path / "x"
    )
    assert code == 0, err
    weights = load_file(tmp_path / "x" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert json.loads((tmp_path / "x" / "config.json").read_text())["dtype"] == "float16"
    query = next(t for k, t in weights.items() if k.endswith("layer.0.attention.self.query.weight"))
    assert 0.3 < float((query == 0).float().mean()) < 0.7
