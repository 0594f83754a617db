"""Declared claims: the spec's `claims:` and `endpoint:` checked where the spec is read, the store's
record of each declaration, the report's family of exactly those claims (Holm on unrounded p, the MDE
at the corrected α, every other test exploratory), an amended declaration said so, and a claim that
cannot pass refused before any run."""

from __future__ import annotations

import csv
import json
import math
import re
from types import SimpleNamespace

import pytest
import yaml

import sweep_fakes as fakes
from loss_stores import M, fill
from sweep_fakes import base_spec_dict, fake_registry
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.studies import Store, run_sweep, spec_from_dict
from ticketlab.studies.report import write_report
from ticketlab.studies.report.comparison import DECLARED
from ticketlab.studies.report.declared import (
    DeclaredTest,
    declaration_status,
    declared_rows,
    declared_tests,
    holm_cell,
    holm_family,
)
from ticketlab.studies.report.results import load_results
from ticketlab.studies.run_ids import make_run
from ticketlab.studies.stats import detectable_effect, detectable_rho, holm, welch
from ticketlab.studies.sweep import plan
from ticketlab.studies.sweep.claim_plans import plan_claims, refuse_unpassable
from ticketlab.studies.sweep.declaration import declaration, record_declaration
from ticketlab.studies.sweep.declared import CLAIMS_META, claim_from_dict
from ticketlab.studies.sweep.spec import spec_json


def spec(tmp_path, **extra):
    d = base_spec_dict(tmp_path) | {"pretrain_eval": {}}
    d["methods"] = ["full", "omp", "random", "imp", "tamt-mlm"]
    d["seeds"] = {"search": [0, 1, 2, 3, 4], "finetune": 2}
    return spec_from_dict(d | extra, source="s.yaml", base_dir=tmp_path, registry=fake_registry())


AVG = {"endpoint": {"name": "fig5", "tasks": ["sst2", "cola"]}}
AVG_T = ("sst2", "cola", "fig5")  # 2 methods x 3 endpoints: 6 claims


def test_claims_and_endpoint_are_read_and_recorded_in_the_spec_json(tmp_path):
    claims = [
        {"compare": "tamt-mlm > imp", "endpoint": "fig5", "sparsity": "70%", "pilot_sd": 1.0},
        {"compare": "tamt-mlm < omp", "endpoint": "mlm_loss", "sparsity": 0.7},
        {"correlate": "mlm_loss", "endpoint": "sst2", "sparsity": 0.7, "unit": "masks"},
    ]
    s = spec(tmp_path, claims=claims, **AVG)
    assert [c.text for c in s.claims] == [
        "tamt-mlm > imp on fig5 at 70%",
        "tamt-mlm < omp on mlm_loss at 70%",
        "mlm_loss predicts sst2 at 70% (ρ < 0, over masks)",
    ]
    as_json = spec_json(s)
    assert as_json["endpoints"] == [{"name": "fig5", "tasks": ["sst2", "cola"]}]
    # the report reads the same declaration from the store's spec (its JSON read back)
    assert declaration(json.loads(json.dumps(as_json))) == declaration(as_json)
    # a pilot's SDs plan the power of a claim, they are not part of what it declares
    again = spec(tmp_path / "b", claims=[claims[0] | {"pilot_sd": 2.0}, *claims[1:]], **AVG)
    assert declaration(spec_json(again)) == declaration(as_json)


@pytest.mark.parametrize(
    "claims, message",
    [
        ([{"compare": "tamt-mlm >> imp", "endpoint": "sst2", "sparsity": 0.7}], "expected 'A > B'"),
        ([{"compare": "tamt-kd > imp", "endpoint": "sst2", "sparsity": 0.7}], "'tamt-kd' is not in the"),
        ([{"compare": "imp > omp", "endpoint": "qnli", "sparsity": 0.7}], "claims[0].endpoint: 'qnli'"),
        ([{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.9}], "imp is not searched at 0.9"),
        ([{"correlate": "mlm_loss", "endpoint": "sst2", "sparsity": 0.7}], "claims[0].unit: None"),
        ([{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7, "unit": "masks"}], "claims[0].unit"),
        ([{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7}] * 2, "claims[1]: declared twice"),
        (  # its own mirror, and the same difference claimed the other way: one test, not two at α / 2
            [{"compare": "omp > random", "endpoint": "sst2", "sparsity": 0.7}]
            + [{"compare": "random < omp", "endpoint": "sst2", "sparsity": 0.7, "pilot_sd": 1.0}],
            "claims[1]: 'random < omp on sst2 at 70%' tests what 'omp > random on sst2 at 70%' tests",
        ),
        (
            [{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7}]
            + [{"compare": "omp > imp", "endpoint": "sst2", "sparsity": 0.7}],
            "claims[1]: 'omp > imp on sst2 at 70%' tests what",
        ),
        (
            [{"correlate": "kd_loss", "endpoint": "sst2", "sparsity": 0.7, "unit": "masks"}]
            + [
                {
                    "correlate": "kd_loss",
                    "endpoint": "sst2",
                    "sparsity": 0.7,
                    "unit": "masks",
                    "direction": "positive",
                }
            ],
            "claims[1]: 'kd_loss predicts sst2 at 70% (ρ > 0, over masks)' tests what",
        ),
        (
            [{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7, "sequential": {"looks": 2}}],
            "claims[0].sequential: group-sequential growth (interim looks with α spending) is not",
        ),
        (
            [
                {"compare": f"{a} > omp", "endpoint": t, "sparsity": 0.7}
                for a in ("imp", "random")
                for t in AVG_T
            ],
            "s.yaml: claims: 6 claims: at most 4",
        ),
    ],
)
def test_a_bad_claim_is_one_error_naming_the_spec_and_key(tmp_path, claims, message):
    with pytest.raises(ConfigError) as e:
        spec(tmp_path, claims=claims, **AVG)
    assert str(e.value).startswith("s.yaml: ") and message in str(e.value)


