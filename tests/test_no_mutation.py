"""No API call changes the config it is given: a caller may pass one config to several calls (a
sweep, a notebook) and read it afterwards. Each entry point runs once on a tiny model with a config
that leaves the fields it fits (max_length, doc_stride, ...) at their defaults, and the config is
compared with a deep copy taken before the call."""

from __future__ import annotations

import copy
import random

import pytest

import ticketlab
from test_finetune import sentiment_rows
from ticketlab.lm.pretrain import PretrainConfig, pretrain
from ticketlab.studies.adaptation import AdaptConfig, AdaptSource, run_adaptation
from ticketlab.studies.mtl import MtlConfig, run_mtl
from ticketlab.studies.supertickets import SuperConfig, run_super
from ticketlab.verbs.finetune import FinetuneConfig, finetune_seeds

WORDS = "the a cat dog bird man woman king queen runs sees likes eats good bad big small red blue .".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(80)) + "\n")
    return path


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    for split, n, seed in (("train", 32, 0), ("dev", 40, 1)):
        (root / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(sentiment_rows(n, seed)) + "\n"
        )
    return root


def unchanged(call, config, *args, **kw):
    """Run `call(config, ...)` and check `config` afterwards equals a deep copy taken before."""
    before = copy.deepcopy(config)
    call(config, *args, **kw)
    assert config == before, f"{call.__name__} changed its config"


def quick_finetune(model, glue, **kw) -> FinetuneConfig:
    base = dict(model=str(model), task="sst2", data_dir=str(glue), max_steps=2, batch_size=8, eval_every=2)
    return FinetuneConfig(**{**base, "lr": 1e-3, "progress": False, **kw})


def test_prune_search_and_evaluate_pretraining(tiny_bert_dir, corpus, tmp_path):
    model = str(tiny_bert_dir)
    unchanged(ticketlab.prune, ticketlab.PruneConfig(model, "omp", 0.5, tmp_path / "omp"))
    for name, method in (("tamt", ticketlab.TamtConfig(0.3)), ("imp", ticketlab.ImpConfig(0.3))):
        config = ticketlab.SearchConfig(  # max_length left to the search: it fits it to the model
            model=model, method=method, steps=3, out=tmp_path / name, corpus=[corpus], progress=False
        )
        unchanged(ticketlab.search, config)
    config = ticketlab.PretrainEvalConfig(corpus=[corpus], model=model, masks=[tmp_path / "omp"], full=True)
    unchanged(ticketlab.evaluate_pretraining, config)


def test_finetune_and_its_seeds(tiny_bert_dir, glue, tmp_path):
    unchanged(ticketlab.finetune, quick_finetune(tiny_bert_dir, glue), tmp_path / "one")
    unchanged(finetune_seeds, quick_finetune(tiny_bert_dir, glue), [1, 2], tmp_path / "seeds")


def test_pretrain(tiny_bert_dir, corpus, tmp_path):
    config = PretrainConfig(
        hidden=32, layers=1, heads=2, intermediate=64, max_length=16, steps=2, progress=False
    )
    unchanged(pretrain, config, corpus, tmp_path / "model", tokenizer=tiny_bert_dir)


def test_studies(tiny_bert_dir, glue, tmp_path):
    protocol = quick_finetune(tiny_bert_dir, glue, max_steps=4)
    unchanged(
        run_super, SuperConfig(protocol, seeds=[1], levels=[0.6], kinds=["winning"]), tmp_path / "super"
    )
    mtl = MtlConfig(
        model=str(tiny_bert_dir),
        tasks=["sst2"],
        data_dir=str(glue),
        max_steps=2,
        batch_size=8,
        progress=False,
    )
    unchanged(run_mtl, mtl, tmp_path / "mtl")
    sources = [AdaptSource("full", 1, str(tiny_bert_dir))]
    unchanged(run_adaptation, AdaptConfig(protocol, sources, [0.5, 1.0]), tmp_path / "adapt")


def test_sweep_spec(tmp_path):
    """A spec made in code keeps the dicts it was given: pretrain_eval takes search.max_length as its
    own copy."""
    from ticketlab.studies.sweep.sweep_spec import SweepSpec, TaskEntry

    (tmp_path / "SST-2").mkdir()
    (tmp_path / "wiki.txt").write_text("some text\n")
    text = str(tmp_path / "wiki.txt")
    given = {
        "corpus": {"train": [text], "dev": [text]},
        "search": {"steps": 20, "max_length": 64},
        "pretrain_eval": {"max_blocks": 8},
        "methods": {"full": {}, "omp": {}},
    }
    before = copy.deepcopy(given)
    tasks = {"sst2": TaskEntry("sst2", "sst2", str(tmp_path / "SST-2"))}
    spec = SweepSpec(model=str(tmp_path), tasks=tasks, sparsities=[0.5], **given)
    assert given == before, "SweepSpec changed the dicts it was given"
    assert spec.pretrain_eval == {"max_blocks": 8, "max_length": 64}  # what it scores with
