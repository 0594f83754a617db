"""The task registry and the GLUE-style TSV loaders: each task's layout, quirks and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from ticketlab.core.errors import ConfigError, DataError, TicketlabError
from ticketlab.data.features import Features, Ragged, cached, pad_collate
from ticketlab.tasks.glue import load_examples, load_features, task_dir
from ticketlab.tasks.registry import BUILTIN, TASKS, TaskSpec, get_task, register_task

GLUE = SHARED / "data" / "glue"

# A few rows per task in the exact layout of the GLUE download script (header names, column order).
LAYOUTS: dict[str, tuple[str, str, list[str]]] = {
    # task: (folder, header or "" for none, rows)
    "cola": ("CoLA", "", ["gj04\t1\t\tThe dog sees the cat .", "gj04\t0\t*\tDog the cat sees ."]),
    "sst2": ("SST-2", "sentence\tlabel", ["a good film \t1", "a bad film \t0"]),
    "mrpc": (
        "MRPC",
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        ["1\t1\t2\tThe cat sleeps .\tA cat is sleeping .", "0\t3\t4\tThe dog runs .\tThe king sings ."],
    ),
    "stsb": (
        "STS-B",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        ["0\tmain\tf\t2012\t1\tnone\tnone\tA man sings .\tA man is singing .\t4.750"],
    ),
    "qqp": (
        "QQP",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        ["0\t1\t2\tWhy is the sky blue ?\tWhat makes the sky blue ?\t1", "1\t3\t4\tHow ?\tWhen ?\t0"],
    ),
    "mnli": (
        "MNLI",
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
        "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
        ['0\t1\t1e\tfiction\t(x)\t(y)\t(X)\t(Y)\tHe said "no" .\tHe spoke .\tentailment\tentailment'],
    ),
    "qnli": ("QNLI", "index\tquestion\tsentence\tlabel", ["0\tWho ?\tThe king .\tentailment"]),
    "rte": ("RTE", "index\tsentence1\tsentence2\tlabel", ["0\tA dog runs .\tA cat runs .\tnot_entailment"]),
    "wnli": ("WNLI", "index\tsentence1\tsentence2\tlabel", ["0\tThe man sees it .\tHe sees .\t1"]),
}
EXPECTED_LABELS = {
    "cola": [1, 0],
    "sst2": [1, 0],
    "mrpc": [1, 0],
    "stsb": [4.75],
    "qqp": [1, 0],
    "mnli": [0],
    "qnli": [0],
    "rte": [1],
    "wnli": [1],
}


def write_task(root: Path, task: str, rows: list[str] | None = None, fname: str | None = None) -> Path:
    folder, header, default_rows = LAYOUTS[task]
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + (rows if rows is not None else default_rows)
    spec = TASKS[task]
    for f in [fname] if fname else spec.files.values():
        (d / f).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_registry_has_the_ten_tasks():
    assert set(BUILTIN) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "squad"}
    assert TASKS["mnli"].metric_keys() == ["accuracy", "accuracy_mm"]
    assert TASKS["mrpc"].metric_keys() == ["accuracy", "f1"] and TASKS["mrpc"].main == "accuracy"
    assert TASKS["stsb"].num_labels == 1 and TASKS["mnli"].num_labels == 3
    assert (TASKS["mnli"].eval_every, TASKS["squad"].lr, TASKS["squad"].max_length) == (500, 3e-5, 384)


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_each_task_layout_loads(tmp_path, task, tokenizer):
    write_task(tmp_path, task)
    spec = get_task(task)
    for split in spec.files:
        ex = load_examples(spec, tmp_path, split)
        assert ex.labels == EXPECTED_LABELS[task]
        assert (ex.text_b is None) == (spec.text_b is None)
        assert ex.skipped == 0
    feats, ex = load_features(spec, tmp_path, "train", tokenizer, 16)
    assert len(feats) == len(ex)
    assert feats[0]["input_ids"][0] == tokenizer.cls_token_id
    # the task folder itself also works as --data-dir
    assert task_dir(spec, tmp_path / LAYOUTS[task][0]) == tmp_path / LAYOUTS[task][0]


def test_texts_and_quotes_are_read_verbatim(tmp_path):
    write_task(tmp_path, "mnli")
    ex = load_examples(TASKS["mnli"], tmp_path, "dev_mm")
    assert ex.text_a == ['He said "no" .'] and ex.text_b == ["He spoke ."]
    ex = load_examples(TASKS["cola"], write_task(tmp_path, "cola"), "train")
    assert ex.text_a == ["The dog sees the cat .", "Dog the cat sees ."]


def test_malformed_rows_are_skipped_and_counted(tmp_path, caplog):
    rows = LAYOUTS["qqp"][2] * 2 + ["2\t5\t6\tbroken question", "7\t8\tline\t", "3\t7\t8\tWhy ?\t\t0"]
    write_task(tmp_path, "qqp", rows)
    ex = load_examples(TASKS["qqp"], tmp_path, "train")
    assert len(ex) == 4 and ex.skipped == 3
    assert "skipped 3 malformed" in caplog.text


@pytest.mark.parametrize(
    "rows, message",
    [
        (["a good film \t2"], "label '2' is not one of ['0', '1']"),
        (["a good film \t"], "empty label"),
        (["just text", "more text", "x\t1"], "2 of 3 rows are malformed"),
        ([], "no data rows"),
    ],
)
def test_bad_rows_give_one_clear_error(tmp_path, rows, message):
    write_task(tmp_path, "sst2", rows)
    with pytest.raises(DataError, match="train.tsv") as e:
        load_examples(TASKS["sst2"], tmp_path, "train")
    assert message in str(e.value)


def test_an_empty_file_is_said_to_be_empty(tmp_path):
    """An empty file is named as empty, not as a header without the task's columns."""
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("")
    with pytest.raises(DataError, match=r"train.tsv: empty file \(no header, no data rows\)$"):
        load_examples(TASKS["sst2"], tmp_path, "train")