def test_an_endpoint_names_tasks_of_the_sweep(tmp_path):
    with pytest.raises(ConfigError, match=r"s.yaml: endpoint.tasks: 'stsb' is not in the sweep's tasks"):
        spec(tmp_path, endpoint={"name": "fig5", "tasks": ["sst2", "stsb"]})


def test_dry_run_bounds_a_spearman_over_method_means_and_the_mde_at_the_corrected_alpha(tmp_path):
    """Spearman over 4 method means (omp, random, imp, tamt-mlm) cannot go below 2/4! = 0.083: it
    cannot pass, whatever the data, and is refused before any run; over the 16 masks it can."""
    by_means = {"correlate": "mlm_loss", "endpoint": "fig5", "sparsity": 0.7, "unit": "method-means"}
    compare = {"compare": "tamt-mlm > imp", "endpoint": "fig5", "sparsity": 0.7, "pilot_sd": 1.5}
    s = spec(tmp_path, claims=[compare, by_means], **AVG)
    diff, corr = plan_claims(s)
    assert corr.smallest_p == pytest.approx(2 * 2 / math.factorial(4)) and not corr.passable
    assert corr.units == "4 method means"
    se = math.sqrt(2 * 1.5**2 / 5)
    assert diff.mde == pytest.approx(detectable_effect(se, 8.0, alpha=0.025)) and diff.passable
    with pytest.raises(
        ConfigError, match=r"s.yaml: claims\[1\]: mlm_loss predicts fig5 .* cannot pass by design"
    ):
        refuse_unpassable(s)
    by_masks = spec(tmp_path / "b", claims=[compare, by_means | {"unit": "masks"}], **AVG)
    (corr,) = plan_claims(by_masks)[1:]
    assert (
        corr.units == "16 masks"
        and corr.passable
        and corr.mde == pytest.approx(detectable_rho(16, alpha=0.025))
    )


def test_a_stochastic_method_with_one_mask_cannot_be_a_claim(tmp_path):
    s = spec(
        tmp_path,
        seeds={"search": [0], "finetune": [0, 1]},
        claims=[{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7}],
    )
    with pytest.raises(ConfigError, match=r"imp: search variance not estimated \(1 mask\)"):
        refuse_unpassable(s)


def test_the_store_records_each_declaration_with_the_runs_done_then(tmp_path):
    s1 = spec(tmp_path, claims=[{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7}])
    s2 = spec(tmp_path / "b", claims=[{"compare": "imp > random", "endpoint": "sst2", "sparsity": 0.7}])
    fill(tmp_path / "sweep", [M("omp", None, 5.0, 0.5, {"sst2": [70.0, 71.0]})])
    with Store(tmp_path / "sweep") as st:
        record_declaration(st, spec_json(s1))
        record_declaration(st, spec_json(s1))  # the same again: nothing new
        record_declaration(st, spec_json(s2))
        history = st.get_meta(CLAIMS_META)
    assert [h["runs_done"] for h in history] == [4, 4]  # OMP: search, pre-training eval, 2 fine-tunings
    assert [h["hash"] for h in history] == [declaration(spec_json(s1))[1], declaration(spec_json(s2))[1]]


# -------------------------------------------------------------------------------- the report

IMP = [70.0, 71.0, 70.5, 69.5, 70.2]
TAMT = [72.0, 72.6, 71.9, 72.4, 72.8]


def declared_store(tmp_path, claims: list[dict], recorded: list[tuple[list[dict], int]]):
    """Five masks each of IMP and TAMT-MLM, OMP's one, with MLM losses and SST-2 / CoLA scores; the
    spec's claims as the report reads them, and the declarations the store recorded (claims, runs done)."""
    masks = [M("omp", None, 5.3, 0.5, {"sst2": [68.0, 68.4], "cola": [20.0, 21.0]})]
    for k in range(5):
        masks.append(
            M("imp", k, 5.2 + 0.01 * k, 0.4, {"sst2": [IMP[k], IMP[k] + 0.2], "cola": [22.0, 22.4 + k]})
        )
        masks.append(
            M("tamt-mlm", k, 5.0 + 0.01 * k, 0.4, {"sst2": [TAMT[k], TAMT[k]], "cola": [23.0 + k, 23.0]})
        )
    sweep = tmp_path / "sweep"
    tmp_path.mkdir(exist_ok=True)
    fill(sweep, masks)
    endpoint = [{"name": "fig5", "tasks": ["sst2", "cola"]}]
    declared = [(declaration({"claims": c, "endpoints": endpoint}), n) for c, n in recorded]
    history = [{"hash": d[1], "text": d[0], "runs_done": n} for d, n in declared]
    with Store(sweep) as st:
        st.set_meta("spec", {"name": "declared", "claims": claims, "endpoints": endpoint})
        if history:
            st.set_meta(CLAIMS_META, history)
    return sweep


