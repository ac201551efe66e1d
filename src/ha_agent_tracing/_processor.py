"""The span processor that folds each finished request into a report.

Spans are grouped by *local root*: a span with no parent, or whose parent came
from another process (a remote parent, as in a server span). Every span that
starts under a local root, on any thread or asyncio task, joins its group
through its parent's span id, so interleaved requests never mix.

A group becomes a report when its root is a server span or it holds at least
one tracked metric; a bare outgoing HTTP call outside any request, say, makes
no report (it is counted as ``unreported_traces``).

When the local root ends, the group is folded into a report and published to
the :class:`~ha_agent_tracing.ReportStore` at once. The group then lingers for
``late_span_window_s``, holding only its report: spans that start or end after
their root (FastAPI runs background tasks after the server span has ended)
are added to a copy, which replaces the report in the store. After the window
the group is forgotten.

Memory stays bounded: at most ``max_pending_traces`` unfinished groups are
held, and a group whose root has not ended after ``pending_timeout_s`` is
dropped and counted, as are spans whose parent is unknown here.

Following the SDK's processor contract, ``on_start`` and ``on_end`` run on the
caller's thread: they hold the lock only for dictionary updates, fold and log
outside it, and never raise into the application.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from ha_agent_tracing._fold import Report, amend, fold
from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning
from ha_agent_tracing._store import ReportStore

__all__ = ["TRACER_NAME", "ReportProcessor", "is_tracked_metric"]

logger = logging.getLogger("ha_agent_tracing")

TRACER_NAME = "ha_agent_tracing"
"""Instrumentation scope of the spans the tracker creates."""

_Key = tuple[int, int]  # (trace_id, span_id)


def is_tracked_metric(span: ReadableSpan) -> bool:
    """Whether a span is a metric of the report: one the tracker created."""
    scope = span.instrumentation_scope
    return scope is not None and scope.name == TRACER_NAME


class _Group:
    """The spans of one local root while it runs; only its report once published."""

    __slots__ = (
        "key",
        "members",
        "published",
        "report",
        "reportable",
        "root_start",
        "spans",
        "started",
        "until",
        "version",
    )

    def __init__(self, key: _Key, started: float, reportable: bool) -> None:
        self.key = key
        self.reportable = reportable
        self.started = started
        self.members: list[_Key] = [key]
        self.spans: list[ReadableSpan] = []
        self.report: Report | None = None
        self.root_start = 0
        self.published = False
        self.version = 0
        self.until = 0.0


class ReportProcessor(SpanProcessor):
    """Folds the spans of each local root into a report in ``store``.

    Args:
        store: where reports go; a new :class:`ReportStore` if omitted.
        max_pending_traces: most unfinished requests tracked at once.
        pending_timeout_s: a request whose root has not ended by then is dropped.
        late_span_window_s: how long after its root ends a request still takes spans.
        max_lingering_traces: most finished requests held for late spans (their reports only).
        is_metric: which spans become report metrics; by default the tracker's.
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(
        self,
        store: ReportStore | None = None,
        *,
        max_pending_traces: int = 10_000,
        pending_timeout_s: float = 300.0,
        late_span_window_s: float = 10.0,
        max_lingering_traces: int = 1000,
        is_metric: Callable[[ReadableSpan], bool] = is_tracked_metric,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending_traces <= 0:
            raise ValueError(f"max_pending_traces must be greater than 0, not {max_pending_traces!r}")
        if pending_timeout_s <= 0 or late_span_window_s <= 0:
            raise ValueError("pending_timeout_s and late_span_window_s must be greater than 0")
        self.store = store if store is not None else ReportStore()
        self._max_pending = max_pending_traces
        self._timeout = pending_timeout_s
        self._window = late_span_window_s
        self._max_lingering = max_lingering_traces
        self._is_metric = is_metric
        self._clock = clock
        self._lock = threading.Lock()
        self._by_span: dict[_Key, _Group] = {}
        self._pending: OrderedDict[_Key, _Group] = OrderedDict()
        self._lingering: OrderedDict[_Key, _Group] = OrderedDict()
        self._errors = InternalErrors("report processor")
        self._eviction_warning = RateLimitedWarning()
        self._counts = {
            "reports": 0,
            "late_spans": 0,
            "orphan_spans": 0,
            "evicted_traces": 0,
            "unreported_traces": 0,
        }
        self._shut_down = False

    # ------------------------------------------------------------ SDK hooks

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Register the span with its request's group (or open a group for a local root)."""
        try:
            self._start(span)
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Add the finished span; fold and publish when it is a local root."""
        try:
            self._end(span)
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

    def shutdown(self) -> None:
        """Forget unfinished requests; published reports stay in the store."""
        with self._lock:
            self._shut_down = True
            self._by_span.clear()
            self._pending.clear()
            self._lingering.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered for export here; reports are published as roots end."""
        return True

    # ------------------------------------------------------------ internals

    def _start(self, span: Span) -> None:
        ctx = span.context
        if ctx is None or self._shut_down:
            return
        key = (ctx.trace_id, ctx.span_id)
        parent = span.parent
        evicted: list[_Group] = []
        with self._lock:
            if parent is None or parent.is_remote:
                now = self._clock()  # only roots need the time (eviction); children are the hot path
                group = _Group(key, now, span.kind is SpanKind.SERVER or self._is_metric(span))
                self._pending[key] = group
                self._by_span[key] = group
                evicted = self._sweep(now)
            else:
                group = self._by_span.get((ctx.trace_id, parent.span_id))
                if group is None:
                    self._counts["orphan_spans"] += 1
                    return
                self._by_span[key] = group
                group.members.append(key)
                if not group.reportable and self._is_metric(span):
                    group.reportable = True
        for lost in evicted:
            self._eviction_warning.warn(
                "dropped an unfinished request (trace %032x): its root span did not end within %.0f s "
                "or more than %d requests were in flight",
                lost.key[0],
                self._timeout,
                self._max_pending,
            )

    def _end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None:
            return
        key = (ctx.trace_id, ctx.span_id)
        amended: tuple[Report, int] | None = None
        publish: list[ReadableSpan] | None = None
        with self._lock:
            group = self._by_span.get(key)
            if group is None:
                return
            if not group.published:
                if key != group.key:
                    group.spans.append(span)
                    return
                publish = self._close(group, span)
            else:
                amended = self._late(group, span)
        if amended is not None:
            self.store.put(*amended)
        elif publish is not None:
            self._publish(group, span, publish)

    def _close(self, group: _Group, root: ReadableSpan) -> list[ReadableSpan] | None:
        """The root ended (lock held): mark the group published; its spans, if it makes a report."""
        group.published = True
        group.until = self._clock() + self._window
        del self._pending[group.key]
        self._lingering[group.key] = group
        spans, group.spans = group.spans, []  # from here group.spans buffers late metrics
        if not group.reportable:
            self._counts["unreported_traces"] += 1
            return None
        self._counts["reports"] += 1
        group.root_start = root.start_time or 0
        spans.append(root)
        return spans

    def _late(self, group: _Group, span: ReadableSpan) -> tuple[Report, int] | None:
        """A span after its root (lock held): amend the report, or buffer it while it is folded."""
        self._counts["late_spans"] += 1
        if not group.reportable or not self._is_metric(span):
            return None
        if group.report is None:
            group.spans.append(span)
            return None
        # Late metrics are rare and amending one takes microseconds: done under the lock
        # so that concurrent late spans never overwrite each other's amendment.
        group.report = amend(group.report, span, group.root_start)
        group.version += 1
        return group.report, group.version

    def _publish(self, group: _Group, root: ReadableSpan, spans: list[ReadableSpan]) -> None:
        """Fold outside the lock, then install the report with any late metric that came meanwhile."""
        report = fold(root, spans, self._is_metric)
        with self._lock:
            for late in group.spans:
                report = amend(report, late, group.root_start)
            group.spans = []
            group.report = report
            group.version += 1
            version = group.version
        self.store.put(report, version)
        _log_report(report)

    def _sweep(self, now: float) -> list[_Group]:
        """Drop expired groups; called with the lock held, O(1) amortised."""
        while self._lingering:
            group = next(iter(self._lingering.values()))
            if group.until > now and len(self._lingering) <= self._max_lingering:
                break
            self._forget(self._lingering.popitem(last=False)[1])
        evicted: list[_Group] = []
        while self._pending:
            group = next(iter(self._pending.values()))
            if now - group.started < self._timeout and len(self._pending) <= self._max_pending:
                break
            self._forget(self._pending.popitem(last=False)[1])
            self._counts["evicted_traces"] += 1
            evicted.append(group)
        return evicted

    def _forget(self, group: _Group) -> None:
        for member in group.members:
            if self._by_span.get(member) is group:
                del self._by_span[member]

    # ------------------------------------------------------------ introspection

    def stats(self) -> dict[str, Any]:
        """Counters: reports published, late and orphan spans, evicted traces, internal errors."""
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
            counts["pending_traces"] = len(self._pending)
            counts["lingering_traces"] = len(self._lingering)
            counts["tracked_spans"] = len(self._by_span)
        counts["internal_errors"] = self._errors.count
        counts["stored_reports"] = len(self.store)
        return counts


def _log_report(report: Report) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    slowest = sorted(report["metrics"], key=lambda m: m["duration"], reverse=True)[:3]
    logger.info(
        "[Performance] %s %.2f ms (trace %s)%s%s",
        report["operation"],
        report["total_duration"],
        report["trace_id"],
        "; slowest: " if slowest else "",
        ", ".join(f"{m['name']} {m['duration']:.2f} ms" for m in slowest),
    )
