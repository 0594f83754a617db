"""Experiments: sweep specs, the results store, the runner, reports and figures."""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): the studies' configs (`super_config`, `mtl_config`) are
# read when a verb's `--help` is parsed, and need neither the runner nor YAML.
_WHERE = {
    "FinetuneJob": "sweep.adapters",
    "FinetuneOutput": "sweep.adapters",
    "MethodSpec": "sweep.methods",
    "PretrainEvalJob": "sweep.adapters",
    "Resources": "sweep.launchers",
    "Run": "sweep.plan",
    "SearchJob": "sweep.methods",
    "SearchOutput": "sweep.methods",
    "Store": "store",
    "SubmititLauncher": "sweep.launchers",
    "SweepResult": "sweep.status",
    "SweepSpec": "sweep.sweep_spec",
    "expand": "sweep.plan",
    "load_spec": "sweep.spec",
    "resources": "sweep.launchers",
    "run_sweep": "sweep.runner",
    "spec_from_dict": "sweep.spec",
    "sweep_methods": "sweep.methods",
    "sweep_status": "sweep.status",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "FinetuneJob",
    "FinetuneOutput",
    "MethodSpec",
    "PretrainEvalJob",
    "Resources",
    "Run",
    "SearchJob",
    "SearchOutput",
    "Store",
    "SubmititLauncher",
    "SweepResult",
    "SweepSpec",
    "expand",
    "load_spec",
    "resources",
    "run_sweep",
    "spec_from_dict",
    "sweep_methods",
    "sweep_status",
]