def claim(text: str, endpoint: str, **kw) -> dict:
    a, op, b = text.split()
    sign = 1 if op == ">" else -1
    what = {"kind": "compare", "endpoint": endpoint, "sparsity": 0.7, "a": a, "b": b, "sign": sign}
    return what | {"loss": "", "unit": "", "pilot_sd": []} | kw


CLAIMS = [claim("tamt-mlm > imp", "fig5"), claim("imp > omp", "sst2"), claim("tamt-mlm < imp", "mlm_loss")]


def test_a_declaration_changed_after_runs_began_is_reported_as_amended(tmp_path):
    before = declared_store(tmp_path / "a", CLAIMS, [(CLAIMS, 0)])
    assert declaration_status(load_results(before)).startswith("declared before any run")
    changed = [*CLAIMS[:2], claim("tamt-mlm > omp", "sst2")]
    amended = declared_store(tmp_path / "b", changed, [(CLAIMS, 0), (changed, 12)])
    status = declaration_status(load_results(amended))
    assert status == "amended: declared before any run, changed with 12 runs done"
    report = write_report(amended).path.read_text()
    assert (
        "## Declared claims" in report
        and "amended: declared before any run, changed with 12 runs done" in report
    )
    withdrawn = declared_store(tmp_path / "d", [], [(CLAIMS, 0), ([], 20)])
    assert "None now: amended: declared before any run, changed with 20 runs done." in (
        write_report(withdrawn).path.read_text()
    )
    # a spec whose claims the store never recorded (edited after the sweep): amended now
    unrecorded = declared_store(tmp_path / "c", changed, [(CLAIMS, 0)])
    with Store(unrecorded) as st:
        done = sum(x == "done" for x in st.statuses().values())
    assert declaration_status(load_results(unrecorded)).endswith(
        f"and again now (not recorded in the store) with {done} runs done"
    )


