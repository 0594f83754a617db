"""The Python API: every verb's library call gives what its command line gives (same mask, same
score), and its config refuses bad values when it is built."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import pytest

import ticketlab
from conftest import record
from test_runner import write_sst2
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.masks import load_mask

WORDS = "the a cat dog bird man woman king queen runs sees likes eats good bad big small red blue .".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(60)) + "\n")
    return path


def test_prune(tiny_bert_dir, tmp_path):
    cli = ["prune", "random", "--model", str(tiny_bert_dir), "--sparsity", "0.6", "--seed", "3"]
    assert main([*cli, "--out", str(tmp_path / "cli")]) == 0
    config = ticketlab.PruneConfig(str(tiny_bert_dir), "random", 0.6, tmp_path / "api", seed=3)
    result = ticketlab.prune(config)
    assert result.out == tmp_path / "api" and result.mask.sparsity == pytest.approx(0.6, abs=1e-3)
    cli_mask, cli_config = load_mask(tmp_path / "cli")
    assert cli_mask == result.mask and record(cli_config) == record(result.config)  # `created` aside


@pytest.mark.parametrize("method", ["tamt", "imp"])
def test_search(method, tiny_bert_dir, corpus, tmp_path):
    common = "--sparsity 0.3 --steps 3 --save-at 2 --lr 3e-3 --max-length 16 --batch-size 4 --seed 1".split()
    cli = ["search", method, "--model", str(tiny_bert_dir), "--corpus", str(corpus), *common]
    assert main([*cli, "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    options = dict(sparsity=0.3, seed=1) if method == "tamt" else dict(sparsity=0.3)
    config = ticketlab.SearchConfig(
        model=str(tiny_bert_dir),
        method=ticketlab.TamtConfig(**options) if method == "tamt" else ticketlab.ImpConfig(**options),
        corpus=[corpus],
        steps=3,
        save_at=[2],
        lr=3e-3,
        max_length=16,
        batch_size=4,
        seed=1,
        out=tmp_path / "api",
        progress=False,
    )
    result = ticketlab.search(config)
    cli_mask, cli_config = load_mask(tmp_path / "cli")
    assert result.mask == cli_mask and result.config.search["final_eval"] == cli_config.search["final_eval"]
    step = "steps/step-000002"
    assert load_mask(tmp_path / "api" / step)[0] == load_mask(tmp_path / "cli" / step)[0]
    # the same settings were recorded: the CLI resumes (here: returns) what the library started
    assert json.loads((tmp_path / "api/run/settings.json").read_text())["model"] == str(tiny_bert_dir)
    assert main([*cli, "--no-progress", "--out", str(tmp_path / "api")]) == 0


def test_evaluate_pretraining(tiny_bert_dir, corpus, tmp_path, capsys):
    ticketlab.prune(ticketlab.PruneConfig(str(tiny_bert_dir), "omp", 0.5, tmp_path / "omp"))
    cli = ["evaluate-pretrain", "--model", str(tiny_bert_dir), "--full", "--mask", str(tmp_path / "omp")]
    assert main([*cli, "--corpus", str(corpus), "--max-length", "16", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = ticketlab.evaluate_pretraining(
        ticketlab.PretrainEvalConfig(
            corpus=[corpus], model=str(tiny_bert_dir), masks=[tmp_path / "omp"], full=True, max_length=16
        )
    )
    assert rows == printed and [r["name"] for r in rows] == ["full", "omp"]
    assert rows[0]["kd_loss"] == pytest.approx(0.0, abs=1e-6) and rows[1]["kd_loss"] > 0


def test_evaluate_pretraining_resumes_at_its_out_file(tiny_bert_dir, corpus, tmp_path, monkeypatch, caplog):
    """With `out`, the file is written after each row and a rerun scores only the rows it lacks or
    whose settings or inputs changed (here: a mask pruned again at another sparsity)."""
    import ticketlab.verbs.evaluate_subnetwork as subnetwork

    for name, sparsity in (("a", 0.5), ("b", 0.3)):
        ticketlab.prune(ticketlab.PruneConfig(str(tiny_bert_dir), "omp", sparsity, tmp_path / name))
    out = tmp_path / "eval.json"
    given = {"corpus": [corpus], "model": str(tiny_bert_dir), "max_length": 16, "out": out}
    config = ticketlab.PretrainEvalConfig(masks=[tmp_path / "a", tmp_path / "b"], full=True, **given)
    real, scored = subnetwork.evaluate_subnetwork, []

    def counted(config, mask_dir, cache):
        scored.append(None if mask_dir is None else Path(mask_dir).name)
        return real(config, mask_dir, cache)

    monkeypatch.setattr(subnetwork, "evaluate_subnetwork", counted)
    first = ticketlab.evaluate_pretraining(config)
    assert scored == [None, "a", "b"] and json.loads(out.read_text()) == first
    out.write_text(json.dumps(first[:2]))  # as a run killed while scoring "b" leaves it
    caplog.set_level(logging.INFO, logger="ticketlab.verbs.evaluate_pretrain")
    assert ticketlab.evaluate_pretraining(config) == first and scored[3:] == ["b"]
    assert f"a: scored with the same settings and inputs in {out}, kept" in caplog.text
    ticketlab.prune(ticketlab.PruneConfig(str(tiny_bert_dir), "omp", 0.7, tmp_path / "c"))
    shutil.rmtree(tmp_path / "a")
    shutil.copytree(tmp_path / "c", tmp_path / "a")
    again = ticketlab.evaluate_pretraining(config)
    assert scored[4:] == ["a"] and again[1]["sparsity"] == pytest.approx(0.7, abs=0.01)
    reseeded = ticketlab.PretrainEvalConfig(masks=[tmp_path / "a"], seed=1, **given)
    assert [r["name"] for r in ticketlab.evaluate_pretraining(reseeded)] == ["a"] and scored[5:] == ["a"]


def test_evaluate_pretraining_reads_every_input_first(tiny_bert_dir, corpus, tmp_path, monkeypatch):
    """From Python as on the command line, a mistyped mask or corpus is refused before any row is
    scored, whatever its place in the list."""
    import ticketlab.verbs.evaluate_subnetwork as rows

    ticketlab.prune(ticketlab.PruneConfig(str(tiny_bert_dir), "omp", 0.5, tmp_path / "omp"))
    monkeypatch.setattr(rows, "load_model", lambda *a, **k: pytest.fail("a row was scored"))
    given = {"model": str(tiny_bert_dir), "full": True, "max_length": 16}
    for masks, texts, says in (
        ([tmp_path / "omp", tmp_path / "opm"], [corpus], "opm: mask directory not found"),
        ([tmp_path / "omp"], [corpus, tmp_path / "c.txt"], "c.txt: corpus not found"),
    ):
        with pytest.raises(TicketlabError, match=says):
            ticketlab.evaluate_pretraining(ticketlab.PretrainEvalConfig(corpus=texts, masks=masks, **given))


def test_finetune(tiny_bert_dir, tmp_path):
    write_sst2(tmp_path / "glue", n_train=16, n_dev=8)
    cli = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir", str(tmp_path / "glue")]
    opts = "--max-steps 2 --eval-every 1 --max-length 32 --lr 1e-3 --batch-size 4 --no-progress".split()
    assert main([*cli, *opts, "--out", str(tmp_path / "cli")]) == 0
    config = ticketlab.FinetuneConfig(
        model=str(tiny_bert_dir),
        task="sst2",
        data_dir=str(tmp_path / "glue"),
        max_steps=2,
        eval_every=1,
        max_length=32,
        lr=1e-3,
        batch_size=4,
        progress=False,
    )
    summary = ticketlab.finetune_seeds(config, [1], tmp_path / "api")
    cli_summary = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert summary["best"] == cli_summary["best"] and summary["final"] == cli_summary["final"]
    one = ticketlab.finetune(config, tmp_path / "api" / "seed-1")  # finished: read back
    cli_one = json.loads((tmp_path / "cli" / "seed-1" / "result.json").read_text())
    assert one.history == cli_one["history"] and one.best_score == summary["best"]["accuracy"]["mean"]


def test_configs_refuse_bad_values(tiny_bert_dir, corpus, tmp_path):
    model, tamt = str(tiny_bert_dir), ticketlab.TamtConfig(0.5)
    with pytest.raises(ConfigError, match="corpus required: text files"):
        ticketlab.SearchConfig(model=model, method=tamt, steps=3, out=tmp_path)
    with pytest.raises(ConfigError, match="IMP only"):
        ticketlab.SearchConfig(model=model, method=tamt, steps=3, out=tmp_path, task="sst2")
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        ticketlab.SearchConfig(model=model, method=tamt, steps=0, out=tmp_path, corpus=[corpus])
    with pytest.raises(ConfigError, match="mixed_precision"):
        ticketlab.SearchConfig(
            model=model, method=tamt, steps=3, out=tmp_path, corpus=[corpus], mixed_precision="fp8"
        )
    with pytest.raises(ConfigError, match="method must be one of"):
        ticketlab.PruneConfig(model, "magnitude", 0.5, tmp_path)
    with pytest.raises(ConfigError, match="max_length must be >= 8"):
        ticketlab.PretrainEvalConfig(corpus=[corpus], model=model, max_length=4)


def test_every_setting_a_sweep_may_give_a_search_reaches_its_config(tmp_path):
    """The spec's search settings (named as the CLI's options) map onto SearchConfig, TamtConfig
    and ImpConfig: none is dropped, none is unknown."""
    from sweep_fakes import imp_settings, tamt_settings
    from ticketlab.studies.sweep.jobs import SearchJob
    from ticketlab.studies.sweep.methods import sweep_methods

    TAMT_SETTINGS, IMP_SETTINGS = tamt_settings(), imp_settings()
    for method in ("tamt-mlm", "tamt-kd", "tamt-mlm+kd"):  # derived from the configs: the listed sets
        assert sweep_methods()[method].settings == TAMT_SETTINGS, method
    for method in ("imp", "imp-task"):
        assert sweep_methods()[method].settings == IMP_SETTINGS, method

    given = {
        "max_length": 16, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.1,
        "grad_accum": 2, "max_grad_norm": 0.5, "mixed_precision": "bf16", "ranking": "global",
        "targets": "query", "save_every": 7, "eval_every": 5, "dev_blocks": 8, "eval_batch_size": 3,
        "no_eval": True, "keep_checkpoint": True, "log_every": 2, "cache_dir": str(tmp_path),
        "init": "random", "threshold": 0.02, "alpha": 3.0, "freeze_head": True, "prune_rate": 0.2,
        "score_dtype": "bfloat16", "variant": "chen", "rewind_head": True,
        "first_pruning": "after-round", "decoder": "masked", "kd_input": "corrupted", "schedule_steps": 40,
        "no_pooler": True, "kd_teacher": "eval", "count": "round", "clip_per_tensor": True,
        "adam_eps": 1e-6, "wikitext_markup": "keep", "kd_data": "blocks",  # reference: TAMT-KD's alone
        "compile": True, "optimizer": "adamw",  # bertadam: float32 scores, its own decay
        "corpus_tokens": 5000,
    }  # fmt: skip
    assert set(given) == TAMT_SETTINGS | IMP_SETTINGS
    corpus = {"train": ["t.txt"], "dev": ["d.txt"], "text_column": "body"}
    for method, names in (("tamt-mlm", TAMT_SETTINGS), ("imp", IMP_SETTINGS)):
        job = SearchJob(
            "m", "x", 0.5, 3, 10, [5], {k: given[k] for k in names}, corpus, tmp_path / "m", tmp_path
        )
        config = sweep_methods()[method].configure(job)
        for k in names:
            if k == "freeze_head":
                assert config.method.train_head is False
            elif k == "no_pooler":
                assert config.method.pooler is False
            else:
                own = "ranking targets init threshold alpha prune_rate score_dtype variant pooler".split()
                own += ["rewind_head", "first_pruning", "decoder", "kd_input", "kd_teacher", "count"]
                own += ["kd_data"]
                owner = config.method if k in own else config
                assert getattr(owner, k) == given[k], k
        assert (
            config.seed == 3
            and config.save_at == [5]
            and config.text_column == "body"
            and config.dev == ["d.txt"]
        )
