"""Studies: recipes above the library, each a store of runs and a report.

- `sweep/`: a spec (YAML) of methods x sparsities x seeds x tasks, its plan, the runner and its
  launchers (local processes, Slurm through submitit);
- `report/`: tables, figures and the statistical tests of a sweep's store;
- the store kit: `store.py` (SQLite), `records.py`, `run_ids.py` (a run's identity) and `rows.py`,
  whose one `execute(store, run, work)` adds, claims, runs and records a row;
- the studies beside TAMT's: super tickets (`supertickets.py`), ticket sharing (`mtl.py`), domain
  adaptation (`adaptation.py`), importance across tasks (`across.py`).

Where a study goes: a torch-free config module (`*_config.py`, read by its `--help`), a module whose
function plans its runs with `run_ids.make_run` and runs each through `rows.execute`, an export in
the table below, and a module in `cli/`. Studies call the library, never the CLI."""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): the studies' configs (`super_config`, `mtl_config`,
# `adapt_config`) are read when a verb's `--help` is parsed, and need neither torch nor YAML; the
# command line reaches the studies themselves through these names when it runs.
_WHERE = {
    "AdaptConfig": "adapt_config",
    "AdaptSource": "adapt_config",
    "FinetuneJob": "sweep.adapters",
    "FinetuneOutput": "sweep.adapters",
    "MethodSpec": "sweep.jobs",
    "MtlConfig": "mtl_config",
    "PretrainEvalJob": "sweep.adapters",
    "Resources": "sweep.resources",
    "Run": "run_ids",
    "Runner": "sweep.runner",
    "SearchJob": "sweep.jobs",
    "SearchOutput": "sweep.jobs",
    "Store": "store",
    "SubmititLauncher": "sweep.launchers",
    "SuperConfig": "super_config",
    "SweepResult": "sweep.status",
    "SweepSpec": "sweep.sweep_spec",
    "check_sweep_inputs": "sweep.inputs",
    "check_sweep_runs": "sweep.runner",
    "default_dominant": "across",
    "expand": "sweep.plan",
    "head_ranking": "supertickets",
    "load_spec": "sweep.spec",
    "resources": "sweep.resources",
    "run_adaptation": "adaptation",
    "run_mtl": "mtl",
    "run_super": "supertickets",
    "run_sweep": "sweep.runner",
    "spec_from_dict": "sweep.spec",
    "super_sources": "adaptation",
    "sweep_methods": "sweep.methods",
    "sweep_status": "sweep.status",
    "visible_gpus": "sweep.launchers",
    "write_importance_across": "across",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "AdaptConfig",
    "AdaptSource",
    "FinetuneJob",
    "FinetuneOutput",
    "MethodSpec",
    "MtlConfig",
    "PretrainEvalJob",
    "Resources",
    "Run",
    "Runner",
    "SearchJob",
    "SearchOutput",
    "Store",
    "SubmititLauncher",
    "SuperConfig",
    "SweepResult",
    "SweepSpec",
    "check_sweep_inputs",
    "check_sweep_runs",
    "default_dominant",
    "expand",
    "head_ranking",
    "load_spec",
    "resources",
    "run_adaptation",
    "run_mtl",
    "run_super",
    "run_sweep",
    "spec_from_dict",
    "super_sources",
    "sweep_methods",
    "sweep_status",
    "visible_gpus",
    "write_importance_across",
]
