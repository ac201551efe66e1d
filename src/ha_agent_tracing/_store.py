"""The bounded, thread-safe store of finished reports, and their summaries.

The store keeps the newest ``max_reports`` reports (100 by default, as the
reference document says) in arrival order. A report can be replaced in place
when late spans of its request arrive; a replacement never moves it and an
older version never overwrites a newer one.

Queries return copies: callers may mutate what they get without touching the
store.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ha_agent_tracing._fold import Report

__all__ = ["ReportStore", "percentile", "summarize"]

_Key = tuple[str, str]


class ReportStore:
    """Keeps the last ``max_reports`` reports; safe to use from any thread."""

    def __init__(self, max_reports: int = 100) -> None:
        if not isinstance(max_reports, int) or isinstance(max_reports, bool) or max_reports <= 0:
            raise ValueError(f"max_reports must be a whole number greater than 0, not {max_reports!r}")
        self._max = max_reports
        self._lock = threading.Lock()
        self._reports: OrderedDict[_Key, tuple[int, Report]] = OrderedDict()
        self._dropped = 0

    @property
    def max_reports(self) -> int:
        """How many reports the store keeps."""
        return self._max

    @property
    def dropped(self) -> int:
        """How many reports were pushed out by newer ones."""
        return self._dropped

    def put(self, report: Report, version: int = 0) -> bool:
        """Add a report, or replace an older version of the same request's report.

        Returns ``False`` when a newer version is already stored.
        """
        key = (report["trace_id"], report["span_id"])
        with self._lock:
            held = self._reports.get(key)
            if held is not None:
                if held[0] > version:
                    return False
                self._reports[key] = (version, report)
                return True
            self._reports[key] = (version, report)
            while len(self._reports) > self._max:
                self._reports.popitem(last=False)
                self._dropped += 1
        return True

    def _snapshot(self) -> list[Report]:
        with self._lock:
            return [report for _, report in self._reports.values()]

    def reports(self, operation: str | None = None, limit: int | None = None) -> list[Report]:
        """Reports oldest first; ``operation`` filters, ``limit`` keeps the newest N."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit!r}")
        found = [r for r in self._snapshot() if operation is None or r["operation"] == operation]
        if limit is not None:
            found = found[len(found) - limit :] if limit else []
        return copy.deepcopy(found)

    def get(self, trace_id: str) -> Report | None:
        """The report of a trace (its earliest local root, if it has several)."""
        wanted = trace_id.lower()
        for report in self._snapshot():
            if report["trace_id"] == wanted:
                return copy.deepcopy(report)
        return None

    def operations(self) -> list[str]:
        """Operation names present, in order of first appearance."""
        return list(dict.fromkeys(r["operation"] for r in self._snapshot()))

    def average_duration(self, operation: str) -> float:
        """Mean ``total_duration`` (ms) of an operation's reports; 0.0 when there are none."""
        totals = [r["total_duration"] for r in self._snapshot() if r["operation"] == operation]
        return sum(totals) / len(totals) if totals else 0.0

    def summary(self, operation: str | None = None) -> dict[str, Any]:
        """Per operation: count and statistics of the total and of each metric name."""
        return summarize(r for r in self._snapshot() if operation is None or r["operation"] == operation)

    def export(self, indent: int | None = 2) -> str:
        """All reports as a JSON array (oldest first)."""
        return json.dumps(self._snapshot(), indent=indent, default=str)

    def clear(self) -> None:
        """Forget every report."""
        with self._lock:
            self._reports.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._reports)


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolated between ranks."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _stats(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }


def summarize(reports: Iterable[Report]) -> dict[str, Any]:
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
            "total_duration": _stats(values),
            "metrics": {name: _stats(durations) for name, durations in metrics[operation].items()},
        }
        for operation, values in totals.items()
    }
