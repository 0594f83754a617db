"""Run identity computed in one function (`core.digest`). Each of the places that name a run (a
search's settings, a fine-tuning's fingerprint and id, a pre-training's identity, a ticket-sharing
stage's identity, a sweep's run ids, a super-ticket study's rows) is pinned here: a change that moves
any of them fails, and is made on purpose (a field added, a default changed: docs/explanation/
run-ids.md), with the committed stores re-keyed once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ticketlab
from ticketlab.methods.imp.config import ImpConfig
from ticketlab.methods.tamt.config import TamtConfig


def _inputs(root: Path) -> dict[str, Path]:
    """Small local inputs with fixed bytes, so that their content keys are fixed too."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.txt").write_text("the cat sat on the mat\n" * 3)
    (root / "dev.txt").write_text("a dog ran\n")
    for name in ("tok", "init", "data"):
        (root / name).mkdir(exist_ok=True)
        (root / name / "file.json").write_text(json.dumps({"name": name}))
    return {p.name: p for p in root.iterdir()}


def _search(method: Any, **kw: Any) -> ticketlab.SearchConfig:
    given = {"model": "m", "method": method, "steps": 30, "out": "o", "corpus": ["c.txt"], **kw}
    return ticketlab.SearchConfig(**given)


def _search_cases() -> dict[str, Callable[[Path], Any]]:
    # Cases that name settings (round counts, the teacher in eval mode) and cases at the defaults.
    tamt_set = TamtConfig(
        0.7,
        objective="kd",
        init="random",
        train_head=False,
        score_dtype="bfloat16",
        kd_input="clean",
        count="round",
        kd_teacher="eval",
    )
    return {
        "search tamt default": lambda _: _search(TamtConfig(0.5, count="round")).settings(1e-4),
        "search tamt set": lambda _: _search(
            tamt_set, optimizer_in_backward=True, schedule_steps=30, dev=["d.txt"], max_length=64
        ).settings(2e-3),
        "search tamt mlm masked": lambda _: _search(
            TamtConfig(0.5, decoder="masked", pattern="2:4", seed=5, count="round"), schedule_steps=90
        ).settings(1e-4),
        "search tamt mlm+kd": lambda _: _search(TamtConfig(0.5, objective="mlm+kd", count="round")).settings(
            1e-4
        ),
        "search tamt kd corrupted": lambda _: _search(
            TamtConfig(
                0.5, objective="kd", kd_input="corrupted", decoder="masked", count="round", kd_teacher="eval"
            )
        ).settings(1e-4),
        "search tamt mlm today": lambda _: _search(TamtConfig(0.5)).settings(1e-4),
        "search tamt kd today": lambda _: _search(TamtConfig(0.5, objective="kd")).settings(1e-4),
        # IMP on MLM with a dense pooler, the decoder under the embeddings' mask and the KD dev loss
        # on corrupted input, named
        "search imp mlm": lambda _: _search(
            ImpConfig(0.5, pooler=False, decoder="masked", kd_input="corrupted")
        ).settings(1e-4),
        "search imp mlm today": lambda _: _search(ImpConfig(0.5)).settings(1e-4),
        "search imp task": lambda _: _search(
            ImpConfig(
                0.5, rewind_head=True, variant="tamt", pooler=False, decoder="masked", kd_input="corrupted"
            ),
            corpus=None,
            task="sst2",
            data_dir="glue",
        ).settings(1e-4),
        "search imp task today": lambda _: _search(
            ImpConfig(0.5, rewind_head=True, variant="tamt"), corpus=None, task="sst2", data_dir="glue"
        ).settings(1e-4),
    }


def _finetune(config: ticketlab.FinetuneConfig) -> dict[str, Any]:
    from ticketlab.core.digest import digest
    from ticketlab.tasks.registry import get_task
    from ticketlab.verbs.finetune import fingerprint

    print_ = json.loads(json.dumps(fingerprint(config, get_task(config.task, config.data_dir)), default=str))
    return {"fingerprint": print_, "id": digest(print_)}


def _finetune_cases() -> dict[str, Callable[[Path], Any]]:
    ft = ticketlab.FinetuneConfig
    return {
        "finetune default": lambda _: _finetune(ft(model="m", task="sst2")),
        "finetune set": lambda _: _finetune(
            ft(model="m", task="rte", mask="k", lr=3e-5, seed=4, select_fraction=0.1, save_model=True)
        ),
        "finetune id": lambda _: _finetune(ft(model="m", task="sst2"))["id"],
    }


