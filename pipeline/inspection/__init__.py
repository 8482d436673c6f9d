"""``netsentry inspect``: the registered champions score new traffic; findings with evidence and a report."""

from pipeline.inspection.stage import InspectOptions, InspectResult, run_inspect

__all__ = ["InspectOptions", "InspectResult", "run_inspect"]