def test_missing_column_file_and_dir(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    (d / "train.tsv").write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match=r"train.tsv: no column 'sentence'"):
        load_examples(TASKS["sst2"], tmp_path, "train")
    (d / "train.tsv").write_text("sentence\tlabel\tsentence\nfine\t1\tbad\n")  # which one is meant?
    with pytest.raises(DataError, match=r"train.tsv: the header names column 'sentence' 2 times"):
        load_examples(TASKS["sst2"], tmp_path, "train")
    with pytest.raises(DataError, match=r"dev.tsv: sst2 dev file not found"):
        load_examples(TASKS["sst2"], tmp_path, "dev")
    with pytest.raises(DataError, match="no rte data"):
        load_examples(TASKS["rte"], tmp_path, "train")
    with pytest.raises(DataError, match="data directory not found"):
        load_examples(TASKS["rte"], tmp_path / "nope", "train")
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "train.tsv").write_text(LAYOUTS["stsb"][1] + "\n" + "\t".join(["x"] * 10) + "\n")
    with pytest.raises(DataError, match="line 2: label 'x' is not a number"):
        load_examples(TASKS["stsb"], tmp_path, "train")


def test_two_folders_describing_one_task_id_are_each_read_as_they_are(tmp_path):
    """A task.json is read on every lookup that finds one: a process (a sweep, a report) reading one
    id from two data folders gets each folder's task, never the one read first."""
    for folder, labels in (("v1", ["neg", "pos"]), ("v2", ["neg", "mixed", "pos"])):
        (tmp_path / folder / "reviews").mkdir(parents=True)
        task = {"id": "reviews", "text_a": "text", "label": "y", "labels": labels}
        (tmp_path / folder / "reviews" / "task.json").write_text(json.dumps(task))
    assert get_task("reviews", tmp_path / "v1").labels == ("neg", "pos")
    assert get_task("reviews", tmp_path / "v2").labels == ("neg", "mixed", "pos")
    assert get_task("reviews", tmp_path / "v1").num_labels == 2
    assert get_task("reviews").labels == ("neg", "pos")  # no folder given: the one read last


