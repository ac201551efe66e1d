"""OTLP/JSON traces -> spans: the fields the specification defines, strict validation, limits."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ha_agent_tracing.reports import OtlpJsonError, OtlpLimits, parse_otlp_json, to_span_record

TRACE = "5B8EFFF798038103D269B633813FC60C"
ROOT = "EEE19B7EC3C1B174"
CHILD = "eee19b7ec3c1b173"


def payload() -> dict[str, Any]:
    """A request as the OpenTelemetry JS OTLP/HTTP exporter sends it (JSON encoding)."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "ai-automation-ui"}},
                        {"key": "telemetry.sdk.language", "value": {"stringValue": "webjs"}},
                    ],
                    "droppedAttributesCount": 0,
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "ha_agent_tracing.browser", "version": "1"},
                        "spans": [
                            {
                                "traceId": TRACE,
                                "spanId": CHILD,
                                "parentSpanId": ROOT,
                                "name": "api_call",
                                "kind": 1,
                                "startTimeUnixNano": "1764000000000000000",
                                "endTimeUnixNano": 1764000000250000000,
                                "attributes": [
                                    {"key": "operation", "value": {"stringValue": "sendChatMessage"}},
                                    {"key": "success", "value": {"boolValue": False}},
                                    {"key": "tokens_used", "value": {"intValue": "2500"}},
                                    {"key": "iterations", "value": {"intValue": 3}},
                                    {"key": "response_time_ms", "value": {"doubleValue": 1150.5}},
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "a"}, {"stringValue": "b"}]
                                            }
                                        },
                                    },
                                    {
                                        "key": "nested",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [{"key": "x", "value": {"intValue": "1"}}]
                                            }
                                        },
                                    },
                                    {"key": "raw", "value": {"bytesValue": "AQI="}},
                                ],
                                "droppedAttributesCount": 0,
                                "events": [
                                    {
                                        "name": "exception",
                                        "timeUnixNano": "1764000000200000000",
                                        "attributes": [
                                            {
                                                "key": "exception.message",
                                                "value": {"stringValue": "Failed to fetch"},
                                            }
                                        ],
                                    }
                                ],
                                "status": {"code": 2, "message": "TypeError: Failed to fetch"},
                                "links": [],
                                "flags": 257,
                                "someFieldFromTheFuture": {"ignored": True},
                            },
                            {
                                "traceId": TRACE,
                                "spanId": ROOT,
                                "name": "send_message",
                                "kind": "SPAN_KIND_INTERNAL",
                                "startTimeUnixNano": "1763999999990000000",
                                "endTimeUnixNano": "1764000000300000000",
                                "status": {"code": "STATUS_CODE_UNSET"},
                            },
                        ],
                    }
                ],
            }
        ]
    }


