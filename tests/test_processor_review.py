"""The processor, fold and store at their edges: races held open on purpose, shutdown, odd records."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ha_agent_tracing import PerformanceTracker, ReportEntry, ReportProcessor, ReportStore, SpanRecord
from ha_agent_tracing.reports import fold
from ha_agent_tracing.reports._fold import headline

from .conftest import make_tracing

MS = 1_000_000
T0 = 1_764_100_000 * 1_000_000_000


class _HeldStore(ReportStore):
    """A store whose first report waits, once stored, before its listeners are told, until the test lets it go.

    The report is in the store by then (the processor puts it under its lock), so the
    window held open is the one between a report being stored and being announced.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self._held = False

    def changed(self, entry: ReportEntry) -> None:
        if not self._held:
            self._held = True
            self.entered.set()
            assert self.release.wait(10), "the test never released the store"
        super().changed(entry)


def _wired(store: ReportStore, **options: Any) -> tuple[ReportProcessor, TracerProvider, PerformanceTracker]:
    """A provider whose report processor (``options`` passed on) publishes into ``store``."""
    processor = ReportProcessor(store, **options)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return processor, provider, PerformanceTracker(provider, store)


def _browser(name: str, span_id: int, parent_id: int | None, start: int, end: int) -> SpanRecord:
    return SpanRecord(name, 0xB0, span_id, parent_id, start, end, {}, True, source="browser")


def test_browser_spans_arriving_while_their_new_report_is_being_published_join_it() -> None:
    """A batch making a new report is being announced when the next batch of its trace arrives: it joins."""
    store = _HeldStore()
    processor = ReportProcessor(store)
    first = threading.Thread(
        target=processor.add_records, args=([_browser("page_load", 0x1, None, T0, T0 + 50 * MS)],)
    )
    first.start()
    assert store.entered.wait(10)
    try:
        joined = processor.add_records([_browser("send_message", 0x2, 0x1, T0 + MS, T0 + 2 * MS)])
    finally:
        store.release.set()
        first.join(10)
    assert joined == 1
    stats = processor.stats()
    assert (stats["orphan_spans"], stats["spans_not_reported"]) == (0, 0)
    report = store.get(f"{0xB0:032x}")
    assert report is not None
    assert [m["name"] for m in report["metrics"]] == ["send_message"]


def test_spans_of_requests_unfinished_at_shutdown_are_counted() -> None:
    """Shutdown forgets unfinished requests: the spans they held count as evicted, like their roots."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    root = tracer.start_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER)
    tracer.start_span("step", context=trace.set_span_in_context(root)).end()
    setup.processor.shutdown()
    root.end()
    stats = setup.processor.stats()
    assert (stats["evicted_traces"], stats["evicted_spans"], stats["spans_not_reported"]) == (1, 2, 2)
    assert setup.store.reports() == []


def test_a_span_ending_before_it_started_folds_to_a_zero_duration() -> None:
    """Clock skew (a browser's clock, say) never gives a negative duration to a metric or a request."""
    root = SpanRecord("POST", 0xA, 0x1, None, T0, T0 - 3 * MS, {}, False, kind="server")
    step = SpanRecord("step", 0xA, 0x2, 0x1, T0 + 2 * MS, T0 + MS, {}, True)
    report = fold(root, [step])
    assert report["total_duration"] == 0.0
    assert report["metrics"][0]["duration"] == 0.0
    assert report["metrics"][0]["start_offset"] == 2.0
    assert headline(root, [step]) == ("POST", 0.0, [("step", 0.0)])


_ids = st.integers(min_value=0, max_value=6)
_records = st.lists(
    st.builds(
        SpanRecord,
        name=st.sampled_from(["a", "b", "c"]),
        trace_id=st.just(0xA),
        span_id=_ids,
        parent_id=st.none() | _ids,
        start_ns=st.integers(min_value=T0 - 10 * MS, max_value=T0 + 10 * MS),
        end_ns=st.integers(min_value=T0 - 10 * MS, max_value=T0 + 10 * MS),
        attributes=st.just({}),
        is_metric=st.booleans(),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(records=_records, root_end=st.integers(min_value=T0 - MS, max_value=T0 + 10 * MS))
def test_fold_of_odd_records_keeps_every_metric_ordered_and_never_negative(
    records: list[SpanRecord], root_end: int
) -> None:
    """Duplicate ids, id 0, missing parents, ends before starts: one metric per record, sane values."""
    root = SpanRecord("POST", 0xA, 0x7, None, T0, root_end, {}, False, kind="server")
    report = fold(root, records)
    expected = sorted((r for r in records if r.is_metric), key=lambda r: r.start_ns)
    metrics = report["metrics"]
    assert [(m["name"], m["span_id"]) for m in metrics] == [(r.name, f"{r.span_id:016x}") for r in expected]
    assert report["total_duration"] == max(root_end - T0, 0) / MS
    for metric, record in zip(metrics, expected, strict=True):
        assert metric["duration"] == max(record.end_ns - record.start_ns, 0) / MS
        assert metric["start_offset"] == (record.start_ns - T0) / MS
        enclosing = _enclosing_metric_names(record.parent_id, records, root.span_id)
        # With duplicate ids the fold follows one record per id: any candidate may be named.
        assert metric["parent"] is None if not enclosing else metric["parent"] in enclosing | {None}
        if any(r.is_metric and r.span_id == record.parent_id != root.span_id for r in records):
            assert metric["parent"] is not None  # the direct parent is a metric: always found


def _enclosing_metric_names(parent_id: int | None, records: list[SpanRecord], root_id: int) -> set[str]:
    """Every metric name that could be the nearest enclosing one, following every record with an id."""
    found: set[str] = set()
    seen: set[int] = set()
    frontier = [parent_id]
    while frontier:
        at = frontier.pop()
        if at is None or at == root_id or at in seen:
            continue
        seen.add(at)
        metrics = {r.name for r in records if r.span_id == at and r.is_metric}
        if metrics:
            found |= metrics
            continue
        frontier += [r.parent_id for r in records if r.span_id == at and not r.is_metric]
    return found


def _remote_parent(trace_id: int, span_id: int) -> Context:
    return trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1)))
    )