def test_custom_task_in_code_and_in_json(tmp_path, tokenizer):
    spec = register_task(
        TaskSpec(id="toy-sentiment", text_a="text", label="y", labels=("neg", "pos")), overwrite=True
    )
    d = tmp_path / "toy-sentiment"
    d.mkdir()
    for f in ("train.tsv", "dev.tsv"):
        (d / f).write_text("text\ty\nthe cat is happy\tpos\nthe dog is sad\tneg\n")
    assert get_task("toy-sentiment") is spec
    assert load_examples(spec, tmp_path, "dev").labels == [1, 0]

    jd = tmp_path / "pairs"
    jd.mkdir()
    (jd / "task.json").write_text(
        json.dumps({"id": "pairs", "text_a": "a", "text_b": "b", "label": "l", "metrics": ["accuracy", "f1"]})
    )
    for f in ("train.tsv", "dev.tsv"):
        (jd / f).write_text("a\tb\tl\nthe cat\ta cat\t1\nthe dog\ta king\t0\n")
    spec = get_task("pairs", tmp_path)  # DATA/pairs/task.json
    assert spec.text_b == "b" and spec.labels == ("0", "1")
    assert get_task(str(jd / "task.json")).id == "pairs"
    feats, _ = load_features(spec, tmp_path, "train", tokenizer, 16)
    assert int(np.asarray(feats[0]["token_type_ids"]).max()) == 1


def test_a_csv_under_a_tsv_name_says_tab_separated_is_read_and_a_csv_name_is_read_as_csv(tmp_path):
    """Own data is often a CSV: under the default train.tsv it is refused with the reason (its header
    has commas, no tab) and the way out; named train.csv in the task's `files` it is read, quoted
    commas, quotes and line breaks included."""
    d = tmp_path / "reviews"
    d.mkdir()
    (d / "task.json").write_text(json.dumps({"id": "reviews", "label": "sentiment", "text_a": "text"}))
    (d / "train.tsv").write_text("text,sentiment\nfine,1\n")
    spec = get_task(str(d / "task.json"))
    with pytest.raises(
        DataError, match=r"train.tsv: no column 'text' in the header \(columns: text,sentiment\)"
    ) as e:
        load_examples(spec, d, "train")
    assert "read as tab-separated" in str(e.value) and "ends in .csv" in str(e.value)

    files = {"train": "train.csv", "dev": "dev.csv"}
    (d / "task.json").write_text(
        json.dumps({"id": "reviews", "label": "sentiment", "text_a": "text", "files": files})
    )
    (d / "train.csv").write_text(
        'text,sentiment\r\n"good, really",1\r\nbad,0\n"said ""no""\nthen left",0\n\n'
    )
    ex = load_examples(get_task(str(d / "task.json")), d, "train")
    assert ex.text_a == ["good, really", "bad", 'said "no"\nthen left'] and ex.labels == [1, 0, 0]
    (d / "dev.csv").write_text("text,sentiment\nfine,2\n")
    with pytest.raises(DataError, match=r"dev.csv, line 2: label '2' is not one of"):
        load_examples(get_task(str(d / "task.json")), d, "dev")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"id": "x", "metrics": ["bleu"]}, "unknown metric"),
        ({"id": "x", "labels": ["a"]}, "at least two distinct labels"),
        ({"id": "x", "kind": "regression", "labels": ["a", "b"]}, "no label list"),
        ({"id": "x", "header": False}, "integer columns"),
        ({"id": "x", "colour": 1}, "unknown field"),
        ({"id": "x", "eval_splits": ["test"]}, "no entry in files"),
        ({"id": "x", "main_metric": "f1"}, "main_metric"),
        # a real-valued score never equals its label: accuracy on a regression scored about 0
        ({"id": "x", "kind": "regression", "metrics": ["accuracy"]}, "for another kind of task"),
        ({"id": "x", "metrics": ["pearson"]}, "a classification task takes accuracy, f1, mcc"),
        ({"id": "x", "labels": ["a", "b", "c"], "metrics": ["f1"]}, "3 labels take accuracy or mcc"),
        ({"id": "x", "epochs": 1e300}, "epochs must be in"),  # a step count past 64 bits otherwise
        ({"id": "x", "eval_every": 0}, "eval_every must be"),
        ({"id": "x", "max_length": 2}, "max_length must be >= 8"),  # a pair's truncation gives up
    ],
)
def test_bad_task_specs(tmp_path, spec, message):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: .*{message}"):  # the file named
        get_task(str(path))


