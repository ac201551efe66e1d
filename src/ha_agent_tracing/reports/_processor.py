"""The span processor that turns each finished request into a report.

A *request* is the subtree of spans under a *local root*: a span with no
parent, or whose parent came from another process (a remote parent, as in a
server span). Each request keeps its own records and makes its own report.
Requests interleaved across threads and asyncio tasks never mix, because
each has its own trace, or, when several requests share one trace here (a
client sending one fixed ``traceparent``, two local roots under one remote
parent), because each knows its spans: a request whose root starts while
another request of its trace is held here (running, reported and stored, or
dropped a moment ago) notes the id of every span started under it, so that
each span of the trace is told to be its own or another's.

The work per span is the least that keeps every span accounted for:

- ``on_start`` registers local roots (one per request). For any other span it
  looks up its trace's running request and returns, except that a tracked
  metric under a root that is neither a server span nor a metric marks its
  request as worth a report, and a span of a trace shared here is noted in
  its request's ``members``.
- ``on_end`` reduces the finished span to a compact
  :class:`~ha_agent_tracing.reports.SpanRecord` (name, ids, times, the SDK's
  own attribute dict, status) and appends it to its request's records,
  without the lock while the request runs and is its trace's only one here;
  the SDK's span object is not kept.

A request becomes a report when its root is a server span or it holds a
tracked metric; a bare outgoing HTTP call made outside any request makes no
report (``unreported_traces``). When the root ends, a
:class:`~ha_agent_tracing.reports.ReportEntry` is put into the
:class:`~ha_agent_tracing.ReportStore`, under the processor's lock, so that a
finished request is always found in one place or the other; it is folded the
first time somebody reads it. Spans that end (or even start) after their
root, up to ``late_span_window_s`` later, still join it (FastAPI runs
background tasks after the server span has ended), listeners hear of it, and
the next read folds them in. A request whose report left the store takes no
late spans: they are counted as ``orphan_spans``.

Memory stays bounded: at most ``max_pending_traces`` unfinished requests are
held, each evicted after ``pending_timeout_s``; a request keeps at most
``max_spans_per_request`` spans (the report says ``truncated``), and notes at
most four times as many span ids (past that, a span of its trace that no
request noted is taken for it while it runs); the store keeps
``max_reports`` reports. Every span that does not reach a report is counted
in :meth:`ReportProcessor.stats` (``spans_not_reported`` and its parts). The finished requests of a trace that
others may share (a remote parent) are remembered without their records, as
stubs holding their members, state and window: a dropped one (evicted, or
making no report), so that its stragglers are counted under its cause; a
published one while its window lasts, so that spans starting under it are
noted and its late spans, once its report left the store, are counted rather
than taken for another request's. Each kind for as many traces as
``max_pending_traces`` plus ``max_reports``, at most 64 requests of each.

Following the SDK's processor contract, ``on_start`` and ``on_end`` run on the
caller's thread: they hold the lock only to update the bookkeeping, call the
store's listeners and the logger outside it, and never raise into the
application. A span start or end met during a garbage collection on this
thread (a collected generator ending its open span, possibly while this very
thread holds the lock) is set aside and handled by the next one (``_drain``).

The unlocked append. A span of a running request that is its trace's only
one here (the common case: every span but the roots) is appended to the
request's ``records`` without the lock. Everything else that touches a
request's records holds the lock, and only two of those steps can race the
append:

- the end of the request's root, or its eviction (``open`` turns false, the
  request is published or dropped; a request is never reopened);
- the per-request cap, checked before the append.

When ``open`` turns false the lock holder also sets ``settled =
len(records)``: the records that close accounted for. The appender checks
``open`` and the cap, appends (``list.append`` is atomic), and reads ``open``
again:

- still true: no close happened since the check, and the append is what the
  locked path would have done.
- false: the close may have missed the record, so ``_settle`` decides under
  the lock. A record at an index below ``settled`` was seen by the close
  (folded into the report, or counted with its request); one past it is a
  late span of a published report (counted, listeners told) or a span of a
  request dropped meanwhile (counted as ``unreported_spans`` or
  ``evicted_spans``, like the request's other spans).

Which request is a trace's "only one" is read from an immutable tuple that
the lock holder replaces, so the appender never sees it half changed. Two
appenders passing the cap check at once may keep one record each over the
cap: the cap bounds memory to within the number of threads appending at that
instant.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning
from ha_agent_tracing.reports._entries import DROPPED, OPEN, PUBLISHED, ReportEntry, RequestRecords
from ha_agent_tracing.reports._fold import deployment_attributes
from ha_agent_tracing.reports._records import SpanRecord
from ha_agent_tracing.reports._store import ReportStore
from ha_agent_tracing.telemetry._sdk_compat import attribute_dict, span_fields, span_parent

__all__ = ["TRACER_NAME", "ReportProcessor", "is_tracked_metric"]

logger = logging.getLogger("ha_agent_tracing")

TRACER_NAME = "ha_agent_tracing"
"""Instrumentation scope of the spans the tracker creates."""

# SpanContext is a tuple by its public type, tuple[int, int, bool, TraceFlags, ...];
# indexing it skips a property call per field on the hot path (tests pin the layout).
_TRACE_ID, _SPAN_ID, _IS_REMOTE, _FLAGS = 0, 1, 2, 3

_KINDS = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
_ERROR = StatusCode.ERROR
_INTERNAL = SpanKind.INTERNAL

_LOST = ("orphan_spans", "evicted_spans", "unreported_spans", "truncated_spans", "expired_late_spans")

_collecting: int | None = None
"""The thread running a garbage collection now, if any (set by :func:`_on_collection`)."""


def _on_collection(phase: str, info: Mapping[str, Any]) -> None:
    global _collecting  # one flag for the process, as the collector is one
    _collecting = threading.get_ident() if phase == "start" else None


gc.callbacks.append(_on_collection)

_REMEMBERED_PER_TRACE = 64
"""Finished requests of a shared trace remembered per trace (to route their stragglers)."""


def is_tracked_metric(span: ReadableSpan) -> bool:
    """Whether a span is a metric of the report: one the tracker created."""
    scope = span.instrumentation_scope
    return scope is not None and scope.name == TRACER_NAME


class ReportProcessor(SpanProcessor):
    """Folds the spans of each local root into a report in ``store``.

    Args:
        store: where reports go; a new :class:`ReportStore` if omitted.
        max_pending_traces: most unfinished requests tracked at once.
        pending_timeout_s: a request whose root has not ended by then is dropped.
        late_span_window_s: how long after its root ends a request still takes spans.
        max_spans_per_request: most spans kept per request (per local root); more are
            counted and left out, and the report says ``truncated``.
        is_metric: which spans become report metrics; by default the tracker's. It is
            asked when a span starts (whether a request whose root is neither a server
            span nor a metric makes a report) and when it ends (whether the span is a
            metric of it): it should not depend on attributes set in between.
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(
        self,
        store: ReportStore | None = None,
        *,
        max_pending_traces: int = 10_000,
        pending_timeout_s: float = 300.0,
        late_span_window_s: float = 10.0,
        max_spans_per_request: int = 1_000,
        is_metric: Callable[[ReadableSpan], bool] = is_tracked_metric,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending_traces <= 0:
            raise ValueError(f"max_pending_traces must be greater than 0, not {max_pending_traces!r}")
        if pending_timeout_s <= 0 or late_span_window_s <= 0:
            raise ValueError("pending_timeout_s and late_span_window_s must be greater than 0")
        if (
            not isinstance(max_spans_per_request, int)
            or isinstance(max_spans_per_request, bool)
            or max_spans_per_request <= 0
        ):
            raise ValueError(
                f"max_spans_per_request must be a whole number greater than 0, not {max_spans_per_request!r}"
            )
        self.store = store if store is not None else ReportStore()
        self._max_pending = max_pending_traces
        self._timeout = pending_timeout_s
        self._window = late_span_window_s
        self._cap = max_spans_per_request
        self._is_metric = is_metric
        self._default_metric = is_metric is is_tracked_metric
        self._deployment_of: tuple[object, Mapping[str, Any]] | None = None
        self._metric_scope: object = None  # the tracker's instrumentation scope, once seen
        self._clock = clock
        self._lock = threading.Lock()
        # Unfinished requests by root span id, oldest first; finished ones live in the store.
        self._pending: OrderedDict[int, RequestRecords] = OrderedDict()
        # The same requests by trace id, each trace's as a tuple (replaced, never changed).
        self._running: dict[int, tuple[RequestRecords, ...]] = {}
        # Published requests that note their members, by trace id, while their late-span
        # window lasts: a span starting under one of them after its root ended is noted there.
        self._late: OrderedDict[int, list[RequestRecords]] = OrderedDict()
        # Dropped requests of traces that later requests may share (a remote parent), by
        # trace id, newest last: their stragglers are counted under their cause.
        self._dropped: OrderedDict[int, list[RequestRecords]] = OrderedDict()
        self._errors = InternalErrors("report processor")
        self._eviction_warning = RateLimitedWarning()
        self._counts: dict[str, int] = dict.fromkeys(
            ("reports", "late_spans", "evicted_traces", "unreported_traces", "external_spans", *_LOST), 0
        )
        self._shut_down = False
        # Span starts (True) and ends (False) met during a garbage collection, for later.
        self._deferred: deque[tuple[bool, Any]] = deque()

    # ------------------------------------------------------------ SDK hooks

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Open a request for a local root; otherwise note a shared trace's member, or a metric."""
        if _collecting is not None and _collecting == threading.get_ident():
            self._deferred.append((True, span))  # see _drain
            return
        if self._deferred:
            self._drain()
        try:
            parent = span_parent(span)
            if parent is None or parent[_IS_REMOTE]:
                self._start_root(span, joins=parent is not None)
                return
            running = self._running.get(parent[_TRACE_ID])
            if running is not None and len(running) == 1:
                request = running[0]
                members = request.members
                if members is None:
                    if request.shared:
                        self._start_member(span, parent)
                    elif not request.has_metric:
                        self._note_metric(request, span)
                    return
                if parent[_SPAN_ID] in members:
                    self._note(request, members, span)
                    if not request.has_metric:
                        self._note_metric(request, span)
                    return
            elif running is None:
                trace_id = parent[_TRACE_ID]
                if trace_id not in self._late and trace_id not in self._dropped:
                    return  # no request of its trace is running, and none of it notes late members
            self._start_member(span, parent)
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the finished span's record in its request; publish the report when it is a root."""
        if _collecting is not None and _collecting == threading.get_ident():
            self._deferred.append((False, span))  # see _drain
            return
        if self._deferred:
            self._drain()
        try:
            name, ctx, parent, start, end, kind, status, attributes, scope = span_fields(span)
            if ctx is None:
                return
            if not self._default_metric:
                is_metric = bool(self._is_metric(span))
            elif scope is self._metric_scope:
                is_metric = True  # the tracker's scope, seen before: no property call
            else:
                is_metric = scope is not None and scope.name == TRACER_NAME
                if is_metric:
                    self._metric_scope = scope
            failed = status.status_code is _ERROR
            record = SpanRecord(
                name,
                ctx[_TRACE_ID],
                ctx[_SPAN_ID],
                parent[_SPAN_ID] if parent is not None else None,
                start,
                end,
                attribute_dict(attributes),
                is_metric,
                failed,
                status.description if failed else None,
                "internal" if kind is _INTERNAL else _KINDS.get(kind, "internal"),
                parent is not None and parent[_IS_REMOTE],
            )
            if parent is None or parent[_IS_REMOTE]:
                record.sampled = ctx[_FLAGS].sampled
                record.extra = self._deployment(span)
                self._close(record)
                return
            if self._shut_down:
                self._add_after_shutdown()
                return
            # The running request that is its trace's only one takes it without the lock
            # (see the module's docstring).
            running = self._running.get(record.trace_id)
            if running is not None and len(running) == 1:
                request = running[0]
                members = request.members
                if (
                    request.open
                    and (record.span_id in members if members is not None else not request.shared)
                    and len(request.records) < request.limit
                ):
                    request.records.append(record)
                    if not request.open:
                        self._settle(request, record)
                    return
            self._add_span(record)
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

    def _drain(self) -> None:
        """Handle the span starts and ends met during a garbage collection, in order.

        A collection can start on any allocation, also while this thread holds
        the processor's lock (or the store's), and collecting an abandoned
        generator whose ``with tracer.start_as_current_span(...)`` is still open
        ends that span on this very thread: handling it there would wait for a
        lock the thread already holds. Such spans are kept aside and handled by
        the next span start or end, on whatever thread, or by ``stats()``,
        ``force_flush()`` and ``shutdown()``.
        """
        if _collecting is not None and _collecting == threading.get_ident():
            return  # still collecting on this thread: later
        deferred = self._deferred
        while True:
            try:
                starting, span = deferred.popleft()
            except IndexError:
                return
            if starting:
                self.on_start(span)
            else:
                self.on_end(span)

    def _deployment(self, span: ReadableSpan) -> Mapping[str, Any]:
        """The report-worthy resource attributes (version, variant); one resource, read once."""
        resource = span.resource
        known = self._deployment_of
        if known is not None and known[0] is resource:
            return known[1]
        found = deployment_attributes(resource.attributes)
        self._deployment_of = (resource, found)
        return found

    def shutdown(self) -> None:
        """Forget unfinished requests; published reports stay in the store."""
        self._drain()
        with self._lock:
            self._shut_down = True
            now = self._clock()
            for request in list(self._pending.values()):
                self._evict(request, now)  # counted, as a request pushed out would be
            self._pending.clear()
            self._running.clear()

    def _add_after_shutdown(self) -> None:
        """A span ending once tracing was shut down: no request is tracked any more."""
        with self._lock:
            self._counts["orphan_spans"] += 1

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Handle the spans met during a garbage collection; reports are published as roots end."""
        self._drain()
        return True

    # ------------------------------------------------------------ other sources of spans

    def add_records(self, records: Iterable[SpanRecord]) -> int:
        """Join spans recorded elsewhere (the browser) to the reports of their traces.

        Each record joins every request of its ``trace_id`` that this processor
        holds: one still running, or one whose report is still in the store,
        however long ago it ended (the late-span window is for this process's
        own spans). Metrics keep their ``source`` (``"browser"``) and fold in
        like any other, by start time, with a negative ``start_offset`` when
        they started before the server's root.

        Records of a trace with no request here make a report of their own if
        one of them is a local root (``parent_id`` is ``None``, or
        ``parent_is_remote``): the earliest such root, with the rest as its
        spans. Otherwise they are counted as ``orphan_spans``. The per-request
        cap applies (``truncated_spans``: a record that no request kept).
        Listeners hear of every report that changed.

        Returns how many records joined a report.

        Raises:
            TypeError: an item is not a ``SpanRecord``.
        """
        by_trace: dict[int, list[SpanRecord]] = {}
        for record in records:
            if not isinstance(record, SpanRecord):
                raise TypeError(f"add_records takes SpanRecord objects, not {type(record).__name__}")
            by_trace.setdefault(record.trace_id, []).append(record)
        accepted = 0
        changed: list[ReportEntry] = []
        pushed_out: list[ReportEntry] = []
        with self._lock:
            now = self._clock()
            for trace_id, joining in by_trace.items():
                requests = [*self._published(trace_id), *self._running.get(trace_id, ())]
                created: RequestRecords | None = None
                if not requests:
                    roots = [r for r in joining if r.is_local_root]
                    if not roots:
                        self._counts["orphan_spans"] += len(joining)
                        continue
                    root = min(roots, key=lambda r: r.start_ns)
                    created = RequestRecords(trace_id, root.span_id, now, True, self._cap)
                    created.open, created.state = False, PUBLISHED
                    created.until = now + self._window
                    joining = [r for r in joining if r is not root]
                    accepted += 1
                    self._counts["reports"] += 1
                    entry = ReportEntry(root=root, trace=created, on_error=self._errors.record)
                    stored, out = self.store.insert(entry)
                    pushed_out += out
                    if stored:
                        changed.append(entry)
                    requests = [created]
                for record in joining:
                    kept = False
                    for request in requests:
                        if len(request.records) < request.limit:
                            request.records.append(record)
                            kept = True
                            if record.is_metric and request.open:
                                request.has_metric = True
                        else:
                            request.cut += 1
                    if kept:
                        accepted += 1
                    else:
                        self._counts["truncated_spans"] += 1
                for request in requests:
                    if request.state == PUBLISHED and request is not created:
                        changed += self._entries_of(request)
            self._counts["external_spans"] += accepted
        del pushed_out  # freed outside the lock
        for entry in changed:
            self.store.changed(entry)
        return accepted

    # ------------------------------------------------------------ internals

    def _note_metric(self, request: RequestRecords, span: Span) -> None:
        """Mark a running request worth a report when a tracked metric starts under it."""
        # Decided under the lock, so a root ending at this moment on another thread
        # sees the metric (and makes the report) or the metric is late.
        with self._lock:
            if request.open and self._is_metric(span):
                request.has_metric = True

    def _start_member(self, span: Span, parent: Any) -> None:
        """A span starting in a trace shared here: note it in the request its parent belongs to."""
        with self._lock:
            request = self._owner(parent[_TRACE_ID], None, parent[_SPAN_ID])
            if request is None:
                return
            members = request.members
            if members is not None:
                self._note(request, members, span)
            # As _note_metric does, under the lock already held.
            if request.open and not request.has_metric and self._is_metric(span):
                request.has_metric = True

    @staticmethod
    def _note(request: RequestRecords, members: set[int], span: Span) -> None:
        """Note a span as a member of its request, within the bound (4 times the cap)."""
        if len(members) < 4 * request.limit:
            members.add(span.get_span_context().span_id)
        else:
            request.overflow = True

    def _start_root(self, span: Span, joins: bool) -> None:
        """Open a request; ``joins``: its parent is remote, so its trace may be here already."""
        ctx = span.get_span_context()
        if self._shut_down:
            return
        has_metric = span.kind is SpanKind.SERVER or self._is_metric(span)
        trace_id, root_id = ctx[_TRACE_ID], ctx[_SPAN_ID]
        with self._lock:
            now = self._clock()
            request = RequestRecords(trace_id, root_id, now, has_metric, self._cap, joins)
            running = self._running.get(trace_id, ()) if joins else ()
            # A root without a parent started a new trace: nothing of it can be here yet.
            if joins and (
                running
                or trace_id in self._dropped
                or trace_id in self._late
                or self.store.holds_trace(trace_id)
            ):
                request.members = {root_id}  # its trace is shared here: it notes its spans
                for other in running:
                    other.shared = True
            self._pending[root_id] = request
            self._running[trace_id] = (*running, request)
            evicted = self._sweep(now)
        for lost in evicted:
            self._eviction_warning.warn(
                "dropped an unfinished request (trace %032x): its root span did not end within %.0f s "
                "or more than %d requests were in flight",
                lost.trace_id,
                self._timeout,
                self._max_pending,
            )

    def _append(self, request: RequestRecords, record: SpanRecord) -> None:
        """Add a record to its request's records, within the cap (lock held)."""
        if len(request.records) >= request.limit:
            request.cut += 1
            self._counts["truncated_spans"] += 1
            return
        request.records.append(record)

    def _add_span(self, record: SpanRecord) -> None:
        """The locked path of a finished span: a trace shared here, a late span, or a capped request."""
        changed: list[ReportEntry] = []
        with self._lock:
            request = self._owner(record.trace_id, record.span_id, record.parent_id)
            if request is None:
                # Its request is not (or no longer) here: a parent from another provider,
                # or the request was evicted, made no report, or left the store long ago.
                self._counts["orphan_spans"] += 1
                return
            if request.state == OPEN:
                self._append(request, record)
                return
            if request.state == DROPPED:
                self._counts[request.lost_as] += 1
                return
            changed = self._entries_of(request)
            if not changed:
                self._counts["orphan_spans"] += 1  # its report left the store
                return
            if self._clock() > request.until:
                self._counts["expired_late_spans"] += 1
                return
            self._counts["late_spans"] += 1
            self._append(request, record)
        for entry in changed:
            self.store.changed(entry)

    def _owner(self, trace_id: int, span_id: int | None, parent_id: int | None) -> RequestRecords | None:
        """The request a span of the trace belongs to, found by its own or its parent's id (lock held).

        The trace's running requests, then its published ones whose reports are
        stored, then its dropped ones: the first that noted the span (or its
        parent) as a member; else a running one that stopped noting (it started
        more spans than it may note); else the one that notes no members (a
        trace's requests all note theirs but the first, which started alone);
        else ``None``.
        """
        unnoted: RequestRecords | None = None
        full: RequestRecords | None = None
        for request in self._requests_of(trace_id):
            members = request.members
            if members is None:
                if unnoted is None:
                    unnoted = request
            elif span_id in members or parent_id in members:
                return request
            elif full is None and request.open and request.overflow:
                full = request
        return full or unnoted

    def _requests_of(self, trace_id: int) -> Iterable[RequestRecords]:
        """The trace's requests held here, newest first within each kind (lock held).

        Running, then published (stored), then remembered: published requests of
        shared traces within their window (their reports may have left the store
        meanwhile) and dropped ones.
        """
        yield from self._running.get(trace_id, ())
        yield from reversed(self._published(trace_id))
        yield from reversed(self._late.get(trace_id, ()))
        yield from reversed(self._dropped.get(trace_id, ()))

    def _published(self, trace_id: int) -> list[RequestRecords]:
        """The trace's finished requests whose reports are stored, oldest first (lock held)."""
        return [
            entry.trace
            for entry in self.store.entries(trace_id)
            if entry.trace is not None and entry.trace.state == PUBLISHED
        ]

    def _entries_of(self, request: RequestRecords) -> list[ReportEntry]:
        """The stored entries folded from ``request``: what a span joining it changes (lock held)."""
        return [entry for entry in self.store.entries(request.trace_id) if entry.trace is request]

    def _settle(self, request: RequestRecords, record: SpanRecord) -> None:
        """Account for a record appended without the lock while its request closed."""
        changed: list[ReportEntry] = []
        with self._lock:
            records = request.records
            index = next(i for i in range(len(records) - 1, -1, -1) if records[i] is record)
            if index < request.settled:
                return  # the close saw it: folded, or counted with its request
            if request.state == DROPPED:
                self._counts[request.lost_as] += 1
                return
            changed = self._entries_of(request)
            if changed:
                self._counts["late_spans"] += 1
            else:
                self._counts["orphan_spans"] += 1  # its report left the store meanwhile
        for entry in changed:
            self.store.changed(entry)

    def _close(self, root: SpanRecord) -> None:
        entry: ReportEntry | None = None
        pushed_out: list[ReportEntry] = []
        with self._lock:
            request = self._pending.pop(root.span_id, None)
            if request is None:
                # Its request was evicted before the root ended (or tracing was shut down).
                self._counts["evicted_spans"] += 1
                return
            request.open = False
            request.settled = settled = len(request.records)
            if root.kind == "server" or root.is_metric or request.has_metric:
                self._counts["reports"] += 1
                request.state = PUBLISHED
                request.until = self._clock() + self._window
                entry = ReportEntry(root=root, trace=request, on_error=self._errors.record)
                # Into the store under the lock: from here on its late spans find it there.
                stored, pushed_out = self.store.insert(entry)
                if not stored:
                    entry = None
                    self._counts["orphan_spans"] += 1 + _own_spans(request.records[:settled])
                elif request.remote:
                    # Another request of its trace may follow: spans starting under it from now
                    # on are noted there, and once its report left the store its late spans are
                    # known to be its own (orphans), not the next request's.
                    self._remember(self._late, request, self._max_pending + self.store.max_reports)
            else:
                self._counts["unreported_traces"] += 1
                self._counts["unreported_spans"] += 1 + _own_spans(request.records[:settled])
                self._drop(request, "unreported_spans")
            # Last: a span starting now finds the request running, or else remembered.
            self._leave_running(request)
        del pushed_out  # the requests it pushed out are freed outside the lock
        if entry is None:
            return
        self.store.changed(entry)
        _log_report(entry)

    def _leave_running(self, request: RequestRecords) -> None:
        """Take a request out of its trace's running ones (lock held)."""
        running = self._running.get(request.trace_id, ())
        if len(running) == 1 and running[0] is request:
            del self._running[request.trace_id]
            return
        running = tuple(r for r in running if r is not request)
        if running:
            self._running[request.trace_id] = running
        else:
            self._running.pop(request.trace_id, None)

    def _drop(self, request: RequestRecords, cause: str) -> None:
        """A request that reaches no report: its later spans count under ``cause`` (lock held)."""
        request.state = DROPPED
        request.lost_as = cause
        if request.remote:  # (a new trace's stragglers find nothing: orphans)
            self._remember(self._dropped, request, self._max_pending + self.store.max_reports)

    def _remember(
        self, memory: OrderedDict[int, list[RequestRecords]], request: RequestRecords, traces: int
    ) -> None:
        """Keep a finished request of a trace that others may share, without its records (lock held).

        What routing its later spans needs: its state, cause, late-span window and
        members (the same set, so spans noted later are noted in both). Changed in
        place, never taken out and put back, so that a lookup without the lock
        finds it throughout. At most ``_REMEMBERED_PER_TRACE`` requests of a trace,
        ``traces`` traces, newest last; the published ones only while their window lasts.
        """
        stub = RequestRecords(request.trace_id, request.root_id, request.started, False, request.limit, True)
        stub.open, stub.state, stub.lost_as = False, request.state, request.lost_as
        stub.members, stub.until = request.members, request.until
        same = memory.get(request.trace_id)
        if same is None:
            memory[request.trace_id] = [stub]
        else:
            same.append(stub)
            if len(same) > _REMEMBERED_PER_TRACE:
                del same[0]
            memory.move_to_end(request.trace_id)
        now = self._clock()
        while memory and (
            len(memory) > traces or (memory is self._late and next(iter(memory.values()))[-1].until < now)
        ):
            memory.popitem(last=False)

    def _sweep(self, now: float) -> list[RequestRecords]:
        """Drop unfinished requests past their timeout or over the bound (lock held), O(1) amortised."""
        evicted: list[RequestRecords] = []
        pending = self._pending
        while pending:
            request = next(iter(pending.values()))
            if now - request.started < self._timeout and len(pending) <= self._max_pending:
                break
            pending.popitem(last=False)
            self._evict(request, now)
            evicted.append(request)
        return evicted

    def _evict(self, request: RequestRecords, now: float) -> None:
        """Count a request dropped unfinished (lock held)."""
        request.open = False
        request.settled = settled = len(request.records)
        self._counts["evicted_traces"] += 1
        self._counts["evicted_spans"] += _own_spans(request.records[:settled])
        self._drop(request, "evicted_spans")
        self._leave_running(request)

    # ------------------------------------------------------------ introspection

    def stats(self) -> dict[str, Any]:
        """Counters: reports, late spans, every span that reached no report (and why), internal errors.

        ``spans_not_reported`` is the sum of ``orphan_spans`` (no request of
        theirs was held: a parent from another provider, or the request had
        already been evicted, made no report, or left the store),
        ``evicted_spans`` (in requests dropped unfinished), ``unreported_spans``
        (in requests that make no report), ``truncated_spans`` (over the
        per-request cap) and ``expired_late_spans`` (ended after the late-span
        window).
        """
        self._drain()
        entries = self.store.stored_entries()
        now = self._clock()
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
            counts["pending_traces"] = len(self._pending)
            held = {id(r): r for r in self._pending.values()}
        published = {id(e.trace): e.trace for e in entries if e.trace is not None}
        counts["lingering_traces"] = sum(
            1 for r in published.values() if r.state == PUBLISHED and r.until > now
        )
        held.update(published)
        counts["tracked_spans"] = sum(len(r.records) for r in held.values())
        counts["spans_not_reported"] = sum(counts[name] for name in _LOST)
        counts["internal_errors"] = self._errors.count
        counts["listener_errors"] = self.store.listener_errors
        counts["stored_reports"] = len(entries)
        return counts


def _own_spans(records: Iterable[SpanRecord]) -> int:
    """How many records are a request's own: those of another source (the browser's) join every report."""
    return sum(1 for record in records if record.source == "server")


def _log_report(entry: ReportEntry) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    operation, total_ms, trace_id, slowest = entry.headline()
    logger.info(
        "[Performance] %s %.2f ms (trace %s)%s%s",
        operation,
        total_ms,
        trace_id,
        "; slowest: " if slowest else "",
        ", ".join(f"{name} {ms:.2f} ms" for name, ms in slowest),
    )