def _pretrain(root: Path, **kw: Any) -> dict[str, Any]:
    from ticketlab.lm.pretrain import PretrainConfig
    from ticketlab.lm.pretrain_inputs import pretrain_identity

    files = _inputs(root)
    given = {"tokenizer": None, "init": None, **kw}
    config = PretrainConfig(steps=3, **given.pop("config", {}))
    tokenizer, init = (files[given[k]] if given[k] else None for k in ("tokenizer", "init"))
    dev = [files["dev.txt"]] if given.get("dev") else None
    return pretrain_identity(config, [files["corpus.txt"]], dev, tokenizer, "wordpiece", 1000, init)


def _pretrain_cases() -> dict[str, Callable[[Path], Any]]:
    return {
        "pretrain default": lambda root: _pretrain(root),
        "pretrain set": lambda root: _pretrain(
            root, dev=True, tokenizer="tok", config={"save_dtype": "float16", "lr": 5e-4, "seed": 2}
        ),
        "pretrain init": lambda root: _pretrain(root, init="init", config={"compile": True}),
    }


def _mtl_cases() -> dict[str, Callable[[Path], Any]]:
    from ticketlab.studies.mtl import MtlConfig

    keys = {"model": "sha256:m", "data sst2": "sha256:d"}
    plain = MtlConfig(model="m", tasks=["sst2", "rte"])
    share = MtlConfig(model="m", tasks=["sst2", "rte"], finetune_after=True, lr=1e-4)
    share.tickets = ["t1", "t2"]  # set after the checks, which would read the model's config
    return {
        "mtl settings": lambda _: plain.settings(),
        "mtl identity": lambda _: plain.identity(3, keys),
        "mtl share identity": lambda _: share.identity(1, keys),
        "mtl share after": lambda _: share.identity(1, keys, after=True),
    }


def _plan_cases() -> dict[str, Callable[[Path], Any]]:
    from ticketlab.studies.run_ids import run_id

    search = {
        "kind": "search",
        "model": "/models/bert",
        "method": "tamt-kd",
        "sparsity": 0.5,
        "seed": 0,
        "steps": 100,
        "save_at": [],
        "settings": {"decoder": "masked", "schedule_steps": 100, "lr": 1e-4},
        "corpus": {"train": ["/c/train.txt"], "dev": ["/c/dev.txt"], "text_column": "text"},
        "inputs": {"model": "sha256:m", "corpus": "sha256:c"},
        "defaults": {"kd_input": "clean"},
    }
    finetune = {
        "kind": "finetune",
        "model": "bert-base-uncased",
        "task": "sst2",
        "task_label": "sst2",
        "data": "/glue/SST-2",
        "seed": 1,
        "train_size": None,
        "settings": {"lr": 2e-5},
        "inputs": {"model": None, "data": "sha256:d"},
        "mask": "abc",
        "method": "imp",
        "sparsity": 0.5,
        "mask_seed": 0,
        "search_steps": 100,
    }
    return {"plan search": lambda _: run_id(search), "plan finetune": lambda _: run_id(finetune)}


def _super_cases() -> dict[str, Callable[[Path], Any]]:
    from ticketlab.studies.super_config import SuperConfig
    from ticketlab.studies.super_rows import Study

    ft = ticketlab.FinetuneConfig(model="m", task="sst2", lr=3e-5, eval_batch_size=8)
    study = Study(SuperConfig(finetune=ft), Path("o"), None)
    ticket = {"mask": "k", "method": "st-winning", "sparsity": 0.3, "mask_seed": 2, "search_steps": None}
    return {"super finetune row": lambda _: study.finetune_row(2, ticket).id}


CASES: dict[str, Callable[[Path], Any]] = {
    **_search_cases(),
    **_finetune_cases(),
    **_pretrain_cases(),
    **_mtl_cases(),
    **_plan_cases(),
    **_super_cases(),
}

