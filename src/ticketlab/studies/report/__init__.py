"""The report of a sweep's results store: markdown, tables (CSV), figures (PNG) and the paired tests.

`write_report(sweep_dir)` writes it; `load_results(sweep_dir)` reads a store into `SweepResults` (the
tables and comparisons the report prints); `run_record(sweep_dir, id)` is one run's record. Each is
imported on first use (`ticketlab.core.lazy`): `ticketlab report --help` reaches this package without
scipy or matplotlib.
"""

from ...core.lazy import lazy_exports

_WHERE = {
    "write_report": "report",
    "load_results": "results",
    "run_record": "results",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

__all__ = ["load_results", "run_record", "write_report"]