def test_the_declared_family_is_holm_over_unrounded_p_with_the_mde_at_the_corrected_alpha(tmp_path):
    sweep = declared_store(tmp_path, CLAIMS, [(CLAIMS, 0)])
    res = load_results(sweep)
    tests = declared_tests(res)
    assert [t.claim.text for t in tests] == [
        "tamt-mlm > imp on fig5 at 70%",
        "imp > omp on sst2 at 70%",
        "tamt-mlm < imp on mlm_loss at 70%",
    ]
    p = [t.p for t in tests]
    assert all(x is not None and x != round(x, 4) for x in p)  # unrounded
    assert [t.p_holm for t in tests] == holm(p)
    assert [t.verdict for t in tests][0] == "holds" and tests[2].verdict == "holds"
    fig5 = tests[0].test
    # each mask's endpoint score: the mean over SST-2 and CoLA of its per-task means over seeds
    imp = [((IMP[k] + IMP[k] + 0.2) / 2 + (22.0 + 22.4 + k) / 2) / 2 for k in range(5)]
    assert fig5.b.means == pytest.approx(imp)
    assert tests[1].mde == pytest.approx(
        detectable_effect(tests[1].test.se, tests[1].test.df, alpha=0.05 / 3)
    )
    with open(write_report(sweep).path.parent / "declared.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["p"]) for r in rows] == p and [float(r["p_holm"]) for r in rows] == holm(p)


def test_holm_of_the_declared_family_reads_p_unrounded():
    """p = 0.012499 in a family of 4: Holm's 0.049996 < 0.05, the claim holds; rounded to 4 places
    first (0.0125) it would be 0.05 and not shown."""
    stub = lambda p: SimpleNamespace(p=p, mean=1.0, why_not=None, se=1.0, df=4.0)  # noqa: E731
    claims = [claim_from_dict(claim("tamt-mlm > imp", t)) for t in ("sst2", "cola", "fig5", "mrpc")]
    tests = [DeclaredTest(c, stub(p), 4) for c, p in zip(claims, [0.012499, 0.9, 0.9, 0.9], strict=True)]
    holm_family(tests)
    assert tests[0].p_holm == pytest.approx(0.049996) and tests[0].verdict == "holds"
    assert round(0.012499, 4) * 4 >= 0.05  # what rounding first would have decided


def test_a_claim_without_a_test_stays_in_the_family_at_p_1():
    """Family of 4, claim 3 without a test (no spread, say): the others are still corrected over 4,
    not 3. p = 0.015 is 3 × 0.015 = 0.045 over the three tested claims alone, 4 × 0.015 = 0.06 over
    the family declared: not shown. Claims not run yet count the same way while they wait."""
    stub = lambda p: SimpleNamespace(p=p, mean=1.0, why_not=None, se=1.0, df=4.0)  # noqa: E731
    claims = [claim_from_dict(claim("tamt-mlm > imp", t)) for t in ("sst2", "cola", "fig5", "mrpc")]
    tests = [DeclaredTest(c, stub(p), 4) for c, p in zip(claims, [0.015, 0.5, 0.6], strict=False)]
    tests.append(DeclaredTest(claims[3], None, 4))
    holm_family(tests)
    assert tests[0].p_holm == pytest.approx(0.06) and tests[0].verdict.startswith("not shown")
    assert tests[3].p_holm is None and holm_cell(tests[3]) == "—"
    running = [
        DeclaredTest(c, stub(0.015) if k == 0 else None, 4, unfinished=5) for k, c in enumerate(claims)
    ]
    holm_family(running)
    assert running[0].p_holm == pytest.approx(0.06)  # as it stands: the untested claims at p = 1


def test_a_finished_claims_verdict_waits_where_running_claims_can_change_its_holm_level():
    """Family of 4, claim 0 still running (p 0.001 as it stands). Claim 1 (p 0.02) holds with it as it
    stands (Holm 2 × 0.02 = 0.04) but not with its p at 1 (3 × 0.02 = 0.06): it waits. Claim 2
    (p 0.004) holds either way (≤ 3 × 0.004), claim 3 (p 0.5) is not shown either way."""
    stub = lambda p: SimpleNamespace(p=p, mean=1.0, why_not=None, se=1.0, df=4.0)  # noqa: E731
    claims = [claim_from_dict(claim("tamt-mlm > imp", t)) for t in ("sst2", "cola", "fig5", "mrpc")]
    ps = [0.001, 0.02, 0.004, 0.5]
    tests = [DeclaredTest(c, stub(p), 4) for c, p in zip(claims, ps, strict=True)]
    tests[0].unfinished = 3
    holm_family(tests)
    assert tests[1].p_holm == pytest.approx(0.04)  # as it stands: below α
    assert tests[1].p_holm_range == pytest.approx((0.04, 0.06))
    assert [t.verdict.split(" (")[0] for t in tests] == ["interim", "interim", "holds", "not shown"]
    assert tests[1].verdict == "interim (its Holm level waits for the runs of 1 other claim)"
    assert holm_cell(tests[1]) == "0.04 (0.04-0.06 whatever the running claims give)"
    tests[0].unfinished = 0  # its runs done, same p: every bound is the adjusted p itself
    holm_family(tests)
    assert [t.verdict.split(" (")[0] for t in tests] == ["holds", "holds", "holds", "not shown"]


def test_every_other_comparison_of_a_declared_study_is_exploratory(tmp_path):
    """paired.csv labels the declared comparisons as declared, their MDE at Holm's strictest level
    (α / m), and every other comparison exploratory (its MDE at 0.05)."""
    sweep = declared_store(tmp_path, CLAIMS, [(CLAIMS, 0)])
    report = write_report(sweep).path
    text = report.read_text()
    assert "Exploratory: this study declared its claims" in text and "within noise" not in text
    with open(report.parent / "paired.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["p"]]
    declared = {("tamt-mlm", "imp", "avg"), ("imp", "omp", "sst2")}  # fig5 averages both tasks: avg
    mine = [r for r in rows if (r["a"], r["b"], r["task"]) in declared]
    assert len(mine) == 2 and all(r["verdict"] == DECLARED and r["mde_alpha"] == "0.01667" for r in mine)
    others = [r for r in rows if r not in mine]
    assert others and all(r["verdict"] == "exploratory" and r["p_holm"] == "" for r in others)
    assert all(r["mde_alpha"] == "0.05" for r in others)
    assert "Verdict (1)" not in text  # the loss claims' tests: estimates, no verdict


def test_a_sweep_records_its_declaration_before_its_first_run_and_refuses_an_unpassable_one(
    tmp_path, tiny_bert_dir
):
    compare = {"compare": "random > omp", "endpoint": "a", "sparsity": 0.5}
    small = fakes.SMALL | {"seeds": {"search": [0, 1], "finetune": [0, 1]}}
    s = fakes.make_spec(tmp_path, tiny_bert_dir, **small, claims=[compare])
    run_sweep(s, tmp_path / "sweep", finetune=fakes.fake_finetune, max_runs=1, log=lambda line: None)
    with Store(tmp_path / "sweep") as st:
        (first,) = st.get_meta(CLAIMS_META)
    assert first["runs_done"] == 0 and first["hash"] == declaration(spec_json(s))[1]
    one_seed = fakes.SMALL | {"seeds": {"search": [0, 1], "finetune": [0]}}
    bad = fakes.make_spec(tmp_path / "b", tiny_bert_dir, **one_seed, claims=[compare])
    with pytest.raises(ConfigError, match="random > omp on a at 50% cannot pass by design: omp: one run"):
        run_sweep(bad, tmp_path / "b" / "sweep", finetune=fakes.fake_finetune, log=lambda line: None)
    with Store(tmp_path / "b" / "sweep") as st:
        assert st.statuses() == {}  # refused before the plan was recorded


@pytest.mark.parametrize(
    "finetune, key",
    [
        (
            {"steps": 5, "select_fraction": 0.2},
            "finetune.select_fraction: 0.2: a declared claim's checkpoint",
        ),
        ({"steps": 5, "checkpoint": "best-dev"}, "finetune.checkpoint: a declared claim reads held-out"),
    ],
)
def test_a_declared_claim_reads_the_last_evaluation_or_a_step_chosen_on_half_of_dev(tmp_path, finetune, key):
    claims = [{"compare": "imp > omp", "endpoint": "fig5", "sparsity": 0.7}]
    with pytest.raises(ConfigError, match=re.escape(f"s.yaml: {key}")):
        spec(tmp_path, claims=claims, finetune=finetune, **AVG)
    half = spec(tmp_path / "b", claims=claims, finetune={"steps": 5, "select_fraction": 0.5}, **AVG)
    assert half.finetune_settings("cola")["select_fraction"] == 0.5
    # without claims the reading stays the study's choice (the committed studies chose on 20%)
    assert spec(tmp_path / "c", finetune=finetune).claims == ()


def test_sweep_dry_run_prints_what_each_claim_can_reach_and_refuses_one_that_cannot_pass(
    tmp_path, tiny_bert_dir, capsys
):
    """4 method means at 70% (omp, random, imp, tamt-mlm): 2 / 4! × 2 claims = 0.17, one line, exit 2."""
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, search_curve=None, data_curve=None)
    d["seeds"] = {"search": [0, 1], "finetune": 2}  # drawn per mask: independent units, Welch
    d["endpoint"] = {"name": "ab", "tasks": ["a", "b"]}
    d["claims"] = [
        {"compare": "tamt-mlm > imp", "endpoint": "ab", "sparsity": 0.7, "pilot_sd": 1.0},
        {"correlate": "mlm_loss", "endpoint": "ab", "sparsity": 0.7, "unit": "method-means"},
    ]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(d))
    code = main(["sweep", str(path), "--out", str(tmp_path / "sweep"), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "claims[1]: mlm_loss predicts ab at 70% (ρ < 0, over method-means) cannot pass by design" in err
    se = math.sqrt(2 / 2)  # 2 masks a side, SD 1
    mde = detectable_effect(se, 2.0, alpha=0.025)
    assert (
        "tamt-mlm > imp on ab at 70%: 2 masks vs 2 masks; smallest corrected p none (a t test), "
        f"MDE {mde:.3g}" in out
    )
    assert (
        "mlm_loss predicts ab at 70% (ρ < 0, over method-means): 4 method means; smallest corrected p 0.167"
        in out
    )
    assert not (tmp_path / "sweep").exists()  # a dry run writes nothing


def test_a_study_carried_over_from_another_reads_its_own_declaration_alone(tmp_path):
    """A study that starts from a copy of another's store (to reuse its runs) inherits that study's
    record of claims: its first sweep names those records after the study they were made by, and its
    report reads its own declaration alone, 'declared once', not 'amended' by the other's."""
    other = spec(
        tmp_path, name="earlier", claims=[{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7}]
    )
    this = spec(
        tmp_path / "b",
        name="later",
        claims=[{"compare": "imp > random", "endpoint": "sst2", "sparsity": 0.7}],
    )
    fill(tmp_path / "sweep", [M("omp", None, 5.0, 0.5, {"sst2": [70.0, 71.0]})])
    with Store(tmp_path / "sweep") as st:
        record_declaration(st, spec_json(other))
        st.set_meta("spec", spec_json(other))
        st.set_meta(
            CLAIMS_META, [{k: v for k, v in h.items() if k != "study"} for h in st.get_meta(CLAIMS_META)]
        )
        record_declaration(
            st, spec_json(this)
        )  # the later study's first sweep, the store still the earlier's
        st.set_meta("spec", spec_json(this))
        record_declaration(st, spec_json(this))  # again: nothing new
        history = st.get_meta(CLAIMS_META)
    assert [h["study"] for h in history] == ["earlier", "later"]
    assert history[1]["hash"] == declaration(spec_json(this))[1]
    status = declaration_status(load_results(tmp_path / "sweep"))
    assert status.startswith("declared once, after 4 runs of its plan") and "amended" not in status
    assert status.endswith("; the store also records the declarations of earlier")  # set aside, named
    earlier = load_results(tmp_path / "sweep", plan=([], spec_json(other)))
    assert [h["study"] for h in earlier.declarations] == ["earlier"]


def test_a_study_reusing_runs_counts_its_plans_and_is_declared_once_after_them_not_amended(tmp_path):
    """A store carried over from another study holds runs outside this plan: the declaration counts
    only the plan's finished runs, and one declaration made after reused runs reads 'declared once,
    after N runs', not 'amended'."""
    s1 = spec(tmp_path, claims=[{"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7}])
    fill(tmp_path / "sweep", [M("omp", None, 5.0, 0.5, {"sst2": [70.0, 71.0]})])
    with Store(tmp_path / "sweep") as st:
        ids = sorted(st.statuses())
        record_declaration(st, spec_json(s1), plan=[*ids[:2], "not-in-the-store"])
        assert [h["runs_done"] for h in st.get_meta(CLAIMS_META)] == [2]  # 2 of the store's 4
    reused = declared_store(tmp_path / "r", CLAIMS, [(CLAIMS, 9)])
    status = declaration_status(load_results(reused))
    assert status.startswith("declared once, after 9 runs of its plan") and "amended" not in status


def _within_by_hand(methods: list[str], losses: list[float], scores: list[float]) -> tuple[float, float]:
    """(ρ, two-sided p) of a within-methods correlation, from scratch: ranks within each method of 2
    or more masks, the pooled correlation of the centred ranks, and p over every combination of
    within-method orderings of the scores."""
    import itertools

    from scipy.stats import rankdata

    groups = [[i for i, m in enumerate(methods) if m == g] for g in dict.fromkeys(methods)]
    groups = [g for g in groups if len(g) > 1]
    xs = [rankdata([losses[i] for i in g]) for g in groups]
    ys = [rankdata([scores[i] for i in g]) for g in groups]
    xs, ys = [x - x.mean() for x in xs], [y - y.mean() for y in ys]
    norm = math.sqrt(sum((x * x).sum() for x in xs) * sum((y * y).sum() for y in ys))
    rho = sum((x * y).sum() for x, y in zip(xs, ys, strict=True)) / norm
    combos = list(itertools.product(*(itertools.permutations(y) for y in ys)))
    hits = sum(
        abs(sum((x * list(o)).sum() for x, o in zip(xs, c, strict=True))) / norm >= abs(rho) - 1e-9
        for c in combos
    )
    return rho, hits / len(combos)


def test_a_within_methods_correlation_ranks_masks_inside_their_method_not_the_clusters(tmp_path):
    """TAMT-MLM's masks have the lowest losses and the highest scores, so over the 11 masks pooled
    the MLM loss 'predicts' fig5 (ρ < 0) by the clusters' order alone; within each method a mask's
    loss rises with its seed and so, mostly, does its score: ranked within methods the correlation is
    positive, and OMP's one mask carries nothing. ρ and the exact stratified-permutation p (5! × 5!
    orderings) match a computation from scratch."""
    within = claim("x < y", "fig5") | {"kind": "correlate", "a": "", "b": "", "sign": -1}
    within |= {"loss": "mlm_loss", "unit": "within-methods"}
    pooled = within | {"unit": "masks"}
    sweep = declared_store(tmp_path, [within, pooled], [([within, pooled], 0)])
    w, p = (t.test for t in declared_tests(load_results(sweep)))
    assert w.within and not p.within and w.n == 10 and p.n == 11 and len(w.groups) == 2
    assert p.rho < -0.5 < 0 < w.rho  # the clusters' order, against the masks' within their method
    rho, exact = _within_by_hand(w.methods, w.losses, w.scores)
    assert w.rho == pytest.approx(rho) and w.p == pytest.approx(exact)
    assert w.mde == pytest.approx(detectable_rho(9))  # 10 masks, less 1 for the second method's mean
    assert declared_tests(load_results(sweep))[0].verdict.startswith(("not shown", "contradicted"))
    report = write_report(sweep).path.read_text()
    assert "mlm_loss predicts fig5 at 70% (ρ < 0, over masks within methods)" in report
    assert "10 masks within 2 methods" in report


def test_a_within_methods_p_beyond_its_enumeration_is_drawn_seeded_and_near_the_exact_one(monkeypatch):
    """Past `WITHIN_DRAWS` orderings the p is a seeded Monte Carlo estimate: the same twice, within
    its sampling error of the exact p, and never 0."""
    from ticketlab.studies.report import loss_tests as report_claims

    methods = ["a"] * 4 + ["b"] * 4 + ["c"] * 3
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.1, 6.0, 8.0, 9.0, 10.0, 11.0]
    scores = [3.0, 2.0, 1.0, 0.5, 9.0, 8.0, 8.5, 7.0, 4.0, 3.0, 3.5]
    make = lambda: report_claims.Correlation("kd_loss", "avg", methods, losses, scores, [], within=True)  # noqa: E731
    exact = make().p  # 4! × 4! × 3! = 3,456 orderings: enumerated
    assert exact == pytest.approx(_within_by_hand(methods, losses, scores)[1])
    monkeypatch.setattr(report_claims, "WITHIN_DRAWS", 2000)
    drawn = make().p
    assert drawn == make().p and drawn > 0
    order = [10, 3, 7, 0, 5, 9, 1, 8, 2, 6, 4]  # the same masks listed in another order: the same p
    shuffled = report_claims.Correlation(
        "kd_loss", "avg", *([x[i] for i in order] for x in (methods, losses, scores)), [], within=True
    )
    assert shuffled.p == drawn and shuffled.rho == pytest.approx(make().rho)
    assert abs(drawn - exact) < 4 * math.sqrt(exact * (1 - exact) / 2000) + 1 / 2001


def test_dry_run_plans_a_within_methods_correlation_with_its_draws_floor(tmp_path):
    """Random, IMP and TAMT-MLM at 5 masks each (OMP's one carries nothing within): 15 masks within 3
    methods, 120³ orderings (past the enumeration), so the floor is the draws' 1 / 200,001 plus a
    perfect order's 2 / 120³ (× 2 claims); the MDE is Fisher's at 15 − 2 units and α / 2. It passes
    by design."""
    within = {"correlate": "kd_loss", "endpoint": "fig5", "sparsity": 0.7, "unit": "within-methods"}
    compare = {"compare": "tamt-mlm > imp", "endpoint": "fig5", "sparsity": 0.7, "pilot_sd": 1.5}
    s = spec(tmp_path, claims=[compare, within], **AVG)
    corr = plan_claims(s)[1]
    assert corr.units == "15 masks within 3 methods" and corr.passable
    assert corr.smallest_p == pytest.approx(2 * (1 / 200_001 + 2 / 120**3))
    assert corr.mde == pytest.approx(detectable_rho(13, alpha=0.025))
    assert s.claims[1].text == "kd_loss predicts fig5 at 70% (ρ < 0, over masks within methods)"
    refuse_unpassable(s)  # nothing to refuse


# --------------------------------------------------------------------------- a method's own seeds


def test_the_dry_run_counts_a_methods_own_finetune_seeds_in_its_side(tmp_path):
    """OMP's one mask is its side's only unit, its spread its fine-tuning seeds': with
    `methods.omp.finetune_seeds` of 10 seeds the planned MDE of `imp > omp` is Welch's over IMP's 5
    masks and OMP's 10 seeds, not over the sweep's 2."""
    claim = {"compare": "imp > omp", "endpoint": "sst2", "sparsity": 0.7, "pilot_sd": 1.0}
    two = plan_claims(spec(tmp_path, claims=[claim]))[0]
    methods = ["full", {"omp": {"finetune_seeds": list(range(10))}}, "random", "imp", "tamt-mlm"]
    ten = plan_claims(spec(tmp_path / "b", methods=methods, claims=[claim]))[0]
    assert (two.units, ten.units) == ("5 masks vs 1 mask × 2 seeds", "5 masks vs 1 mask × 10 seeds")
    se, df = welch([(1.0 / 5, 4), (1.0 / 10, 9)])
    assert ten.mde == pytest.approx(detectable_effect(float(se), float(df), alpha=0.05))
    assert ten.mde < two.mde


def test_sweep_dry_run_shows_a_methods_own_finetune_seeds_as_runs_and_in_its_claim(
    tmp_path, tiny_bert_dir, capsys
):
    """The sweep's one fine-tuning seed would leave `random > omp` no test (OMP: one run, refused);
    OMP's own 4 seeds add its 6 runs to the plan and make the claim's OMP side 4 seeds."""
    methods = ["full", {"omp": {"finetune_seeds": 4}}, "random"]
    small = fakes.SMALL | {"methods": methods, "seeds": {"search": [0, 1], "finetune": 1}}
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, **small)
    d["claims"] = [{"compare": "random > omp", "endpoint": "a", "sparsity": 0.5, "pilot_sd": 1.0}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(d))
    code = main(["sweep", str(path), "--out", str(tmp_path / "sweep"), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # full: 2 tasks x 1 seed; omp: 1 mask x 2 tasks x 4 seeds; random: 2 masks x 2 tasks x 1 seed
    assert re.search(r"finetune\s+14 runs", out)
    se, df = welch([(1.0 / 2, 1), (1.0 / 4, 3)])
    mde = detectable_effect(float(se), float(df), alpha=0.05)
    line = "random > omp on a at 50%: 2 masks vs 1 mask × 4 seeds; smallest corrected p none (a t test)"
    assert f"{line}, MDE {mde:.3g}" in out
    # seeds pinned: every mask at seed 0, OMP at 0-3: one shared seed leaves no valid test
    pinned = fakes.SMALL | {"methods": ["full", {"omp": {"finetune_seeds": [0, 1, 2, 3]}}, "random"]}
    d = fakes.spec_dict(tmp_path / "p", tiny_bert_dir, **pinned)
    d["claims"] = [{"compare": "random > omp", "endpoint": "a", "sparsity": 0.5}]
    (tmp_path / "p" / "spec.yaml").write_text(yaml.safe_dump(d))
    assert (
        main(["sweep", str(tmp_path / "p" / "spec.yaml"), "--out", str(tmp_path / "p" / "s"), "--dry-run"])
        == 2
    )
    assert (
        "1 shared fine-tuning seed: the method × seed interaction is not estimated" in capsys.readouterr().err
    )


def test_a_drawn_seed_that_is_pinned_for_another_mask_is_refused(
    tmp_path, tiny_bert_dir, monkeypatch, capsys
):
    """The full model and random's masks draw their seeds, OMP's are pinned to 0-3: a draw of 2
    (about 1 in a billion for 32 bits) would make seed 2 a factor shared by the full model and OMP,
    which Welch on units does not model. The plan is refused, as two masks drawing one seed are."""
    methods = ["full", {"omp": {"finetune_seeds": [0, 1, 2, 3]}}, "random"]
    small = fakes.SMALL | {"methods": methods, "seeds": {"search": [0, 1], "finetune": 1}}
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, **small)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(d))
    out = ["sweep", str(path), "--out", str(tmp_path / "sweep"), "--dry-run"]
    assert main(out) == 0  # the drawn seeds as they are: no clash
    real = plan.mask_seeds
    monkeypatch.setattr(plan, "mask_seeds", lambda seeds, key: [2] if key == "full" else real(seeds, key))
    capsys.readouterr()
    assert main(out) == 2
    assert "share the fine-tuning seed 2, drawn for one of them: pin the seeds" in capsys.readouterr().err


@pytest.mark.parametrize(
    "order",
    [
        [("a", [5], False), ("b", [5], False), ("a", [5], True)],  # pinned for two, then drawn by one
        [("a", [5], False), ("a", [5], True), ("b", [5], False)],  # drawn, then pinned for another
        [("a", [5], True), ("b", [5], True)],  # two masks drawing one seed
        [("a", [5], True), ("b", [5], False)],
    ],
)
def test_a_seed_drawn_for_one_mask_and_serving_another_is_refused_in_any_order(order):
    owners = plan._SeedOwners()
    *first, last = order
    for mask, seeds, drawn in first:
        owners.take(seeds, mask, drawn=drawn)
    with pytest.raises(TicketlabError, match="share the fine-tuning seed 5, drawn for one of them"):
        owners.take(last[1], last[0], drawn=last[2])


def test_pinned_seeds_are_shared_and_a_mask_meets_its_own_seeds():
    owners = plan._SeedOwners()
    owners.take([5, 6], "a", drawn=False)
    owners.take([5, 6], "b", drawn=False)  # one pinned list serves every mask
    owners.take([7], "a", drawn=True)
    owners.take([7], "a", drawn=True)  # the same mask's draw again (another task, a curve)
    owners.take([7], "a", drawn=False)  # and the same seed pinned for it


def test_the_report_tests_a_deterministic_side_on_every_seed_it_has(tmp_path):
    """The report reads a side's seeds from its runs, not from the spec: OMP fine-tuned with 10 seeds
    beside IMP's 2 per mask is tested with its 10 seeds as its sample."""
    omp = [68.0 + 0.1 * f for f in range(10)]
    masks = [M("omp", None, 5.3, 0.5, {"sst2": omp})]
    masks += [M("imp", k, 5.2, 0.4, {"sst2": [IMP[k], IMP[k] + 0.2]}) for k in range(5)]
    fill(tmp_path / "sweep", masks)
    with Store(tmp_path / "sweep") as st:
        st.set_meta("spec", {"name": "seeds", "claims": [claim("imp > omp", "sst2")]})
    res = load_results(tmp_path / "sweep")
    (test,) = declared_tests(res)
    assert test.test.b.within == pytest.approx(omp) and test.test.df is not None
    assert declared_rows(res)[0]["units"] == "5 masks vs 1 mask × 10 seeds"


def test_a_claim_whose_planned_runs_are_not_all_done_is_interim_not_a_verdict(tmp_path):
    """A verdict is read once, at the planned n: while a run a claim reads is not done, its row is
    'interim' (its test as it stands), and only that claim's: a pending fine-tuning of TAMT-MLM on
    SST-2 holds back 'tamt-mlm > imp on fig5', not 'imp > omp on sst2' (other methods) nor the claim
    on MLM loss (a fine-tuning is not read there); one on MRPC, outside fig5's tasks, holds back none."""
    sweep = declared_store(tmp_path, CLAIMS, [(CLAIMS, 0)])
    done = load_results(sweep).records.values()
    tamt = next(r.config for r in done if r.kind == "finetune" and r.config["method"] == "tamt-mlm")
    # a third fine-tuning seed of one of TAMT-MLM's masks, on SST-2 and on MRPC
    sst2, mrpc = (
        make_run("finetune", "f", tamt | {"task": t, "task_label": t, "seed": 2}) for t in ("sst2", "mrpc")
    )
    with Store(sweep) as st:
        st.add_runs([sst2, mrpc])
    before = [t.verdict for t in declared_tests(load_results(sweep))]
    assert before == ["interim (1 of its planned runs not done)", "holds", "holds"]
    text = write_report(sweep).path.read_text()
    assert "**Interim**" in text and "| interim (1 of its planned runs not done) |" in text
    with Store(sweep) as st:
        assert st.claim(sst2.id)
        st.finish(sst2.id, {"metric": "accuracy", "score": 72.0, "final_score": 72.0}, {})
    after = declared_tests(load_results(sweep))
    assert [t.verdict for t in after] == ["holds", "holds", "holds"] and after[0].unfinished == 0
    assert "**Interim**" not in write_report(sweep).path.read_text()


def test_a_correlation_waits_for_its_masks_runs_not_for_the_full_models(tmp_path):
    """A correlation over the masks at 70% reads every method's masks there (a pending pre-training
    evaluation holds it back) and not the full model's runs (0%: not among its units)."""
    rho = {"kind": "correlate", "endpoint": "fig5", "sparsity": 0.7, "a": "", "b": "", "sign": -1}
    rho |= {"loss": "mlm_loss", "unit": "masks", "pilot_sd": []}
    sweep = declared_store(tmp_path, [rho], [([rho], 0)])
    done = list(load_results(sweep).records.values())
    ft = next(r.config for r in done if r.kind == "finetune")
    full = ft | {"method": "full", "sparsity": 0.0, "mask": None, "mask_seed": None, "search_steps": None}
    with Store(sweep) as st:
        st.add_runs([make_run("finetune", "f", full | {"seed": 5})])
    (test,) = declared_tests(load_results(sweep))
    assert test.unfinished == 0 and not test.verdict.startswith("interim")
    pe = next(r.config for r in done if r.kind == "pretrain-eval" and r.config["method"] == "imp")
    with Store(sweep) as st:
        st.add_runs([make_run("pretrain-eval", "p", pe | {"mask_seed": 9})])
    (test,) = declared_tests(load_results(sweep))
    assert test.verdict == "interim (1 of its planned runs not done)"


def test_units_or_an_endpoint_changed_after_runs_began_are_an_amendment_read_at_the_units_first_declared(
    tmp_path,
):
    """The declaration covers the units and the endpoints' definitions: IMP and TAMT-MLM declared at
    3 masks, grown to 5 after 12 runs, is amended, and each verdict is given at the 3 masks first
    declared beside the final one; an endpoint's tasks changed is a new declaration too."""
    sweep = declared_store(tmp_path, CLAIMS, [])
    endpoint = [{"name": "fig5", "tasks": ["sst2", "cola"]}]
    methods = {"omp": {}, "imp": {}, "tamt-mlm": {}}
    first = {"claims": CLAIMS, "endpoints": endpoint, "methods": methods, "search_seeds": [0, 1, 2]}
    now = first | {"search_seeds": [0, 1, 2, 3, 4]}
    history = [
        {"hash": h, "text": t, "runs_done": n}
        for (t, h), n in ((declaration(first), 0), (declaration(now), 12))
    ]
    with Store(sweep) as st:
        st.set_meta("spec", {"name": "declared"} | now)
        st.set_meta(CLAIMS_META, history)
    res = load_results(sweep)
    assert declaration_status(res) == "amended: declared before any run, changed with 12 runs done"
    row = declared_rows(res)[0]
    assert row["units"] == "5 masks vs 5 masks" and row["first_declared"].startswith("3 masks vs 3 masks: ")
    at_three = res.paired("tamt-mlm", "imp", 0.7, "fig5", only={m: {"masks": [0, 1, 2]} for m in methods})
    assert f"p {at_three.p:.3g}," in row["first_declared"]
    assert declared_rows(res)[1]["first_declared"].startswith("3 masks vs 1 mask × 2 seeds: ")
    fewer = first | {"endpoints": [{"name": "fig5", "tasks": ["sst2", "mrpc"]}]}
    assert declaration(fewer) != declaration(first)  # an endpoint's definition is declared
