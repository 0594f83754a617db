"""The site's "A ticket under a LoRA adapter" runs exactly as written, with a tiny model for
`models/minilm-mlm` (tests/test_docs_examples.py runs it too, in the site's order), and prints
what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config, write_tokenizer

PAGE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "trainer-peft.md"
pytest.importorskip("peft")


def section_code() -> str:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("\n## A ticket under a LoRA adapter\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)[0]


def test_the_lora_section_runs_as_written(tmp_path, monkeypatch, capsys):
    model = tmp_path / "models" / "minilm-mlm"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(model)
    write_tokenizer(model)
    code = section_code()
    assert code.count('"models/minilm-mlm"') == 1 and "merge_under_mask(" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/how-to/trainer-peft.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out.split()
    assert printed[-2:] == ["0.0", "70.0%"]
    assert (tmp_path / "lora" / "sst2-omp70" / "ticketlab_ticket.json").is_file()
