"""Several requests of one trace in one process: every span reaches a report or is counted, by cause.

A client reusing a fixed ``traceparent``, or two local roots under one remote
parent, puts several requests into one trace here. They share the trace's
records; each report folds the subtree under its own root. A request of such
a trace that is evicted, or makes no report, must count its spans, including
those that end after it was lost.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ha_agent_tracing import SpanRecord

from .conftest import make_tracing

SERVER = trace.SpanKind.SERVER


def _remote_parent(trace_id: int, span_id: int = 0x1) -> Context:
    return trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1)))
    )


def _under(span: trace.Span) -> Context:
    return trace.set_span_in_context(span)


def test_a_request_evicted_from_a_reported_trace_counts_its_spans() -> None:
    """The trace's first request is reported; its second is evicted: the second's spans count as evicted."""
    setup = make_tracing(max_pending_traces=1)
    tracer = setup.tracker.tracer
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("step", context=_under(first)).end()
    first.end()
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("done", context=_under(second)).end()  # ended before the eviction
    late = tracer.start_span("late", context=_under(second))  # ends after it
    other = tracer.start_span("other", kind=SERVER)  # pushes the trace's running request out
    late.end()
    second.end()
    other.end()
    reports = setup.store.reports()
    assert [(r["root_span"], [m["name"] for m in r["metrics"]]) for r in reports] == [
        ("first", ["step"]),
        ("other", []),
    ]
    stats = setup.processor.stats()
    assert (stats["evicted_traces"], stats["evicted_spans"], stats["late_spans"]) == (1, 3, 0)
    assert stats["spans_not_reported"] == 3  # done, late and the second root
    assert stats["tracked_spans"] == 1  # step; done is counted, not held as if reported


@pytest.mark.parametrize("reported_still_running", [True, False], ids=["running", "published"])
def test_a_request_that_makes_no_report_in_a_reported_trace_counts_its_spans(
    reported_still_running: bool,
) -> None:
    """A bare job under the same remote parent as a reported request: its spans count as unreported."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    other = setup.provider.get_tracer("another.library")  # not the tracker's: no metrics
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("step", context=_under(first)).end()
    if not reported_still_running:
        first.end()
    poll = other.start_span("poll", context=_remote_parent(0xAB))
    connect = other.start_span("connect", context=_under(poll))
    other.start_span("resolve", context=_under(connect)).end()
    connect.end()
    retry = other.start_span("retry", context=_under(poll))
    poll.end()
    retry.end()  # after its request was found to make no report
    if reported_still_running:
        first.end()
    (report,) = setup.store.reports()
    assert (report["root_span"], [m["name"] for m in report["metrics"]]) == ("first", ["step"])
    stats = setup.processor.stats()
    assert (stats["unreported_traces"], stats["unreported_spans"], stats["late_spans"]) == (1, 4, 0)
    assert stats["spans_not_reported"] == 4  # poll, connect, resolve, retry
    assert stats["tracked_spans"] == 1


def test_a_trace_whose_every_request_is_lost_counts_each_span_once() -> None:
    """A lost request's spans are counted when it is lost; dropping the trace later does not count them again."""
    setup = make_tracing()
    other = setup.provider.get_tracer("another.library")
    one = other.start_span("one", context=_remote_parent(0xAB))
    two = other.start_span("two", context=_remote_parent(0xAB))
    other.start_span("a", context=_under(one)).end()
    other.start_span("b", context=_under(two)).end()
    one.end()  # counts itself and a; the trace is still running (two)
    two.end()  # the trace makes no report at all: counts two and b, not a again
    stats = setup.processor.stats()
    assert (stats["unreported_traces"], stats["unreported_spans"], stats["spans_not_reported"]) == (2, 4, 4)
    assert (stats["tracked_spans"], stats["pending_traces"]) == (0, 0)


@pytest.mark.parametrize("cause", ["evicted", "unreported"])
def test_a_span_of_a_dropped_request_ending_in_a_later_request_of_its_trace_is_counted(cause: str) -> None:
    """A fixed traceparent: request one is dropped, request two starts; one's straggler is not two's."""
    setup = make_tracing(max_pending_traces=1)
    tracer = setup.tracker.tracer
    other = setup.provider.get_tracer("another.library")
    if cause == "evicted":
        one = tracer.start_span("one", context=_remote_parent(0xAB), kind=SERVER)
        straggler = tracer.start_span("straggler", context=_under(one))  # a metric
        tracer.start_span("elsewhere", kind=SERVER).end()  # pushes request one out
    else:
        one = other.start_span("one", context=_remote_parent(0xAB))
        straggler = other.start_span("straggler", context=_under(one))
        one.end()  # makes no report: dropped with its trace
    two = tracer.start_span("two", context=_remote_parent(0xAB), kind=SERVER)
    straggler.end()
    two.end()
    if cause == "evicted":
        one.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in setup.store.reports()}
    assert reports["two"] == []
    stats = setup.processor.stats()
    assert stats[f"{cause}_spans"] == 2  # one and its straggler
    assert (stats["spans_not_reported"], stats["tracked_spans"]) == (2, 0)


