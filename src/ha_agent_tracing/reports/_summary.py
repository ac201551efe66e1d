"""Statistics over reports: count, mean, p50, p95, p99 and max per operation and metric.

Percentiles are the project's one definition,
:func:`ha_agent_tracing.analysis.percentiles` (``statistics.quantiles`` with
``method="inclusive"``), as in the benchmarks and the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ha_agent_tracing.analysis._percentiles import describe
from ha_agent_tracing.reports._types import Report

__all__ = ["summarize"]


def summarize(reports: Iterable[Report] | Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Statistics (ms) per operation, and per metric name within it."""
    totals: dict[str, list[float]] = {}
    metrics: dict[str, dict[str, list[float]]] = {}
    for report in reports:
        operation = report["operation"]
        totals.setdefault(operation, []).append(report["total_duration"])
        by_name = metrics.setdefault(operation, {})
        for metric in report["metrics"]:
            by_name.setdefault(metric["name"], []).append(metric["duration"])
    return {
        operation: {
            "count": len(values),
            "total_duration": describe(values),
            "metrics": {name: describe(durations) for name, durations in metrics[operation].items()},
        }
        for operation, values in totals.items()
    }
