"""The report processor: folding, grouping under concurrency, late spans, bounds."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ha_agent_tracing import (
    OPERATION_ATTRIBUTE,
    PerformanceTracker,
    RecordUnsampled,
    ReportProcessor,
    ReportStore,
)
from ha_agent_tracing.reports import ReportEntry, SpanRecord, _fold
from ha_agent_tracing.reports._entries import RequestRecords
from ha_agent_tracing.reports._processor import _IS_REMOTE, _SPAN_ID, _TRACE_ID

from .conftest import Tracing, make_tracing

MS = 1_000_000  # ns


def test_report_has_the_documented_structure_and_units(tracing: Tracing) -> None:
    """Durations in ms (float), timestamp in epoch seconds of the root start, metrics by start."""
    tracer = tracing.tracker.tracer
    t0 = 1_764_000_000_000_000_000  # ns since the epoch
    root = tracer.start_span(
        "POST /api/v1/chat", start_time=t0, attributes={OPERATION_ATTRIBUTE: "chat_request"}
    )
    ctx = trace.set_span_in_context(root)
    late_start = tracer.start_span(
        "openai_api_call", context=ctx, start_time=t0 + 20 * MS, attributes={"iteration": 1}
    )
    early = tracer.start_span(
        "rate_limit_check", context=ctx, start_time=t0 + 1 * MS, attributes={"exceeded": False}
    )
    early.end(end_time=t0 + 1 * MS + 500_000)
    late_start.end(end_time=t0 + 1220 * MS)
    root.end(end_time=t0 + 2345 * MS + 670_000)

    (report,) = tracing.tracker.get_reports()
    assert report["operation"] == "chat_request"
    assert report["total_duration"] == pytest.approx(2345.67)
    assert report["timestamp"] == pytest.approx(1_764_000_000.0)
    assert isinstance(report["total_duration"], float) and isinstance(report["timestamp"], float)
    assert [m["name"] for m in report["metrics"]] == ["rate_limit_check", "openai_api_call"]
    first, second = report["metrics"]
    assert first["duration"] == pytest.approx(0.5)
    assert first["metadata"] == {"exceeded": False}
    assert first["start_offset"] == pytest.approx(1.0)
    assert second["duration"] == pytest.approx(1200.0)
    assert second["metadata"] == {"iteration": 1}
    assert report["trace_id"] == f"{root.get_span_context().trace_id:032x}"
    assert len(report["trace_id"]) == 32
    assert OPERATION_ATTRIBUTE not in str(report["metrics"])


def test_metrics_know_their_parent_metric(tracing: Tracing) -> None:
    """A nested metric names the metric it ran inside."""
    t = tracing.tracker
    with (
        t.operation("chat_request"),
        t.track("message_assembly"),
        t.track("context_refresh", cache_hit=False),
    ):
        pass
    (report,) = t.get_reports()
    by_name = {m["name"]: m for m in report["metrics"]}
    assert by_name["context_refresh"]["parent"] == "message_assembly"
    assert by_name["message_assembly"]["parent"] is None


def test_operation_defaults_to_the_root_span_name(tracing: Tracing) -> None:
    """Without set_operation the report is named after its root span, never a per-request id."""
    with tracing.tracker.track("GET /status"):
        pass
    assert tracing.tracker.get_reports()[0]["operation"] == "GET /status"


def test_spans_of_other_instrumentations_are_not_metrics(tracing: Tracing) -> None:
    """Only the tracker's spans become metrics; an HTTP client span inside a request does not."""
    other = tracing.provider.get_tracer("opentelemetry.instrumentation.httpx")
    with (
        tracing.tracker.operation("chat_request"),
        other.start_as_current_span("POST"),
        tracing.tracker.track("inner"),
    ):
        pass
    (report,) = tracing.tracker.get_reports()
    assert [m["name"] for m in report["metrics"]] == ["inner"]
    assert report["metrics"][0]["parent"] is None


def test_a_failed_root_and_metric_are_marked(tracing: Tracing) -> None:
    """A request whose metric raised has status error on the metric and the root."""
    with (
        pytest.raises(ValueError, match="bad entity"),
        tracing.tracker.operation("chat_request"),
        tracing.tracker.track("tool"),
    ):
        raise ValueError("bad entity")
    (report,) = tracing.tracker.get_reports()
    assert report["status"] == "error"
    assert report["metrics"][0]["status"] == "error"
    assert "bad entity" in report["metrics"][0].get("error", "")


def _request(tracker: PerformanceTracker, request_id: int, steps: int) -> None:
    with tracker.operation("chat_request", request_id=request_id):
        for step in range(steps):
            with tracker.track("step", request_id=request_id, step=step):
                time.sleep(random.random() / 2000)


