"""The tracker API: the reference document's usage, recording and metadata."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.trace import StatusCode

from ha_agent_tracing import configure_tracing

from .conftest import Tracing


def test_reference_backend_usage_runs_verbatim() -> None:
    """The reference document's backend snippet runs unchanged against real reports."""
    configure_tracing(exporters="none")
    from ha_agent_tracing import get_tracker

    tracker = get_tracker()
    for _ in range(3):
        with tracker.operation("chat_request"), tracker.track("rate_limit_check", exceeded=False):
            pass

    # --- the reference's usage, verbatim apart from the import path ---
    reports = tracker.get_reports()
    operation_reports = tracker.get_reports_for_operation("chat_request")
    avg_duration = tracker.get_average_duration("chat_request")
    json_reports = tracker.export_reports()
    # ---

    assert len(reports) == 3
    assert len(operation_reports) == 3
    expected = sum(r["total_duration"] for r in operation_reports) / 3
    assert avg_duration == pytest.approx(expected)
    assert avg_duration > 0
    assert json.loads(json_reports) == reports


def test_average_of_an_unknown_operation_is_zero(tracing: Tracing) -> None:
    """An operation with no reports averages 0.0, as the reference's callers expect a float."""
    assert tracing.tracker.get_average_duration("nothing_yet") == 0.0


def test_metric_is_one_span_named_after_it_with_metadata_as_attributes(tracing: Tracing) -> None:
    """track() records one span: name = metric name, attributes = metadata."""
    with tracing.tracker.track("rate_limit_check", exceeded=False) as metric:
        metric.set("exceeded", True)
    (span,) = tracing.exporter.get_finished_spans()
    assert span.name == "rate_limit_check"
    assert dict(span.attributes or {}) == {"exceeded": True}
    assert metric.duration is not None and metric.duration >= 0


def test_metadata_values_are_converted_not_lost(tracing: Tracing) -> None:
    """None is left out; objects become str; sequences become homogeneous tuples."""

    class Thing:
        def __str__(self) -> str:
            return "thing!"

    with tracing.tracker.track(
        "m", none=None, obj=Thing(), ints=[1, 2], mixed=[1, "a"], raw=b"bytes", nested={"a": 1}
    ) as metric:
        metric.update({"later": Thing()}, n=3)
    (span,) = tracing.exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "obj": "thing!",
        "ints": (1, 2),
        "mixed": ("1", "a"),
        "raw": "bytes",
        "nested": "{'a': 1}",
        "later": "thing!",
        "n": 3,
    }


def test_a_failing_block_marks_the_span_as_error_and_reraises(tracing: Tracing) -> None:
    """The exception propagates; the span has ERROR status and the exception event."""
    with pytest.raises(KeyError), tracing.tracker.track("tool_execution"):
        raise KeyError("light.kitchen")
    (span,) = tracing.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert "KeyError" in (span.status.description or "")
    assert [event.name for event in span.events] == ["exception"]


def test_decorator_records_each_call_of_a_sync_function(tracing: Tracing) -> None:
    """@tracker.track(...) on a sync function records one metric per call and keeps the result."""

    @tracing.tracker.track("token_count_retrieval", source="estimate")
    def count(text: str) -> int:
        return len(text)

    assert count("abc") == 3
    assert count("abcdef") == 6
    spans = tracing.exporter.get_finished_spans()
    assert [s.name for s in spans] == ["token_count_retrieval"] * 2
    assert all(dict(s.attributes or {}) == {"source": "estimate"} for s in spans)
    assert count.__name__ == "count"


async def test_decorator_records_each_call_of_an_async_function(tracing: Tracing) -> None:
    """@tracker.track(...) on a coroutine function times the awaited body."""

    @tracing.tracker.track("openai_api_call")
    async def call() -> str:
        await asyncio.sleep(0.02)
        return "ok"

    assert await call() == "ok"
    (span,) = tracing.exporter.get_finished_spans()
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e6 >= 15


def test_decorated_function_that_raises_records_the_error(tracing: Tracing) -> None:
    """The decorator form marks the span failed too, and re-raises."""

    @tracing.tracker.track("tool_execution")
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        broken()
    (span,) = tracing.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR


def test_nested_metrics_are_parent_and_child(tracing: Tracing) -> None:
    """A metric opened inside another is its child span."""
    with tracing.tracker.track("message_assembly"), tracing.tracker.track("context_refresh"):
        pass
    child, parent = tracing.exporter.get_finished_spans()
    assert child.parent is not None and parent.context is not None
    assert child.parent.span_id == parent.context.span_id


def test_set_operation_names_the_report(tracing: Tracing) -> None:
    """set_operation() inside a request names that request's report."""
    with tracing.tracker.track("POST /api/v1/chat"):
        tracing.tracker.set_operation("chat_request")
        with tracing.tracker.track("rate_limit_check"):
            pass
    (report,) = tracing.tracker.get_reports()
    assert report["operation"] == "chat_request"


def test_operation_outside_any_span_is_its_own_report(tracing: Tracing) -> None:
    """operation() with no active span opens a root and yields exactly one report."""
    with tracing.tracker.operation("nightly_sync", source="cron"), tracing.tracker.track("step"):
        pass
    (report,) = tracing.tracker.get_reports()
    assert report["operation"] == "nightly_sync"
    assert [m["name"] for m in report["metrics"]] == ["step"]


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_invalid_metric_names_raise_clearly(tracing: Tracing, bad: object) -> None:
    """An invalid explicit argument raises ValueError that says what is wrong."""
    with pytest.raises(ValueError, match="non-empty string"):
        tracing.tracker.track(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        tracing.tracker.set_operation(bad)  # type: ignore[arg-type]


def test_a_metric_cannot_be_entered_twice(tracing: Tracing) -> None:
    """Reusing one track() object as a context manager is an error, not a silent mix-up."""
    metric = tracing.tracker.track("m")
    with metric:
        pass
    with pytest.raises(RuntimeError, match="already entered"), metric:
        pass