SERVER = trace.SpanKind.SERVER


def test_a_span_ending_while_its_report_is_being_put_joins_it() -> None:
    """Between the root's end and its report being announced, a child that ends is a late span."""
    store = _HeldStore()
    processor, _, tracker = _wired(store)
    tracer = tracker.tracer
    root = tracer.start_span("POST /api/v1/chat", kind=SERVER)
    background = tracer.start_span("background", context=trace.set_span_in_context(root))
    ender = threading.Thread(target=root.end)
    ender.start()
    assert store.entered.wait(10)
    try:
        background.end()
    finally:
        store.release.set()
        ender.join(10)
    assert [[m["name"] for m in r["metrics"]] for r in store.reports()] == [["background"]]
    stats = processor.stats()
    assert (stats["late_spans"], stats["spans_not_reported"]) == (1, 0)


def test_each_request_of_a_shared_trace_has_its_own_span_cap() -> None:
    """Two requests of one trace, each within the per-request cap: neither report is truncated."""
    setup = make_tracing(max_spans_per_request=2)
    tracer = setup.tracker.tracer
    first = tracer.start_span("first", context=_remote_parent(0xAB, 0x1), kind=SERVER)
    second = tracer.start_span("second", context=_remote_parent(0xAB, 0x1), kind=SERVER)
    for root in (first, second):
        for name in ("a", "b"):
            tracer.start_span(name, context=trace.set_span_in_context(root)).end()
    first.end()
    second.end()
    reports = setup.store.reports()
    assert [(r["root_span"], [m["name"] for m in r["metrics"]], r["truncated"]) for r in reports] == [
        ("first", ["a", "b"], False),
        ("second", ["a", "b"], False),
    ]
    assert setup.processor.stats()["truncated_spans"] == 0


def test_a_late_span_joins_until_the_window_ends_and_not_after() -> None:
    """The late-span window is measured on the processor's clock, its end included."""
    now = [100.0]
    setup = make_tracing(late_span_window_s=5.0, clock=lambda: now[0])
    tracer = setup.tracker.tracer
    root = tracer.start_span("POST", kind=SERVER)
    at_the_end = tracer.start_span("at_the_end", context=trace.set_span_in_context(root))
    too_late = tracer.start_span("too_late", context=trace.set_span_in_context(root))
    root.end()
    now[0] = 105.0
    at_the_end.end()
    now[0] = 105.001
    too_late.end()
    assert [m["name"] for m in setup.store.reports()[0]["metrics"]] == ["at_the_end"]
    stats = setup.processor.stats()
    assert (stats["late_spans"], stats["expired_late_spans"]) == (1, 1)


