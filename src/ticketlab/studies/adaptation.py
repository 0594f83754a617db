"""Domain adaptation (Liang et al. 2021 §7, Table 4): fine-tune on task B, with 0.1%, 1%, 10% and
100% of B's training data, from models fine-tuned on task A.

The paper adapts ST-DNN (the super ticket of MT-DNN) and MT-DNN (the full model) from MNLI to SNLI
and SciTail. ticketlab adapts what a super-ticket study on task A kept (`ticketlab super
--keep-models`), per seed s:

  super   the super ticket of seed s, rewound and fine-tuned on A: its weights, its units stay pruned
          on B (the ticket is applied as a mask; its hash check is off, the weights are A's);
  full    the full model fine-tuned on A with seed s.

Both start B with a fresh task head seeded by s (`tasks.objective.load_task_model`) and fine-tune with the
same protocol, seed and training subset, so the two differ only in where they start (a paired
comparison per seed). Any model directory works as a source through `AdaptSource` (e.g. one a
ticket-sharing run exported).

Subsets: `train_samples` = round(fraction x n) (at least one) examples of B's n, drawn by the seed
as a prefix of one seeded permutation (`tasks.objective._subset`), so they are nested: the 1% set contains
the 0.1% set, and every source sees the same examples at a fraction.

    OUT/runs/<source>_seed<s>_<fraction>/   fine-tuning runs (resumable: rerun the same command)
    OUT/adaptation.json                     every score, per source and fraction mean ± std (n)
    OUT/adaptation.csv, adaptation.md       the table (Table 4), with super - full paired per seed
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, TicketlabError
from ..core.files.atomic import atomic_write_csv, atomic_write_json, atomic_write_text
from ..core.files.inputs import read_json
from ..core.outputs import claim_dir
from ..tasks.glue import load_examples
from ..tasks.metrics import no_verdict
from ..tasks.objective import _subset
from ..tasks.registry import get_task
from ..tasks.scores import constant_score
from ..verbs.finetune import check_run, finetune
from ..verbs.finetune_config import FinetuneConfig
from ..verbs.finetune_results import mean_std
from .adapt_config import AdaptConfig, AdaptSource, check_fractions, subset_size
from .report.comparison import Paired
from .run_ids import run_dirname
from .stats import holm
from .store import Store
from .super_rows import SUMMARY_FILE

KIND = "domain adaptation"
JSON_FILE, CSV_FILE, MD_FILE = "adaptation.json", "adaptation.csv", "adaptation.md"


def subsets(n: int, fractions: Sequence[float], seed: int) -> dict[float, list[int]]:
    """The indices fine-tuning trains on at each fraction (nested, seeded: see the module docstring)."""
    out = {}
    for f in check_fractions(fractions):
        chosen = _subset(n, subset_size(n, f), seed)
        out[f] = list(range(n)) if chosen is None else chosen
    return out


# --------------------------------------------------------------------------- sources


def super_sources(study: str | os.PathLike) -> list[AdaptSource]:
    """Per seed of a super-ticket study, its super ticket and its full model (kept weights)."""
    root = Path(study)
    summary = read_json(root / SUMMARY_FILE, "super-ticket summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("picks"), list):
        raise TicketlabError(f"{root / SUMMARY_FILE}: not a super-ticket summary (ticketlab super)")
    if not summary["picks"]:
        raise TicketlabError(f"{root}: no super ticket yet (its winning tickets have not all run)")
    for pick in summary["picks"]:  # what `super` writes: one {seed, run_id, ...} per seed
        seed, run_id = (pick.get("seed"), pick.get("run_id")) if isinstance(pick, dict) else (None, None)
        if not (type(seed) is int and isinstance(run_id, str)):
            raise TicketlabError(f"{root / SUMMARY_FILE}: picks: {pick!r} is not a seed's super ticket")
    sources = []
    with Store(root, readonly=True) as store:
        records = store.runs(kind="finetune", status="done")
        for pick in summary["picks"]:
            seed = pick["seed"]
            ticket, mask = _picked_ticket(root, store, pick)
            full = [r for r in records if r.config.get("method") == "full" and r.config["seed"] == seed]
            if not full:
                raise TicketlabError(f"{root}: seed {seed}: the full model's run is missing")
            sources.append(AdaptSource("super", seed, _kept_model(root, ticket), mask, str(root)))
            sources.append(AdaptSource("full", seed, _kept_model(root, full[-1]), study=str(root)))
    return sources


def _picked_ticket(root: Path, store: Store, pick: dict[str, Any]) -> tuple[Any, str]:
    """A pick's super ticket: its finished fine-tuning and the folder of the mask it ran under (its
    units stay pruned on B). Anything else the pick names is refused: without its mask, the ticket's
    pruned units would train on B."""
    where = f"{root / SUMMARY_FILE}: seed {pick['seed']}'s pick {pick['run_id']}"
    ticket = store.get(pick["run_id"])
    mask = ticket.config.get("mask") if ticket is not None and ticket.kind == "finetune" else None
    if ticket is None or ticket.status != "done" or not isinstance(mask, dict):
        state = "is not in its store" if ticket is None else f"is a {ticket.status} {ticket.kind} run"
        raise TicketlabError(f"{where} {state}, not a finished fine-tuning of a ticket")
    search = store.get(mask.get("search")) if isinstance(mask.get("search"), str) else None
    found = (search.metrics or {}).get("mask_dir") if search is not None and search.status == "done" else None
    path = root / found if isinstance(found, str) else None
    if path is None or not path.is_dir() or root.resolve() not in path.resolve().parents:
        raise TicketlabError(f"{where}: the mask it was fine-tuned under is not in the study")
    return ticket, str(path)


def _kept_model(root: Path, record: Any) -> str:
    # The name is read from the study's store: one path component, as every run directory's.
    model = root / "runs" / run_dirname(record.name, record.id, f"{root}: run name") / "model"
    if not (model / "config.json").is_file():
        raise TicketlabError(
            f"{model}: no fine-tuned weights (the study ran without --keep-models); run "
            "`ticketlab super ... --keep-models` into a new directory"
        )
    return str(model)


# --------------------------------------------------------------------------- the study


def _n_train(config: FinetuneConfig) -> int:

    spec = get_task(config.task, config.data_dir)
    if spec.kind == "squad":
        raise ConfigError("domain adaptation fine-tunes GLUE-style tasks; SQuAD is not supported")
    return len(load_examples(spec, config.data_dir, "train"))


def _floor(config: FinetuneConfig, metric: str) -> float | None:
    """A constant predictor's score on B's dev set: no verdict where the full model is at it."""
    spec = get_task(config.task, config.data_dir)
    return constant_score(metric, load_examples(spec, config.data_dir, spec.eval_splits[0]).labels)


def pct(f: float) -> str:
    return f"{f * 100:g}%"


def _verdict(paired, full: dict[str, Any] | None, floor: float | None) -> str:
    """The paired t-test's verdict (`studies.report.comparison.Paired`, Holm-adjusted over the fractions),
    or why there is none: one run, or the full model at B's constant predictor."""
    if paired is None or full is None:
        return "—"
    why = no_verdict(full["mean"], full["std"], full["n"], floor, paired.n)
    if why is not None:
        return f"no verdict ({why})"
    p = "—" if paired.p_holm is None else f"{paired.p_holm:.3f}"
    said = {"super > full": "better", "super < full": "worse", "identical": "identical"}
    return f"{said.get(paired.verdict, 'within noise')} (p_Holm {p})"


