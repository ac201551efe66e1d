"""The bounded, thread-safe store of finished reports, and its listeners.

The store keeps the newest ``max_reports`` reports (100 by default, as the
reference document says) in arrival order, each as a
:class:`~ha_agent_tracing.reports.ReportEntry`: the report processor's entries
fold their report the first time a query needs it (and again after late
spans); a report dict put by hand is held as is. A newer version of a report
replaces it in place and an older version never overwrites a newer one.

Queries return copies (a structured copy of the report dicts and lists, not a
``deepcopy``): callers may mutate what they get without touching the store.

Listeners (:meth:`ReportStore.add_listener`) hear of every report as it is
put and again whenever spans join it later; see there for the contract.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ha_agent_tracing._internal import InternalErrors
from ha_agent_tracing.reports._entries import ReportEntry
from ha_agent_tracing.reports._summary import summarize
from ha_agent_tracing.reports._types import Report, ReportMetric

__all__ = ["ReportListener", "ReportStore", "copy_report"]

ReportListener = Callable[[ReportEntry], None]
"""Called with a stored entry when it is put and whenever its report changes."""


class ReportStore:
    """Keeps the last ``max_reports`` reports; safe to use from any thread."""

    def __init__(self, max_reports: int = 100) -> None:
        if not isinstance(max_reports, int) or isinstance(max_reports, bool) or max_reports <= 0:
            raise ValueError(f"max_reports must be a whole number greater than 0, not {max_reports!r}")
        self._max = max_reports
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, int], ReportEntry] = OrderedDict()
        self._by_trace: dict[int, list[ReportEntry]] = {}
        self._dropped = 0
        self._listeners: tuple[ReportListener, ...] = ()
        self._listener_errors = InternalErrors("report store's listener")

    @property
    def max_reports(self) -> int:
        """How many reports the store keeps."""
        return self._max

    @property
    def dropped(self) -> int:
        """How many reports were pushed out by newer ones."""
        return self._dropped

    @property
    def listener_errors(self) -> int:
        """How many times a listener raised (each is logged at most once in full, then counted)."""
        return self._listener_errors.count

    # ------------------------------------------------------------ writing

    def put(self, report: Report | Mapping[str, Any] | ReportEntry, version: int = 0) -> bool:
        """Add a report, or replace an older version of the same request's report.

        ``report`` is a report dict (it needs at least ``trace_id`` and
        ``span_id`` in hex, plus the keys queries read: ``operation``,
        ``total_duration``, ``timestamp``, ``metrics``) or an entry. Returns
        ``False`` when a newer version is already stored. Listeners are
        called after the store's lock is released.
        """
        if isinstance(report, ReportEntry):
            entry = report
            if version:
                entry.version = version
        else:
            try:
                entry = ReportEntry(report=report, version=version)  # pyright: ignore[reportArgumentType]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"a report needs trace_id and span_id in hex: {exc}") from exc
        stored, pushed_out = self.insert(entry)
        del pushed_out  # freed here, outside the lock
        if stored:
            self.changed(entry)
        return stored

    def insert(self, entry: ReportEntry) -> tuple[bool, list[ReportEntry]]:
        """:meth:`put` an entry without telling the listeners.

        For a caller that puts entries under a lock of its own (the report
        processor): it calls :meth:`changed` once it released that lock.
        Returns whether the entry was stored (``False``: a newer version is)
        and the entries it pushed out, for the caller to let go of outside its
        lock (freeing a request's records is not free).
        """
        key = (entry.trace_int, entry.span_int)
        pushed_out: list[ReportEntry] = []
        with self._lock:
            held = self._entries.get(key)
            if held is not None:
                if held.version > entry.version:
                    return False, pushed_out
                self._entries[key] = entry
                same_trace = self._by_trace[key[0]]
                same_trace[same_trace.index(held)] = entry
            else:
                self._entries[key] = entry
                self._by_trace.setdefault(key[0], []).append(entry)
                while len(self._entries) > self._max:
                    _, old = self._entries.popitem(last=False)
                    self._unindex(old)
                    self._dropped += 1
                    pushed_out.append(old)
        return True, pushed_out

    def _unindex(self, entry: ReportEntry) -> None:
        same_trace = self._by_trace[entry.trace_int]
        same_trace.remove(entry)
        if not same_trace:
            del self._by_trace[entry.trace_int]

    def entries(self, trace_id: int | str) -> list[ReportEntry]:
        """The stored entries of one trace (an int, or 32 hex digits), in arrival order."""
        wanted = int(trace_id, 16) if isinstance(trace_id, str) else trace_id
        with self._lock:
            return list(self._by_trace.get(wanted, ()))

    def holds_trace(self, trace_id: int) -> bool:
        """Whether a report of the trace (an int) is stored; a glance, without the lock."""
        return trace_id in self._by_trace

    def stored_entries(self) -> list[ReportEntry]:
        """Every stored entry, oldest first."""
        with self._lock:
            return list(self._entries.values())

    # ------------------------------------------------------------ listeners

    def add_listener(self, listener: ReportListener) -> None:
        """Call ``listener(entry)`` for each report put from now on, and again when it changes.

        The listener receives a :class:`~ha_agent_tracing.reports.ReportEntry`:
        ``entry.key`` is the report's stable identity ``(trace_id, span_id)``
        in hex, and ``entry.report()`` folds and returns the report dict (or
        ``None`` if it cannot be folded); folding is cached, so calling it is
        cheap after the first time. It is called when a report is put (the
        processor puts one as each request's root span ends) and again, with
        the same entry, whenever spans join it later (late spans, browser
        spans): treat each call as "the report under this key is now
        ``entry.report()``" and upsert.

        It is called on whatever thread published, often the application's
        request thread, outside every lock of the store and the processor:
        keep it quick (hand the entry to a queue; fold and write elsewhere).
        A listener that raises is logged once with its traceback, counted in
        :attr:`listener_errors` (and the processor's ``listener_errors``
        stat), and never stops publishing or the other listeners.
        """
        if not callable(listener):
            raise TypeError(f"a listener must be callable, not {listener!r}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: ReportListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            self._listeners = tuple(known for known in self._listeners if known != listener)

    def changed(self, entry: ReportEntry) -> None:
        """Tell the listeners that ``entry`` was put or its report changed (never under a lock)."""
        for listener in self._listeners:
            try:
                listener(entry)
            except Exception as exc:  # noqa: BLE001 - a listener must not break publishing
                self._listener_errors.record(exc)

    # ------------------------------------------------------------ reading

    def _snapshot(self) -> list[Report]:
        with self._lock:
            entries = list(self._entries.values())
        # Folding happens here, outside the lock, once per report (then cached).
        return [report for report in (entry.report() for entry in entries) if report is not None]

    def reports(self, operation: str | None = None, limit: int | None = None) -> list[Report]:
        """Reports oldest first; ``operation`` filters, ``limit`` keeps the newest N."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit!r}")
        found = [r for r in self._snapshot() if operation is None or r["operation"] == operation]
        if limit is not None:
            found = found[len(found) - limit :] if limit else []
        return [copy_report(report) for report in found]

    def get(self, trace_id: str) -> Report | None:
        """The report of a trace (its earliest-starting local root, if it has several)."""
        try:
            entries = self.entries(trace_id.lower())
        except ValueError:
            return None
        for entry in sorted(entries, key=_start_ns):
            report = entry.report()
            if report is not None:
                return copy_report(report)
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
            self._entries.clear()
            self._by_trace.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _start_ns(entry: ReportEntry) -> int:
    return entry.start_ns


def _copy_metric(metric: ReportMetric) -> ReportMetric:
    copied = metric.copy()
    metadata = metric["metadata"]
    # Lists (from sequence attributes) are the only mutable values; most metadata has none.
    if list in map(type, metadata.values()):
        copied["metadata"] = {k: v[:] if type(v) is list else v for k, v in metadata.items()}  # pyright: ignore[reportUnknownVariableType]
    else:
        copied["metadata"] = metadata.copy()
    return copied


def copy_report(report: Report) -> Report:
    """A copy of a report that shares nothing mutable with it (dicts and lists copied, values shared).

    Report values are JSON-like, so copying the structure is enough: several
    times cheaper than ``copy.deepcopy``, which inspects every value.
    """
    copied = report.copy()
    copied["metrics"] = [_copy_metric(metric) for metric in report["metrics"]]
    return copied
