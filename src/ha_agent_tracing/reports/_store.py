"""The bounded, thread-safe store of finished reports, and their summaries.

The store keeps the newest ``max_reports`` reports (100 by default, as the
reference document says) in arrival order. The report processor puts a
:class:`~ha_agent_tracing.reports._fold.FoldOnRead` per request: its spans, folded into
the report on the first query that needs it (late spans fold in on the next).
Ready-made report dicts can be put too; a newer version of one replaces it in
place and an older version never overwrites a newer one.

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

from ha_agent_tracing.reports._fold import FoldOnRead, Report

__all__ = ["ReportStore", "percentile", "summarize"]

# A folded report is keyed by its hex ids, a pending one by the ids as ints (formatting
# them is left to the fold); the processor only ever stores the latter.
_Key = tuple[str, str] | tuple[int, int]


class ReportStore:
    """Keeps the last ``max_reports`` reports; safe to use from any thread."""

    def __init__(self, max_reports: int = 100) -> None:
        if not isinstance(max_reports, int) or isinstance(max_reports, bool) or max_reports <= 0:
            raise ValueError(f"max_reports must be a whole number greater than 0, not {max_reports!r}")
        self._max = max_reports
        self._lock = threading.Lock()
        self._reports: OrderedDict[_Key, tuple[int, Report | FoldOnRead]] = OrderedDict()
        self._dropped = 0

    @property
    def max_reports(self) -> int:
        """How many reports the store keeps."""
        return self._max

    @property
    def dropped(self) -> int:
        """How many reports were pushed out by newer ones."""
        return self._dropped

    def put(self, report: Report | FoldOnRead, version: int = 0) -> bool:
        """Add a report, or replace an older version of the same request's report.

        Returns ``False`` when a newer version is already stored.
        """
        key = report.key if isinstance(report, FoldOnRead) else (report["trace_id"], report["span_id"])
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
            entries = [entry for _, entry in self._reports.values()]
        # Folding happens here, outside the lock, once per report (then cached).
        return [report for report in map(_resolve, entries) if report is not None]

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
        try:
            wanted_int: int | None = int(wanted, 16)
        except ValueError:
            wanted_int = None
        with self._lock:
            entries = [entry for key, (_, entry) in self._reports.items() if key[0] in (wanted, wanted_int)]
        for report in map(_resolve, entries):
            if report is not None:
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


def _resolve(entry: Report | FoldOnRead) -> Report | None:
    return entry.report() if isinstance(entry, FoldOnRead) else entry


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