def test_browser_spans_under_a_lost_request_are_not_counted_lost() -> None:
    """The chat page's spans belong to every report of their trace, whichever request they hang under."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    other = setup.provider.get_tracer("another.library")
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    poll = other.start_span("poll", context=_remote_parent(0xAB))
    poll_id = poll.get_span_context().span_id
    start = 1_764_100_000 * 1_000_000_000
    # Not a metric, so that it does not make the request it hangs under reportable.
    fetch = SpanRecord("fetch", 0xAB, 0x99, poll_id, start, start + 1, {}, False, source="browser")
    assert setup.processor.add_records([fetch]) == 1
    poll.end()
    first.end()
    assert [r["root_span"] for r in setup.store.reports()] == ["first"]
    stats = setup.processor.stats()
    assert (stats["unreported_spans"], stats["spans_not_reported"]) == (1, 1)  # poll only
    assert stats["tracked_spans"] == 1  # fetch, held for the report


def test_under_threads_every_span_of_shared_traces_is_in_a_report_or_counted(fast_switching: None) -> None:
    """Four threads; requests share a few fixed trace ids; some make no report, some are evicted.

    Every span of a request that can make a report is a tracked metric, so a span
    that reached a report is one of its metrics (or its root): the reports' spans
    and the loss counters must add up to every span that ended.
    """
    setup = make_tracing(max_pending_traces=2, max_spans_per_request=4)
    setup.store._max = 1_000_000  # pyright: ignore[reportPrivateUsage] - keep every report to count it
    tracer = setup.tracker.tracer
    plain = setup.provider.get_tracer("another.library")
    ended = [0] * 4
    start = threading.Barrier(4)

    def requests(n: int) -> None:
        start.wait()
        for i in range(200):
            reported = i % 3 != 0
            source = tracer if reported else plain
            kind = SERVER if reported else trace.SpanKind.INTERNAL
            root = source.start_span("root", context=_remote_parent(0xA0 + i % 5), kind=kind)
            ctx = _under(root)
            late = source.start_span("late", context=ctx)
            for _ in range(i % 4):
                source.start_span("child", context=ctx).end()
            if i % 2:
                late.end()
                root.end()
            else:
                root.end()
                late.end()
            ended[n] += 2 + i % 4

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = setup.processor.stats()
    assert stats["internal_errors"] == 0
    assert stats["evicted_traces"] > 0 and stats["unreported_traces"] > 0, (
        "the cases under test did not happen"
    )
    in_reports = sum(1 + len(r["metrics"]) for r in setup.store.reports())
    assert in_reports + stats["spans_not_reported"] == sum(ended)


class _RootEndsDuringAppend(list[Any]):
    """A record list whose next append first lets a root end on another thread, waiting for it a little.

    While the appender holds the processor's lock the root's end cannot finish, so the
    wait times out and the append goes first; without the lock the root ends first.
    """

    def __init__(self, records: list[Any], root: trace.Span) -> None:
        super().__init__(records)
        self.root = root
        self.ender: threading.Thread | None = None

    def append(self, item: Any) -> None:
        if self.ender is None:
            self.ender = threading.Thread(target=self.root.end)
            self.ender.start()
            self.ender.join(0.5)
        super().append(item)


@pytest.mark.parametrize("path", ["locked", "unlocked"])
def test_a_span_appended_as_its_request_is_found_to_make_no_report_is_counted(path: str) -> None:
    """Two requests of a trace; the one making no report ends while its span is being appended.

    A trace with several requests here takes the lock for each span, so the root's end
    waits for the append, whether the trace already lost a request ("locked") or not.
    """
    setup = make_tracing()
    tracer = setup.tracker.tracer
    other = setup.provider.get_tracer("another.library")
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    lost_before = 0
    if path == "locked":
        other.start_span("poll", context=_remote_parent(0xAB)).end()  # the trace now tracks losses
        lost_before = 1
    job = other.start_span("job", context=_remote_parent(0xAB))
    step = other.start_span("step", context=_under(job))
    group = setup.processor._pending[job.get_span_context().span_id]  # pyright: ignore[reportPrivateUsage]
    records = group.records = _RootEndsDuringAppend(group.records, job)
    step.end()
    assert records.ender is not None
    records.ender.join(10)
    first.end()
    stats = setup.processor.stats()
    assert (stats["unreported_traces"], stats["unreported_spans"], stats["spans_not_reported"]) == (
        1 + lost_before,
        2 + lost_before,
        2 + lost_before,
    )
    assert stats["tracked_spans"] == 0
    assert [r["root_span"] for r in setup.store.reports()] == ["first"]


def test_spans_under_a_span_cut_by_the_cap_stay_in_their_request_s_report() -> None:
    """Two requests of a trace, each at its own cap: a cut span's child still folds into its own report."""
    setup = make_tracing(max_spans_per_request=1)
    tracer = setup.tracker.tracer
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("a", context=_under(first)).end()  # the first's one record
    outer = tracer.start_span("outer", context=_under(second))
    tracer.start_span("inner", context=_under(outer)).end()  # the second's one record
    tracer.start_span("b", context=_under(first)).end()  # cut
    outer.end()  # cut
    first.end()
    second.end()
    reports = {r["root_span"]: r for r in setup.store.reports()}
    assert [m["name"] for m in reports["first"]["metrics"]] == ["a"]
    assert [m["name"] for m in reports["second"]["metrics"]] == ["inner"]
    assert reports["first"]["truncated"] is True and reports["second"]["truncated"] is True
    stats = setup.processor.stats()
    assert (stats["truncated_spans"], stats["spans_not_reported"]) == (2, 2)  # b and outer


