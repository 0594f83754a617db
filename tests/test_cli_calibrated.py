"""`ticketlab prune wanda|sparsegpt` from the command line, and what every mask verb does with their
masks: info, compare, finetune, export (SparseGPT's reconstructed weights too); their refusals."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from conftest import VOCAB, run
from ticketlab.core.errors import ConfigError
from ticketlab.masks import find_targets, load_mask
from ticketlab.masks.reconstructed import RECONSTRUCTED_NAME

WORDS = [w for w in VOCAB if w.isalpha()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A text file of 300 lines of the tiny vocabulary: plenty of 16-token blocks."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(20)) for _ in range(300)) + "\n")
    return path


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    rng = random.Random(1)
    rows = [f"the {rng.choice(WORDS)} is {'good' if i % 2 else 'bad'} .\t{i % 2}" for i in range(32)]
    for split in ("train", "dev"):
        (root / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


def prune(capsys, method, model, corpus, out, *more):
    calibration = ["--corpus", corpus, "--calibration", 8, "--calibration-length", 16]
    return run(capsys, "prune", method, "--model", model, *calibration, "--out", out, *more)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_prune_then_info_compare_finetune_export(method, tiny_bert_dir, corpus, sst2, tmp_path, capsys):
    out, nm = tmp_path / "m70", tmp_path / "m24"
    code, printed, _ = prune(capsys, method, tiny_bert_dir, corpus, out, "--sparsity", "0.7")
    assert code == 0 and f"{method}: " in printed
    assert prune(capsys, method, tiny_bert_dir, corpus, nm, "--pattern", "2:4")[0] == 0
    mask, config = load_mask(out)
    assert config.method == method and config.seed == 0 and config.ranking is None
    assert config.search["calibration_sequences"] == 8 and config.search["calibration_length"] == 16
    assert config.search["calibration_corpus"] == str(corpus)
    assert config.search["calibration_corpus_key"].startswith("sha256:")
    # the corpus's start, twice the 8 x 16 tokens drawn and the dev tail carved from it, not all of it
    read = {"tokens_read": 270, "max_tokens": 270, "capped": True}
    assert config.search["calibration_corpus_read"] == read
    assert load_mask(nm)[1].pattern == "2:4"

    code, shown, _ = run(capsys, "info", out)
    assert code == 0 and "calibration_sequences=8" in shown and "calibration_length=16" in shown
    assert ("not a ticket" in shown) == (method == "sparsegpt")
    code, shown, _ = run(capsys, "compare", out, nm, "--json")
    assert code == 0 and 0 < json.loads(shown)["jaccard"][0][1] < 1

    ft = ["finetune", "--model", tiny_bert_dir, "--mask", out, "--task", "sst2", "--data-dir", sst2]
    knobs = "--max-steps 2 --eval-every 1 --max-length 16 --lr 1e-3 --no-progress".split()
    assert run(capsys, *ft, "--out", tmp_path / "ft", *knobs)[0] == 0

    code, _, _ = run(capsys, "export", "--model", tiny_bert_dir, "--mask", out, "--out", tmp_path / "exp")
    assert code == 0
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path / "exp")
    base = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir)
    key = "encoder.layer.0.intermediate.dense.weight"
    w, w0 = (find_targets(m, [key.removesuffix(".weight")])[key].weight for m in (exported, base))
    assert torch.equal(w, w0 * mask[key])  # the ticket: θ0 under the mask, whatever the method


def test_sparsegpt_exports_its_reconstructed_weights(tiny_bert_dir, corpus, tmp_path, capsys):
    out = tmp_path / "sgpt"
    assert prune(capsys, "sparsegpt", tiny_bert_dir, corpus, out, "--sparsity", "0.5")[0] == 0
    stored = load_file(str(out / RECONSTRUCTED_NAME))
    mask = load_mask(out)[0]
    assert "embeddings.word_embeddings.weight" in mask and "embeddings.word_embeddings.weight" not in stored
    exp = tmp_path / "exp"
    code, printed, _ = run(
        capsys, "export", "--model", tiny_bert_dir, "--mask", out, "--reconstructed", "--out", exp
    )
    assert code == 0 and "not a ticket" in printed
    model = AutoModelForMaskedLM.from_pretrained(exp)
    for key, module in find_targets(model, [k.removesuffix(".weight") for k in stored]).items():
        assert torch.equal(module.weight.detach(), stored[key])
    assert (
        "not a ticket" in json.loads((exp / "ticketlab_mask.json").read_text())["search"]["exported_weights"]
    )


def test_sparsegpt_settings_reach_the_solver(tiny_bert_dir, corpus, tmp_path, capsys):
    """`--blocksize` and `--damp` are recorded with the mask and change what the solver computes;
    from Python the same settings as a mapping of its fields."""
    import ticketlab as tl
    from ticketlab.methods.sparsegpt.config import SparseGptConfig

    base, damped = tmp_path / "base", tmp_path / "damped"
    assert prune(capsys, "sparsegpt", tiny_bert_dir, corpus, base, "--sparsity", "0.5")[0] == 0
    more = ("--sparsity", "0.5", "--blocksize", "16", "--damp", "0.5")
    assert prune(capsys, "sparsegpt", tiny_bert_dir, corpus, damped, *more)[0] == 0
    recorded = [{k: load_mask(d)[1].search[k] for k in ("blocksize", "damp")} for d in (base, damped)]
    assert recorded == [{"blocksize": 128, "damp": 0.01}, {"blocksize": 16, "damp": 0.5}]
    key = "encoder.layer.0.output.dense.weight"
    a, b = (load_file(str(d / RECONSTRUCTED_NAME))[key] for d in (base, damped))
    assert not torch.allclose(a, b)
    # another damping into that folder is refused, its mask kept; the same command makes it again
    code, _, err = prune(capsys, "sparsegpt", tiny_bert_dir, corpus, damped, *more[:-1], "0.25")
    assert code == 2 and "differs in: damp 0.5 -> 0.25" in err, err
    assert torch.equal(load_file(str(damped / RECONSTRUCTED_NAME))[key], b)
    code, _, err = prune(capsys, "sparsegpt", tiny_bert_dir, corpus, damped, "--sparsity", "0.5", "--seed", 1)
    assert code == 2 and "calibration_seed 0 -> 1" in err, err
    assert prune(capsys, "sparsegpt", tiny_bert_dir, corpus, damped, *more)[0] == 0

    config = tl.PruneConfig(
        str(tiny_bert_dir), "sparsegpt", 0.5, tmp_path / "py", corpus=[corpus], settings={"damp": 0.5}
    )
    assert config.settings == SparseGptConfig(damp=0.5)
    with pytest.raises(ConfigError, match="omp has no settings of its own"):
        tl.PruneConfig(str(tiny_bert_dir), "omp", 0.5, tmp_path / "o", settings={"damp": 0.5})
    with pytest.raises(ConfigError, match="a SparseGptConfig or a mapping of its fields"):
        tl.PruneConfig(str(tiny_bert_dir), "sparsegpt", 0.5, "o", corpus=[corpus], settings={"x": 0})


def test_reconstructed_weights_are_checked_before_export(tiny_bert_dir, corpus, tmp_path, capsys):
    """A mask without reconstructed weights, or a file whose weights are not zero where the mask
    prunes, is refused in one line and nothing is written."""
    from safetensors.torch import save_file

    assert (
        run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", tmp_path / "omp")[
            0
        ]
        == 0
    )
    export = ["export", "--model", tiny_bert_dir, "--reconstructed", "--mask"]
    code, _, err = run(capsys, *export, tmp_path / "omp", "--out", tmp_path / "e1")
    assert code == 2 and f"no {RECONSTRUCTED_NAME}" in err and not (tmp_path / "e1").exists()
    out = tmp_path / "sgpt"
    assert prune(capsys, "sparsegpt", tiny_bert_dir, corpus, out, "--sparsity", "0.5")[0] == 0
    stored = load_file(str(out / RECONSTRUCTED_NAME))
    key = "encoder.layer.0.output.dense.weight"
    stored[key] = stored[key] + 1.0  # non-zero where the mask prunes
    save_file(stored, str(out / RECONSTRUCTED_NAME))
    code, _, err = run(capsys, *export, out, "--out", tmp_path / "e2")
    assert code == 2 and "not zero where the mask prunes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e2").exists()
    stored[key] = stored[key] - 1.0
    stored[key][stored[key] != 0] = float("nan")  # zero where pruned, nan where kept: a nan model
    save_file(stored, str(out / RECONSTRUCTED_NAME))
    code, _, err = run(capsys, *export, out, "--out", tmp_path / "e3")
    assert code == 2 and f"'{key}' is not finite" in err and not (tmp_path / "e3").exists()


def test_a_calibration_longer_than_the_models_positions_is_one_line(tiny_bert_dir, corpus, tmp_path, capsys):
    """The tiny model has 64 positions: 65 tokens per sequence would be a shape error in the first
    forward pass, after the model and corpus are read."""
    argv = [
        "prune",
        "wanda",
        "--model",
        tiny_bert_dir,
        "--corpus",
        corpus,
        "--calibration",
        4,
        "--sparsity",
        0.5,
    ]
    code, _, err = run(capsys, *argv, "--calibration-length", 65, "--out", tmp_path / "w")
    assert code == 2 and "calibration_length 65 exceeds the model's 64 positions" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "w").exists()


def test_the_calibration_is_seeded(tiny_bert_dir, corpus, tmp_path, capsys):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert (
            prune(
                capsys, "wanda", tiny_bert_dir, corpus, tmp_path / name, "--sparsity", "0.5", "--seed", seed
            )[0]
            == 0
        )
    a, b, c = (load_mask(tmp_path / n)[0] for n in "abc")
    key = "encoder.layer.1.output.dense.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["prune", "wanda", "--sparsity", "0.5"], "give --corpus"),
        (
            ["prune", "sparsegpt", "--sparsity", "0.5", "--corpus", "C", "--ranking", "global"],
            "--ranking global",
        ),
        (["prune", "omp", "--sparsity", "0.5", "--corpus", "C"], "--corpus: omp reads no calibration"),
        (
            ["prune", "omp", "--sparsity", "0.5", "--text-column", "t"],
            "--text-column: omp reads no calibration",
        ),
        (["prune", "random", "--sparsity", "0.5", "--cache-dir", "c"], "--cache-dir: random reads no"),
        (
            [
                "prune",
                "wanda",
                "--sparsity",
                "0.5",
                "--corpus",
                "C",
                "--calibration",
                "100000",
                "--calibration-length",
                "16",
            ],
            "fewer than",
        ),
        (["prune", "omp", "--sparsity", "0.5", "--damp", "0.1"], "--damp: a setting of sparsegpt, not of"),
        (["prune", "sparsegpt", "--pattern", "2:4", "--corpus", "C", "--blocksize", "6"], "multiple of 4"),
        (["prune", "sparsegpt", "--sparsity", "0.5", "--corpus", "C", "--damp", "2"], "damp"),
    ],
)
def test_refusals_are_one_line(argv, says, tiny_bert_dir, corpus, tmp_path, capsys):
    argv = [str(corpus) if a == "C" else a for a in argv]
    code, _, err = run(capsys, *argv, "--model", tiny_bert_dir, "--out", tmp_path / "x")
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_roberta_through_the_cli(tmp_path, corpus, capsys):
    """A second family end to end: a tiny RoBERTa saved with conftest's tokenizer."""
    from transformers import RobertaForMaskedLM

    from conftest import make_model, tiny_roberta_config, write_tokenizer

    model = tmp_path / "roberta"
    make_model(RobertaForMaskedLM, tiny_roberta_config()).save_pretrained(model)
    write_tokenizer(model)
    for method in ("wanda", "sparsegpt"):
        code, _, _ = prune(capsys, method, model, corpus, tmp_path / method, "--pattern", "2:4")
        assert code == 0 and load_mask(tmp_path / method)[0].sparsity == 0.5