def _span(p: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return p["resourceSpans"][0]["scopeSpans"][0]["spans"][index]


def test_reads_every_field_as_the_specification_encodes_it() -> None:
    child, root = parse_otlp_json(json.dumps(payload()).encode())
    assert (child.trace_id, child.span_id, child.parent_id) == (int(TRACE, 16), int(CHILD, 16), int(ROOT, 16))
    assert root.parent_id is None
    assert (child.name, child.kind, root.kind) == ("api_call", "internal", "internal")
    assert (child.start_ns, child.end_ns) == (1764000000000000000, 1764000000250000000)
    assert dict(child.attributes) == {
        "operation": "sendChatMessage",
        "success": False,
        "tokens_used": 2500,
        "iterations": 3,
        "response_time_ms": 1150.5,
        "tags": ("a", "b"),
        "nested": '{"x": 1}',
        "raw": "AQI=",
    }
    assert (child.status, child.status_message, root.status) == (
        "error",
        "TypeError: Failed to fetch",
        "unset",
    )
    assert child.sampled and child.flags == 1 and child.parent_is_remote is False
    assert child.events[0].name == "exception" and child.events[0].time_ns == 1764000000200000000
    assert child.events[0].attributes == {"exception.message": "Failed to fetch"}
    assert child.service_name == "ai-automation-ui"
    assert (child.scope_name, child.scope_version) == ("ha_agent_tracing.browser", "1")


def test_an_empty_value_is_nulls_encoding_and_leaves_its_key_out() -> None:
    """``"value": {}`` or no value at all is valid OTLP (null): the span is kept, only that key is absent."""
    document = payload()
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["attributes"] += [
        {"key": "cleared", "value": {}},
        {"key": "unset"},
        {"key": "none", "value": None},
    ]
    child, _root = parse_otlp_json(json.dumps(document).encode())
    assert not {"cleared", "unset", "none"} & set(child.attributes)
    assert child.attributes["operation"] == "sendChatMessage" and child.attributes["iterations"] == 3


def test_snake_case_fields_and_the_older_library_key_are_read() -> None:
    p = {
        "resource_spans": [
            {
                "instrumentationLibrarySpans": [
                    {
                        "instrumentationLibrary": {"name": "old"},
                        "spans": [
                            {
                                "trace_id": TRACE,
                                "span_id": ROOT,
                                "name": "x",
                                "start_time_unix_nano": 1,
                                "end_time_unix_nano": 2,
                            }
                        ],
                    }
                ]
            }
        ]
    }
    [span] = parse_otlp_json(p)
    assert (span.scope_name, span.span_id, span.end_ns) == ("old", int(ROOT, 16), 2)


def test_base64_ids_only_when_asked_for() -> None:
    p = payload()
    _span(p)["traceId"] = base64.b64encode(bytes.fromhex(TRACE)).decode()
    _span(p)["spanId"] = base64.b64encode(bytes.fromhex(CHILD)).decode()
    _span(p)["parentSpanId"] = base64.b64encode(bytes.fromhex(ROOT)).decode()
    with pytest.raises(OtlpJsonError, match=r"spans\[0\]\.traceId: expected 32 hex digits"):
        parse_otlp_json(p)
    child, _ = parse_otlp_json(p, ids="auto")
    assert (child.trace_id, child.span_id, child.parent_id) == (int(TRACE, 16), int(CHILD, 16), int(ROOT, 16))


def test_remote_parent_flag_is_read_when_present() -> None:
    p = payload()
    _span(p)["flags"] = 0x301
    child, root = parse_otlp_json(p)
    assert child.parent_is_remote is True and child.sampled
    assert root.parent_is_remote is None


def _set(path: str, value: Any) -> dict[str, Any]:
    p = payload()
    target: Any = _span(p)
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return p


_DELETE = object()
SPAN = "resourceSpans[0].scopeSpans[0].spans[0]"


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("traceId", "abc", r"\.traceId: expected 32 hex digits"),
        ("traceId", "Z" * 32, r"\.traceId: expected 32 hex digits"),
        ("traceId", "0" * 32, r"\.traceId: an all-zero id is invalid"),
        ("traceId", 12, r"\.traceId: expected a hex string, got a number"),
        ("spanId", _DELETE, r"\.spanId: is required"),
        ("spanId", "0" * 16, r"\.spanId: an all-zero id"),
        ("parentSpanId", "12345", r"\.parentSpanId: expected 16 hex digits"),
        ("name", "", r"\.name: must not be empty"),
        ("name", None, r"\.name: is required"),
        ("name", "x" * 257, r"\.name: 257 characters"),
        ("startTimeUnixNano", _DELETE, r"\.startTimeUnixNano: is required"),
        ("startTimeUnixNano", "soon", r"\.startTimeUnixNano: expected an integer"),
        ("startTimeUnixNano", -5, r"\.startTimeUnixNano: -5 is out of range"),
        ("endTimeUnixNano", "1", r"\.endTimeUnixNano: is before startTimeUnixNano"),
        ("kind", 9, r"\.kind: unknown value 9"),
        ("kind", "SPAN_KIND_SIDEWAYS", r"\.kind: unknown value"),
        ("status", "error", r"\.status: expected an object"),
        ("status.code", 3, r"\.status\.code: unknown value 3"),
        ("attributes", {"a": 1}, r"\.attributes: expected an array"),
        ("attributes.0.key", "", r"\.attributes\[0\]\.key: must not be empty"),
        ("attributes.1.key", "operation", r"\.attributes\[1\]\.key: 'operation' appears twice"),
        ("attributes.0.value", {"stringvalue": "a"}, r"\.attributes\[0\]\.value: expected one of"),
        (
            "attributes.0.value",
            {"stringValue": "a", "intValue": 1},
            r"\.attributes\[0\]\.value: more than one value",
        ),
        (
            "attributes.2.value",
            {"intValue": "2.5"},
            r"\.attributes\[2\]\.value\.intValue: expected an integer",
        ),
        (
            "attributes.2.value",
            {"intValue": str(2**63)},
            r"\.attributes\[2\]\.value\.intValue: 9223372036854775808 is out of range",
        ),
        (
            "attributes.1.value",
            {"boolValue": "true"},
            r"\.attributes\[1\]\.value\.boolValue: expected a boolean, got a string",
        ),
        (
            "attributes.4.value",
            {"doubleValue": "fast"},
            r"\.attributes\[4\]\.value\.doubleValue: expected a number",
        ),
        (
            "attributes.5.value",
            {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}},
            r"\.attributes\[5\]\.value\.arrayValue: array values must all be of one type",
        ),
        (
            "attributes.5.value",
            {"arrayValue": {"values": [{"arrayValue": {"values": []}}]}},
            r"\.attributes\[5\]\.value\.arrayValue: arrays of arrays",
        ),
        (
            "attributes.7.value",
            {"bytesValue": "not base64!"},
            r"\.attributes\[7\]\.value\.bytesValue: is not base64",
        ),
        ("events.0.timeUnixNano", None, r"\.events\[0\]\.timeUnixNano: is required"),
        ("flags", "many", r"\.flags: expected an integer"),
        ("links", [{"traceId": TRACE}], r"\.links\[0\]\.spanId: is required"),
    ],
)
def test_each_bad_field_is_named_by_its_path(path: str, value: Any, error: str) -> None:
    with pytest.raises(
        OtlpJsonError, match=r"^" + SPAN.replace("[", r"\[").replace("]", r"\]") + error
    ) as raised:
        parse_otlp_json(_set(path, value))
    assert not raised.value.too_large


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", r"^not JSON"),
        (b"\xff\xfe{", r"^the body is not UTF-8"),
        (b"\xff\xfe", r"^the body is not UTF-8"),
        (b"[1, 2]", r"^expected an object, got an array"),
        (b"{}", r"^resourceSpans: is required"),
        (b'{"resourceSpans": {}}', r"^resourceSpans: expected an array"),
        (b'{"resourceSpans": [7]}', r"^resourceSpans\[0\]: expected an object, got a number"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [null]}]}]}',
            r"spans\[0\]: expected an object, got null",
        ),
        (b"[" * 100_000 + b"]" * 100_000, r"nested too deeply|not JSON"),
    ],
)
def test_garbage_is_an_error_not_a_crash(body: bytes, error: str) -> None:
    with pytest.raises(OtlpJsonError, match=error):
        parse_otlp_json(body)


