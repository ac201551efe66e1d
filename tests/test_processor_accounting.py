"""The processor under races and bounds: no internal error, no lost report, every lost span counted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ha_agent_tracing import (
    PerformanceTracker,
    ReportEntry,
    ReportProcessor,
    ReportStore,
    is_tracked_metric,
)

from .conftest import Tracing, make_tracing


def _small_store(max_reports: int) -> Tracing:
    """A setup whose processor publishes into a store of ``max_reports`` reports."""
    setup = make_tracing()
    store = ReportStore(max_reports=max_reports)
    setup.provider = TracerProvider(shutdown_on_exit=False)
    setup.processor = ReportProcessor(store)
    setup.provider.add_span_processor(setup.processor)
    setup.store = store
    setup.tracker = PerformanceTracker(setup.provider, store)
    return setup


def _wired(max_reports: int, max_pending_traces: int) -> tuple[ReportProcessor, trace.Tracer]:
    """A processor over a store of ``max_reports``, and the tracker's tracer on its provider."""
    store = ReportStore(max_reports=max_reports)
    processor = ReportProcessor(store, max_pending_traces=max_pending_traces)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return processor, PerformanceTracker(provider, store).tracer


def _on_four_threads(request: Callable[[], None], per_thread: int) -> None:
    """``request`` ``per_thread`` times on each of four threads at once."""

    def requests() -> None:
        for _ in range(per_thread):
            request()

    threads = [threading.Thread(target=requests) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_roots_ending_while_their_requests_are_evicted_never_fail(fast_switching: None) -> None:
    """Roots end on four threads while others' starts evict them: each root is reported or evicted."""
    processor, tracer = _wired(max_reports=10, max_pending_traces=1)
    per_thread = 3_000

    def request() -> None:
        tracer.start_span("r").end()

    _on_four_threads(request, per_thread)
    stats = processor.stats()
    assert stats["internal_errors"] == 0
    assert stats["evicted_traces"] > 0, "the race under test did not happen"
    assert stats["reports"] + stats["evicted_traces"] == 4 * per_thread
    assert stats["pending_traces"] == 0


def test_a_metric_starting_as_its_root_ends_on_another_thread_keeps_the_report() -> None:
    """Whether a request makes a report is decided under the lock its root's end also takes."""
    provider = TracerProvider(shutdown_on_exit=False)
    root_ended: list[threading.Thread] = []
    root_holder: list[trace.Span] = []

    def is_metric(span: ReadableSpan) -> bool:
        if span.name == "m" and not root_ended:
            # The root ends on another thread while this metric is being registered.
            ender = threading.Thread(target=root_holder[0].end)
            root_ended.append(ender)
            ender.start()
            ender.join(timeout=0.3)
        return span.name == "m" or is_tracked_metric(span)

    processor = ReportProcessor(is_metric=is_metric)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("another.library")
    root = tracer.start_span("job")
    root_holder.append(root)
    metric = tracer.start_span("m", context=trace.set_span_in_context(root))
    root_ended[0].join()
    metric.end()
    reports = processor.store.reports()
    assert [[m["name"] for m in r["metrics"]] for r in reports] == [["m"]]
    assert processor.stats()["late_spans"] == 1


def test_requests_that_make_no_report_take_no_room_from_real_ones() -> None:
    """Bare client calls after a request do not push it out: its late metric still joins its report."""
    setup = _small_store(3)
    t = setup.tracker
    root = t.tracer.start_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER)
    late = t.tracer.start_span("background_task", context=trace.set_span_in_context(root))
    root.end()
    http = setup.provider.get_tracer("opentelemetry.instrumentation.httpx")
    for _ in range(10):
        http.start_span("GET", kind=trace.SpanKind.CLIENT).end()
    late.end()
    (report,) = t.get_reports()
    assert [m["name"] for m in report["metrics"]] == ["background_task"]
    stats = setup.processor.stats()
    assert (stats["late_spans"], stats["unreported_traces"], stats["orphan_spans"]) == (1, 10, 0)


def test_a_span_ending_after_its_request_was_forgotten_is_counted() -> None:
    """A span that started in time but ends once its report left the store is counted, not dropped silently."""
    setup = _small_store(1)
    t = setup.tracker
    root = t.tracer.start_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER)
    slow = t.tracer.start_span("slow", context=trace.set_span_in_context(root))
    root.end()
    with t.operation("next_request"):
        pass
    slow.end()
    stats = setup.processor.stats()
    assert stats["orphan_spans"] == 1
    assert stats["spans_not_reported"] == 1
    assert [r["operation"] for r in t.get_reports()] == ["next_request"]


def test_spans_per_request_are_capped_counted_and_the_report_marked() -> None:
    """Over max_spans_per_request, spans are left out, counted, and the report says truncated."""
    setup = make_tracing(max_spans_per_request=5)
    t = setup.tracker
    with t.operation("big"):
        for n in range(12):
            with t.track("step", n=n):
                pass
    (report,) = t.get_reports()
    assert [m["metadata"]["n"] for m in report["metrics"]] == [0, 1, 2, 3, 4]
    assert (report["truncated"], report.get("truncated_spans")) == (True, 7)
    stats = setup.processor.stats()
    assert (stats["truncated_spans"], stats["spans_not_reported"]) == (7, 7)
    with t.operation("small"), t.track("one"):
        pass
    assert t.get_reports()[1]["truncated"] is False


def test_the_span_cap_rejects_invalid_values() -> None:
    """An invalid explicit cap raises."""
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_spans_per_request"):
            ReportProcessor(max_spans_per_request=bad)  # type: ignore[arg-type]


def _remote_parent(trace_id: int, span_id: int) -> Context:
    return trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1)))
    )