def test_interleaved_requests_on_many_threads_never_mix(tracing: Tracing) -> None:
    """Forty requests on eight threads at once: one report each, only its own metrics."""
    threads = [
        threading.Thread(target=_request, args=(tracing.tracker, request_id, 5)) for request_id in range(40)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reports = tracing.tracker.get_reports()
    assert len(reports) == 40
    for report in reports:
        ids = {m["metadata"]["request_id"] for m in report["metrics"]}
        assert len(ids) == 1 and len(report["metrics"]) == 5
        assert [m["metadata"]["step"] for m in report["metrics"]] == list(range(5))
    assert sorted(next(iter({m["metadata"]["request_id"] for m in r["metrics"]})) for r in reports) == list(
        range(40)
    )


async def test_interleaved_requests_on_asyncio_tasks_never_mix(tracing: Tracing) -> None:
    """Requests on concurrent tasks, each fanning out to subtasks, keep their own metrics."""
    t = tracing.tracker

    async def tool(request_id: int, n: int) -> None:
        with t.track("tool_execution", request_id=request_id, n=n):
            await asyncio.sleep(random.random() / 500)

    async def request(request_id: int) -> None:
        with t.operation("chat_request", request_id=request_id):
            await asyncio.sleep(random.random() / 500)
            await asyncio.gather(*(tool(request_id, n) for n in range(3)))

    await asyncio.gather(*(request(i) for i in range(50)))
    reports = t.get_reports_for_operation("chat_request")
    assert len(reports) == 50
    for report in reports:
        assert len(report["metrics"]) == 3
        assert len({m["metadata"]["request_id"] for m in report["metrics"]}) == 1


def test_work_handed_to_another_thread_joins_its_request(tracing: Tracing) -> None:
    """A metric recorded on a worker thread with the request's context lands in its report."""
    t = tracing.tracker
    with t.operation("chat_request"):
        ctx = context_api.get_current()

        def work() -> None:
            token = context_api.attach(ctx)
            try:
                with t.track("threaded"):
                    pass
            finally:
                context_api.detach(token)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    (report,) = t.get_reports()
    assert [m["name"] for m in report["metrics"]] == ["threaded"]


def test_a_span_ending_after_its_root_still_lands_in_the_report(tracing: Tracing) -> None:
    """A background-task span that starts and ends after the root ended joins the same report."""
    t = tracing.tracker
    root = t.tracer.start_span("POST /api/v1/chat", attributes={OPERATION_ATTRIBUTE: "chat_request"})
    ctx = trace.set_span_in_context(root)
    open_child = t.tracer.start_span("still_running", context=ctx)
    root.end()
    assert [m["name"] for m in t.get_reports()[0]["metrics"]] == []
    late = t.tracer.start_span("background_task", context=ctx)
    late.end()
    open_child.end()
    (report,) = t.get_reports()
    assert [m["name"] for m in report["metrics"]] == ["still_running", "background_task"]
    assert tracing.processor.stats()["late_spans"] == 2


def test_remote_parents_make_separate_reports_in_one_trace(tracing: Tracing) -> None:
    """Two local roots under one remote parent (one trace) give two reports, not one mixed one."""
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    remote = TraceContextTextMapPropagator().extract(carrier)
    t = tracing.tracker
    for name in ("first", "second"):
        with t.tracer.start_as_current_span(f"server {name}", context=remote), t.track(name):
            pass
    reports = t.get_reports()
    assert [r["trace_id"] for r in reports] == ["0af7651916cd43dd8448eb211c80319c"] * 2
    assert [[m["name"] for m in r["metrics"]] for r in reports] == [["first"], ["second"]]


def test_a_root_that_never_ends_is_evicted_after_the_timeout() -> None:
    """Pending requests are dropped after pending_timeout_s; memory does not grow."""
    now = [0.0]
    setup = make_tracing(pending_timeout_s=10.0, clock=lambda: now[0])
    t = setup.tracker
    stuck = t.tracer.start_span("never_ends")
    child = t.tracer.start_span("child", context=trace.set_span_in_context(stuck))
    assert setup.processor.stats()["pending_traces"] == 1
    now[0] = 11.0
    with t.operation("next_request"):
        pass
    stats = setup.processor.stats()
    assert stats["evicted_traces"] == 1
    assert stats["pending_traces"] == 0
    child.end()
    stuck.end()
    assert [r["operation"] for r in t.get_reports()] == ["next_request"]


def test_pending_requests_are_bounded_in_number() -> None:
    """Beyond max_pending_traces the oldest unfinished request is dropped and counted."""
    setup = make_tracing(max_pending_traces=3)
    spans = [setup.tracker.tracer.start_span(f"r{i}") for i in range(5)]
    stats = setup.processor.stats()
    assert stats["pending_traces"] == 3
    assert stats["evicted_traces"] == 2
    for span in spans:
        span.end()
    assert [r["operation"] for r in setup.tracker.get_reports()] == ["r2", "r3", "r4"]


def test_late_spans_after_the_window_are_counted_not_joined() -> None:
    """After late_span_window_s a request takes no more spans; each one refused is counted."""
    now = [0.0]
    setup = make_tracing(late_span_window_s=5.0, clock=lambda: now[0])
    t = setup.tracker
    for _ in range(20):
        with t.operation("r"), t.track("m"):
            pass
    root = t.tracer.start_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER)
    still_open = t.tracer.start_span("still_open", context=trace.set_span_in_context(root))
    root.end()
    assert setup.processor.stats()["lingering_traces"] == 21
    now[0] = 6.0
    still_open.end()
    with t.operation("r"):
        pass
    stats = setup.processor.stats()
    assert stats["lingering_traces"] == 1
    assert (stats["expired_late_spans"], stats["late_spans"], stats["spans_not_reported"]) == (1, 0, 1)
    assert t.get_reports()[20]["metrics"] == []


