"""A study's declared claims: the confirmatory tests a sweep spec names before its runs, and the
named endpoints (averages over tasks) they may be made on.

    endpoint: {name: fig5-average, tasks: [sst2, cola, stsb]}   # TAMT Fig. 5's average, where it exists
    claims:                                                      # at most 4: one Holm family
      - {compare: tamt-kd > imp, endpoint: fig5-average, sparsity: 0.7, pilot_sd: 1.2}
      - {compare: tamt-mlm < imp, endpoint: mlm_loss, sparsity: 0.7}        # a pre-training loss
      - {correlate: kd_loss, endpoint: fig5-average, sparsity: 0.7, unit: within-methods}

A comparison is Welch's test of the report's paired comparisons (masks the unit), on a task, a named
endpoint or a dev loss of the final masks; a correlation is Spearman's rho of a loss and a score over
units that are independent: the methods' means (`method-means`), the masks nested in their methods
(`within-methods`: ranked within each method, a stratified permutation test, so that the methods'
clusters do not make the correlation), or the masks pooled (`masks`, which a reader must then know
sit in method clusters). The report tests exactly these as the study's family
(`report.declared`), every other comparison being exploratory, and a claim no planned design can pass
is refused before any run (`claim_plans.plan_claims`).

`sweep` records each declaration in the store (`declaration.record_declaration`: the claims, their
endpoints' definitions and their methods' units, as canonical text, its hash and the number of runs
done then), so a declaration changed after runs began is reported as amended, with that number,
rather than refused: refusing would leave a study that found a mistake in its claims no
way to say so, while the record shows every reader when the change came.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from ...core.checks import is_number
from ...core.errors import did_you_mean

MAX_CLAIMS = 4  # each declared claim divides α: a family of 4 over 5 masks a side still has power
LOSSES = ("mlm_loss", "kd_loss")  # the pre-training evaluation's dev losses (lower is better)
UNITS = ("method-means", "within-methods", "masks")
# A within-methods test enumerates every within-method ordering up to this many; beyond, it draws this
# many at random (seeded: the same store gives the same p), so its p has a floor of 1 / (draws + 1).
WITHIN_DRAWS = 200_000
ALPHA = 0.05
# A declared claim's checkpoint is chosen on at least this share of dev (or none is: the last
# evaluation). On 20% of dev (82-209 examples) the choice moved TAMT-MLM − IMP on SST-2 from −1.53 to
# −0.91 points against reading the last evaluation, as much as the differences a claim is about.
MIN_SELECT = 0.5
CLAIMS_META = "claims"  # the store's meta entry: every declaration, in order
SEQUENTIAL = (
    "group-sequential growth (interim looks with α spending) is not implemented: declare each "
    "method's masks and fine-tuning seeds at their final number before the first run (a change "
    "after fine-tuning began is reported as an amendment, with each verdict at the units first declared)"
)
_COMPARE = re.compile(r"^\s*(\S+)\s*([<>])\s*(\S+)\s*$")


@dataclass(frozen=True)
class Endpoint:
    """A named average over tasks, reported as one score (each mask's mean over the tasks of its
    per-task means, as the report's 'avg')."""

    name: str = field(metadata={"help": "the endpoint's name, usable as a claim's endpoint"})
    tasks: tuple[str, ...] = field(metadata={"help": "the task labels it averages (at least 2)"})


@dataclass(frozen=True)
class Claim:
    """One declared confirmatory test (see the module's docstring)."""

    kind: str = field(metadata={"help": "'compare' (method a vs b) or 'correlate' (a loss vs a score)"})
    endpoint: str = field(metadata={"help": "a task label, a named endpoint, or mlm_loss / kd_loss"})
    sparsity: float = field(metadata={"help": "the sparsity the methods' masks are compared at"})
    a: str = field(default="", metadata={"help": "compare: the method claimed higher (or lower)"})
    b: str = field(default="", metadata={"help": "compare: the method it is compared with"})
    sign: int = field(
        default=1,
        metadata={"help": "+1: a > b (rho > 0); -1: a < b (rho < 0, e.g. lower loss, higher score)"},
    )
    loss: str = field(default="", metadata={"help": "correlate: the dev loss (mlm_loss or kd_loss)"})
    unit: str = field(
        default="",
        metadata={"help": "correlate: method-means, within-methods (masks nested in methods) or masks"},
    )
    pilot_sd: tuple[tuple[str, float], ...] = field(
        default=(),
        metadata={
            "help": "compare: a pilot's SD of one unit's score (a mask's mean over its fine-tuning seeds; "
            "a deterministic method's fine-tuning seed) per method, for the planned MDE"
        },
    )

    @property
    def text(self) -> str:
        """The claim as a reader writes it: `tamt-kd > imp on fig5-average at 70%`."""
        at = f"at {self.sparsity:.0%}"
        if self.kind == "compare":
            return f"{self.a} {'>' if self.sign > 0 else '<'} {self.b} on {self.endpoint} {at}"
        rho = "ρ > 0" if self.sign > 0 else "ρ < 0"
        over = "masks within methods" if self.unit == "within-methods" else self.unit
        return f"{self.loss} predicts {self.endpoint} {at} ({rho}, over {over})"


# --------------------------------------------------------------------------- reading the YAML


def endpoints_from(raw: Any, fail) -> tuple[Endpoint, ...]:
    """`endpoint:` as a mapping or a list of them; `fail(key, msg)` makes the spec's error."""
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    out = []
    for i, e in enumerate(items):
        key = f"endpoint[{i}]" if isinstance(raw, list) else "endpoint"
        if not isinstance(e, dict) or set(e) != {"name", "tasks"}:
            raise fail(key, "expected {name: NAME, tasks: [TASK, ...]}")
        tasks = e["tasks"] if isinstance(e["tasks"], list) else [e["tasks"]]
        out.append(Endpoint(str(e["name"]), tuple(str(t) for t in tasks)))
    return tuple(out)


def claims_from(raw: Any, fail, sparsity) -> tuple[Claim, ...]:
    """`claims:`, a list of mappings; `sparsity(value, key)` reads a sparsity as the spec does."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise fail("claims", f"expected a list of claims, got {type(raw).__name__}")
    return tuple(_claim(c, f"claims[{i}]", fail, sparsity) for i, c in enumerate(raw))


def _claim(c: Any, key: str, fail, sparsity) -> Claim:
    allowed = {"compare", "correlate", "endpoint", "sparsity", "direction", "unit", "pilot_sd"}
    if not isinstance(c, dict):
        raise fail(key, "expected a mapping ({compare: A > B, endpoint: ..., sparsity: ...})")
    if "sequential" in c:
        raise fail(f"{key}.sequential", SEQUENTIAL)
    if unknown := sorted(set(c) - allowed):
        raise fail(
            f"{key}.{unknown[0]}",
            f"unknown key{did_you_mean(unknown[0], allowed)} (allowed: {', '.join(sorted(allowed))})",
        )
    if ("compare" in c) == ("correlate" in c):
        raise fail(key, "give exactly one of compare (A > B) and correlate (a loss)")
    for k in ("endpoint", "sparsity"):
        if k not in c:
            raise fail(f"{key}.{k}", "missing (required)")
    common = {"endpoint": str(c["endpoint"]), "sparsity": sparsity(c["sparsity"], f"{key}.sparsity")}
    if "compare" in c:
        for k in ("direction", "unit"):
            if k in c:
                raise fail(f"{key}.{k}", "a comparison's direction is its sign and its unit the mask")
        m = _COMPARE.match(str(c["compare"]))
        if m is None:
            raise fail(f"{key}.compare", f"{c['compare']!r}: expected 'A > B' or 'A < B'")
        a, op, b = m.groups()
        return Claim("compare", a=a, b=b, sign=1 if op == ">" else -1, **common, pilot_sd=_sds(c, key, fail))
    if "pilot_sd" in c:
        raise fail(f"{key}.pilot_sd", "a correlation's MDE needs no pilot (it is in units of rho)")
    direction = c.get("direction", "negative")
    if direction not in ("negative", "positive"):
        raise fail(f"{key}.direction", f"{direction!r}: negative (lower loss, higher score) or positive")
    if c.get("unit") not in UNITS:
        raise fail(f"{key}.unit", f"{c.get('unit')!r}: say which units are independent: {' or '.join(UNITS)}")
    sign = -1 if direction == "negative" else 1
    return Claim("correlate", loss=str(c["correlate"]), unit=c["unit"], sign=sign, **common)


def _sds(c: dict, key: str, fail) -> tuple[tuple[str, float], ...]:
    """`pilot_sd`: one number (both sides) or {method: sd}."""
    raw = c.get("pilot_sd")
    if raw is None:
        return ()
    pairs = raw.items() if isinstance(raw, dict) else [("*", raw)]
    out = []
    for m, v in pairs:
        if not is_number(v) or not 0 < v < math.inf:
            raise fail(f"{key}.pilot_sd", f"{v!r} is not a positive number")
        out.append((str(m), float(v)))
    return tuple(sorted(out))


# --------------------------------------------------------------------------- checks against the grid


def check_claims(spec, fail) -> None:
    """The declared claims and endpoints name the spec's methods, sparsities, tasks and losses; at most
    `MAX_CLAIMS`, no two alike. `spec` is a `SweepSpec`."""
    names = [e.name for e in spec.endpoints]
    for i, e in enumerate(spec.endpoints):
        key = "endpoint" if len(spec.endpoints) == 1 else f"endpoint[{i}]"
        if e.name in spec.tasks or e.name in LOSSES or names.count(e.name) > 1 or e.name == "avg":
            raise fail(f"{key}.name", f"{e.name!r} is already a task, a loss, 'avg' or another endpoint")
        if len(e.tasks) < 2 or len(set(e.tasks)) < len(e.tasks):
            raise fail(f"{key}.tasks", f"at least 2 distinct task labels, got {list(e.tasks)}")
        for t in e.tasks:
            if t not in spec.tasks:
                raise fail(f"{key}.tasks", f"{t!r} is not in the sweep's tasks {list(spec.tasks)}")
    _check_reading(spec, fail)
    if len(spec.claims) > MAX_CLAIMS:
        raise fail("claims", f"{len(spec.claims)} claims: at most {MAX_CLAIMS} (each one divides α)")
    for i, c in enumerate(spec.claims):
        _check_claim(spec, c, f"claims[{i}]", fail, names)
        same = [d for d in spec.claims[:i] if _question(d) == _question(c)]
        if same and same[0].text == c.text:
            raise fail(f"claims[{i}]", f"declared twice: {c.text}")
        if same:
            what = f"{c.text!r} tests what {same[0].text!r} tests (one difference, tested once in the family)"
            raise fail(f"claims[{i}]", what)


def _question(c: Claim) -> tuple:
    """What a claim tests, whatever its direction or the side it is written from: `omp > random`,
    `random < omp` and `random > omp` are one test of one difference."""
    if c.kind == "compare":
        return ("compare", frozenset((c.a, c.b)), c.endpoint, c.sparsity)
    return ("correlate", c.loss, c.endpoint, c.sparsity, c.unit)


def _check_reading(spec, fail) -> None:
    """A declared claim's scores are read where choosing the checkpoint adds little noise: the last
    evaluation (no `select_fraction`), or the step chosen on at least half of dev (`MIN_SELECT`) and
    scored on the rest; never the best dev score chosen on the dev set it reports (`best-dev`)."""
    named = {e.name: e.tasks for e in spec.endpoints}
    read = {t for c in spec.claims for t in named.get(c.endpoint, (c.endpoint,)) if t in spec.tasks}
    for t in sorted(read):
        settings = spec.finetune_settings(t)
        where = (
            "tasks." + t if {"select_fraction", "checkpoint"} & spec.tasks[t].settings.keys() else "finetune"
        )
        if settings.get("checkpoint", "held-out") != "held-out":
            raise fail(
                f"{where}.checkpoint", "a declared claim reads held-out scores (best-dev is optimistic)"
            )
        fraction = settings.get("select_fraction")
        if fraction is not None and fraction < MIN_SELECT:
            raise fail(
                f"{where}.select_fraction",
                f"{fraction}: a declared claim's checkpoint is chosen on at least {MIN_SELECT:.0%} of dev, "
                "or none is (the last evaluation): a step chosen on a few hundred examples moves a "
                "method's mean by as much as the differences claimed",
            )


def _check_claim(spec, c: Claim, key: str, fail, endpoints: list[str]) -> None:
    scores = [*spec.tasks, *endpoints]
    if c.kind == "compare":
        for m in (c.a, c.b):
            if m not in spec.methods:
                raise fail(f"{key}.compare", f"{m!r} is not in the sweep's methods {list(spec.methods)}")
            if m != "full" and c.sparsity not in spec.method_sparsities(m):
                raise fail(f"{key}.sparsity", f"{m} is not searched at {c.sparsity}")
        if c.a == c.b:
            raise fail(f"{key}.compare", f"{c.a} against itself")
        if c.endpoint in LOSSES and spec.pretrain_eval is None:
            raise fail(f"{key}.endpoint", f"{c.endpoint} needs `pretrain_eval:` (the masks' dev losses)")
        if c.endpoint not in [*scores, *LOSSES]:
            raise fail(f"{key}.endpoint", f"{c.endpoint!r}: a task, an endpoint or a loss ({_names(scores)})")
        for m, _ in c.pilot_sd:
            if m != "*" and m not in (c.a, c.b):
                raise fail(f"{key}.pilot_sd", f"{m!r} is neither side of {c.text}")
        return
    if c.loss not in LOSSES:
        raise fail(f"{key}.correlate", f"{c.loss!r}: one of {', '.join(LOSSES)}")
    if spec.pretrain_eval is None:
        raise fail(f"{key}.correlate", "needs `pretrain_eval:` (the masks' dev losses)")
    if c.endpoint not in scores:
        raise fail(f"{key}.endpoint", f"{c.endpoint!r}: a task or an endpoint ({_names(scores)})")
    if not any(m != "full" and c.sparsity in spec.method_sparsities(m) for m in spec.methods):
        raise fail(f"{key}.sparsity", f"no method is searched at {c.sparsity}")


def _names(values: list[str]) -> str:
    return ", ".join(values) or "none"


# --------------------------------------------------------------------------- the declaration


def claim_from_dict(d: dict[str, Any]) -> Claim:
    """A claim as `asdict` wrote it into the spec's JSON."""
    known = {f.name for f in fields(Claim)}
    d = {k: v for k, v in d.items() if k in known}
    d["pilot_sd"] = tuple(tuple(p) for p in d.get("pilot_sd") or ())
    return Claim(**d)