def test_a_task_without_metrics_is_scored_by_its_kinds():
    """A regression task.json naming no metric is scored by correlation, not by exact equality."""
    assert TaskSpec(id="x", kind="regression", label="score").metrics == ("pearson", "spearman")
    assert TaskSpec(id="x").metrics == ("accuracy",)
    assert TaskSpec(id="x", kind="squad").metrics == ("exact_match", "f1")
    assert get_task("stsb").metrics == ("pearson", "spearman") and get_task("cola").metrics == ("mcc",)


def test_unknown_task_and_duplicate_registration():
    with pytest.raises(TicketlabError, match="unknown task 'nope': choose one of cola, "):
        get_task("nope")
    with pytest.raises(TicketlabError, match=r"unknown task 'sst22' \(did you mean 'sst2'\?\): choose"):
        get_task("sst22")
    with pytest.raises(ConfigError, match="already registered"):
        register_task(TaskSpec(id="sst2", text_a="other"))


def test_cache_round_trip_and_dynamic_padding(tmp_path, monkeypatch, tokenizer):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    feats = Features({"input_ids": Ragged.from_lists([[2, 7, 3], [2, 3]]), "labels": np.array([1, 0])})
    calls = []

    def build():
        calls.append(1)
        return feats

    key = {"test": str(tmp_path)}
    cached(key, build)
    from ticketlab.data import features as F

    F._MEMORY.clear()
    again = cached(key, build)  # from disk
    assert len(calls) == 1 and again[1]["input_ids"].tolist() == [2, 3]
    batch = pad_collate(tokenizer)([again[0], again[1]], [0, 0])
    assert batch["input_ids"].tolist() == [[2, 7, 3], [2, 3, tokenizer.pad_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.shared
@pytest.mark.parametrize(
    "task, n_train, n_dev", [("cola", 8551, 1043), ("sst2", 67349, 872), ("mrpc", 3667, 408)]
)
def test_real_glue_files(task, n_train, n_dev):
    if not (GLUE / TASKS[task].folder).is_dir():
        pytest.skip("../shared/data/glue is absent")
    spec = get_task(task)
    train, dev = load_examples(spec, GLUE, "train"), load_examples(spec, GLUE, "dev")
    assert (len(train), len(dev), train.skipped, dev.skipped) == (n_train, n_dev, 0, 0)


def test_hub_fallback_maps_columns_and_labels(monkeypatch):
    """No data dir: the `datasets` hub (faked here; the real one needs the network)."""
    import datasets

    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        if config == "qnli":
            raise ConnectionError("offline")
        return datasets.Dataset.from_dict(
            {"premise": ["a cat", "a dog"], "hypothesis": ["a pet", "a king"], "label": [0, 2], "idx": [0, 1]}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ex = load_examples(TASKS["mnli"], None, "dev_mm")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert (ex.text_a, ex.text_b, ex.labels) == (["a cat", "a dog"], ["a pet", "a king"], [0, 2])
    assert TASKS["mnli"].labels[2] == "contradiction"  # the hub's class order
    with pytest.raises(DataError, match="cannot load nyu-mll/glue/qnli from the hub .*pass --data-dir"):
        load_examples(TASKS["qnli"], None, "train")


def test_mnli_selects_and_reports_matched_accuracy_unless_told_mismatched():
    """TAMT's Tab. 1 names MNLI's metric "Matched Acc"; its glue_trans.py writes matched and mismatched
    accuracy under one key, `acc`, the mismatched last, so its selection and report read mismatched.
    ticketlab's default is matched (`accuracy`, the first eval split's); `--metric accuracy_mm` selects
    and reports mismatched, as that code ends up doing."""
    from ticketlab.verbs.finetune_config import FinetuneConfig, Hyper
    from ticketlab.verbs.finetune_results import FinetuneResult

    spec = TASKS["mnli"]
    assert Hyper.of(FinetuneConfig(model="m", task="mnli"), spec).metric == "accuracy"
    assert (
        Hyper.of(FinetuneConfig(model="m", task="mnli", metric="accuracy_mm"), spec).metric == "accuracy_mm"
    )
    evals = {"step": 500, "accuracy": 0.61, "accuracy_mm": 0.64}
    common = dict(task="mnli", seed=1, steps=500, history=[evals], best=evals, final=evals, epochs=1.0)
    common.update(n_train=8, n_dev={}, skipped={}, sparsity=0.0, mask=None)
    common.update(train_time_s=1.0, eval_time_s=1.0, wall_time_s=2.0, checkpoint="held-out")
    assert FinetuneResult(metric="accuracy", **common).reported_score == 0.61
    assert FinetuneResult(metric="accuracy_mm", **common).reported_score == 0.64


@pytest.mark.parametrize("name", ["dev.tsv", "dev.csv"])
def test_a_text_field_past_the_bound_is_refused_before_tokenizing(name, tmp_path):
    """A 100 MB line of a TSV file took gigabytes to tokenize while a CSV field of that size was
    refused: every text field has the csv module's bound, tab-separated or comma-separated, with
    the line that breaks it named."""
    from ticketlab.tasks.glue import FIELD_CHARS, read_tsv

    spec = TaskSpec(id="bounded", text_a="sentence", label="label", header=True)
    sep = "," if name.endswith(".csv") else "\t"
    long = "word " * (FIELD_CHARS // 5 + 10)
    path = tmp_path / name
    path.write_text(f"sentence{sep}label\nthe cat{sep}1\n{long}{sep}0\n")
    with pytest.raises(DataError, match=f"{path}, line 3: "):
        read_tsv(spec, path)
    path.write_text(f"sentence{sep}label\nthe cat{sep}1\n{long[: FIELD_CHARS - 8]}{sep}0\n")
    assert len(read_tsv(spec, path).text_a) == 2


def test_a_task_with_nowhere_to_read_its_data_is_refused_when_configured(tmp_path):
    """From Python, where no --data-dir default applies: a task.json without a hub dataset and no
    data_dir is refused when its config is built (fine-tuning, task-specific IMP, multi-task
    learning), naming the folder that holds its data, not after the model is loaded; the command line
    reads that folder (`--data-dir`'s default) for `finetune` and `search imp --task` alike."""
    from ticketlab.cli import build_parser
    from ticketlab.cli.finetune import finetune_config
    from ticketlab.cli.search import search_config
    from ticketlab.core.checks import FieldError
    from ticketlab.methods.imp.search import ImpConfig
    from ticketlab.methods.search_config import SearchConfig
    from ticketlab.studies.mtl_config import MtlConfig
    from ticketlab.verbs.finetune_config import FinetuneConfig

    d = tmp_path / "reviews"
    d.mkdir()
    task = str(d / "task.json")
    (d / "task.json").write_text(json.dumps({"id": "reviews", "text_a": "text"}))
    refused = f"data_dir not given, .* no hub dataset: .*sits with it: {d}"
    builds = {
        "finetune": lambda **kw: FinetuneConfig(model="m", task=task, **kw),
        "imp": lambda **kw: SearchConfig("m", ImpConfig(0.3), steps=6, out=tmp_path / "o", task=task, **kw),
        "mtl": lambda **kw: MtlConfig(model="m", tasks=[task], **kw),
    }
    for build in builds.values():
        with pytest.raises(FieldError, match=refused):
            build()
        assert build(data_dir=str(d)).data_dir == str(d)
    assert FinetuneConfig(model="m", task="sst2").data_dir is None  # a built-in task: the hub, online
    parse = build_parser().parse_args
    assert finetune_config(parse(["finetune", "--model", "m", "--task", task, "--out", "o"])).data_dir == str(
        d
    )
    imp = ["search", "imp", "--model", "m", "--sparsity", "0.3", "--steps", "6", "--out", "o"]
    assert search_config(parse([*imp, "--task", task])).data_dir == str(d)
    assert search_config(parse([*imp, "--task", "sst2"])).data_dir is None