def test_a_span_whose_parent_is_unknown_is_counted_not_reported(tracing: Tracing) -> None:
    """A local parent the processor never saw (another provider) makes an orphan, counted."""
    other = TracerProvider(shutdown_on_exit=False).get_tracer("x")
    with other.start_as_current_span("foreign"), tracing.tracker.track("orphan"):
        pass
    assert tracing.tracker.get_reports() == []
    assert tracing.processor.stats()["orphan_spans"] == 1


def test_the_processor_never_raises_into_the_application(lib_logs: pytest.LogCaptureFixture) -> None:
    """A failing store is logged once and counted; the traced code runs on."""

    class BrokenStore(ReportStore):
        def insert(self, entry: ReportEntry) -> tuple[bool, list[ReportEntry]]:
            raise OSError("disk on fire")

    provider = TracerProvider(shutdown_on_exit=False)
    processor = ReportProcessor(BrokenStore())
    provider.add_span_processor(processor)
    tracker = PerformanceTracker(provider, processor.store)
    for _ in range(3):
        with tracker.operation("chat_request"):
            pass
    assert processor.stats()["internal_errors"] == 3
    errors = [r for r in lib_logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "application is not affected" in errors[0].getMessage()


def test_each_report_is_logged_once_with_its_slowest_metrics(
    tracing: Tracing, lib_logs: pytest.LogCaptureFixture
) -> None:
    """One [Performance] INFO line per finished request: operation, total ms, slowest metrics."""
    with tracing.tracker.operation("chat_request"):
        with tracing.tracker.track("fast"):
            pass
        with tracing.tracker.track("slow"):
            time.sleep(0.01)
    lines = [r.getMessage() for r in lib_logs.records if "[Performance]" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("[Performance] chat_request ")
    assert "slowest: slow " in lines[0]
    assert lines[0].index("slow") < lines[0].index("fast")


def _unsampled_setup(report_unsampled: bool) -> Tracing:
    setup = make_tracing()
    sampler = ParentBased(TraceIdRatioBased(0.0))
    provider = TracerProvider(
        sampler=RecordUnsampled(sampler) if report_unsampled else sampler, shutdown_on_exit=False
    )
    provider.add_span_processor(setup.processor)
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(SimpleSpanProcessor(setup.exporter))
    setup.tracker = PerformanceTracker(provider, setup.store)
    return setup


def test_unsampled_requests_are_reported_but_not_exported() -> None:
    """With RecordUnsampled, a dropped trace still gets a report (sampled=False) and is not exported."""
    setup = _unsampled_setup(report_unsampled=True)
    with setup.tracker.operation("chat_request"), setup.tracker.track("m"):
        pass
    (report,) = setup.tracker.get_reports()
    assert report["sampled"] is False
    assert [m["name"] for m in report["metrics"]] == ["m"]
    # SimpleSpanProcessor, like the batch processor, exports only sampled spans.
    assert setup.exporter.get_finished_spans() == ()


def test_without_record_unsampled_dropped_traces_have_no_report() -> None:
    """The opt-out: a plain sampler's DROP means no span, so no report."""
    setup = _unsampled_setup(report_unsampled=False)
    with setup.tracker.operation("chat_request"):
        pass
    assert setup.tracker.get_reports() == []


def test_a_non_recording_remote_parent_does_not_confuse_grouping(tracing: Tracing) -> None:
    """An unsampled remote parent still yields one report for the local root under it."""
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0)))
    ctx = trace.set_span_in_context(parent)
    provider = TracerProvider(sampler=RecordUnsampled(ParentBased(ALWAYS_OFF)), shutdown_on_exit=False)
    provider.add_span_processor(tracing.processor)
    tracker = PerformanceTracker(provider, tracing.store)
    token = context_api.attach(ctx)
    try:
        with tracker.track("server"), tracker.track("inner"):
            pass
    finally:
        context_api.detach(token)
    (report,) = tracker.get_reports()
    assert report["trace_id"] == f"{0xABC:032x}"
    assert [m["name"] for m in report["metrics"]] == ["inner"]


