"""The papers' claimed downstream orders and the report's verdict on them: TAMT ≥ IMP > OMP > random
(Liu et al. Fig. 3) and winning super tickets above random and losing ones (Liang et al. §5.4); a
comparison's claimed direction (`claimed_higher`) and the line that says, per comparison, whether it
holds (`order_verdict`), naming only the papers whose orders the report compares."""

from __future__ import annotations

from ..sweep.methods import base_method
from .cells import pct
from .paired import Comparison

# The papers' downstream orders (Liu et al. Fig. 3: TAMT ≥ IMP > OMP > random; Liang et al. §5.4:
# winning super tickets above random and losing ones): a method's place, by its base method.
ORDER = {"random": 0, "omp": 1, "imp": 2, "tamt-mlm": 3, "tamt-kd": 3, "tamt-mlm+kd": 3}
SUPER_ORDER = {"st-random": 0, "st-losing": 0, "st-winning": 1}


def claimed_higher(c: Comparison) -> bool | None:
    """Whether the papers claim `a` above `b` downstream (True), below (False), or neither (None:
    a variant against its base, methods of no claimed order)."""
    for order in (ORDER, SUPER_ORDER):
        a, b = (order.get(base_method(m.method)) for m in (c.a, c.b))
        if a is not None and b is not None and a != b:
            return a > b
    return None


def order_verdict(comps: list[Comparison]) -> str:
    """One line per claimed order: for each comparison the papers claim a direction of, on which
    tasks it holds (p (Holm) < 0.05 that way), is contradicted (the other way), is not shown (with the
    MDE), or has no test (why)."""
    if any(c.exploratory for c in comps):  # a study's declared claims are its verdicts
        return ""
    parts, papers = [], set()
    for c in comps:
        higher = claimed_higher(c)
        if higher is None:
            continue
        papers.add("liang" if base_method(c.a.method) in SUPER_ORDER else "liu")
        hi, lo = (c.a, c.b) if higher else (c.b, c.a)
        if c.why_not is not None:
            what = f"no test ({c.why_not})"
        elif c.p_holm is not None and c.p_holm < 0.05:
            what = "holds" if (c.mean > 0) == higher else "contradicted"
        else:
            what = "not shown" + ("" if c.mde is None else f" (MDE {c.mde:.2f})")
        parts.append(f"{hi.method} > {lo.method} at {pct(c.sparsity)} on {c.task}: {what}")
    if not parts:
        return ""
    named = "; ".join(CLAIMS[p] for p in ("liu", "liang") if p in papers)  # only those compared here
    return (
        f"**Verdict (4), the papers' downstream orders** ({named}), per comparison above: "
        + "; ".join(parts)
        + "."
    )


CLAIMS = {
    "liu": "Liu et al. Fig. 3: TAMT ≥ IMP > OMP > random",
    "liang": "Liang et al.: winning super tickets above random and losing ones",
}
