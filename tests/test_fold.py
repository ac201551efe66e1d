"""Folding hand-made SpanRecords: the report's keys and units, names, parents, sources."""

from __future__ import annotations

from typing import Any

import pytest

from ha_agent_tracing import OPERATION_ATTRIBUTE, SpanRecord, fold

MS = 1_000_000  # ns
T0 = 1_764_000_000_000_000_000  # epoch ns
TRACE = 0x0AF7651916CD43DD8448EB211C80319C


def record(
    name: str,
    span_id: int,
    parent_id: int | None,
    start_ms: float,
    end_ms: float,
    attributes: dict[str, Any] | None = None,
    *,
    is_metric: bool = True,
    **more: Any,
) -> SpanRecord:
    return SpanRecord(
        name,
        TRACE,
        span_id,
        parent_id,
        T0 + int(start_ms * MS),
        T0 + int(end_ms * MS),
        attributes or {},
        is_metric,
        **more,
    )


ROOT = record(
    "POST /api/v1/chat", 0x1, None, 0, 2345.67, {OPERATION_ATTRIBUTE: "chat_request"}, kind="server"
)


def test_a_report_has_the_documented_keys_and_units() -> None:
    """ms durations and offsets, epoch-second timestamp, hex ids, metrics by start, status, source."""
    late = record("openai_api_call", 0x3, 0x1, 20, 1220, {"iteration": 1})
    early = record("rate_limit_check", 0x2, 0x1, 1, 1.5, {"exceeded": False})
    failed = record("tool", 0x4, 0x3, 30, 40, failed=True, error="ValueError: bad entity")
    http = record("POST", 0x5, 0x3, 25, 26, is_metric=False, kind="client")
    report = fold(ROOT, [late, ROOT, failed, http, early])
    assert report["operation"] == "chat_request"
    assert report["total_duration"] == pytest.approx(2345.67)
    assert report["timestamp"] == pytest.approx(1_764_000_000.0)
    assert report["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert report["span_id"] == "0000000000000001"
    assert report["root_span"] == "POST /api/v1/chat"
    assert (report["status"], report["sampled"], report["truncated"]) == ("ok", True, False)
    assert "truncated_spans" not in report
    assert [m["name"] for m in report["metrics"]] == ["rate_limit_check", "openai_api_call", "tool"]
    first, second, third = report["metrics"]
    assert first == {
        "name": "rate_limit_check",
        "duration": pytest.approx(0.5),
        "metadata": {"exceeded": False},
        "start_offset": pytest.approx(1.0),
        "parent": None,
        "parent_span_id": "0000000000000001",
        "span_id": "0000000000000002",
        "status": "ok",
        "source": "server",
    }
    assert second["duration"] == pytest.approx(1200.0)
    assert (third["parent"], third["status"], third.get("error")) == (
        "openai_api_call",
        "error",
        "ValueError: bad entity",
    )


def test_the_library_s_own_attributes_stay_out_of_metadata() -> None:
    """Attributes under ha_agent_tracing. are the library's own; tuples become lists."""
    step = record(
        "step", 0x2, 0x1, 1, 2, {OPERATION_ATTRIBUTE: "inner", "ha_agent_tracing.x": 1, "k": (1, 2)}
    )
    (metric,) = fold(ROOT, [step])["metrics"]
    assert metric["metadata"] == {"k": [1, 2]}


def test_metadata_is_filtered_alike_for_keys_seen_before_and_past_the_remembered_keys() -> None:
    """The filter remembers its answer per key (a bounded number of them): the answer never changes."""
    many = {f"k{i}": i for i in range(5000)}  # more keys than are remembered
    attributes = {
        "ha_agent_tracing.y": 1,
        "openinference.span.kind": "CHAIN",
        **many,
        "ha_agent_tracing.z": 2,
        "t": (1, 2),
    }
    for _ in range(2):
        (metric,) = fold(ROOT, [record("step", 0x2, 0x1, 1, 2, attributes)])["metrics"]
        assert metric["metadata"] == {**many, "t": [1, 2]}


def test_a_metric_that_ends_before_it_starts_lasts_zero_ms() -> None:
    (metric,) = fold(ROOT, [record("step", 0xABC, 0x1, 5, 3)])["metrics"]
    assert (metric["duration"], metric["start_offset"]) == (0.0, pytest.approx(5.0))
    assert (metric["span_id"], metric["parent_span_id"]) == ("0000000000000abc", "0000000000000001")


def test_the_operation_comes_from_the_root_then_the_earliest_span_then_the_root_name() -> None:
    """Without a named root, the span that *started* first names the operation, whatever the list order."""
    root = record("job", 0x1, None, 0, 100)
    starts_late = record("b", 0x3, 0x1, 50, 60, {OPERATION_ATTRIBUTE: "late_name"})
    starts_early = record("a", 0x2, 0x1, 10, 90, {OPERATION_ATTRIBUTE: "early_name"})
    assert fold(root, [starts_late, starts_early])["operation"] == "early_name"
    assert fold(root, [starts_early, starts_late])["operation"] == "early_name"
    assert fold(root, [record("c", 0x4, 0x1, 1, 2)])["operation"] == "job"
    named_root = record("job", 0x1, None, 0, 100, {OPERATION_ATTRIBUTE: "nightly"})
    assert fold(named_root, [starts_early])["operation"] == "nightly"


def test_browser_spans_fold_in_with_their_source_and_may_start_before_the_root() -> None:
    """A browser metric that started 5 ms before the server's root has start_offset -5.0."""
    click = record("send_click", 0x9, None, -5, 2400, source="browser")
    report = fold(ROOT, [click])
    (metric,) = report["metrics"]
    assert (metric["source"], metric["start_offset"], metric["parent"]) == ("browser", -5.0, None)


def test_a_truncated_fold_says_how_many_spans_were_left_out() -> None:
    """truncated_spans marks the report."""
    report = fold(ROOT, [], truncated_spans=7)
    assert (report["truncated"], report.get("truncated_spans")) == (True, 7)


def test_a_failed_unsampled_root_is_marked() -> None:
    """The root's status and sampled flag are the report's."""
    root = record("job", 0x1, None, 0, 1, failed=True, error="boom", sampled=False)
    report = fold(root, [])
    assert (report["status"], report["sampled"]) == ("error", False)


def test_a_metric_s_parent_is_the_nearest_enclosing_metric_through_spans_that_are_not_metrics() -> None:
    """A metric inside an HTTP client span inside a metric: ``parent`` names the outer metric.

    ``parent_span_id`` stays the direct parent (the client span), so a trace tool finds
    the real span tree; ``parent`` is what a dashboard indents by.
    """
    outer = record("tool_execution", 0x2, 0x1, 1, 50)
    http = record("GET /api/states", 0x3, 0x2, 2, 40, is_metric=False, kind="client")
    proxy = record("proxy", 0x4, 0x3, 3, 30, is_metric=False)
    inner = record("parse_response", 0x5, 0x4, 4, 20)
    beside = record("outside_any_metric", 0x7, 0x6, 5, 6)
    library = record("library_step", 0x6, 0x1, 4, 8, is_metric=False)
    report = fold(ROOT, [outer, http, proxy, inner, beside, library])
    by_name = {m["name"]: m for m in report["metrics"]}
    assert (by_name["parse_response"]["parent"], by_name["parse_response"]["parent_span_id"]) == (
        "tool_execution",
        "0000000000000004",
    )
    assert (by_name["outside_any_metric"]["parent"], by_name["outside_any_metric"]["parent_span_id"]) == (
        None,
        "0000000000000006",
    )
    assert by_name["tool_execution"]["parent"] is None


def test_a_parent_chain_that_loops_ends_without_a_parent() -> None:
    """Malformed input whose non-metric spans form a cycle: the fold ends, with no parent."""
    a = record("a", 0x3, 0x4, 1, 2, is_metric=False)
    b = record("b", 0x4, 0x3, 1, 2, is_metric=False)
    metric = record("m", 0x5, 0x3, 1, 2)
    (folded,) = fold(ROOT, [a, b, metric])["metrics"]
    assert folded["parent"] is None