def test_spans_under_a_cut_span_of_a_lost_request_are_counted_lost() -> None:
    """A request making no report in a reported trace, its span cut by the cap: the cut span's child counts too."""
    setup = make_tracing(max_spans_per_request=1)
    tracer = setup.tracker.tracer
    other = setup.provider.get_tracer("another.library")
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    poll = other.start_span("poll", context=_remote_parent(0xAB))  # the cap is now 2
    outer = other.start_span("outer", context=_under(poll))
    other.start_span("inner", context=_under(outer)).end()
    tracer.start_span("step", context=_under(first)).end()  # the second record: at the cap
    outer.end()  # cut
    poll.end()
    first.end()
    (report,) = setup.store.reports()
    assert [m["name"] for m in report["metrics"]] == ["step"]
    stats = setup.processor.stats()
    assert (stats["truncated_spans"], stats["unreported_spans"], stats["spans_not_reported"]) == (1, 2, 3)
    assert stats["tracked_spans"] == 1  # step


def _shared_trace_setup(max_reports: int, **options: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    from ha_agent_tracing import PerformanceTracker, ReportProcessor, ReportStore

    provider = TracerProvider(shutdown_on_exit=False)
    store = ReportStore(max_reports=max_reports)
    processor = ReportProcessor(store, **options)
    provider.add_span_processor(processor)
    return store, processor, PerformanceTracker(provider, store).tracer


def test_a_fixed_traceparent_keeps_only_the_records_of_stored_reports() -> None:
    """A client sending one traceparent for every request, one after another, for a long time.

    Each request's report keeps its own spans, none is cut by the per-request cap,
    and what is held stays bounded by the reports the store keeps.
    """
    store, processor, tracer = _shared_trace_setup(2, max_spans_per_request=5)
    for i in range(50):
        root = tracer.start_span(f"request {i}", context=_remote_parent(0xAB), kind=SERVER)
        for name in ("a", "b", "c"):
            tracer.start_span(name, context=_under(root)).end()
        root.end()
    reports = store.reports()
    assert [r["root_span"] for r in reports] == ["request 48", "request 49"]
    assert [[m["name"] for m in r["metrics"]] for r in reports] == [["a", "b", "c"], ["a", "b", "c"]]
    assert not any(r["truncated"] for r in reports)
    stats = processor.stats()
    assert (stats["reports"], stats["truncated_spans"], stats["spans_not_reported"]) == (50, 0, 0)
    assert stats["tracked_spans"] == 6  # the two stored reports' metrics, nothing of the 48 before


@pytest.mark.parametrize("parent", ["root", "ended_step"])
def test_a_late_span_of_a_request_ending_while_a_newer_request_of_its_trace_runs(parent: str) -> None:
    """The earlier request's report takes the late span, and its listeners hear of it; the newer one does not."""
    setup = make_tracing()
    heard: list[tuple[str, list[str]]] = []

    def listener(entry: Any) -> None:
        heard.append((entry.key[1], [m["name"] for m in entry.report()["metrics"]]))

    setup.store.add_listener(listener)
    tracer = setup.tracker.tracer
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    step = tracer.start_span("step", context=_under(first))
    background = tracer.start_span("background", context=_under(step if parent == "ended_step" else first))
    step.end()
    first.end()
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("answer", context=_under(second)).end()
    background.end()  # late, while the second request runs
    second.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in setup.store.reports()}
    assert reports == {"first": ["step", "background"], "second": ["answer"]}
    first_key = f"{first.get_span_context().span_id:016x}"
    assert heard[-2] == (first_key, ["step", "background"])  # told before the second report was put
    stats = setup.processor.stats()
    assert (stats["late_spans"], stats["spans_not_reported"]) == (1, 0)


