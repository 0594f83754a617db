"""Experiments: sweep specs, the results store, the runner, reports and figures."""

from .adapters import FinetuneJob, FinetuneOutput, PretrainEvalJob
from .methods import METHODS, MethodSpec, SearchJob, SearchOutput, register
from .plan import Run, expand
from .runner import SweepResult, run_sweep
from .spec import SweepSpec, load_spec, spec_from_dict
from .store import Store

__all__ = [
    "METHODS",
    "FinetuneJob",
    "FinetuneOutput",
    "MethodSpec",
    "PretrainEvalJob",
    "Run",
    "SearchJob",
    "SearchOutput",
    "Store",
    "SweepResult",
    "SweepSpec",
    "expand",
    "load_spec",
    "register",
    "run_sweep",
    "spec_from_dict",
]
