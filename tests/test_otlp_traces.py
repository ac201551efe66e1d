"""OTLP JSON traces as trace backends return them: every field checked, the first problem named by its path.

Jaeger's query API v3 answers are read by the relay's parser, with no size
limits (a backend is trusted) and the same strictness.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ha_agent_tracing.reports import OtlpJsonError, OtlpLimits, OtlpSpan, parse_otlp_json, to_span_record

SPAN: dict[str, Any] = {
    "traceId": "5B8EFFF798038103D269B633813FC60C",
    "spanId": "eee19b7ec3c1b174",
    "parentSpanId": "",
    "name": "tool_execution",
    "kind": "SPAN_KIND_INTERNAL",
    "startTimeUnixNano": 1795773600000000000,
    "endTimeUnixNano": "1795773600020000000",
    "attributes": [
        {"key": "tool_name", "value": {"stringValue": "call_service"}},
        {"key": "success", "value": {"boolValue": False}},
        {"key": "limit", "value": {"intValue": "-30"}},
        {"key": "ratio", "value": {"doubleValue": 0.5}},
        {"key": "reasons", "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}},
        {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": 1}}]}}},
    ],
    "status": {"code": "STATUS_CODE_ERROR", "message": "unknown entity"},
}


def document(span: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [{"scope": {"name": "ha_agent_tracing"}, "spans": [span]}],
            }
        ]
    }


def parse_traces_data(data: Any) -> list[OtlpSpan]:
    """A backend's answer, parsed as the Jaeger reader parses it."""
    return parse_otlp_json(data, limits=OtlpLimits.unbounded())


def test_a_span_with_every_kind_of_value() -> None:
    (span,) = parse_traces_data(document(SPAN))
    assert (span.trace_id, span.span_id, span.parent_id) == (
        0x5B8EFFF798038103D269B633813FC60C,
        0xEEE19B7EC3C1B174,
        None,
    )
    assert (span.kind, span.start_ns, span.end_ns, span.status, span.status_message) == (
        "internal",
        1795773600000000000,
        1795773600020000000,
        "error",
        "unknown entity",
    )
    assert span.attributes == {
        "tool_name": "call_service",
        "success": False,
        "limit": -30,
        "ratio": 0.5,
        "reasons": ("stop",),
        "nested": '{"a": 1}',  # a map, checked like any value and kept whole as JSON text
    }
    assert (span.service_name, span.scope_name) == ("svc", "ha_agent_tracing")
    record = to_span_record(span, is_metric=True)
    assert (record.error, record.failed, record.is_metric, record.kind) == (
        "unknown entity",
        True,
        True,
        "internal",
    )


PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("traceId", "xyz", "traceId: expected 32 hex digits"),
        ("traceId", "0" * 32, "traceId: an all-zero id is invalid"),
        ("spanId", "eee19b7ec3c1b17", "spanId: expected 16 hex digits"),
        ("spanId", "7uHLhx1Y0XQ=", "spanId: expected 16 hex digits"),  # base64, not OTLP/JSON's hex
        ("parentSpanId", 12, "parentSpanId: expected a hex string, got a number"),
        ("kind", 9, "kind: unknown value 9"),
        ("startTimeUnixNano", "12ms", "startTimeUnixNano: expected an integer"),
        ("endTimeUnixNano", 1, "endTimeUnixNano: is before startTimeUnixNano"),
        ("endTimeUnixNano", 2**64, "endTimeUnixNano: 18446744073709551616 is out of range"),
        ("status", {"code": "BROKEN"}, "status.code: unknown value 'BROKEN'"),
        ("attributes", {"k": "v"}, "attributes: expected an array"),
        ("attributes", [{"value": {"stringValue": "x"}}], r"attributes\[0\].key: is required"),
        (
            "attributes",
            [{"key": "k", "value": {"intValue": "1.5"}}],
            r"attributes\[0\].value.intValue: expected an integer",
        ),
        (
            "attributes",
            [{"key": "k", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}]}}}],
            "one type",
        ),
        ("attributes", [{"key": "k", "value": {"mapValue": 1}}], r"attributes\[0\].value: expected one of"),
        # Nothing is dropped silently: a key given twice, a bad value inside a map. (An empty value is
        # OTLP's null and leaves its key out: tests/test_otlp_json.py.)
        (
            "attributes",
            [{"key": "k", "value": {"intValue": 1}}, {"key": "k", "value": {"intValue": 2}}],
            r"attributes\[1\].key: 'k' appears twice",
        ),
        (
            "attributes",
            [{"key": "k", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "x"}}]}}}],
            r"kvlistValue.values\[0\].value.intValue: expected an integer",
        ),
    ],
)
def test_bad_fields_are_named_by_their_path(field: str, value: Any, problem: str) -> None:
    span = copy.deepcopy(SPAN)
    span[field] = value
    with pytest.raises(OtlpJsonError, match=problem) as caught:
        parse_traces_data(document(span))
    assert str(caught.value).startswith(PATH)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "expected an object"),
        ({"resourceSpans": {}}, "resourceSpans: expected an array"),
        (
            {"resourceSpans": [{"scopeSpans": [{"scope": {"name": 3}, "spans": []}]}]},
            r"scope.name: expected a string",
        ),
        (
            {"resourceSpans": [{"resource": {"attributes": "x"}}]},
            r"resourceSpans\[0\].resource.attributes: expected an array",
        ),
    ],
)
def test_bad_structure_is_named_too(data: Any, problem: str) -> None:
    with pytest.raises(OtlpJsonError, match=problem):
        parse_traces_data(data)


def test_nothing_is_returned_when_one_span_of_many_is_bad() -> None:
    good, bad = copy.deepcopy(SPAN), copy.deepcopy(SPAN)
    bad["spanId"] = "nope"
    data = document(good)
    data["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad)
    with pytest.raises(OtlpJsonError, match=r"spans\[1\].spanId"):
        parse_traces_data(data)