def summarise(scores: list[dict[str, Any]], floor: float | None) -> list[dict[str, Any]]:
    """Per (source, fraction) mean ± std (n); per fraction super - full paired by seed, tested with a
    paired t-test (the report's `Paired`), Holm-adjusted over the fractions, and a verdict."""
    rows, tests = [], []
    for f in sorted({s["fraction"] for s in scores}):
        at = [s for s in scores if s["fraction"] == f]
        by_label: dict[str, dict[int, float]] = {}
        for s in at:
            by_label.setdefault(s["source"], {})[s["seed"]] = s["score"]
        for label, per_seed in sorted(by_label.items()):
            rows.append(
                {"fraction": f, "n_train": at[0]["n_train"], "source": label, **_cell(per_seed.values())}
            )
        sup, full = by_label.get("super", {}), by_label.get("full", {})
        seeds = sorted(set(sup) & set(full))
        if seeds:
            paired = Paired("super", "full", f, "", seeds, [sup[s] - full[s] for s in seeds], [])
            row = {"fraction": f, "n_train": at[0]["n_train"], "source": "super - full"}
            rows.append(row | _cell(paired.diffs))
            tests.append((rows[-1], paired, mean_std(list(full.values()))))
    for (_, paired, _), adjusted in zip(tests, holm([t[1].p for t in tests]), strict=True):
        paired.p_holm = adjusted
    for row, paired, full in tests:
        row["verdict"] = _verdict(paired, full, floor)
    return rows


