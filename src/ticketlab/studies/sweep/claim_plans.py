"""What a declared claim's planned units can reach, before any run: the smallest p after Holm's
correction and the MDE at the corrected level (`plan_claims`), printed by a dry run
(`describe_plans`); a claim no planned design can pass is refused (`refuse_unpassable`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...core.errors import ConfigError
from ..stats import detectable_effect, detectable_rho, smallest_spearman_p, welch
from .declared import ALPHA, LOSSES, WITHIN_DRAWS, Claim

# --------------------------------------------------------------------------- what a design can reach


@dataclass
class PlannedClaim:
    """What a declared claim's planned units can give: the smallest p after Holm's correction (its
    first step: × the family's size), and given a pilot's SDs the MDE at the corrected α (α / m)."""

    claim: Claim
    units: str  # e.g. "5 masks vs 1 mask × 3 seeds", "5 method means"
    smallest_p: float  # the smallest p the units allow, × m (Holm's strictest step), capped at 1
    mde: float | None  # at α / m with 80% power; None: no pilot SDs, or no variance
    why_not: str | None = None  # the design has no test at all

    @property
    def passable(self) -> bool:
        return self.why_not is None and self.smallest_p < ALPHA


def plan_claims(spec) -> list[PlannedClaim]:
    """Each declared claim of `spec` (a `SweepSpec`) with what its planned units can reach."""
    m = len(spec.claims)
    return [_plan(spec, c, m) for c in spec.claims]


def _side_units(spec, method: str, loss: bool) -> tuple[int, int, bool]:
    """(masks, fine-tuning seeds per mask, stochastic) of `method` in the plan: its own fine-tuning
    seeds where it has them (a deterministic side's sample: `SweepSpec.method_finetune_seeds`)."""
    seeded = method != "full" and spec.method_specs[method].seeded
    masks = len(spec.method_seeds(method)) if seeded else 1
    return masks, 1 if loss else spec.finetune_count(method), seeded


def _plan(spec, c: Claim, m: int) -> PlannedClaim:
    alpha = ALPHA / m
    if c.kind == "correlate":
        methods = [x for x in spec.methods if x != "full" and c.sparsity in spec.method_sparsities(x)]
        masks = [len(spec.method_seeds(x)) if spec.method_specs[x].seeded else 1 for x in methods]
        if c.unit == "within-methods":
            return _plan_within(c, [k for k in masks if k > 1], m)
        n = len(methods) if c.unit == "method-means" else sum(masks)
        units = f"{n} {'method means' if c.unit == 'method-means' else 'masks'}"
        why = "fewer than 3 units" if n < 3 else None
        smallest = min(1.0, m * smallest_spearman_p(n))
        return PlannedClaim(c, units, smallest, detectable_rho(n, alpha=alpha), why)
    loss = c.endpoint in LOSSES
    sides = [_side_units(spec, x, loss) for x in (c.a, c.b)]
    parts, why = [], None
    sds = dict(c.pilot_sd)
    for method, (masks, seeds, seeded) in zip((c.a, c.b), sides, strict=True):
        n = masks if masks > 1 or loss else seeds  # a deterministic mask: its seeds' spread
        if seeded and masks < 2:
            why = f"{method}: search variance not estimated (1 mask)"
        elif n < 2 and not loss:
            why = f"{method}: one run"
        elif n >= 2 and (sd := sds.get(method, sds.get("*"))) is not None:
            parts.append((sd * sd / n, n - 1))
    if loss and all(not seeded for _, _, seeded in sides):
        why = "both sides exact (deterministic masks, deterministic losses)"
    units = " vs ".join(
        f"{masks} mask{'s' if masks > 1 else ''}" + ("" if loss or masks > 1 else f" × {seeds} seeds")
        for masks, seeds, _ in sides
    )
    mde = None
    shared = None if loss else _shared_seeds(spec, c)
    if shared is not None:  # the report's crossed-seeds test (`studies.stats`) on these seeds
        units += f", at {len(shared)} shared fine-tuning seeds"
        if why is None and len(shared) < 2:
            why = f"{len(shared)} shared fine-tuning seed: the method × seed interaction is not estimated"
    elif why is None and parts and len(parts) == sum(s[0] > 1 or not loss for s in sides):
        se, df = welch(parts)
        mde = detectable_effect(float(se), float(df), alpha=alpha)
    # Welch's t over two samples of 2 or more has no floor under p: its smallest reachable p is 0
    return PlannedClaim(c, units, 1.0 if why else 0.0, mde, why)


def _shared_seeds(spec, c: Claim) -> list[int] | None:
    """The fine-tuning seeds both sides of a comparison pin and share (None: drawn per mask, or none
    shared, so the units are independent). A pilot's unit SDs leave the method × seed variance out,
    so a crossed claim gets no planned MDE."""
    seeds = [spec.method_finetune_seeds(x) for x in (c.a, c.b)]
    if not all(isinstance(x, list) for x in seeds):
        return None
    common = sorted(set(seeds[0]) & set(seeds[1]))
    many = any(len(x) > 1 for x in seeds) or c.a == "full" or c.b == "full"
    return common if common and (many or _masks(spec, c.a) + _masks(spec, c.b) > 2) else None


def _masks(spec, method: str) -> int:
    return 1 if method == "full" or not spec.method_specs[method].seeded else len(spec.method_seeds(method))


def _plan_within(c: Claim, sizes: list[int], m: int) -> PlannedClaim:
    """A within-methods correlation over methods of `sizes` masks (those with 2 or more): its p has the
    floor of a perfect order in every method (2 / Π n!), and where the orderings are drawn rather
    than enumerated the draws' own 1 / (draws + 1) on top (a perfect order's expected drawn p is about
    their sum); its MDE loses one unit per method mean removed (`report.loss_tests.Correlation`)."""
    n, orderings = sum(sizes), math.prod(math.factorial(k) for k in sizes)
    exact = 2 / orderings
    floor = exact if orderings <= WITHIN_DRAWS else exact + 1 / (WITHIN_DRAWS + 1)
    units = f"{n} masks within {len(sizes)} methods"
    why = "fewer than 3 masks in methods with 2 or more" if n < 3 else None
    effective = n - max(len(sizes) - 1, 0)
    return PlannedClaim(c, units, min(1.0, m * floor), detectable_rho(effective, alpha=ALPHA / m), why)


def describe_plans(plans: list[PlannedClaim]) -> list[str]:
    """One line per declared claim for a dry run: its units, the smallest corrected p they allow and
    the MDE at the corrected α (given pilot SDs)."""
    if not plans:
        return []
    m = len(plans)
    out = [f"  declared claims ({m}; Holm within them, the MDE at α = {ALPHA} / {m}, 80% power):"]
    for p in plans:
        none = "none planned (crossed seeds)" if "shared fine-tuning seeds" in p.units else "no pilot SDs"
        mde = none if p.mde is None else f"{p.mde:.3g}"
        floor = "none (a t test)" if p.smallest_p == 0 else f"{p.smallest_p:.3g}"
        where = p.why_not or f"smallest corrected p {floor}, MDE {mde}"
        out.append(f"    {p.claim.text}: {p.units}; {where}")
    return out


def refuse_unpassable(spec) -> None:
    """One `ConfigError` naming the spec and the first declared claim its planned units cannot pass."""
    for i, p in enumerate(plan_claims(spec)):
        if not p.passable:
            why = p.why_not or (
                f"its {p.units} cannot give a corrected p below {ALPHA} "
                f"(at best {p.smallest_p:.3g} in a family of {len(spec.claims)})"
            )
            raise ConfigError(f"{spec.source}: claims[{i}]: {p.claim.text} cannot pass by design: {why}")
