"""Queries over time: the in-memory store and the history, read as one.

The store holds the newest reports (and the freshest version of each); the
history holds everything within its retention, written a moment later. A
query reads both and keeps one copy of each report::

    queries = ReportQueries(store, history)          # history may be None (off)
    queries.reports(since=time.time() - 3600, limit=50)
    queries.timeline(since, until, bucket_s=parse_bucket("5m"))
    queries.insights(since, until)                   # where the time goes, over a bounded sample

When the history cannot be read the answer comes from memory alone, and the
log says so once (the history counts each failed read).

Percentiles are the project's one definition (:mod:`._percentiles`,
``statistics.quantiles(method="inclusive")``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

from ha_agent_tracing._internal import RateLimitedWarning
from ha_agent_tracing.analysis._insights import OperationInsights, analyze_reports
from ha_agent_tracing.analysis._percentiles import describe, percentiles
from ha_agent_tracing.reports._fold import Report
from ha_agent_tracing.reports._history import (
    History,
    HistoryReader,
    HistoryUnavailable,
    ReportRow,
    rows_of,
    unpack_durations,
)

if TYPE_CHECKING:  # the store imports the percentile definition from this package
    from ha_agent_tracing.reports._store import ReportStore

__all__ = [
    "INSIGHTS_SAMPLE",
    "MAX_BUCKETS",
    "InsightsAnswer",
    "InsightsSample",
    "ReportQueries",
    "check_range",
    "evenly_spaced",
    "parse_bucket",
    "summarize_rows",
    "timeline",
]

logger = logging.getLogger("ha_agent_tracing")

MAX_BUCKETS = 10_000
"""Most buckets one timeline may have (7 days of 1-minute buckets fit)."""

INSIGHTS_SAMPLE = 2000
"""Most reports of one operation that :meth:`ReportQueries.insights` analyses by default."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BUCKET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.I)


def parse_bucket(raw: str) -> float:
    """Seconds from a bucket width: ``30s``, ``5m``, ``1h``, ``1d`` or plain seconds."""
    match = _BUCKET.match(raw)
    if match is None:
        raise ValueError(f"{raw!r} is not a bucket width: expected e.g. 30s, 5m, 1h, 1d or seconds")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds < 1:
        raise ValueError(f"bucket {raw!r} is shorter than one second")
    return seconds


def _p50_p95_p99(values: Sequence[float]) -> tuple[float, float, float]:
    p50, p95, p99 = percentiles(values, (50, 95, 99))
    return p50, p95, p99


K = TypeVar("K")


def _metric_values(
    rows: Iterable[ReportRow], key: Callable[[ReportRow], K]
) -> tuple[dict[tuple[K, str], list[float]], dict[tuple[K, str], int]]:
    """Durations and failure counts per ``(key(row), metric name)``.

    Rows with the same metric names in the same order (most requests of one
    operation) are unpacked together, and each position is one strided slice:
    the work per metric happens in C, not in a Python loop.
    """
    groups: dict[tuple[K, str], tuple[list[bytes], list[bytes]]] = {}
    widths: dict[str, int] = {}
    for row in rows:
        signature = row.metric_names
        width = widths.get(signature)
        if width is None:
            widths[signature] = width = len(json.loads(signature))
        if len(row.metric_durations) != 8 * width or len(row.metric_failures) != width:
            continue  # a damaged row counts for its total only
        held = groups.get((key(row), signature))
        if held is None:
            groups[(key(row), signature)] = held = ([], [])
        held[0].append(row.metric_durations)
        held[1].append(row.metric_failures)
    values: dict[tuple[K, str], list[float]] = {}
    errors: dict[tuple[K, str], int] = {}
    for (group, signature), (durations, failures) in groups.items():
        names = json.loads(signature)
        width = len(names)
        packed = unpack_durations(b"".join(durations))
        failed = b"".join(failures)
        for position, name in enumerate(names):
            cell = (group, name)
            values.setdefault(cell, []).extend(packed[position::width])
            errors[cell] = errors.get(cell, 0) + failed[position::width].count(1)
    return values, errors