def test_a_sweep_calibrates_on_its_corpus(tiny_bert_dir, corpus, sst2, tmp_path, capsys):
    """`wanda` and `sparsegpt` as sweep methods: their masks drawn from the spec's corpus with its
    calibration settings, one per search seed, fine-tuned like any other."""
    import yaml

    from ticketlab.studies.store import Store

    spec = {
        "name": "one-shot",
        "model": str(tiny_bert_dir),
        "corpus": {"train": [str(corpus)]},
        "tasks": {"sst2": {"data": str(sst2)}},
        "methods": {
            "wanda": {"calibration": 8, "calibration_length": 16},
            "sparsegpt": {"calibration": 8, "calibration_length": 16, "damp": 0.05},
        },
        "sparsities": [0.5],
        "seeds": {"search": [0, 1], "finetune": [0]},
        "finetune": {"steps": 2, "batch_size": 8, "eval_every": 1, "lr": 1e-3, "max_length": 16},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    assert run(capsys, "sweep", tmp_path / "spec.yaml", "--out", out)[0] == 0
    with Store(out) as st:
        searches = st.runs(kind="search", status="done")
        assert sorted(r.config["method"] for r in searches) == ["sparsegpt", "sparsegpt", "wanda", "wanda"]
        assert len(st.runs(kind="finetune", status="done")) == 4
    masks = [load_mask(d) for d in (out / "masks").iterdir() if (d / "mask_config.json").is_file()]
    assert sorted(c.seed for _, c in masks) == [0, 0, 1, 1]
    assert {c.search["calibration_sequences"] for _, c in masks} == {8}
    assert {c.search["damp"] for _, c in masks if c.method == "sparsegpt"} == {0.05}  # the spec's
    report = (out / "report" / "report.md").read_text()
    assert "`sparsegpt`: its rows fine-tune its ticket" in report and "`wanda`: its rows" not in report


def test_a_saved_dataset_calibrates_from_its_text_column(tiny_bert_dir, tmp_path, capsys):
    """A saved `datasets` corpus whose text is in another column: `prune --text-column` reads it (its
    tokens cached under --cache-dir), as a sweep whose corpus names `text_column` does, dry run and
    run (its `cache_dir` a setting that leaves the run's id as it is); without the column, one line
    naming it."""
    datasets = pytest.importorskip("datasets")
    import yaml

    from ticketlab.studies import expand, load_spec
    from ticketlab.studies.store import Store

    rng = random.Random(2)
    lines = [" ".join(rng.choice(WORDS) for _ in range(20)) for _ in range(300)]
    ds = tmp_path / "ds"
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"content": lines})).save_to_disk(str(ds))
    capsys.readouterr()  # the save's progress bar
    code, _, err = prune(capsys, "wanda", tiny_bert_dir, ds, tmp_path / "x", "--sparsity", "0.5")
    assert code == 2 and "no column 'text'" in err and len(err.strip().splitlines()) == 1
    column = ["--text-column", "content", "--cache-dir", tmp_path / "cache"]
    assert (
        prune(capsys, "wanda", tiny_bert_dir, tmp_path / "ds", tmp_path / "w", "--sparsity", "0.5", *column)[
            0
        ]
        == 0
    )
    assert load_mask(tmp_path / "w")[1].search["calibration_sequences"] == 8
    assert any((tmp_path / "cache").rglob("*.safetensors"))  # the corpus's tokens, where it was told
    sst2 = tmp_path / "glue" / "SST-2"
    sst2.mkdir(parents=True)
    rows = [f"the {w} is {'good' if i % 2 else 'bad'} .\t{i % 2}" for i, w in enumerate(WORDS[:16])]
    for split in ("train", "dev"):
        (sst2 / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    spec = {
        "name": "column",
        "model": str(tiny_bert_dir),
        "corpus": {"train": [str(ds)], "text_column": "content"},
        "tasks": {"sst2": {"data": str(tmp_path / "glue")}},
        "methods": {"wanda": {"calibration": 8, "calibration_length": 16}},
        "sparsities": [0.5],
        "seeds": {"search": [0], "finetune": [0]},
        "finetune": {"steps": 1, "batch_size": 8, "eval_every": 1, "max_length": 16},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    planned = {r.id for r in expand(load_spec(tmp_path / "spec.yaml"))}
    spec["search"] = {"cache_dir": str(tmp_path / "sweep-cache")}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert {r.id for r in expand(load_spec(tmp_path / "spec.yaml"))} == planned
    assert run(capsys, "sweep", tmp_path / "spec.yaml", "--out", tmp_path / "sweep", "--dry-run")[0] == 0
    assert run(capsys, "sweep", tmp_path / "spec.yaml", "--out", tmp_path / "sweep", "--no-report")[0] == 0
    with Store(tmp_path / "sweep") as st:
        assert len(st.runs(kind="search", status="done")) == 1
    assert any((tmp_path / "sweep-cache").rglob("*.safetensors"))  # the draw's, and the start check's
