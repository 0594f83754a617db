"""The README's examples run as written.

Every ```python block runs, in order, in one namespace, in a fresh working directory, against a tiny
model. The blocks name the reproduction's files (`../shared/...` and `examples/sweep.yaml`); the
`stand_ins` fixture replaces exactly those strings with a tiny random BERT (with the positions a
128-token example needs), a small corpus, a toy SST-2 and a sweep spec of five runs, and nothing
else in the code. Every `ticketlab ...` line of a ```bash block must name a verb and flags the
command line has; a complete line (without `...`) must parse.
"""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path

import pytest
import yaml
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config, write_tokenizer
from test_runner import write_sst2
from ticketlab.api import SEARCH_METHODS
from ticketlab.arch import ARCHS
from ticketlab.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = "the a cat dog bird man woman king queen runs sees likes eats good bad big small red blue .".split()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)


@pytest.fixture()
def stand_ins(tmp_path) -> dict[str, str]:
    model = tmp_path / "model"
    make_model(BertForMaskedLM, tiny_bert_config(max_position_embeddings=130), seed=0).save_pretrained(model)
    write_tokenizer(model)
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(40)) + "\n")
    write_sst2(tmp_path / "glue", n_train=64, n_dev=16)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "readme",
                "model": str(model),
                "corpus": {"train": str(corpus), "dev": str(corpus)},
                "tasks": {"sst2": {"data": str(tmp_path / "glue")}},
                "methods": ["full", "omp"],
                "sparsities": [0.5],
                "seeds": {"search": [0], "finetune": [0]},
                "finetune": {"steps": 2, "max_length": 16, "eval_every": 2},
                "pretrain_eval": {"max_blocks": 2},
            }
        )
    )
    return {
        '"../shared/models/bert-mini-ref"': repr(str(model)),
        '"../shared/data/wikitext-2/valid.txt"': repr(str(corpus)),
        '"../shared/data/wikitext-2/test.txt"': repr(str(corpus)),
        '"../shared/data/glue"': repr(str(tmp_path / "glue")),
        '"examples/sweep.yaml"': repr(str(spec)),
    }


def test_python_examples_run_as_written(stand_ins, tmp_path, monkeypatch):
    code = blocks("python")
    assert len(code) >= 3, "the README's Python examples were not found"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace: dict[str, object] = {"__name__": "readme"}
    # the examples register a family and a search method of their own: not for the tests after this
    archs, searches = dict(ARCHS), dict(SEARCH_METHODS)
    assert any("register_search(" in b for b in code), "the README shows no search method of one's own"
    try:
        for i, block in enumerate(code):
            for name, stand_in in stand_ins.items():
                block = block.replace(name, stand_in)
            assert "../shared" not in block, f"block {i + 1} names a file the test has no stand-in for"
            # dont_inherit: run as a script would, not under this file's `from __future__ import annotations`
            code_i = compile(block, f"README.md python block {i + 1}", "exec", dont_inherit=True)
            exec(code_i, namespace)  # noqa: S102
    finally:
        ARCHS.clear()
        ARCHS.update(archs)
        SEARCH_METHODS.clear()
        SEARCH_METHODS.update(searches)


def _commands() -> list[str]:
    """Every `ticketlab ...` command of the bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if "ticketlab " in line and not line.startswith("#"):
                found.append(line[line.index("ticketlab ") :])
    return found


def test_bash_examples_use_verbs_and_flags_that_exist():
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    commands = _commands()
    assert len(commands) > 20, "the README's commands were not found"
    for command in commands:
        words = shlex.split(command.replace("$M", "model"))[1:]
        sub = verbs.get(words[0])
        assert sub is not None, f"{command}: no verb {words[0]!r}"
        if words[0] == "search":
            sub = next(a for a in sub._actions if a.dest == "method").choices[words[1]]
        flags = {s for a in sub._actions for s in a.option_strings}
        unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in flags]
        assert not unknown, f"{command}: unknown flags {unknown}"
        if "..." not in words:
            try:
                parser.parse_args(words)
            except SystemExit:
                pytest.fail(f"{command}: does not parse")
