"""OTLP JSON traces as trace backends return them: every field checked, the first problem named by its path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ha_agent_tracing.reports import OtlpTracesError, parse_traces_data

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
        {"key": "empty", "value": {}},
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


def test_a_span_with_every_kind_of_value() -> None:
    (span,) = parse_traces_data(document(SPAN))
    assert (span.trace_id, span.span_id, span.parent_id) == (
        0x5B8EFFF798038103D269B633813FC60C,
        0xEEE19B7EC3C1B174,
        None,
    )
    assert (span.kind, span.start_ns, span.end_ns, span.failed, span.status_message) == (
        "internal",
        1795773600000000000,
        1795773600020000000,
        True,
        "unknown entity",
    )
    assert span.attributes == {
        "tool_name": "call_service",
        "success": False,
        "limit": -30,
        "ratio": 0.5,
        "reasons": ("stop",),
        "nested": '{"values": [{"key": "a", "value": {"intValue": 1}}]}',
    }
    assert (span.service_name, span.scope_name) == ("svc", "ha_agent_tracing")
    record = span.record(is_metric=True)
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
        ("traceId", "xyz", "traceId: expected 32 hexadecimal digits"),
        ("traceId", "0" * 32, "traceId: an id of all zeros is invalid"),
        ("spanId", "eee19b7ec3c1b17", "spanId: expected 16 hexadecimal digits"),
        ("spanId", "7uHLhx1Y0XQ=", "spanId: expected 16 hexadecimal digits"),  # base64, not OTLP/JSON's hex
        ("parentSpanId", 12, "parentSpanId: expected a string"),
        ("kind", 9, "kind: unknown value 9"),
        ("startTimeUnixNano", "12ms", "startTimeUnixNano: expected an unsigned 64-bit integer"),
        ("endTimeUnixNano", 1, "endTimeUnixNano: ends before it starts"),
        ("endTimeUnixNano", 2**64, "out of the unsigned 64-bit range"),
        ("status", {"code": "BROKEN"}, "status.code: unknown value 'BROKEN'"),
        ("attributes", {"k": "v"}, "attributes: expected a list"),
        ("attributes", [{"value": {"stringValue": "x"}}], r"attributes\[0\].key: an attribute needs a key"),
        (
            "attributes",
            [{"key": "k", "value": {"intValue": "1.5"}}],
            r"attributes\[0\].value.intValue: expected a signed 64-bit",
        ),
        (
            "attributes",
            [{"key": "k", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}]}}}],
            "one type",
        ),
        ("attributes", [{"key": "k", "value": {"mapValue": 1}}], "unknown value type mapValue"),
    ],
)
def test_bad_fields_are_named_by_their_path(field: str, value: Any, problem: str) -> None:
    span = copy.deepcopy(SPAN)
    span[field] = value
    with pytest.raises(OtlpTracesError, match=problem) as caught:
        parse_traces_data(document(span))
    assert str(caught.value).startswith(PATH)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "expected an object"),
        ({"resourceSpans": {}}, "resourceSpans: expected a list"),
        (
            {"resourceSpans": [{"scopeSpans": [{"scope": {"name": 3}, "spans": []}]}]},
            r"scope.name: expected a string",
        ),
        (
            {"resourceSpans": [{"resource": {"attributes": "x"}}]},
            r"resourceSpans\[0\].resource.attributes: expected a list",
        ),
    ],
)
def test_bad_structure_is_named_too(data: Any, problem: str) -> None:
    with pytest.raises(OtlpTracesError, match=problem):
        parse_traces_data(data)


def test_nothing_is_returned_when_one_span_of_many_is_bad() -> None:
    good, bad = copy.deepcopy(SPAN), copy.deepcopy(SPAN)
    bad["spanId"] = "nope"
    data = document(good)
    data["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad)
    with pytest.raises(OtlpTracesError, match=r"spans\[1\].spanId"):
        parse_traces_data(data)
