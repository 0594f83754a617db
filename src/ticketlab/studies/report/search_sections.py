"""The report's markdown sections on the searches: the budgets as a fraction of the papers', the
masks' pre-training losses, the loss along a search and the search cost (the others: `sections.py`,
whose table and number formats these use)."""

from __future__ import annotations

from .budgets import finetune_rows, search_rows
from .cells import Cell, method_label, stats
from .sections import pct, table
from .tables import SweepResults


def budget_section(res: SweepResults) -> list[str]:
    """The sweep's search and fine-tuning budgets as a fraction of the papers' (`budgets`)."""
    searches = [r for r in res.runs("search") if (r.id, None) in res.main_masks]
    finetunes = [r for r in res.runs("finetune") if r.config.get("task_label") in res.tasks]
    found, tuned = search_rows(searches), finetune_rows(finetunes)
    if not found and not tuned:
        return []
    out = [
        "Budgets as a fraction of the papers' (Liu et al. 2022, Tables 1-2: TAMT searched 11K, 17K and "
        "22K steps for 50%, 70% and 90%, IMP 2.79K steps per 10% of sparsity, at batch 16 × 512 tokens; "
        "fine-tuning is 3 epochs of the whole training set at batch 32). A difference not found at a "
        "small fraction is not shown at this budget, not refuted.",
        "",
    ]
    if found:
        header = ["search", "sparsity", "steps × batch × tokens", "paper", "steps", "tokens"]
        out += [table(header, found), ""]
    if tuned:
        header = ["fine-tuning", "examples", "steps × batch", "epochs", "paper", "fraction"]
        out += [table(header, tuned), ""]
    return out


def _method_order(res: SweepResults, method: str) -> int:
    return res.methods.index(method) if method in res.methods else len(res.methods)


def pretrain_section(res: SweepResults, note) -> str:
    losses = res.pretrain_losses()
    if not losses:
        if res.pretrain_pending():
            return "_No pre-training evaluation has finished yet._"
        return "_No pre-training evaluation in this sweep (add `pretrain_eval: {}` to the spec)._"
    keys = sorted({k for v in losses.values() for k in v if k.endswith("_loss")})
    groups: dict[tuple[str, float], dict[str, list]] = {}
    for mask, p in losses.items():
        if mask == (None, None) or mask in res.main_masks:  # masks along a search: see the CSV
            g = groups.setdefault((p["method"], p["sparsity"]), {k: [] for k in keys})
            for k in keys:
                if k in p:
                    g[k].append((p[k], p["id"]))
    rows = []
    for (m, s), g in sorted(groups.items(), key=lambda kv: (_method_order(res, kv[0][0]), kv[0][1])):
        cells = [Cell([v for v, _ in g[k]], [i for _, i in g[k]]) if g[k] else None for k in keys]
        rows.append([m, "0%" if m == "full" else pct(s), *(note(c, digits=3) for c in cells)])
    intro = (
        "Dev-set pre-training losses of the final masks (mean ± std over mask seeds; every mask, "
        "including those saved along a search, is in `pretrain_losses.csv`):"
    )
    return intro + "\n\n" + table(["method", "sparsity", *keys], rows)


def loss_along_search_section(res: SweepResults, note) -> str | None:
    """Pre-training loss by search steps, for every (method, sparsity) evaluated at two or more
    budgets (masks saved along a search, IMP re-run with smaller budgets): TAMT Fig. 6's question,
    which method reaches a loss first, without fine-tuning."""
    losses = {k: p for k, p in res.pretrain_losses().items() if k[0] is not None}
    keys = sorted({k for p in losses.values() for k in p if k.endswith("_loss")})
    groups: dict[tuple[str, float], dict[int, list[dict]]] = {}
    for p in losses.values():
        groups.setdefault((p["method"], p["sparsity"]), {}).setdefault(p["search_steps"], []).append(p)
    groups = {g: v for g, v in groups.items() if len(v) > 1}
    if not groups:
        return None
    steps = sorted({n for v in groups.values() for n in v})
    order = sorted(groups, key=lambda g: (_method_order(res, g[0]), g[1]))
    tables = []
    for k in keys:
        rows = []
        for g in order:
            cells = [stats((p[k], p["id"]) for p in groups[g].get(n, []) if k in p) for n in steps]
            rows.append([g[0], pct(g[1]), *(note(c, digits=3) if c.n else "—" for c in cells)])
        tables.append(f"`{k}`:\n\n" + table(["method", "sparsity", *(f"{n} steps" for n in steps)], rows))
    intro = (
        "Pre-training loss on the dev corpus of the masks a search reached after each number of steps "
        "(masks saved along TAMT's run; IMP re-run with each budget), mean ± std over mask seeds:"
    )
    return "\n\n".join([intro, *tables])


def search_cost_section(res: SweepResults) -> str:
    rows = {}
    for r in res.runs("search"):
        if (r.id, None) not in res.main_masks:
            continue
        c, m = r.config, r.metrics
        rows.setdefault((method_label(c), c["sparsity"]), []).append(
            (m.get("steps") or 0, m.get("time_s") or 0.0)
        )
    if not rows:
        return "_No searches in this sweep._"
    out = []
    for (method, s), v in sorted(rows.items(), key=lambda kv: (_method_order(res, kv[0][0]), kv[0][1])):
        out.append(
            [
                method,
                pct(s),
                str(len(v)),
                f"{sum(x for x, _ in v) / len(v):g}",
                f"{sum(t for _, t in v) / len(v):.1f}",
            ]
        )
    return table(["method", "sparsity", "masks", "search steps", "search time (s)"], out)