def _cell(values) -> dict[str, Any]:
    m = mean_std(list(values))
    return {"mean": m["mean"], "std": m["std"], "n": m["n"], "verdict": ""}


def _markdown(config: AdaptConfig, rows: list[dict], metric: str, floor: float | None) -> str:
    ft = config.finetune
    lines = [
        f"# Domain adaptation onto {ft.task} (Liang et al. §7, Table 4)",
        "",
        f"Dev {metric} (0-100) of fine-tuning on {ft.task} with a seeded, nested fraction of its "
        "training set, from each source model; mean ± sample std over seeds (n). 'super - full' is "
        "paired by seed (a paired t-test, Holm-adjusted over the fractions); a verdict needs n >= 2 and "
        "the full model above a constant predictor" + (f" ({floor:.1f})." if floor is not None else "."),
        "",
        "| fraction | examples | source | score | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cell = f"{r['mean']:.1f} ± {r['std']:.1f} (n={r['n']})"
        lines.append(f"| {pct(r['fraction'])} | {r['n_train']} | {r['source']} | {cell} | {r['verdict']} |")
    return "\n".join([*lines, ""])


def run_adaptation(config: AdaptConfig, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Every (source, fraction) fine-tuning into OUT (resumable), then the table."""
    n = _n_train(config.finetune)
    reads = [p for s in config.sources for p in (s.model, s.mask, s.study) if p is not None]
    out = claim_dir(out_dir, kind=KIND, inputs=[*reads, config.finetune.data_dir])
    runs = {
        (source, f): f"{source.label}_seed{source.seed}_{pct(f).replace('%', 'pct')}"
        for source in config.sources
        for f in config.fractions
    }
    for (source, f), name in runs.items():  # a run its folder holds with other settings: before any runs
        check_run(config.run_config(source, n, f), out / "runs" / name)
    scores = []
    for (source, f), name in runs.items():
        r = finetune(config.run_config(source, n, f), out / "runs" / name)
        scores.append(
            {
                "source": source.label,
                "seed": source.seed,
                "fraction": f,
                "n_train": r.n_train,
                "score": r.best_score,
                "metric": r.metric,
                "run": name,
            }
        )
    metric = scores[0]["metric"]
    floor = _floor(config.finetune, metric)
    rows = summarise(scores, floor)
    result = {
        "task": config.finetune.task,
        "metric": metric,
        "floor": floor,
        "n_train": n,
        "scores": scores,
        "table": rows,
    }
    atomic_write_json(out / JSON_FILE, result)
    atomic_write_csv(out / CSV_FILE, rows)
    atomic_write_text(out / MD_FILE, _markdown(config, rows, metric, floor))
    return result