def test_a_second_request_of_a_trace_without_a_metric_of_its_own_makes_no_report() -> None:
    """A server request's metric does not make a report of an unrelated root of the same trace."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    with (
        tracer.start_as_current_span("POST", context=_remote_parent(0xAB, 0x1), kind=SERVER),
        tracer.start_as_current_span("step"),
    ):
        pass
    setup.provider.get_tracer("other").start_span("poll", context=_remote_parent(0xAB, 0x2)).end()
    assert [r["root_span"] for r in setup.store.reports()] == ["POST"]
    assert setup.processor.stats()["unreported_traces"] == 1


def test_each_request_times_out_from_its_own_root_even_in_a_shared_trace() -> None:
    """Timeouts count from each request's root: a newer request of the same trace does not extend an older one's."""
    now = [0.0]
    setup = make_tracing(pending_timeout_s=10.0, clock=lambda: now[0])
    tracer = setup.tracker.tracer
    spans = [tracer.start_span("a1", context=_remote_parent(0xA, 0x1), kind=SERVER)]
    now[0] = 1.0
    spans.append(tracer.start_span("b", context=_remote_parent(0xB, 0x1), kind=SERVER))
    now[0] = 5.0
    spans.append(tracer.start_span("a2", context=_remote_parent(0xA, 0x1), kind=SERVER))
    now[0] = 12.0
    spans.append(tracer.start_span("c", kind=SERVER))
    assert setup.processor.stats()["evicted_traces"] == 2  # a1's and b's, past their timeout
    for span in spans:
        span.end()
    assert sorted(r["root_span"] for r in setup.store.reports()) == ["a2", "c"]


def test_a_span_cut_after_the_report_was_read_marks_it_truncated_on_the_next_read() -> None:
    """The folded report is cached until spans join, and a cut span counts as a change too."""
    setup = make_tracing(max_spans_per_request=1)
    tracer = setup.tracker.tracer
    root = tracer.start_span("POST", kind=SERVER)
    tracer.start_span("kept", context=trace.set_span_in_context(root)).end()
    late = tracer.start_span("cut", context=trace.set_span_in_context(root))
    root.end()
    assert setup.store.reports()[0]["truncated"] is False
    late.end()
    report = setup.store.reports()[0]
    assert (report["truncated"], report.get("truncated_spans")) == (True, 1)


def test_the_spans_of_a_request_that_makes_no_report_are_counted() -> None:
    """A bare outgoing call with a child of its own: both spans count as unreported."""
    setup = make_tracing()
    other = setup.provider.get_tracer("other")
    with (
        other.start_as_current_span("GET /elsewhere", kind=trace.SpanKind.CLIENT),
        other.start_as_current_span("connect"),
    ):
        pass
    stats = setup.processor.stats()
    assert (stats["unreported_traces"], stats["unreported_spans"], stats["spans_not_reported"]) == (1, 2, 2)


def test_browser_spans_join_every_request_of_their_trace() -> None:
    """Two server requests of one trace: the chat page's spans fold into both reports."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    for _ in range(2):
        with (
            tracer.start_as_current_span("POST", context=_remote_parent(0xAB, 0x1), kind=SERVER),
            tracer.start_as_current_span("step"),
        ):
            pass
    now = setup.store.reports()[0]["timestamp"]
    start = int(now * 1e9)
    click = SpanRecord("click", 0xAB, 0x99, None, start - MS, start, {}, True, source="browser")
    assert setup.processor.add_records([click]) == 1
    assert [[(m["name"], m["source"]) for m in r["metrics"]] for r in setup.store.reports()] == [
        [("click", "browser"), ("step", "server")],
        [("click", "browser"), ("step", "server")],
    ]


def test_browser_spans_of_an_unknown_trace_report_under_their_earliest_root() -> None:
    """Two roots in one batch of a trace unknown here: the earlier-starting one is the report's root."""
    processor = ReportProcessor(ReportStore())
    records = [
        _browser("second_tab", 0x2, None, T0 + 5 * MS, T0 + 9 * MS),
        _browser("page_load", 0x1, None, T0, T0 + 10 * MS),
        _browser("send_message", 0x3, 0x1, T0 + MS, T0 + 2 * MS),
    ]
    assert processor.add_records(records) == 3
    report = processor.store.get(f"{0xB0:032x}")
    assert report is not None
    assert (report["root_span"], [m["name"] for m in report["metrics"]]) == (
        "page_load",
        ["send_message", "second_tab"],
    )


def test_an_evicted_request_of_a_reported_trace_leaves_its_report_its_late_span_window() -> None:
    """Evicting a trace's second request leaves the first's report taking late spans until its window ends."""
    now = [0.0]
    setup = make_tracing(max_pending_traces=1, late_span_window_s=5.0, clock=lambda: now[0])
    tracer = setup.tracker.tracer
    first = tracer.start_span("first", context=_remote_parent(0xAB, 0x1), kind=SERVER)
    step = tracer.start_span("step", context=trace.set_span_in_context(first))
    tail = tracer.start_span("tail", context=trace.set_span_in_context(first))
    first.end()
    now[0] = 1.0
    second = tracer.start_span("second", context=_remote_parent(0xAB, 0x1), kind=SERVER)
    now[0] = 4.0
    other = tracer.start_span("other", kind=SERVER)  # pushes the trace's unfinished request out
    now[0] = 4.5
    step.end()  # within the first's window: joins it
    now[0] = 5.5
    tail.end()  # past it: counted
    second.end()
    other.end()
    first_report = setup.store.get(f"{0xAB:032x}")
    assert first_report is not None
    assert [m["name"] for m in first_report["metrics"]] == ["step"]
    stats = setup.processor.stats()
    assert (stats["evicted_traces"], stats["late_spans"], stats["expired_late_spans"]) == (1, 1, 1)