# What each case pins: a hex id as it is, a mapping as the first 16 hex digits of the sha256 of its
# sorted JSON. Every result-affecting field is in each (a default changed moves the cases at it).
PINNED = {
    "finetune default": "756cde76e3926a4c",
    "finetune id": "309eb82f18042fca",
    "finetune set": "26bbf8dfeffbd60a",
    "mtl identity": "51bc9c46f3eeecb7",
    "mtl settings": "dd37f94281581fcd",
    "mtl share after": "fbb0d25f3273a804",
    "mtl share identity": "fc768c569cd59eec",
    "plan finetune": "d4b11b2a040b9381",
    "plan search": "ba9a09a577f566de",
    "super finetune row": "2d3ac5e97662b059",
    # a pre-training reads what its steps need (`corpus_tokens`, null: that default): a cap that cuts
    # the corpus trains on other blocks, which its corpus files' content key does not tell
    "pretrain default": "4372f1c5b7251a40",
    "pretrain init": "7f5235872d44d400",
    "pretrain set": "24816398bcd17b0c",
    "search imp mlm": "247e361247b18002",
    "search imp task": "d12f45d1f38db2e5",
    "search imp mlm today": "8b459d769a3df947",  # the pooler pruned, the decoder dense, KD on clean text
    "search imp task today": "c1eedb95f48ddb57",
    "search tamt default": "5d6a970fa0f22db3",
    "search tamt mlm today": "acbc6f922ccdf9ec",  # int(s·n) count (TAMT's masker)
    "search tamt kd today": "98b1f309f284c902",  # and the KD teacher in train mode (train_kd.py)
    "search tamt kd corrupted": "286fdfa2246786eb",
    "search tamt mlm masked": "02b8643f3910b833",
    "search tamt mlm+kd": "705533562272059c",
    "search tamt set": "bb38f9aafbf57cab",
}


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_run_identity_is_what_it_was(name: str, tmp_path: Path) -> None:
    assert _short(CASES[name](tmp_path / "inputs")) == PINNED[name]


def test_run_identity_reads_the_field_metadata():
    """`result=False` leaves a field out and every other field is in, at its value (a default too);
    `values` resolves or omits; `options` names fields as the CLI does, a negated bool as its
    option's value."""
    from dataclasses import dataclass, field

    from ticketlab.core.checks import option
    from ticketlab.core.digest import OMIT, run_identity

    @dataclass
    class Config:
        lr: float | None = None
        train_head: bool = option(True, "keep the head frozen", flag="--freeze-head")
        dtype: str = "float32"
        progress: bool = field(default=True, metadata={"result": False})
        tags: list[str] = field(default_factory=lambda: ["a"])

    plain = run_identity(Config())
    assert plain == {"lr": None, "train_head": True, "dtype": "float32", "tags": ["a"]}
    plain["tags"].append("b")  # the identity shares no list with its config
    assert Config().tags == ["a"]
    set_ = run_identity(Config(dtype="bfloat16", progress=False))
    assert set_["dtype"] == "bfloat16" and "progress" not in set_
    resolved = run_identity(Config(), values={"lr": 1e-3, "tags": OMIT}, options=True, leave_out={"dtype"})
    assert resolved == {"lr": 1e-3, "freeze_head": False}


def test_content_keys_and_digest(tmp_path: Path):
    from ticketlab.core.digest import content_keys, digest

    (tmp_path / "a.txt").write_text("x")
    keys = content_keys({"model": "hub/id-not-local", "data": tmp_path / "a.txt", "task": None})
    assert list(keys) == ["data"] and keys["data"].startswith("sha256:")
    from ticketlab.core.files.keys import content_key

    listed = content_keys({"corpus": [tmp_path / "a.txt", tmp_path / "a.txt"], "dev": [tmp_path / "gone"]})
    assert listed == {"corpus": content_key([tmp_path / "a.txt", tmp_path / "a.txt"])}
    # A hub dataset counts by its name beside the local files of its list: both stay in the key.
    mixed = content_key([tmp_path / "a.txt", "hub:org/wiki:raw"])
    assert mixed is not None and mixed != content_key([tmp_path / "a.txt", "hub:org/wiki:other"])
    (tmp_path / "a.txt").write_text("y")
    assert content_key([tmp_path / "a.txt", "hub:org/wiki:raw"]) != mixed
    assert content_keys({"corpus": ["hub:org/wiki:raw"]}) == {"corpus": content_key(["hub:org/wiki:raw"])}
    obj = {"b": [1, 2], "a": "x"}
    assert digest(obj) == hashlib.sha256(b'{"a": "x", "b": [1, 2]}').hexdigest()[:16]
    assert digest(obj, compact=True) == hashlib.sha256(b'{"a":"x","b":[1,2]}').hexdigest()[:16]
    assert len(digest(obj, length=12)) == 12


