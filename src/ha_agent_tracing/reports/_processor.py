"""The span processor that folds each finished request into a report.

Spans are grouped by *local root*: a span with no parent, or whose parent came
from another process (a remote parent, as in a server span). Every span that
starts under a local root, on any thread or asyncio task, joins its group
through its parent's span id, so interleaved requests never mix.

A group becomes a report when its root is a server span or it holds at least
one tracked metric; a bare outgoing HTTP call outside any request, say, makes
no report (it is counted as ``unreported_traces``).

When the local root ends, the request's finished spans are published to the
:class:`~ha_agent_tracing.ReportStore` at once, as a pending report that is
folded the first time somebody reads it: the request pays only for grouping
its spans. The group then lingers for ``late_span_window_s``: spans that start
or end after their root (FastAPI runs background tasks after the server span
has ended) join the pending report, and the next read folds them in. After
the window the group is forgotten.

Memory stays bounded: at most ``max_pending_traces`` unfinished groups are
held, and a group whose root has not ended after ``pending_timeout_s`` is
dropped and counted, as are spans whose parent is unknown here.

Following the SDK's processor contract, ``on_start`` and ``on_end`` run on the
caller's thread: they hold the lock only for dictionary updates, log outside
it, and never raise into the application.
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

from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning
from ha_agent_tracing.reports._fold import FoldOnRead
from ha_agent_tracing.reports._store import ReportStore

__all__ = ["TRACER_NAME", "ReportProcessor", "is_tracked_metric"]

logger = logging.getLogger("ha_agent_tracing")

TRACER_NAME = "ha_agent_tracing"
"""Instrumentation scope of the spans the tracker creates."""

# SpanContext is a tuple by its public type, tuple[int, int, bool, ...]; indexing it
# skips a property call per field on the hot path (tests pin the layout).
_TRACE_ID, _SPAN_ID, _IS_REMOTE = 0, 1, 2


def is_tracked_metric(span: ReadableSpan) -> bool:
    """Whether a span is a metric of the report: one the tracker created."""
    scope = span.instrumentation_scope
    return scope is not None and scope.name == TRACER_NAME


class _Group:
    """One local root's request: its members' span ids and its finished spans.

    ``spans`` never changes identity: once the root ends, the pending report
    in the store reads this same list, and late spans are appended to it.
    """

    __slots__ = (
        "members",
        "published",
        "reportable",
        "root_id",
        "spans",
        "started",
        "trace_id",
        "until",
    )

    def __init__(self, trace_id: int, root_id: int, started: float, reportable: bool) -> None:
        self.trace_id = trace_id
        self.root_id = root_id
        self.reportable = reportable
        self.started = started
        self.members: list[int] = [root_id]
        self.spans: list[ReadableSpan] = []
        self.published = False
        self.until = 0.0


class ReportProcessor(SpanProcessor):
    """Folds the spans of each local root into a report in ``store``.

    Args:
        store: where reports go; a new :class:`ReportStore` if omitted.
        max_pending_traces: most unfinished requests tracked at once.
        pending_timeout_s: a request whose root has not ended by then is dropped.
        late_span_window_s: how long after its root ends a request still takes spans.
        max_lingering_traces: most finished requests held for late spans; by default as many
            as the store keeps reports (a request whose report has left the store has
            nothing left to amend, and holding its spans would only cost memory).
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
        max_lingering_traces: int | None = None,
        is_metric: Callable[[ReadableSpan], bool] = is_tracked_metric,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending_traces <= 0:
            raise ValueError(f"max_pending_traces must be greater than 0, not {max_pending_traces!r}")
        if pending_timeout_s <= 0 or late_span_window_s <= 0:
            raise ValueError("pending_timeout_s and late_span_window_s must be greater than 0")
        if max_lingering_traces is not None and max_lingering_traces < 0:
            raise ValueError(f"max_lingering_traces must be 0 or more, not {max_lingering_traces!r}")
        self.store = store if store is not None else ReportStore()
        self._max_pending = max_pending_traces
        self._timeout = pending_timeout_s
        self._window = late_span_window_s
        self._max_lingering = (
            max_lingering_traces if max_lingering_traces is not None else self.store.max_reports
        )
        self._is_metric = is_metric
        self._clock = clock
        self._lock = threading.Lock()
        # Keyed by span id; a group also checks the trace id, so ids repeated
        # across traces can never mix requests.
        self._by_span: dict[int, _Group] = {}
        self._pending: OrderedDict[int, _Group] = OrderedDict()
        self._lingering: OrderedDict[int, _Group] = OrderedDict()
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
    #
    # These run on the application's thread for every span: each takes the lock
    # once, touches one or two dictionary entries and returns. Folding waits
    # until somebody reads the report.

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Register the span with its request's group (or open a group for a local root)."""
        try:
            parent = span.parent
            if parent is None or parent[_IS_REMOTE]:
                self._start_root(span)
                return
            span_id = span.get_span_context()[_SPAN_ID]
            with self._lock:
                group = self._by_span.get(parent[_SPAN_ID])
                if group is None or group.trace_id != parent[_TRACE_ID]:
                    self._counts["orphan_spans"] += 1
                    return
                self._by_span[span_id] = group
                group.members.append(span_id)
            if not group.reportable and self._is_metric(span):
                group.reportable = True
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Add the finished span to its request; publish the pending report when it is a local root."""
        try:
            ctx = span.context
            if ctx is None:
                return
            span_id = ctx[_SPAN_ID]
            group = self._by_span.get(span_id)
            if group is None or group.trace_id != ctx[_TRACE_ID]:
                return
            if span_id != group.root_id:
                # No lock: list.append is atomic, and the pending report reads this very
                # list, so a span ending while its root closes on another thread is kept.
                group.spans.append(span)
                if group.published:
                    with self._lock:
                        self._counts["late_spans"] += 1
                return
            with self._lock:
                pending = self._close(group, span)
            if pending is not None:
                self.store.put(pending)
                _log_report(pending)
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

    def _start_root(self, span: Span) -> None:
        ctx = span.context
        if ctx is None or self._shut_down:
            return
        reportable = span.kind is SpanKind.SERVER or self._is_metric(span)
        with self._lock:
            now = self._clock()
            group = _Group(ctx.trace_id, ctx.span_id, now, reportable)
            self._pending[ctx.span_id] = group
            self._by_span[ctx.span_id] = group
            evicted = self._sweep(now)
        for lost in evicted:
            self._eviction_warning.warn(
                "dropped an unfinished request (trace %032x): its root span did not end within %.0f s "
                "or more than %d requests were in flight",
                lost.trace_id,
                self._timeout,
                self._max_pending,
            )

    def _close(self, group: _Group, root: ReadableSpan) -> FoldOnRead | None:
        """The root ended (lock held): the group lingers for late spans; its pending report, if any."""
        group.published = True
        group.until = self._clock() + self._window
        del self._pending[group.root_id]
        self._lingering[group.root_id] = group
        if not group.reportable:
            self._counts["unreported_traces"] += 1
            return None
        self._counts["reports"] += 1
        return FoldOnRead(root, group.spans, self._is_metric, self._errors.record)

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
        by_span = self._by_span
        for member in group.members:
            if by_span.get(member) is group:
                del by_span[member]

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


def _log_report(pending: FoldOnRead) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    operation, total_ms, trace_id, slowest = pending.headline()
    logger.info(
        "[Performance] %s %.2f ms (trace %s)%s%s",
        operation,
        total_ms,
        trace_id,
        "; slowest: " if slowest else "",
        ", ".join(f"{name} {ms:.2f} ms" for name, ms in slowest),
    )