def summarize_rows(rows: Sequence[ReportRow]) -> dict[str, Any]:
    """Per operation: count, and count, mean, p50, p95, p99, max (ms) of the total and of each metric."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        totals.setdefault(row.operation, []).append(row.total_duration)
    values, _ = _metric_values(rows, lambda row: row.operation)
    by_operation: dict[str, dict[str, list[float]]] = {}
    for (operation, name), durations in values.items():
        by_operation.setdefault(operation, {})[name] = durations
    return {
        operation: {
            "count": len(durations),
            "total_duration": describe(durations),
            "metrics": {name: describe(d) for name, d in by_operation.get(operation, {}).items()},
        }
        for operation, durations in totals.items()
    }


def check_range(since: float, until: float, bucket_s: float) -> None:
    """Raise ``ValueError`` unless ``[since, until)`` splits into at most :data:`MAX_BUCKETS` buckets."""
    if bucket_s <= 0:
        raise ValueError("bucket_s must be greater than 0")
    if until < since:
        raise ValueError("until is before since")
    count = math.floor(until / bucket_s) - math.floor(since / bucket_s) + 1
    if count > MAX_BUCKETS:
        raise ValueError(
            f"{count} buckets of {bucket_s:g} s from since to until; at most {MAX_BUCKETS}: "
            "choose a wider bucket or a shorter range"
        )


def _cell(durations: list[float], errors: int) -> dict[str, float | int]:
    p50, p95, p99 = _p50_p95_p99(durations)
    return {"count": len(durations), "p50": p50, "p95": p95, "p99": p99, "errors": errors}


def timeline(rows: Sequence[ReportRow], since: float, until: float, bucket_s: float) -> dict[str, Any]:
    """Per time bucket and over the range: count, p50, p95, p99 and errors of the total and each metric.

    Buckets start at multiples of ``bucket_s`` since the epoch (5-minute buckets
    fall on the clock's 5 minutes); empty ones are left out. Tokens are summed
    from the model turns' usage.
    """
    check_range(since, until, bucket_s)
    totals: dict[int, list[float]] = {}
    failed: dict[int, int] = {}
    tokens: dict[int, list[int]] = {}
    for row in rows:
        index = math.floor(row.timestamp / bucket_s)
        totals.setdefault(index, []).append(row.total_duration)
        if row.status == "error":
            failed[index] = failed.get(index, 0) + 1
        held = tokens.setdefault(index, [0, 0])
        held[0] += row.input_tokens or 0
        held[1] += row.output_tokens or 0
    cells, cell_errors = _metric_values(rows, lambda row: math.floor(row.timestamp / bucket_s))
    per_bucket: dict[int, dict[str, Any]] = {}
    overall_metrics: dict[str, list[float]] = {}
    overall_errors: dict[str, int] = {}
    for (index, name), durations in sorted(cells.items()):
        errors = cell_errors.get((index, name), 0)
        per_bucket.setdefault(index, {})[name] = _cell(durations, errors)
        overall_metrics.setdefault(name, []).extend(durations)
        overall_errors[name] = overall_errors.get(name, 0) + errors
    buckets = [
        {
            "start": index * bucket_s,
            "requests": len(values),
            "errors": failed.get(index, 0),
            "input_tokens": tokens[index][0],
            "output_tokens": tokens[index][1],
            "total": _cell(values, failed.get(index, 0)),
            "metrics": per_bucket.get(index, {}),
        }
        for index, values in sorted(totals.items())
    ]
    every_total = [value for values in totals.values() for value in values]
    overall: dict[str, Any] = {
        "requests": len(every_total),
        "errors": sum(failed.values()),
        "input_tokens": sum(held[0] for held in tokens.values()),
        "output_tokens": sum(held[1] for held in tokens.values()),
        "total": _cell(every_total, sum(failed.values())) if every_total else None,
        "metrics": {name: _cell(d, overall_errors[name]) for name, d in sorted(overall_metrics.items())},
    }
    return {
        "since": since,
        "until": until,
        "bucket_seconds": bucket_s,
        "buckets": buckets,
        "overall": overall,
    }


class InsightsSample(TypedDict):
    """How many of one operation's reports the insights were worked out from."""

    analysed: int
    """Reports analysed: all of the range's, or an evenly spaced sample of them."""
    in_range: int
    """Reports of the operation that started in ``[since, until)``."""


class InsightsAnswer(TypedDict):
    """:meth:`ReportQueries.insights`: where the time goes over a time range (``GET .../insights``)."""

    since: float | None
    until: float | None
    source: Literal["history", "memory"]
    """``history`` (with the reports not yet written, from memory) or ``memory`` alone."""
    sample_limit: int
    """Most reports analysed per operation; a range holding more is sampled evenly in time."""
    count: int
    """Reports analysed, every operation together."""
    in_range: int
    """Reports in the range, every operation together."""
    samples: dict[str, InsightsSample]
    operations: dict[str, OperationInsights]


def evenly_spaced(count: int, limit: int) -> list[int]:
    """Positions of ``limit`` of ``count`` items in order, evenly spread from the first; all when they fit.

    ``evenly_spaced(10, 4) == [0, 2, 5, 7]``: item ``i * count // limit`` for ``i < limit``.
    """
    if limit < 1:
        raise ValueError(f"limit must be 1 or more, not {limit!r}")
    if count <= limit:
        return list(range(count))
    return [i * count // limit for i in range(limit)]


_unreadable = RateLimitedWarning(interval_s=300.0)


def _in_range(timestamp: float, since: float | None, until: float | None) -> bool:
    return (since is None or timestamp >= since) and (until is None or timestamp < until)


def _key(report: Report) -> tuple[str, str]:
    return str(report.get("trace_id", "")).lower(), str(report.get("span_id", "")).lower()


class ReportQueries:
    """Reads over the in-memory ``store`` and, when on, the ``history``, as one collection."""

    def __init__(self, store: ReportStore, history: History | HistoryReader | None = None) -> None:
        self.store = store
        self.history = history

    def _memory(self, since: float | None, until: float | None, operation: str | None) -> list[Report]:
        return [
            report
            for report in self.store.reports(operation=operation)
            if _in_range(float(report.get("timestamp", 0.0)), since, until)
        ]

    def _history_failed(self, exc: HistoryUnavailable) -> None:
        _unreadable.warn("report history cannot be read (%s); answering from memory only", exc)

    def reports(
        self,
        since: float | None = None,
        until: float | None = None,
        operation: str | None = None,
        limit: int | None = None,
        *,
        slowest: bool = False,
    ) -> list[Report]:
        """Reports in ``[since, until)``, one per request, oldest first; ``limit`` keeps the newest N.

        With ``slowest``: slowest first, ``limit`` keeps the N slowest.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit!r}")
        memory = self._memory(since, until, operation)
        found: dict[tuple[str, str], Report] = {}
        if self.history is not None:
            try:
                for report in self.history.query(since, until, operation, limit, slowest=slowest):
                    found[_key(report)] = report
            except HistoryUnavailable as exc:
                self._history_failed(exc)
        for report in memory:  # the store's version is the freshest (late spans folded in)
            found[_key(report)] = report
        if slowest:
            merged = sorted(found.values(), key=lambda r: -float(r.get("total_duration", 0.0)))
            return merged[:limit] if limit is not None else merged
        merged = sorted(found.values(), key=lambda r: float(r.get("timestamp", 0.0)))
        if limit is not None:
            merged = merged[len(merged) - limit :] if limit else []
        return merged

    def get(self, trace_id: str) -> Report | None:
        """The report of a trace, from memory or else from the history."""
        report = self.store.get(trace_id)
        if report is not None or self.history is None:
            return report
        try:
            return self.history.get(trace_id)
        except HistoryUnavailable as exc:
            self._history_failed(exc)
            return None

    def rows(
        self, since: float | None = None, until: float | None = None, operation: str | None = None
    ) -> list[ReportRow]:
        """The rows of the reports in the range, each request once."""
        memory = self._memory(since, until, operation)
        if self.history is None:
            return rows_of(memory)
        try:
            rows = self.history.rows(since, until, operation)
        except HistoryUnavailable as exc:
            self._history_failed(exc)
            return rows_of(memory)
        # Reports not written yet (the writer batches) come from memory.
        written = {(row.trace_id, row.span_id) for row in rows}
        return rows + rows_of(r for r in memory if _key(r) not in written)

    def summary(
        self, since: float | None = None, until: float | None = None, operation: str | None = None
    ) -> dict[str, Any]:
        """Per operation: count, mean, p50, p95, p99, max of the total and of each metric (ms)."""
        return summarize_rows(self.rows(since, until, operation))

    def timeline(
        self,
        since: float | None,
        until: float | None,
        bucket_s: float,
        operation: str | None = None,
    ) -> dict[str, Any]:
        """:func:`timeline` over the range; ``until`` defaults to now, ``since`` to 24 hours before it."""
        until = time.time() if until is None else until
        since = until - 86400.0 if since is None else since
        check_range(since, until, bucket_s)
        result = timeline(self.rows(since, until, operation), since, until, bucket_s)
        result["operation"] = operation
        return result

    def insights(
        self,
        since: float | None = None,
        until: float | None = None,
        operation: str | None = None,
        *,
        top: int = 5,
        sample: int = INSIGHTS_SAMPLE,
    ) -> InsightsAnswer:
        """:func:`analyze_reports` of the reports in ``[since, until)``, at most ``sample`` per operation.

        An operation with more reports in the range is analysed on an evenly spaced
        sample by start time (every ``n / sample``-th, from the oldest), so that a range of
        many thousands of reports answers as fast as one of ``sample``. Memory's version
        of a report wins over history's, and reports not written yet count too.
        """
        if sample < 1:
            raise ValueError(f"sample must be 1 or more, not {sample!r}")
        memory = self._memory(since, until, operation)
        chosen: list[Report] | None = None
        in_range: dict[str, int] = {}
        if self.history is not None:
            try:
                chosen = self._history_sample(memory, since, until, operation, sample, in_range)
            except HistoryUnavailable as exc:
                self._history_failed(exc)
                in_range.clear()
        source: Literal["history", "memory"] = "history" if chosen is not None else "memory"
        if chosen is None:
            by_operation: dict[str, list[Report]] = {}
            for report in sorted(memory, key=lambda r: float(r.get("timestamp", 0.0))):
                by_operation.setdefault(str(report["operation"]), []).append(report)
            chosen = []
            for name, reports in by_operation.items():
                in_range[name] = len(reports)
                chosen.extend(reports[i] for i in evenly_spaced(len(reports), sample))
        analysed: dict[str, int] = {}
        for report in chosen:
            analysed[str(report["operation"])] = analysed.get(str(report["operation"]), 0) + 1
        return {
            "since": since,
            "until": until,
            "source": source,
            "sample_limit": sample,
            "count": len(chosen),
            "in_range": sum(in_range.values()),
            "samples": {
                name: {"analysed": analysed.get(name, 0), "in_range": count}
                for name, count in in_range.items()
            },
            "operations": analyze_reports(chosen, top=top) if chosen else {},
        }

    def _history_sample(
        self,
        memory: list[Report],
        since: float | None,
        until: float | None,
        operation: str | None,
        sample: int,
        in_range: dict[str, int],
    ) -> list[Report]:
        """The sample over history and the reports of memory it lacks; fills ``in_range`` per operation."""
        assert self.history is not None
        fresh = {_key(report): report for report in memory}
        # Per operation, in start order: (start, key, history row id or None when only memory has it).
        population: dict[str, list[tuple[float, tuple[str, str], int | None]]] = {}
        seen: set[tuple[str, str]] = set()
        for row in self.history.index(since, until, operation):
            key = (row.trace_id.lower(), row.span_id.lower())
            seen.add(key)
            held = fresh.get(key)
            name, start = (row.operation, row.timestamp) if held is None else _place(held)
            population.setdefault(name, []).append((start, key, row.id))
        for key, report in fresh.items():
            if key not in seen:  # not written yet: the writer batches
                name, start = _place(report)
                population.setdefault(name, []).append((start, key, None))
        picked: list[tuple[float, tuple[str, str], int | None]] = []
        for name, entries in population.items():
            entries.sort(key=lambda entry: entry[0])
            in_range[name] = len(entries)
            picked.extend(entries[i] for i in evenly_spaced(len(entries), sample))
        bodies = self.history.by_ids(i for _, key, i in picked if i is not None and key not in fresh)
        chosen: list[Report] = []
        for _, key, row_id in picked:
            report = fresh.get(key) or (bodies.get(row_id) if row_id is not None else None)
            if report is not None:  # else deleted by retention since the index was read
                chosen.append(report)
        return chosen


def _place(report: Report) -> tuple[str, float]:
    return str(report["operation"]), float(report.get("timestamp", 0.0))