def test_a_model_key_is_what_loading_reads(tmp_path: Path):
    """A model's key leaves out its card, licence and scripts (loading reads none of them), keeps
    its config, weights and tokenizer, and keeps Python files where the config maps code
    (`auto_map`)."""
    from ticketlab.core.digest import content_keys
    from ticketlab.core.files.keys import content_key, model_key

    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"w" * 10)
    (model / "vocab.txt").write_text("[PAD]\n")
    (model / "1_Pooling" / "config.json").write_text("{}")
    key = model_key(model)
    assert key is not None and content_key([model]) == key  # nothing to leave out
    (model / "README.md").write_text("card")
    (model / "LICENSE").write_text("Apache-2.0")
    (model / "check_accuracy.py").write_text("print(1)")
    (model / "figure.png").write_bytes(b"png")
    edited = model_key(model)
    assert edited == key and content_key([model]) != key
    assert content_keys({"model": model}) == {"model": key}  # the name "model" is a model's key
    for name, data in [("vocab.txt", "[PAD]\n[UNK]\n"), ("1_Pooling/config.json", '{"x": 1}')]:
        (model / name).write_text(data)
        assert model_key(model) != key  # the tokenizer and a module's config are read
    now = model_key(model)
    (model / "config.json").write_text('{"model_type": "bert", "auto_map": {"AutoModel": "m.Model"}}')
    remote = model_key(model)
    (model / "check_accuracy.py").write_text("print(2)")
    assert model_key(model) != remote != now  # remote code is read: its Python files count
    assert model_key(tmp_path / "not-here") is None and model_key("org/hub-id") is None


def test_entry_keys_are_content_keys_over_some_entries(tmp_path: Path):
    """`entry_keys`: for each set of a folder's entries holding a file, the key `content_key` gives
    the folder with a `keep` of just those (hidden and empty entries left out); None past `most`."""
    from ticketlab.core.files.keys import content_key, entry_keys

    for file in ("A/f.tsv", "A/deeper/g.tsv", "B-x/f.tsv", "b/f.tsv", "c.txt"):  # B-x sorts before b
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(file)
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "h").write_text("h")
    keys = entry_keys(tmp_path)
    assert len(keys) == 2**4 and set(keys.values()) >= {frozenset(), frozenset({"A", "B-x", "b", "c.txt"})}
    for key, entries in keys.items():
        assert key == content_key([tmp_path], keep=lambda rel, s=entries: rel.parts[0] in s)
    assert content_key([tmp_path]) in keys and entry_keys(tmp_path, most=3) is None
    assert entry_keys(tmp_path / "c.txt") == {} == entry_keys(tmp_path / "gone")


def test_a_run_directory_on_other_weights_or_settings_is_refused(tmp_path: Path):
    """A run directory's record is checked against the run: other weights or other settings are
    refused in one line; an edited model card is the same model."""
    from ticketlab.core.errors import ConfigError
    from ticketlab.core.files.keys import model_key
    from ticketlab.train.run_dir import check_same_run, record_or_check

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "README.md").write_text("card")
    now = {"lr": 1e-3, "model content": model_key(model)}
    names = {"model content": f"the model at {model}"}
    with pytest.raises(ConfigError, match="the model at .* changed since this run started"):
        check_same_run(tmp_path, "run", {**now, "model content": "sha256:other"}, now, names)
    with pytest.raises(ConfigError, match="other settings"):
        check_same_run(tmp_path, "run", {**now, "lr": 1e-4}, now, names)
    record = tmp_path / "settings.json"
    record_or_check(record, now, out=tmp_path, kind="run", inputs=names)
    (model / "README.md").write_text("the card, edited")
    edited = {**now, "model content": model_key(model)}
    record_or_check(record, edited, out=tmp_path, kind="run", inputs=names)
    (model / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ConfigError, match="changed since this run started"):
        record_or_check(
            record, {**now, "model content": model_key(model)}, out=tmp_path, kind="run", inputs=names
        )
