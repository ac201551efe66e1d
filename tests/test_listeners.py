"""Store listeners: told of each report as it is put and again when spans join it."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from ha_agent_tracing import ReportEntry, ReportStore

from .conftest import Tracing


def test_a_listener_hears_each_report_when_put_and_again_when_late_spans_join(tracing: Tracing) -> None:
    """Same key twice: the second entry's report has the late metric; no lock is held during the call."""
    heard: list[tuple[tuple[str, str], list[str], bool]] = []

    def listener(entry: ReportEntry) -> None:
        report = entry.report()
        assert report is not None
        locked = tracing.store._lock.locked() or tracing.processor._lock.locked()  # pyright: ignore[reportPrivateUsage]
        heard.append((entry.key, [m["name"] for m in report["metrics"]], locked))

    tracing.store.add_listener(listener)
    t = tracing.tracker
    root = t.tracer.start_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER)
    ctx = trace.set_span_in_context(root)
    with t.tracer.start_as_current_span("in_time", context=ctx):
        pass
    root.end()
    late = t.tracer.start_span("late", context=ctx)
    late.end()
    key = (f"{root.get_span_context().trace_id:032x}", f"{root.get_span_context().span_id:016x}")
    assert heard == [(key, ["in_time"], False), (key, ["in_time", "late"], False)]


def test_a_raising_listener_is_logged_once_counted_and_never_stops_publishing(
    tracing: Tracing, lib_logs: pytest.LogCaptureFixture
) -> None:
    """Reports still land, other listeners still hear them, the error is counted in the stats."""
    heard: list[str] = []

    def broken(entry: ReportEntry) -> None:
        raise RuntimeError("history disk full")

    tracing.store.add_listener(broken)
    tracing.store.add_listener(lambda entry: heard.append(entry.trace_id))
    for _ in range(3):
        with tracing.tracker.operation("chat_request"):
            pass
    assert len(tracing.tracker.get_reports()) == 3
    assert len(heard) == 3
    stats = tracing.processor.stats()
    assert (stats["listener_errors"], stats["internal_errors"]) == (3, 0)
    errors = [r for r in lib_logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "listener" in errors[0].getMessage()


def test_listeners_hear_reports_put_by_hand_and_can_be_removed() -> None:
    """A dict put into the store reaches listeners as an entry; a removed listener hears nothing more."""
    store = ReportStore()
    heard: list[ReportEntry] = []
    store.add_listener(heard.append)
    report = {
        "operation": "x",
        "total_duration": 1.0,
        "timestamp": 1.0,
        "metrics": [],
        "trace_id": "ab" * 16,
        "span_id": "cd" * 8,
    }
    store.put(report)  # type: ignore[arg-type]
    store.remove_listener(heard.append)
    store.put({**report, "span_id": "ef" * 8})  # type: ignore[arg-type]
    assert [e.key for e in heard] == [("ab" * 16, "cd" * 8)]
    assert heard[0].report() == report
    with pytest.raises(TypeError, match="callable"):
        store.add_listener("not a function")  # type: ignore[arg-type]
