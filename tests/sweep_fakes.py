"""Fast stand-ins for mask search, fine-tuning and pre-training evaluation, for the sweep tests.

They do no training but produce real artefacts: the fake searches write real mask directories (an
OMP mask of the tiny model with a seeded share of its kept weights swapped, more the longer the
"search"), the fake fine-tuning returns a deterministic score that falls with sparsity. Every call
appends a line to `calls.log` in the sweep directory, so tests can check that nothing ran twice,
including across processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import torch

from ticketlab.masks import Mask, MaskConfig, load_mask, save_mask
from ticketlab.studies import FinetuneJob, FinetuneOutput, MethodSpec, PretrainEvalJob, SearchJob
from ticketlab.studies.sweep.jobs import SearchOutput
from ticketlab.studies.sweep.methods import sweep_methods

BONUS = {"full": 0.0, "omp": 0.0, "random": -0.15, "imp": 0.02, "tamt-mlm": 0.04, "tamt-kd": 0.03}


def record(sweep_dir: Path, what: str) -> None:
    with open(sweep_dir / "calls.log", "a") as f:
        f.write(what + "\n")
        f.flush()
        os.fsync(f.fileno())


def calls(sweep_dir: Path) -> list[str]:
    path = Path(sweep_dir) / "calls.log"
    return path.read_text().splitlines() if path.is_file() else []


def _sweep_dir(path: Path) -> Path:
    # work dirs are <sweep>/runs/<run>, mask dirs <sweep>/masks/<run>
    return path.parent.parent


def _perturbed(base: Mask, share: float, seed: int) -> Mask:
    """Swap `share` of the kept weights of each matrix with pruned ones (sparsity unchanged)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, t in base.items():
        flat = t.reshape(-1).clone()
        kept, pruned = flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1)
        n = min(int(share * len(kept)), len(pruned))
        flat[kept[torch.randperm(len(kept), generator=gen)[:n]]] = False
        flat[pruned[torch.randperm(len(pruned), generator=gen)[:n]]] = True
        out[k] = flat.reshape(t.shape)
    return Mask(out)


def fake_search(job: SearchJob) -> SearchOutput:
    """A 'mask training' that drifts away from OMP with every step; saves masks at job.save_at."""
    from ticketlab.methods import omp_mask
    from ticketlab.models.load import shared_base_model

    source = f" {job.source['label']}" if job.source is not None else ""
    record(_sweep_dir(job.mask_dir), f"search {job.method} {job.sparsity} {job.seed} {job.steps}{source}")
    model = shared_base_model(job.model)
    omp = omp_mask(model, job.sparsity)
    seed = 1000 * (job.seed or 0) + len(job.method) + sum(map(ord, source))  # a mask per source task
    intermediate = []
    for step in [*job.save_at, job.steps]:
        mask = _perturbed(omp, min(0.5, 0.002 * step), seed)
        config = MaskConfig(
            method=job.method,
            sparsity=job.sparsity,
            seed=job.seed,
            base_model=job.model,
            base_model_hash="sha256:fake",
            model_type="bert",
            targets="fake",
            search={"steps": step},
        )
        if step == job.steps:
            save_mask(mask, config, job.mask_dir)
        else:
            save_mask(mask, config, job.step_dir(step))
            intermediate.append({"step": step, "mask_dir": str(job.step_dir(step)), "time_s": 0.01 * step})
    return SearchOutput(
        steps=job.steps, time_s=0.01 * job.steps, metrics={"train_loss": 3.0}, intermediate=intermediate
    )


def broken_search(job: SearchJob) -> SearchOutput:
    record(_sweep_dir(job.mask_dir), f"search {job.method} {job.sparsity} {job.seed} {job.steps}")
    raise RuntimeError("search exploded")