def test_under_threads_and_evictions_every_ended_span_is_in_a_report_or_counted() -> None:
    """Four threads, few pending slots, a tight cap, late children: nothing slips past the counters."""
    store = ReportStore(max_reports=100_000)
    processor, provider, tracker = _wired(store, max_pending_traces=3, max_spans_per_request=3)
    plain = provider.get_tracer("other")
    ended = [0] * 4
    start = threading.Barrier(4)

    def requests(n: int) -> None:
        start.wait()
        for i in range(400):
            kind = SERVER if i % 3 else trace.SpanKind.CLIENT
            root = (tracker.tracer if i % 5 else plain).start_span("root", kind=kind)
            ctx = trace.set_span_in_context(root)
            late = (tracker.tracer if i % 7 else plain).start_span("late", context=ctx)
            for j in range(i % 6):
                (tracker.tracer if j % 2 else plain).start_span("child", context=ctx).end()
            if i % 4:
                late.end()
                root.end()
            else:
                root.end()
                late.end()
            ended[n] += 2 + i % 6

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = processor.stats()
    assert stats["internal_errors"] == 0
    assert stats["pending_traces"] == 0
    assert stats["reports"] + stats["tracked_spans"] + stats["spans_not_reported"] == sum(ended)


def test_requests_sharing_one_trace_id_hold_no_more_spans_than_the_store_keeps_reports() -> None:
    """Clients sending one fixed traceparent: only the stored requests' spans are held, none is cut."""
    store = ReportStore(max_reports=10)
    processor, _, tracker = _wired(store, max_spans_per_request=5)
    tracer = tracker.tracer
    for _ in range(300):
        with tracer.start_as_current_span("POST", context=_remote_parent(0xAB, 0x1), kind=SERVER):
            for _ in range(5):
                tracer.start_span("step").end()
    stats = processor.stats()
    assert (stats["tracked_spans"], stats["truncated_spans"], stats["spans_not_reported"]) == (10 * 5, 0, 0)
    assert [len(r["metrics"]) for r in store.reports()] == [5] * 10
    assert len(store) == 10


def test_the_log_line_of_a_request_whose_root_is_a_metric_lists_only_its_inner_metrics() -> None:
    """The root, a metric itself, is the request's total, not one of its slowest steps."""
    root = SpanRecord("chat_request", 0xA, 0x1, None, T0, T0 + 9 * MS, {}, True)
    step = SpanRecord("step", 0xA, 0x2, 0x1, T0 + MS, T0 + 3 * MS, {}, True)
    assert headline(root, [root, step]) == ("chat_request", 9.0, [("step", 2.0)])


def test_a_span_ended_by_a_garbage_collection_under_the_lock_is_handled_afterwards() -> None:
    """An abandoned generator's open span, collected while the processor holds its lock: no deadlock, no loss.

    Any allocation can start a garbage collection, also while the processor holds its
    lock; collecting a generator abandoned in a reference cycle ends its open span on
    that very thread.
    """
    import contextvars
    import gc

    from opentelemetry.sdk.trace import TracerProvider

    from ha_agent_tracing import PerformanceTracker, ReportProcessor, ReportStore

    class CollectingStore(ReportStore):
        def insert(self, entry: Any) -> Any:
            gc.collect()  # as an allocation under the processor's lock may
            return super().insert(entry)

    store = CollectingStore()
    processor = ReportProcessor(store)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = PerformanceTracker(provider, store).tracer

    def stream() -> Any:
        with tracer.start_as_current_span("abandoned", kind=SERVER):
            yield 1

    generator = stream()
    # Started in a context of its own, so that the span it leaves current stays there.
    contextvars.copy_context().run(next, generator)
    cycle: dict[str, Any] = {"generator": generator}
    cycle["self"] = cycle
    del generator, cycle
    request = threading.Thread(target=lambda: tracer.start_span("request", kind=SERVER).end(), daemon=True)
    request.start()
    request.join(10)
    assert not request.is_alive(), "the request thread deadlocked on the processor's lock"
    stats = processor.stats()  # handles what the collection met
    assert sorted(r["root_span"] for r in store.reports()) == ["abandoned", "request"]
    assert (stats["internal_errors"], stats["spans_not_reported"]) == (0, 0)