def test_a_late_span_of_an_earlier_request_after_its_window_is_counted_expired() -> None:
    """Past the late-span window, an earlier request's span is counted, not folded into the newer request."""
    now = [0.0]
    setup = make_tracing(clock=lambda: now[0], late_span_window_s=10.0)
    tracer = setup.tracker.tracer
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    background = tracer.start_span("background", context=_under(first))
    first.end()
    now[0] = 11.0
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    background.end()
    second.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in setup.store.reports()}
    assert reports == {"first": [], "second": []}
    stats = setup.processor.stats()
    assert (stats["expired_late_spans"], stats["late_spans"], stats["spans_not_reported"]) == (1, 0, 1)


def test_a_late_span_of_a_request_whose_report_left_the_store_joins_no_other_request() -> None:
    """The trace's first report is pushed out of the store: its late span is counted, not given to the second."""
    store, processor, tracer = _shared_trace_setup(2)
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    background = tracer.start_span("background", context=_under(first))
    first.end()
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("step", context=_under(second)).end()
    second.end()
    tracer.start_span("other", kind=SERVER).end()  # pushes the first report out of the store
    background.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in store.reports()}
    assert reports == {"second": ["step"], "other": []}
    stats = processor.stats()
    assert (stats["orphan_spans"], stats["late_spans"], stats["spans_not_reported"]) == (1, 0, 1)


@pytest.mark.parametrize("cause", ["unreported", "evicted"])
def test_deeper_spans_of_a_dropped_request_are_counted_under_its_cause(cause: str) -> None:
    """A trace's second request is dropped with a span two levels down still running: counted, never folded."""
    setup = make_tracing(max_pending_traces=1)
    tracer = setup.tracker.tracer
    source = tracer if cause == "evicted" else setup.provider.get_tracer("another.library")
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("step", context=_under(first)).end()
    first.end()
    kind = SERVER if cause == "evicted" else trace.SpanKind.INTERNAL
    second = source.start_span("second", context=_remote_parent(0xAB), kind=kind)
    job = source.start_span("job", context=_under(second))
    sub = source.start_span("sub", context=_under(job))
    if cause == "unreported":
        second.end()  # makes no report
    else:
        tracer.start_span("elsewhere", kind=SERVER).end()  # pushes the second request out
    sub.end()
    job.end()
    if cause == "evicted":
        second.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in setup.store.reports()}
    assert reports["first"] == ["step"]
    stats = setup.processor.stats()
    assert (stats[f"{cause}_spans"], stats["late_spans"], stats["spans_not_reported"]) == (3, 0, 3)


def test_nested_late_spans_of_a_request_join_it_when_its_trace_has_several_reports() -> None:
    """A background task of the trace's second request spawns a child after the root ended: both join it."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER).end()
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    background = tracer.start_span("background", context=_under(second))
    second.end()
    child = tracer.start_span("child", context=_under(background))  # started after the root ended
    child.end()
    background.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in setup.store.reports()}
    assert reports == {"first": [], "second": ["background", "child"]}
    stats = setup.processor.stats()
    assert (stats["late_spans"], stats["spans_not_reported"]) == (2, 0)


def test_a_browser_record_that_no_request_has_room_for_is_counted_once() -> None:
    """Browser records join every request of their trace; one cut by every request's cap is one truncated span."""
    setup = make_tracing(max_spans_per_request=1)
    tracer = setup.tracker.tracer
    for name in ("first", "second"):
        root = tracer.start_span(name, context=_remote_parent(0xAB), kind=SERVER)
        tracer.start_span(f"step of {name}", context=_under(root)).end()
        root.end()
    start = 1_764_100_000 * 1_000_000_000
    fetch = SpanRecord("fetch", 0xAB, 0x99, None, start, start + 1, {}, True, source="browser")
    assert setup.processor.add_records([fetch]) == 0
    stats = setup.processor.stats()
    assert (stats["truncated_spans"], stats["spans_not_reported"]) == (1, 1)