def fake_registry(**extra) -> dict[str, MethodSpec]:
    """The real full/omp/random plus fake imp (budgets), task IMP (per task) and TAMT (save_at) entries."""
    fake = dict(uses_corpus=True, uses_steps=True, settings=frozenset({"lr", "batch_size"}))
    return {
        **sweep_methods(),
        "imp": MethodSpec("imp", fake_search, "fake IMP", curve="budgets", **fake),
        "imp-task": MethodSpec(
            "imp-task",
            fake_search,
            "fake task IMP",
            uses_steps=True,
            settings=fake["settings"],
            per_task=True,
        ),
        "tamt-mlm": MethodSpec("tamt-mlm", fake_search, "fake TAMT-MLM", curve="save_at", **fake),
        "tamt-kd": MethodSpec("tamt-kd", fake_search, "fake TAMT-KD", curve="save_at", **fake),
        **extra,
    }


def expected_score(config: dict) -> float:
    """What the fake fine-tuning returns for a run config (tests hand-compute aggregates from it)."""
    s, method = config["sparsity"], config["method"]
    score = 0.9 - 0.6 * s**2 + BONUS.get(method, 0.0) * s
    score += 0.01 * (config["seed"] % 1000) + 0.003 * (config["mask_seed"] or 0)  # a drawn seed: 32 bits
    if config["search_steps"] is not None:
        score -= 0.1 / (1 + config["search_steps"])
    if config["train_size"] is not None:
        score -= 5.0 / config["train_size"]
    return round(100 * score, 6)  # the 0-100 scale of ticketlab.tasks.metrics


def mask_facts(mask_dir: Path | None) -> dict:
    """What a run config says about its mask, read back from the mask file the job points at."""
    if mask_dir is None:
        return {"method": "full", "sparsity": 0.0, "mask_seed": None, "search_steps": None}
    c = load_mask(mask_dir)[1]
    return {
        "method": c.method,
        "sparsity": c.sparsity,
        "mask_seed": c.seed,
        "search_steps": c.search.get("steps"),
    }


def fake_finetune(
    job: FinetuneJob, *, sleep: float = 0.0, fail_task: str | None = None, die_once: str | None = None
) -> FinetuneOutput:
    """`die_once`: the first fine-tuning of a mask of this method kills its own process (SIGKILL, as
    a scheduler does at a time limit); the next attempt finishes."""
    record(_sweep_dir(job.out_dir), f"finetune {job.out_dir.name}")
    marker = job.out_dir / "killed-once"
    if die_once is not None and mask_facts(job.mask_dir)["method"] == die_once and not marker.exists():
        job.out_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    if sleep:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        (job.out_dir / "entered").write_text(str(os.getpid()))
        time.sleep(sleep)
    if fail_task is not None and job.task == fail_task:
        raise RuntimeError(f"fake failure on {job.task}")
    score = expected_score({**mask_facts(job.mask_dir), "seed": job.seed, "train_size": job.train_size})
    # held-out selection, the default protocol: the step picked on a selection part of dev, scored on the rest
    best = {"accuracy": score, "select_accuracy": score + 0.5}
    return FinetuneOutput(metric="accuracy", score=score, final_score=score - 0.01, best=best)


def fake_pretrain_eval(job: PretrainEvalJob) -> dict[str, float]:
    record(_sweep_dir(job.out_dir), f"pretrain-eval {job.out_dir.name}")
    facts = mask_facts(job.mask_dir)
    s = facts["sparsity"]
    achieved = s + 1e-5 * (facts["mask_seed"] or 0)  # like evaluate-pretrain: the mask's own sparsity
    mlm = 2.0 + 3 * s - BONUS.get(facts["method"], 0.0)
    return {"mlm_loss": mlm, "kd_loss": 0.1 + s, "sparsity": achieved}