def test_processor_rejects_invalid_bounds() -> None:
    """Invalid explicit arguments raise."""
    with pytest.raises(ValueError, match="max_pending_traces"):
        ReportProcessor(max_pending_traces=0)
    with pytest.raises(ValueError, match="greater than 0"):
        ReportProcessor(pending_timeout_s=0)


def test_a_trace_with_no_metric_and_no_server_span_makes_no_report(tracing: Tracing) -> None:
    """A bare client span of another library outside any request is counted, not reported."""
    other = tracing.provider.get_tracer("opentelemetry.instrumentation.httpx")
    with other.start_as_current_span("GET", kind=trace.SpanKind.CLIENT):
        pass
    with other.start_as_current_span("POST /hook", kind=trace.SpanKind.SERVER):
        pass
    with other.start_as_current_span("job"), tracing.tracker.track("step"):
        pass
    assert [r["operation"] for r in tracing.tracker.get_reports()] == ["POST /hook", "job"]
    assert tracing.processor.stats()["unreported_traces"] == 1


def test_concurrent_late_metrics_are_all_kept(tracing: Tracing) -> None:
    """Late metrics ending at once on many threads each land in the one report."""
    t = tracing.tracker
    root = t.tracer.start_span("POST /api/v1/chat")
    ctx = trace.set_span_in_context(root)
    root.end()
    barrier = threading.Barrier(16)

    def late(n: int) -> None:
        span = t.tracer.start_span(f"late_{n}", context=ctx)
        barrier.wait()
        span.end()

    threads = [threading.Thread(target=late, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (report,) = t.get_reports()
    assert sorted(m["name"] for m in report["metrics"]) == sorted(f"late_{n}" for n in range(16))


def test_a_late_parent_names_the_child_that_arrived_before_it(tracing: Tracing) -> None:
    """Child ends, then its parent: both late; the child's parent is named once the parent lands."""
    t = tracing.tracker
    root = t.tracer.start_span("POST /api/v1/chat")
    root_ctx = trace.set_span_in_context(root)
    root.end()
    parent = t.tracer.start_span("background_job", context=root_ctx)
    child = t.tracer.start_span("save", context=trace.set_span_in_context(parent))
    child.end()
    assert t.get_reports()[0]["metrics"][0]["parent"] is None
    parent.end()
    metrics = {m["name"]: m for m in t.get_reports()[0]["metrics"]}
    assert metrics["save"]["parent"] == "background_job"
    assert [m["name"] for m in t.get_reports()[0]["metrics"]] == ["background_job", "save"]


def test_finished_requests_linger_no_longer_than_their_report_is_stored() -> None:
    """After a burst, requests held for late spans never outnumber the store's reports."""
    now = [0.0]
    setup = make_tracing(clock=lambda: now[0])
    for _ in range(300):
        with setup.tracker.operation("r"), setup.tracker.track("m"):
            pass
    stats = setup.processor.stats()
    assert stats["stored_reports"] == 100
    assert stats["lingering_traces"] == 100
    assert stats["tracked_spans"] == 100
    now[0] = 11.0  # past the late-span window
    stats = setup.processor.stats()
    assert stats["lingering_traces"] == 0
    assert stats["reports"] == 300


def test_by_default_as_many_requests_linger_as_the_store_keeps_reports() -> None:
    """Spans of a request whose report has left the store are not held for late arrivals."""
    store = ReportStore(max_reports=4)
    processor = ReportProcessor(store)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracker = PerformanceTracker(provider, store)
    for _ in range(30):
        with tracker.operation("r"), tracker.track("m"):
            pass
    stats = processor.stats()
    assert stats["stored_reports"] == 4
    assert stats["lingering_traces"] <= 5
    assert stats["tracked_spans"] <= 5 * 2


def _records(*names: str) -> tuple[SpanRecord, list[SpanRecord]]:
    """A hand-made root and one child metric record per name."""
    t0 = 1_764_000_000_000_000_000
    root = SpanRecord("POST /api/v1/chat", 0xAB, 0x1, None, t0, t0 + 10 * MS, {}, False, kind="server")
    children = [
        SpanRecord(name, 0xAB, 0x10 + n, 0x1, t0 + n * MS, t0 + (n + 1) * MS, {"n": n}, True)
        for n, name in enumerate(names)
    ]
    return root, children


def test_a_pending_report_is_folded_on_first_read_and_again_only_when_spans_arrive() -> None:
    """Reads share one fold until a late span joins; the next read includes it."""
    root, (a, b, late) = _records("a", "b", "late")
    trace_records = RequestRecords(root.trace_id, root.span_id, 0.0, True)
    trace_records.records += [a, b]
    errors: list[Exception] = []
    entry = ReportEntry(root=root, trace=trace_records, on_error=errors.append)
    assert entry.key == (f"{0xAB:032x}", f"{0x1:016x}")
    first = entry.report()
    assert first is not None
    assert [m["name"] for m in first["metrics"]] == ["a", "b"]
    assert entry.report() is first
    trace_records.records.append(late)
    again = entry.report()
    assert again is not first
    assert again is not None
    assert [m["name"] for m in again["metrics"]] == ["a", "b", "late"]
    assert errors == []


class _Unreadable(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("cannot read attributes")


def test_a_report_that_cannot_be_folded_is_left_out_and_counted() -> None:
    """A fold that fails at read time is handed to the error counter; other reports still answer."""
    good_root, good_children = _records("a")
    bad_root, (bad,) = _records("b")
    bad_root.trace_id = bad.trace_id = 0xCD
    bad.attributes = _Unreadable()
    errors: list[Exception] = []
    good_trace = RequestRecords(good_root.trace_id, good_root.span_id, 0.0, True)
    good_trace.records += good_children
    bad_trace = RequestRecords(bad_root.trace_id, bad_root.span_id, 0.0, True)
    bad_trace.records.append(bad)
    store = ReportStore()
    store.put(ReportEntry(root=bad_root, trace=bad_trace, on_error=errors.append))
    store.put(ReportEntry(root=good_root, trace=good_trace, on_error=errors.append))
    assert [[m["name"] for m in r["metrics"]] for r in store.reports()] == [["a"]]
    assert len(store) == 2
    assert [str(e) for e in errors] == ["cannot read attributes"]
    assert store.get(f"{0xAB:032x}") is not None
    assert store.get(f"{0xCD:032x}") is None


def test_span_context_is_read_as_the_tuple_its_type_declares() -> None:
    """The processor indexes SpanContext (trace id, span id, is_remote); the API's layout must hold."""
    ctx = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    assert (ctx[_TRACE_ID], ctx[_SPAN_ID], ctx[_IS_REMOTE]) == (0xABC, 0xDEF, True)


def test_reports_are_folded_when_read_not_when_logged(
    tracing: Tracing, lib_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request path (INFO line included) builds no report; the first read does, once."""
    calls: list[str] = []
    real_fold = _fold.fold

    def counting_fold(root: SpanRecord, *args: Any, **kwargs: Any) -> Any:
        calls.append(root.name)
        return real_fold(root, *args, **kwargs)

    monkeypatch.setattr(_fold, "fold", counting_fold)
    for n in range(3):
        with tracing.tracker.operation(f"op{n}"), tracing.tracker.track("m"):
            pass
    assert len([r for r in lib_logs.records if "[Performance]" in r.getMessage()]) == 3
    assert calls == []
    assert [r["operation"] for r in tracing.tracker.get_reports()] == ["op0", "op1", "op2"]
    tracing.tracker.get_summary()
    assert calls == ["op0", "op1", "op2"]


def test_a_metric_inside_an_http_client_span_names_the_metric_around_that_span(tracing: Tracing) -> None:
    """The real SDK: a metric's ``parent`` looks through the client span between it and the outer metric."""
    t = tracing.tracker
    http = tracing.provider.get_tracer("opentelemetry.instrumentation.httpx")
    with (
        t.operation("chat_request"),
        t.track("tool_execution"),
        http.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as client,
        t.track("parse_response"),
    ):
        client_id = f"{client.get_span_context().span_id:016x}"
    metrics = {m["name"]: m for m in t.get_reports()[0]["metrics"]}
    assert (metrics["parse_response"]["parent"], metrics["parse_response"]["parent_span_id"]) == (
        "tool_execution",
        client_id,
    )
