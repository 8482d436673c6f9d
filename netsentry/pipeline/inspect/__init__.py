"""``netsentry inspect``: the registered champions score new traffic; findings with evidence and a report."""

from netsentry.pipeline.inspect.stage import InspectOptions, InspectResult, run_inspect

__all__ = ["InspectOptions", "InspectResult", "run_inspect"]
