"""The studies' snapshot script (recipes/minilm-mlm/snapshot.py; later studies load it with their own
folder): it copies a live store and its needed masks into the study's record before a stop, and
brings masks back from git history before a report. Bad input is one line, exit 2, before any copy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "minilm-mlm" / "snapshot.py"


@pytest.mark.parametrize("restore", [False, True])
def test_a_missing_store_is_one_line_and_exit_2(tmp_path, capsys, restore):
    spec = importlib.util.spec_from_file_location("minilm_mlm_snapshot", RECIPE)
    snapshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshot)
    snapshot.HERE = tmp_path / "record"  # nothing may be written there
    argv = ["--restore", str(tmp_path)] if restore else [str(tmp_path)]
    assert snapshot.cli("sweeps/x", "doc", argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'results.sqlite'}: results store not found" in err
    assert not snapshot.HERE.exists()
