"""Spans received from elsewhere (the browser) joining the reports of their traces."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from ha_agent_tracing import ReportEntry, SpanRecord

from .conftest import Tracing

MS = 1_000_000


def _browser(
    name: str, trace_id: int, span_id: int, parent_id: int | None, start: int, end: int
) -> SpanRecord:
    return SpanRecord(
        name, trace_id, span_id, parent_id, start, end, {"page": "chat"}, True, source="browser"
    )


def test_browser_spans_fold_into_the_backend_report_of_their_trace(tracing: Tracing) -> None:
    """Browser metrics join the server's report with source=browser, ordered by start; listeners hear it."""
    heard: list[ReportEntry] = []
    tracing.store.add_listener(heard.append)
    t = tracing.tracker
    with (
        t.tracer.start_as_current_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER) as root,
        t.track("rate_limit_check"),
    ):
        pass
    ctx = root.get_span_context()
    start = root.start_time  # type: ignore[attr-defined]
    click = _browser("send_click", ctx.trace_id, 0xB1, None, start - 5 * MS, start + 50 * MS)
    paint = _browser("response_painted", ctx.trace_id, 0xB2, 0xB1, start + 40 * MS, start + 45 * MS)
    assert tracing.processor.add_records([paint, click]) == 2
    (report,) = t.get_reports()
    assert [(m["name"], m["source"]) for m in report["metrics"]] == [
        ("send_click", "browser"),
        ("rate_limit_check", "server"),
        ("response_painted", "browser"),
    ]
    assert report["metrics"][0]["start_offset"] == pytest.approx(-5.0)
    assert report["metrics"][2]["parent"] == "send_click"
    assert len(heard) == 2 and heard[0].key == heard[1].key
    stats = tracing.processor.stats()
    assert (stats["external_spans"], stats["late_spans"]) == (2, 0)


def test_browser_spans_of_a_trace_unknown_here_make_their_own_report(tracing: Tracing) -> None:
    """With a root among them they become a report; without one they are counted as orphans."""
    t0 = 1_764_000_000_000_000_000
    page = _browser("page_load", 0xAAA, 0xC1, None, t0, t0 + 100 * MS)
    fcp = _browser("first_contentful_paint", 0xAAA, 0xC2, 0xC1, t0 + 10 * MS, t0 + 30 * MS)
    stray = _browser("stray", 0xBBB, 0xD2, 0xD1, t0, t0 + MS)
    assert tracing.processor.add_records([fcp, page, stray]) == 2
    (report,) = tracing.tracker.get_reports()
    assert (report["operation"], report["trace_id"]) == ("page_load", f"{0xAAA:032x}")
    assert [m["name"] for m in report["metrics"]] == ["first_contentful_paint"]
    assert tracing.processor.stats()["orphan_spans"] == 1


def test_add_records_rejects_what_is_not_a_span_record(tracing: Tracing) -> None:
    """A bad argument raises and adds nothing."""
    t0 = 1_764_000_000_000_000_000
    good = _browser("page_load", 0xAAA, 0xC1, None, t0, t0 + MS)
    with pytest.raises(TypeError, match="SpanRecord"):
        tracing.processor.add_records([good, {"name": "x"}])  # type: ignore[list-item]
    assert tracing.tracker.get_reports() == []
