"""Experiments: sweep specs, the results store, the runner, reports and figures."""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): the studies' configs (`super_config`, `mtl_config`) are
# read when a verb's `--help` is parsed, and need neither the runner nor YAML.
_WHERE = {
    "FinetuneJob": "adapters",
    "FinetuneOutput": "adapters",
    "MethodSpec": "methods",
    "PretrainEvalJob": "adapters",
    "Resources": "launchers",
    "Run": "plan",
    "SearchJob": "methods",
    "SearchOutput": "methods",
    "Store": "store",
    "SubmititLauncher": "launchers",
    "SweepResult": "status",
    "SweepSpec": "sweep_spec",
    "expand": "plan",
    "load_spec": "spec",
    "resources": "launchers",
    "run_sweep": "runner",
    "spec_from_dict": "spec",
    "sweep_methods": "methods",
    "sweep_status": "status",
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
