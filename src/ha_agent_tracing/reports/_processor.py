"""The span processor that turns each finished request into a report.

Spans are grouped by trace under their *local root*: a span with no parent,
or whose parent came from another process (a remote parent, as in a server
span). Requests interleaved across threads and asyncio tasks never mix,
because each has its own trace; two requests of one trace that both run here
(two server spans under one remote parent) share their trace's records, and
each report takes the subtree under its own root.

The work per span is the least that keeps every span accounted for:

- ``on_start`` registers local roots only (one per request). For any other
  span it reads the parent and returns, except that a tracked metric under a
  root that is neither a server span nor a metric marks its request as worth
  a report.
- ``on_end`` reduces the finished span to a compact
  :class:`~ha_agent_tracing.reports.SpanRecord` (name, ids, times, the SDK's
  own attribute dict, status) and appends it to its trace's records, without
  the lock while the request runs (a span that races its root's end is
  settled under the lock); the SDK's span object is not kept.

A request becomes a report when its root is a server span or it holds a
tracked metric; a bare outgoing HTTP call made outside any request makes no
report (``unreported_traces``). When the root ends, a
:class:`~ha_agent_tracing.reports.ReportEntry` is put into the
:class:`~ha_agent_tracing.ReportStore`; it is folded the first time somebody
reads it. Spans that end (or even start) after their root, up to
``late_span_window_s`` later, still join it (FastAPI runs background tasks
after the server span has ended) and the next read folds them in. The store
is the only structure that holds finished requests: a request whose report
left the store takes no late spans.

Memory stays bounded: at most ``max_pending_traces`` unfinished requests are
held, each evicted after ``pending_timeout_s``; a request keeps at most
``max_spans_per_request`` spans (the report says ``truncated``); the store
keeps ``max_reports`` reports. Every span that does not reach a report is
counted in :meth:`ReportProcessor.stats` (``spans_not_reported`` and its parts).

Several requests of one trace here share its records. Once one of them is
lost while the trace lives on for the others (evicted while another request
of the trace is reported, or ending without a report while another is
running or reported), the trace remembers the lost requests' span ids with
the cause: the spans of their subtrees already held are counted at once
(found through an index of the records by parent, built then), and every
later span of the trace takes the lock and is counted if its parent is lost
(with its held descendants). A trace dropped whole leaves the same memory
behind, if its root had a remote parent, for a newer request of that trace
to inherit, so that the dropped request's stragglers are counted rather
than folded into the newer report.

Following the SDK's processor contract, ``on_start`` and ``on_end`` run on the
caller's thread: they hold the lock only to update the trace's bookkeeping, call
the store, its listeners and the logger outside it, and never raise into the
application.

The unlocked append. A span of a request that is still running (the common
case: every span but the roots) is appended to its trace's ``records``
without the lock. Everything else that touches a trace's records holds the
lock, and only two of those steps can race the append:

- the end of the trace's last running root, or the eviction of its request
  (``open`` falls to 0, the request is published or dropped);
- the per-request cap, checked before the append.

Each time ``open`` falls to 0 the lock holder also sets ``settled =
len(records)``: the records that close accounted for. The appender checks
``open`` and the cap, appends (``list.append`` is atomic), and reads ``open``
again:

- still non-zero: no close can have missed the record. Either no close
  happened since the check (the append is what the locked path would have
  done), or the trace closed and a new request of it reopened it before the
  append; then the record sits in a running request's records, again as the
  locked path would have put it, and the next close accounts for it.
- zero: the close may have missed the record, so ``_settle`` decides under the
  lock. A record at an index below ``settled`` was seen by the close (folded
  into the report, or counted with its request); one past it is a late span of
  a published report (counted, listeners told) or a span of a request dropped
  meanwhile (counted as ``unreported_spans`` or ``evicted_spans``, like the
  request's other spans). If the trace has been reopened by then, the record is
  in a running request's records, as above.

Two appenders passing the cap check at once may keep one record each over the
cap: the cap bounds memory to within the number of threads appending at that
instant.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning
from ha_agent_tracing.reports._entries import DROPPED, OPEN, PUBLISHED, ReportEntry, TraceRecords
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
        self._max_reports = self.store.max_reports
        self._is_metric = is_metric
        self._default_metric = is_metric is is_tracked_metric
        self._deployment_of: tuple[object, Mapping[str, Any]] | None = None
        self._metric_scope: object = None  # the tracker's instrumentation scope, once seen
        self._clock = clock
        self._lock = threading.Lock()
        # Unfinished requests by trace id, oldest first; finished ones live in the store.
        self._pending: OrderedDict[int, TraceRecords] = OrderedDict()
        # Requests dropped from traces that later requests may share (a remote parent): the
        # span ids of their roots and lost spans to the counter of their cause, so that a
        # span of theirs ending once a new request of the trace is here is counted, not
        # taken for the new request's. As many traces as the pending requests, newest last.
        self._dropped: OrderedDict[int, dict[int, str]] = OrderedDict()
        self._errors = InternalErrors("report processor")
        self._eviction_warning = RateLimitedWarning()
        self._counts: dict[str, int] = dict.fromkeys(
            ("reports", "late_spans", "evicted_traces", "unreported_traces", "external_spans", *_LOST), 0
        )
        self._shut_down = False

    # ------------------------------------------------------------ SDK hooks

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Open a request for a local root; otherwise note only a metric that makes a report."""
        try:
            parent = span_parent(span)
            if parent is None or parent[_IS_REMOTE]:
                self._start_root(span, joins=parent is not None)
                return
            group = self._pending.get(parent[_TRACE_ID])
            if group is None or group.has_metric:
                return
            # Decided under the lock, so a root ending at this moment on another
            # thread sees the metric (and makes the report) or the metric is late.
            with self._lock:
                if group.state == OPEN and self._is_metric(span):
                    group.has_metric = True
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the finished span's record in its request; publish the report when it is a root."""
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
            # A running request's span takes no lock (see the module's docstring).
            group = self._pending.get(record.trace_id)
            if group is not None and group.open and group.lost is None and len(group.records) < group.limit:
                group.records.append(record)
                if not group.open or group.lost is not None:
                    self._settle(group, record)
                return
            self._add_span(record)
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the application
            self._errors.record(exc)

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
        with self._lock:
            self._shut_down = True
            now = self._clock()
            for group in self._pending.values():
                self._evict(group, now)  # counted, as a request pushed out would be
            self._pending.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered for export here; reports are published as roots end."""
        return True

    # ------------------------------------------------------------ other sources of spans

    def add_records(self, records: Iterable[SpanRecord]) -> int:
        """Join spans recorded elsewhere (the browser) to the reports of their traces.

        Each record joins the request of its ``trace_id`` that this processor
        holds: one still running, or one whose report is still in the store,
        however long ago it ended (the late-span window is for this process's
        own spans). Metrics keep their ``source`` (``"browser"``) and fold in
        like any other, by start time, with a negative ``start_offset`` when
        they started before the server's root. Several requests of one trace
        all show the records of another source.

        Records of a trace with no request here make a report of their own if
        one of them is a local root (``parent_id`` is ``None``, or
        ``parent_is_remote``): the earliest such root, with the rest as its
        spans. Otherwise they are counted as ``orphan_spans``. The per-request
        cap applies (``truncated_spans``). Listeners hear of every report that
        changed.

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
        new: list[ReportEntry] = []
        changed: list[ReportEntry] = []
        with self._lock:
            now = self._clock()
            for trace_id, joining in by_trace.items():
                group = self._pending.get(trace_id) or self._finished(trace_id)
                created = group is None
                if group is None:
                    roots = [r for r in joining if r.is_local_root]
                    if not roots:
                        self._counts["orphan_spans"] += len(joining)
                        continue
                    root = min(roots, key=lambda r: r.start_ns)
                    group = TraceRecords(trace_id, root.span_id, now, True, self._cap)
                    group.open, group.state, group.reported = [], PUBLISHED, True
                    group.until = now + self._window
                    # Held among the pending ones until it is in the store, so that spans of
                    # its trace arriving meanwhile (another batch, the server's) find it.
                    self._pending[trace_id] = group
                    joining = [r for r in joining if r is not root]
                    accepted += 1
                    self._counts["reports"] += 1
                    new.append(ReportEntry(root=root, trace=group, on_error=self._errors.record))
                for record in joining:
                    accepted += self._append(group, record)
                    if record.is_metric and group.state == OPEN:
                        group.has_metric = True
                if group.state == PUBLISHED and not created:
                    changed += self.store.entries(trace_id)
            self._counts["external_spans"] += accepted
        for entry in new:
            try:
                self.store.put(entry)
            finally:
                self._forget_published(entry.trace)
        for entry in changed:
            self.store.changed(entry)
        return accepted

    # ------------------------------------------------------------ internals

    def _start_root(self, span: Span, joins: bool) -> None:
        """Open a request; ``joins``: its parent is remote, so its trace may already be here."""
        ctx = span.get_span_context()
        if self._shut_down:
            return
        has_metric = span.kind is SpanKind.SERVER or self._is_metric(span)
        trace_id, root_id = ctx[_TRACE_ID], ctx[_SPAN_ID]
        with self._lock:
            now = self._clock()
            # A root without a parent started a new trace: nothing of it can be here yet.
            group = self._pending.get(trace_id) if joins else None
            if group is None and joins:
                group = self._finished(trace_id)
            if group is None:
                group = TraceRecords(trace_id, root_id, now, has_metric, self._cap, joins)
                self._pending[trace_id] = group
                if joins and self._dropped:
                    lost = self._dropped.pop(trace_id, None)
                    if lost is not None:
                        group.lost, group.children = lost, {}
            else:
                # Another request of a trace already here: it shares the trace's records.
                group.open.append(root_id)
                group.root_ids.append(root_id)
                group.limit = self._limit(group)
                group.state = OPEN
                group.started = now
                group.has_metric = group.has_metric or has_metric
                self._pending[trace_id] = group
                self._pending.move_to_end(trace_id)
            evicted = self._sweep(now)
        for lost in evicted:
            self._eviction_warning.warn(
                "dropped an unfinished request (trace %032x): its root span did not end within %.0f s "
                "or more than %d requests were in flight",
                lost.trace_id,
                self._timeout,
                self._max_pending,
            )

    def _limit(self, group: TraceRecords) -> int:
        """The most records a trace keeps (lock held)."""
        # Requests of one trace share its records while any of its reports is stored: no
        # more of them than the store keeps reports count towards the trace's bound.
        return self._cap * min(len(group.root_ids), self._max_reports)

    def _append(self, group: TraceRecords, record: SpanRecord) -> int:
        """Add a record to its trace's records, within the cap (lock held); 1 if kept."""
        if len(group.records) >= group.limit:
            group.cut += 1
            self._counts["truncated_spans"] += 1
            if record.parent_id is not None and group.cut <= group.limit:
                links = group.cut_children
                if links is None:
                    links = group.cut_children = {}
                links.setdefault(record.parent_id, []).append(record.span_id)
            return 0
        group.records.append(record)
        if group.children is not None:
            group.children.setdefault(record.parent_id, []).append(record)
        return 1

    def _add_span(self, record: SpanRecord) -> None:
        trace_id = record.trace_id
        changed: list[ReportEntry] = []
        with self._lock:
            group = self._pending.get(trace_id)
            if group is not None and group.open:
                if not self._lost_with_its_request(group, record):
                    self._append(group, record)
                return
            if group is None:
                group = self._finished(trace_id)
            if group is None:
                # Its request is not (or no longer) here: a parent from another provider,
                # or the request was evicted, made no report, or left the store.
                self._counts["orphan_spans"] += 1
                return
            if self._lost_with_its_request(group, record):
                return
            if self._clock() > group.until:
                self._counts["expired_late_spans"] += 1
                return
            self._counts["late_spans"] += 1
            self._append(group, record)
            changed = self.store.entries(trace_id)
        for entry in changed:
            self.store.changed(entry)

    def _settle(self, group: TraceRecords, record: SpanRecord) -> None:
        """Account for a record appended without the lock while its trace's last root ended."""
        changed: list[ReportEntry] = []
        with self._lock:
            records = group.records
            index = next(i for i in range(len(records) - 1, -1, -1) if records[i] is record)
            seen = index < group.settled  # by the close: folded, or counted with its request
            if group.state == DROPPED:
                if not seen:
                    self._counts[group.lost_as] += 1
                return
            children = group.children
            if children is not None and not any(r is record for r in children.get(record.parent_id, ())):
                # Appended after the records were indexed, as the trace began to track losses.
                children.setdefault(record.parent_id, []).append(record)
            if self._lost_with_its_request(group, record, held=True):
                return
            if seen or group.state == OPEN:
                return  # the close saw it, or a new request of the trace has it: as if locked
            if group.state == PUBLISHED:
                self._counts["late_spans"] += 1
                changed = self.store.entries(group.trace_id)
            else:
                self._counts[group.lost_as] += 1
        for entry in changed:
            self.store.changed(entry)

    def _finished(self, trace_id: int) -> TraceRecords | None:
        """The records of a trace whose report is still in the store (lock held)."""
        for entry in self.store.entries(trace_id):
            trace = entry.trace
            if trace is not None and trace.state == PUBLISHED:
                return trace
        return None

    def _close(self, root: SpanRecord) -> None:
        trace_id = root.trace_id
        entry: ReportEntry | None = None
        with self._lock:
            group = self._pending.get(trace_id)
            if group is None or root.span_id not in group.open:
                # Its request was evicted before the root ended (or tracing was shut down).
                self._counts["evicted_spans"] += 1
                return
            group.open.remove(root.span_id)
            if self._reportable(group, root):
                self._counts["reports"] += 1
                group.reported = True
                entry = ReportEntry(root=root, trace=group, on_error=self._errors.record)
            else:
                self._counts["unreported_traces"] += 1
                self._counts["unreported_spans"] += 1
                if len(group.root_ids) > 1 and (group.open or group.reported):
                    # The trace lives on for its other requests: this one's spans are counted now.
                    self._lose(group, root.span_id, "unreported_spans")
            if not group.open:
                group.settled = len(group.records)
                if group.reported:
                    group.state = PUBLISHED
                    group.until = self._clock() + self._window
                else:
                    group.state = DROPPED
                    group.lost_as = "unreported_spans"
                    self._counts["unreported_spans"] += len(group.records) - group.lost_held
                    del self._pending[trace_id]
                    self._remember_dropped(group, ())
        if entry is None:
            return
        try:
            self.store.put(entry)
        finally:
            self._forget_published(group)
        _log_report(entry)

    def _forget_published(self, group: TraceRecords | None) -> None:
        """Take a request whose report is now in the store out of the pending ones, if still there.

        Until its report was put, late spans found the request among the pending
        ones; from here on they find it through its entry in the store.
        """
        if group is None:
            return
        with self._lock:
            if not group.open and self._pending.get(group.trace_id) is group:
                del self._pending[group.trace_id]

    @staticmethod
    def _reportable(group: TraceRecords, root: SpanRecord) -> bool:
        """Whether a request makes a report: a server or metric root, or a metric under it (lock held)."""
        if root.kind == "server" or root.is_metric:
            return True
        if len(group.root_ids) == 1:
            return group.has_metric
        # Several requests of one trace here (an outgoing call answered by this very
        # service, say): only a metric in this root's own subtree counts.
        return any(record.is_metric for record in group.spans_of(root.span_id, group.records))

    def _sweep(self, now: float) -> list[TraceRecords]:
        """Drop unfinished requests past their timeout or over the bound (lock held), O(1) amortised."""
        evicted: list[TraceRecords] = []
        pending = self._pending
        while pending:
            group = next(iter(pending.values()))
            if (now - group.started < self._timeout or not group.open) and len(pending) <= self._max_pending:
                break
            pending.popitem(last=False)
            if self._evict(group, now):
                evicted.append(group)
        return evicted

    def _evict(self, group: TraceRecords, now: float) -> bool:
        """Count a request dropped unfinished (lock held); whether its spans were lost with it."""
        if not group.open:
            return False  # finished, on its way into the store
        running, group.open = group.open, []
        self._counts["evicted_traces"] += len(running)
        group.settled = len(group.records)
        if group.reported:
            # An earlier request of the trace keeps its report; the running ones are lost.
            for root_id in running:
                self._lose(group, root_id, "evicted_spans")
            group.state = PUBLISHED
            group.until = now + self._window
            return False
        group.state = DROPPED
        group.lost_as = "evicted_spans"
        self._counts["evicted_spans"] += len(group.records) - group.lost_held
        self._remember_dropped(group, running)
        return True

    def _remember_dropped(self, group: TraceRecords, evicted: Iterable[int]) -> None:
        """Keep the lost span ids of a dropped trace that later requests may share (lock held)."""
        if not group.remote:
            return
        lost = group.lost
        if lost is None or len(lost) > self._cap:
            lost = {}  # bounded: stragglers of requests dropped long before become orphans
        for root_id in group.root_ids:
            lost.setdefault(root_id, "unreported_spans")
        for root_id in evicted:
            lost[root_id] = "evicted_spans"
        dropped = self._dropped
        dropped[group.trace_id] = lost
        dropped.move_to_end(group.trace_id)
        while len(dropped) > self._max_pending:
            dropped.popitem(last=False)

    def _lose(self, group: TraceRecords, span_id: int, cause: str, *, held: bool = False) -> None:
        """Count a span of a lost request (and its descendants already held) under ``cause`` (lock held).

        One of several requests of a trace was evicted or makes no report while the
        trace lives on for the others: the spans of its subtree reach no report. The
        lost root (or a lost span that just arrived) is counted by the caller, unless
        ``held`` says it sits in the records; its descendants held in the records are
        counted here, each once, and spans arriving later under it are counted as
        they come (:meth:`_lost_with_its_request`).
        """
        lost = group.lost
        if lost is None:
            lost = group.lost = {}
            children: dict[int | None, list[SpanRecord]] = {}
            for record in group.records:
                children.setdefault(record.parent_id, []).append(record)
            group.children = children
        else:
            children = group.children if group.children is not None else {}
        lost[span_id] = cause
        found = 1 if held else 0
        cut = group.cut_children or {}
        stack = [span_id]
        while stack:
            parent_id = stack.pop()
            for child in children.get(parent_id, ()):
                # Another source's spans (the browser's) join every report of the trace.
                if child.source == "server" and child.span_id not in lost:
                    lost[child.span_id] = cause
                    found += 1
                    stack.append(child.span_id)
            for cut_id in cut.get(parent_id, ()):
                if cut_id not in lost:  # counted as truncated already; its children are lost
                    lost[cut_id] = cause
                    stack.append(cut_id)
        group.lost_held += found
        self._counts[cause] += found

    def _lost_with_its_request(self, group: TraceRecords, record: SpanRecord, *, held: bool = False) -> bool:
        """Whether an arriving span belongs to one of its trace's lost requests; counted if so (lock held)."""
        lost = group.lost
        if lost is None or record.parent_id is None or record.source != "server":
            return False
        cause = lost.get(record.parent_id)
        if cause is None:
            return False
        if record.span_id in lost:
            return True  # already counted with its request (held, and found by a walk)
        if not held:
            self._counts[cause] += 1
        self._lose(group, record.span_id, cause, held=held)
        return True

    # ------------------------------------------------------------ introspection

    def stats(self) -> dict[str, Any]:
        """Counters: reports, late spans, every span that reached no report (and why), internal errors.

        ``spans_not_reported`` is the sum of ``orphan_spans`` (no request of
        theirs was held: a parent from another provider, or the request had
        already been evicted, made no report, or left the store),
        ``evicted_spans`` (in requests dropped unfinished, including those of a
        trace whose other request is reported), ``unreported_spans`` (in
        requests that make no report, likewise), ``truncated_spans`` (over the
        per-request cap) and ``expired_late_spans`` (ended after the late-span
        window).
        """
        entries = self.store.stored_entries()
        now = self._clock()
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
            counts["pending_traces"] = len(self._pending)
            held = {id(g): g for g in self._pending.values()}
        lingering = {id(e.trace): e.trace for e in entries if e.trace is not None}
        counts["lingering_traces"] = sum(
            1 for g in lingering.values() if g.state == PUBLISHED and g.until > now
        )
        held.update(lingering)
        counts["tracked_spans"] = sum(len(g.records) - g.lost_held for g in held.values())
        counts["spans_not_reported"] = sum(counts[name] for name in _LOST)
        counts["internal_errors"] = self._errors.count
        counts["listener_errors"] = self.store.listener_errors
        counts["stored_reports"] = len(entries)
        return counts


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