def test_a_root_of_an_evicted_request_does_not_close_a_newer_request_of_its_trace() -> None:
    """Root A's request is evicted, B starts anew in the same trace; A ending late must not close B's."""
    setup = make_tracing(max_pending_traces=1)
    tracer = setup.tracker.tracer
    server = trace.SpanKind.SERVER
    first = tracer.start_span("first", context=_remote_parent(0xAB, 0x1), kind=server)
    tracer.start_span("other trace", kind=server).end()  # evicts the first request
    second = tracer.start_span("second", context=_remote_parent(0xAB, 0x2), kind=server)
    first.end()
    with tracer.start_as_current_span("step", context=trace.set_span_in_context(second)):
        pass
    second.end()
    reports = setup.tracker.get_reports()
    assert [(r["root_span"], [m["name"] for m in r["metrics"]]) for r in reports] == [
        ("other trace", []),
        ("second", ["step"]),
    ]
    stats = setup.processor.stats()
    assert (stats["evicted_traces"], stats["evicted_spans"]) == (1, 1)


def test_a_finished_request_leaves_pending_only_if_it_is_still_the_one_pending() -> None:
    """A listener's work during publishing replaces the trace's pending request: that one is kept."""
    store = ReportStore(max_reports=1)
    processor = ReportProcessor(store, max_pending_traces=1)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = PerformanceTracker(provider, store).tracer
    server = trace.SpanKind.SERVER
    started: list[trace.Span] = []

    def on_report(entry: ReportEntry) -> None:
        if started:
            return
        # Another request pushes this one out of the pending ones, a report pushes its
        # entry out of the store; then a new request of the same trace starts afresh.
        started.append(tracer.start_span("unrelated", kind=server))
        store.put({"operation": "x", "total_duration": 1.0, "timestamp": 1.0, "metrics": [],
                   "trace_id": "ff" * 16, "span_id": "ff" * 8})  # fmt: skip
        started.append(tracer.start_span("again", context=_remote_parent(0xAB, 0x2), kind=server))

    store.add_listener(on_report)
    tracer.start_span("first", context=_remote_parent(0xAB, 0x1), kind=server).end()
    started[1].end()
    assert [r["root_span"] for r in store.reports()] == ["again"]
    started[0].end()  # its request was evicted when "again" started
    stats = processor.stats()
    assert (stats["evicted_traces"], stats["evicted_spans"]) == (1, 1)


def test_every_span_reaches_a_report_or_is_counted_under_concurrency(fast_switching: None) -> None:
    """Children ending as their roots end, on other threads, while evictions happen: nothing unaccounted."""
    processor, tracer = _wired(max_reports=100_000, max_pending_traces=3)
    store = processor.store
    per_thread = 300

    def request() -> None:
        root = tracer.start_span("r", kind=trace.SpanKind.SERVER)
        context = trace.set_span_in_context(root)
        children = [tracer.start_span("m", context=context) for _ in range(3)]
        children[0].end()
        late = threading.Thread(target=lambda: [child.end() for child in children[1:]])
        late.start()
        root.end()
        late.join()

    _on_four_threads(request, per_thread)
    reports = store.reports()
    stats = processor.stats()
    assert stats["internal_errors"] == 0
    reported = len(reports) + sum(len(r["metrics"]) for r in reports)
    assert reported + stats["spans_not_reported"] == 4 * 4 * per_thread
    assert stats["late_spans"] > 0 and stats["evicted_traces"] > 0, "the races under test did not happen"


class _RootEndsAtAppend(list[Any]):
    """A record list whose next append lets the request's root end on another thread, just before or after."""

    def __init__(self, records: list[Any], root: trace.Span, before: bool) -> None:
        super().__init__(records)
        self.root = root
        self.before = before

    def append(self, item: Any) -> None:
        if not self.before:
            super().append(item)
        ender = threading.Thread(target=self.root.end)
        ender.start()
        ender.join()
        if self.before:
            super().append(item)


@pytest.mark.parametrize("before", [True, False], ids=["root_ends_before_append", "root_ends_after_append"])
@pytest.mark.parametrize("kind", [trace.SpanKind.INTERNAL, trace.SpanKind.SERVER])
def test_a_span_appended_while_its_root_ends_is_counted_once(kind: trace.SpanKind, before: bool) -> None:
    """The lock-free append races the root's end: the span is reported (late or not), or counted with its request.

    The root ends after the span passed the "request still running" check, either before
    the append (the root's end missed the span: it is settled afterwards) or between the
    append and the check that follows it (the root's end saw it: nothing more to count).
    """
    setup = make_tracing()
    heard: list[str] = []
    setup.store.add_listener(lambda entry: heard.append(entry.span_id))
    other = setup.provider.get_tracer("another.library")  # not the tracker's: no metrics
    root = other.start_span("job", kind=kind)
    child = other.start_span("step", context=trace.set_span_in_context(root))
    group = setup.processor._pending[root.get_span_context().span_id]  # pyright: ignore[reportPrivateUsage]
    group.records = _RootEndsAtAppend(group.records, root, before)
    child.end()
    stats = setup.processor.stats()
    if kind is trace.SpanKind.SERVER:
        (report,) = setup.tracker.get_reports()
        assert report["root_span"] == "job"
        assert stats["spans_not_reported"] == 0
        assert stats["tracked_spans"] == 1  # the child, in the report's records
        # Missed by the root's end: a late span, and the listeners hear of the change.
        assert (stats["late_spans"], len(heard)) == ((1, 2) if before else (0, 1))
    else:
        assert setup.tracker.get_reports() == []
        assert (stats["unreported_traces"], stats["unreported_spans"], stats["spans_not_reported"]) == (
            1,
            2,
            2,
        )