# The settings a spec may give TAMT's and IMP's sweep methods, as they were listed by hand before
# `trained.spec_settings` derived them from the configs (test_api pins the derived sets to these).
def tamt_settings() -> frozenset[str]:
    from ticketlab.studies.sweep.trained import TRAINING_SETTINGS

    return TRAINING_SETTINGS | {
        "init",
        "threshold",
        "alpha",
        "freeze_head",
        "score_dtype",
        "decoder",
        "kd_input",
        "no_pooler",
        "kd_teacher",
        "count",
        "kd_data",
    }


def imp_settings() -> frozenset[str]:
    from ticketlab.studies.sweep.trained import TRAINING_SETTINGS

    return TRAINING_SETTINGS | {
        "prune_rate",
        "variant",
        "no_pooler",
        "decoder",
        "kd_input",
        "rewind_head",
        "first_pruning",
        "schedule_steps",
    }


def spec_dict(root: Path, model_dir: Path, **overrides) -> dict:
    """A small sweep over the tiny model: 2 tasks, full/omp/random + fake TAMT and IMP, all studies."""
    for task in ("a", "b"):  # task.json: how a sweep names a task outside the built-in registry
        (root / "data" / task).mkdir(parents=True, exist_ok=True)
        (root / "data" / task / "task.json").write_text(json.dumps({"id": task, "text_a": "text"}))
        rows = "".join(f"the {w} sees the dog .\t{i % 2}\n" for i, w in enumerate(["cat", "man"] * 4))
        for split in ("train", "dev"):  # what a real fine-tuning reads (the dry run checks it is there)
            (root / "data" / task / f"{split}.tsv").write_text("text\tlabel\n" + rows)
    (root / "corpus.txt").write_text("the cat sees the dog .\n")
    d = {
        "name": "fake",
        "model": str(model_dir),
        "corpus": {"train": "corpus.txt", "dev": "corpus.txt"},
        "tasks": {"a": {"data": "data/a"}, "b": {"data": "data/b"}},
        "methods": ["full", "omp", "random", "imp", "tamt-mlm"],
        "sparsities": [0.5, 0.7],
        "seeds": {"search": [0, 1], "finetune": [0, 1]},
        "search": {"steps": 20},
        "finetune": {"steps": 5},
        "pretrain_eval": {"max_blocks": 8},
        "search_curve": {"steps": [6, 10], "sparsities": [0.7], "tasks": ["a", "b"]},  # IMP 70%: 6+
        "data_curve": {"train_sizes": [10, 100], "sparsities": [0.7], "methods": ["full", "omp", "tamt-mlm"]},
    }
    d.update(overrides)
    return d


# A small sweep (3 searches, 8 fine-tunings) for tests that need searches finished before something
# and fine-tunings after it, not the whole grid (the kill test took 25 s with it, about half without).
SMALL = dict(
    methods=["full", "omp", "random"],
    sparsities=[0.5],
    seeds={"search": [0, 1], "finetune": [0]},
    search_curve=None,
    data_curve=None,
    pretrain_eval=None,
)


def make_spec(root: Path, model_dir: Path, **overrides):
    from ticketlab.studies import spec_from_dict

    return spec_from_dict(spec_dict(root, model_dir, **overrides), base_dir=root, registry=fake_registry())


def base_spec_dict(root: Path) -> dict:
    """A small valid spec (as parsed YAML) over empty task folders and a one-line corpus in `root`."""
    for d in ("glue/SST-2", "glue/CoLA", "glue/MRPC", "model"):
        (root / d).mkdir(parents=True)
    (root / "wiki.txt").write_text("some text\n")
    return {
        "model": "model",
        "corpus": {"train": "wiki.txt", "dev": "wiki.txt"},
        "tasks": {"sst2": {"data": "glue/SST-2"}, "cola": {"data": "glue/CoLA", "steps": 7}},
        "methods": ["full", "omp", "random", "tamt-mlm"],
        "sparsities": [0.5, "70%"],
        "seeds": {"search": [0, 1, 2], "finetune": [0, 1]},
        "search": {"steps": 20, "lr": 0.1},
        "finetune": {"steps": 5, "lr": 2e-5},
    }