def test_an_empty_request_has_no_spans() -> None:
    assert parse_otlp_json(b'{"resourceSpans": []}') == []
    assert parse_otlp_json(b'{"resourceSpans": [{"scopeSpans": []}]}') == []


def test_limits_bound_untrusted_input_and_mark_size() -> None:
    p = payload()
    spans = _span(p), _span(p, 1)
    p["resourceSpans"][0]["scopeSpans"][0]["spans"] = [copy.deepcopy(spans[i % 2]) for i in range(5)]
    with pytest.raises(OtlpJsonError, match="more than 4 spans") as raised:
        parse_otlp_json(p, limits=OtlpLimits(max_spans=4))
    assert raised.value.too_large
    assert len(parse_otlp_json(p, limits=OtlpLimits(max_spans=5))) == 5
    with pytest.raises(OtlpJsonError, match="8 attributes; at most 3"):
        parse_otlp_json(payload(), limits=OtlpLimits(max_attributes=3))
    long = _set("attributes.0.value", {"stringValue": "x" * 5000})
    with pytest.raises(OtlpJsonError, match="5000 characters"):
        parse_otlp_json(long)
    assert len(parse_otlp_json(long, limits=OtlpLimits.unbounded())) == 2


def test_ids_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="ids must be"):
        parse_otlp_json(payload(), ids="base64")  # type: ignore[arg-type]