def test_overlapping_requests_of_a_fixed_traceparent_stay_bounded() -> None:
    """Each request starts before the previous one ends, on one traceparent, for a long time."""
    store, processor, tracer = _shared_trace_setup(10, max_spans_per_request=3)
    previous = None
    for i in range(2_000):
        root = tracer.start_span(f"request {i}", context=_remote_parent(0xAB), kind=SERVER)
        step = tracer.start_span("a", context=_under(root))
        tracer.start_span("b", context=_under(step)).end()
        step.end()
        if previous is not None:
            previous.end()
        previous = root
    assert previous is not None
    previous.end()
    reports = store.reports()
    assert [r["root_span"] for r in reports] == [f"request {i}" for i in range(1_990, 2_000)]
    assert all([m["name"] for m in r["metrics"]] == ["a", "b"] and not r["truncated"] for r in reports)
    stats = processor.stats()
    assert (stats["pending_traces"], stats["tracked_spans"], stats["spans_not_reported"]) == (0, 20, 0)


def test_spans_started_under_a_dropped_request_after_it_was_dropped_are_counted_under_its_cause() -> None:
    """Two levels below a running span of a request that made no report, started after it: counted, never folded."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    other = setup.provider.get_tracer("another.library")
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    second = other.start_span("second", context=_remote_parent(0xAB))
    job = other.start_span("job", context=_under(second))
    second.end()  # makes no report
    sub = other.start_span("sub", context=_under(job))  # starts after its request was dropped
    leaf = tracer.start_span("leaf", context=_under(sub))  # a metric, two levels down
    leaf.end()
    sub.end()
    job.end()
    first.end()
    reports = {r["root_span"]: [m["name"] for m in r["metrics"]] for r in setup.store.reports()}
    assert reports == {"first": []}
    stats = setup.processor.stats()
    assert (stats["unreported_spans"], stats["late_spans"], stats["spans_not_reported"]) == (4, 0, 4)


def test_a_late_span_of_a_request_pushed_out_of_the_store_is_not_given_to_a_running_one() -> None:
    """The trace's first request still runs; the second's report leaves the store, then its late span ends."""
    store, processor, tracer = _shared_trace_setup(1)
    first = tracer.start_span("first", context=_remote_parent(0xAB), kind=SERVER)
    second = tracer.start_span("second", context=_remote_parent(0xAB), kind=SERVER)
    background = tracer.start_span("background", context=_under(second))
    second.end()
    tracer.start_span("other", kind=SERVER).end()  # pushes the second report out of the store
    background.end()
    first.end()
    assert [(r["root_span"], r["metrics"]) for r in store.reports()] == [("first", [])]
    stats = processor.stats()
    assert (stats["orphan_spans"], stats["late_spans"], stats["spans_not_reported"]) == (1, 0, 1)


@pytest.mark.parametrize("earlier", ["first of its trace", "second of its trace"])
def test_a_late_span_of_a_pushed_out_report_is_not_given_to_the_next_request_of_its_trace(
    earlier: str,
) -> None:
    """One page-load trace id, requests one after another: a report leaves the store, the next request starts."""
    store, processor, tracer = _shared_trace_setup(1)
    if earlier == "second of its trace":
        tracer.start_span("before", context=_remote_parent(0xAB), kind=SERVER).end()
    request = tracer.start_span("earlier", context=_remote_parent(0xAB), kind=SERVER)
    background = tracer.start_span("background", context=_under(request))
    request.end()
    tracer.start_span("other", kind=SERVER).end()  # pushes the earlier report out of the store
    nxt = tracer.start_span("next", context=_remote_parent(0xAB), kind=SERVER)
    background.end()
    nxt.end()
    assert [(r["root_span"], r["metrics"]) for r in store.reports()] == [("next", [])]
    stats = processor.stats()
    assert (stats["orphan_spans"], stats["late_spans"], stats["spans_not_reported"]) == (1, 0, 1)


def test_spans_after_shutdown_join_no_stored_report() -> None:
    """Once the processor is shut down, a new request of a stored report's trace adds nothing to it."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    tracer.start_span("before", context=_remote_parent(0xAB), kind=SERVER).end()
    setup.processor.shutdown()
    after = tracer.start_span("after", context=_remote_parent(0xAB), kind=SERVER)
    tracer.start_span("step", context=_under(after)).end()
    after.end()
    assert [(r["root_span"], r["metrics"]) for r in setup.store.reports()] == [("before", [])]
    stats = setup.processor.stats()
    assert (stats["late_spans"], stats["spans_not_reported"]) == (0, 2)
