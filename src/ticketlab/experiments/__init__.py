"""Experiments: sweep specs, the results store, the runner, reports and figures."""

from .adapters import FinetuneJob, FinetuneOutput, PretrainEvalJob
from .launchers import Resources, SubmititLauncher, resources
from .methods import METHODS, MethodSpec, SearchJob, SearchOutput, register
from .plan import Run, expand
from .runner import SweepResult, run_sweep
from .spec import load_spec, spec_from_dict
from .status import sweep_status
from .store import Store
from .sweep_spec import SweepSpec

__all__ = [
    "METHODS",
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
    "register",
    "resources",
    "run_sweep",
    "spec_from_dict",
    "sweep_status",
]