def test_span_record_keeps_what_a_report_needs() -> None:
    child, root = parse_otlp_json(payload())
    record = to_span_record(child, source="browser", is_metric=True)
    assert (record.name, record.trace_id, record.span_id, record.parent_id) == (
        "api_call",
        child.trace_id,
        child.span_id,
        child.parent_id,
    )
    assert (record.start_ns, record.end_ns, record.duration_ns) == (child.start_ns, child.end_ns, 250_000_000)
    assert record.attributes["tokens_used"] == 2500
    assert (record.failed, record.error, record.source, record.is_metric) == (
        True,
        "TypeError: Failed to fetch",
        "browser",
        True,
    )
    plain = to_span_record(root)
    assert (plain.failed, plain.error, plain.source, plain.is_metric, plain.kind) == (
        False,
        None,
        "server",
        False,
        "internal",
    )


# ------------------------------------------------------------------ properties

_hex = st.integers(min_value=1, max_value=2**64 - 1)
_values = st.one_of(
    st.text(max_size=30).map(lambda v: ({"stringValue": v}, v)),
    st.booleans().map(lambda v: ({"boolValue": v}, v)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).flatmap(
        lambda v: st.sampled_from([({"intValue": v}, v), ({"intValue": str(v)}, v)])
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: ({"doubleValue": v}, v)),
)


@settings(max_examples=60, deadline=None)
@given(
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=_hex,
    parent=st.one_of(st.none(), _hex),
    start=st.integers(min_value=1, max_value=2**63),
    length=st.integers(min_value=0, max_value=10**12),
    attributes=st.dictionaries(st.text(min_size=1, max_size=10), _values, max_size=8),
    upper=st.booleans(),
)
def test_what_is_encoded_is_read_back(
    trace_id: int,
    span_id: int,
    parent: int | None,
    start: int,
    length: int,
    attributes: dict[str, Any],
    upper: bool,
) -> None:
    def hexid(n: int, width: int) -> str:
        text = f"{n:0{width}x}"
        return text.upper() if upper else text

    span = {
        "traceId": hexid(trace_id, 32),
        "spanId": hexid(span_id, 16),
        "parentSpanId": hexid(parent, 16) if parent else "",
        "name": "m",
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": start + length,
        "attributes": [{"key": k, "value": v[0]} for k, v in attributes.items()],
    }
    [parsed] = parse_otlp_json(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}))
    assert (parsed.trace_id, parsed.span_id, parsed.parent_id) == (trace_id, span_id, parent)
    assert (parsed.start_ns, parsed.end_ns) == (start, start + length)
    assert dict(parsed.attributes) == {k: v[1] for k, v in attributes.items()}


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
_keys = st.sampled_from(
    ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "name", "attributes", "value", "key"]
)


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        _json,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)),
        max_leaves=40,
    )
)
def test_any_json_is_spans_or_an_otlp_json_error(document: Any) -> None:
    """Whatever JSON arrives, the parser answers with spans or OtlpJsonError, never another exception."""
    with contextlib.suppress(OtlpJsonError):
        parse_otlp_json(json.dumps(document).encode())
