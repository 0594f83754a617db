"""Stores of finished searches, pre-training evaluations and fine-tunings, written without training
(no mask files): what the tests of the report's loss tests and claims read (`fill`)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.studies import Store
from ticketlab.studies.run_ids import make_run


@dataclass
class M:
    """One mask: its dev losses, its scores per task (one per fine-tuning seed) and the losses of the
    masks saved along its search (step -> (mlm, kd))."""

    method: str
    seed: int | None
    mlm: float
    kd: float
    scores: dict[str, list[float]] = field(default_factory=dict)
    along: dict[int, tuple[float, float]] = field(default_factory=dict)
    sparsity: float = 0.7


def fill(sweep_dir: Path, masks: list[M], evals: bool = True, shared: bool = False) -> None:
    """A store of finished runs (no training, no mask files): a search per mask (200 steps; OMP none;
    IMP as TAMT's variant, which prunes what TAMT prunes), its pre-training evaluations (`evals`) and
    fine-tunings, each mask with fine-tuning seeds of its own (a sweep's default), or seeds 0..k-1
    shared by every mask (`shared`: a spec's pinned `seeds: finetune`)."""
    sweep_dir.mkdir()
    done = {}
    for m in masks:
        full = m.method == "full"
        sparsity, steps = (0.0, None) if full else (m.sparsity, None if m.method == "omp" else 200)
        mask, search = None, None
        if not full:
            settings = {"variant": "tamt"} if m.method == "imp" else {}
            what = {
                "method": m.method,
                "sparsity": sparsity,
                "seed": m.seed,
                "model": "m",
                "settings": settings,
            }
            search = make_run(
                "search", "s", what | {"corpus": None, "steps": steps, "save_at": sorted(m.along)}
            )
            inter = [{"step": k, "mask_dir": f"masks/{k}"} for k in sorted(m.along)]
            done[search.id] = (search, {"mask_dir": "masks/none", "intermediate": inter})
            mask = {"search": search.id, "step": None}
        common = {"model": "m", "method": m.method, "sparsity": sparsity, "mask_seed": m.seed}
        points = [(mask, steps, m.mlm, m.kd)]
        points += [({"search": search.id, "step": k}, k, *m.along[k]) for k in sorted(m.along)]
        for where, n, mlm, kd in points if evals else []:
            run = make_run("pretrain-eval", "p", common | {"mask": where, "search_steps": n})
            done[run.id] = (run, {"mlm_loss": mlm, "kd_loss": kd, "sparsity": sparsity})
        for task, values in m.scores.items():
            own = 0 if shared else 10 * (zlib.crc32(f"{m.method}|{sparsity}|{m.seed}".encode()) % 100_000)
            for f, v in enumerate(values):
                config = common | {"task": task, "task_label": task, "data": None, "seed": own + f}
                config |= {"train_size": None, "settings": {}, "mask": mask, "search_steps": steps}
                run = make_run("finetune", "f", config)
                done[run.id] = (run, {"metric": "accuracy", "score": v, "final_score": v})
    with Store(sweep_dir) as st:
        st.add_runs([r for r, _ in done.values()])
        for run_id, (_, metrics) in done.items():
            assert st.claim(run_id)
            st.finish(run_id, metrics, {})
