"""OTLP JSON traces (``TracesData``) -> :class:`SpanRecord` s, strictly validated.

What a trace backend's query API returns (Jaeger's v3 answers ``{"result":
TracesData}``) in the OTLP/JSON encoding: lowerCamelCase field names, ids as
hex (``traceId`` 32 digits, ``spanId`` 16, an empty ``parentSpanId`` for a
root), 64-bit integers as JSON numbers or decimal strings, enums as integers
or their names. The first problem raises :class:`OtlpTracesError` naming its
path (``resourceSpans[0].scopeSpans[1].spans[3].traceId: ...``); nothing is
returned half-parsed. ::

    spans = parse_traces_data(document["result"])
    records = [span.record(is_metric=span.scope_name == "ha_agent_tracing") for span in spans]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ha_agent_tracing.reports._records import SpanRecord

__all__ = ["OtlpTracesError", "TraceSpan", "parse_traces_data"]

_HEX = re.compile(r"^[0-9a-fA-F]*$")
_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS = ("unset", "ok", "error")
_UINT64 = 2**64 - 1


class OtlpTracesError(ValueError):
    """The document is not valid OTLP JSON traces; ``path`` names the first bad field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class TraceSpan:
    """One span with its resource's attributes and its instrumentation scope's name."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    failed: bool
    status_message: str
    resource: Mapping[str, Any] = field(default_factory=dict[str, Any])
    scope_name: str = ""

    @property
    def service_name(self) -> str | None:
        """The resource's ``service.name``, when it is text."""
        name = self.resource.get("service.name")
        return name if isinstance(name, str) else None

    def record(self, *, is_metric: bool) -> SpanRecord:
        """The compact record the fold reads."""
        return SpanRecord(
            name=self.name,
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_id=self.parent_id,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            attributes=self.attributes,
            is_metric=is_metric,
            failed=self.failed,
            error=(self.status_message or None) if self.failed else None,
            kind="internal" if self.kind == "unspecified" else self.kind,
        )


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise OtlpTracesError(path, f"expected an object, not {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OtlpTracesError(path, f"expected a list, not {type(value).__name__}")
    return value


def _text(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OtlpTracesError(path, f"expected a string, not {type(value).__name__}")
    return value


def _uint64(value: Any, path: str) -> int:
    if isinstance(value, str) and value.isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise OtlpTracesError(
            path, f"expected an unsigned 64-bit integer (number or decimal string), not {value!r}"
        )
    if not 0 <= number <= _UINT64:
        raise OtlpTracesError(path, f"{number} is out of the unsigned 64-bit range")
    return number


def _parent_id(value: Any, path: str) -> int | None:
    return None if _text(value, path) == "" else _id(value, path, 16)


def _id(value: Any, path: str, digits: int) -> int:
    text = _text(value, path)
    if len(text) != digits or not _HEX.match(text):
        raise OtlpTracesError(path, f"expected {digits} hexadecimal digits, not {text!r}")
    number = int(text, 16)
    if number == 0:
        raise OtlpTracesError(path, "an id of all zeros is invalid")
    return number


def _enum(value: Any, path: str, names: Sequence[str], prefix: str) -> str:
    if value is None:
        return names[0]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str) and value.startswith(prefix) and value[len(prefix) :].lower() in names:
        return value[len(prefix) :].lower()
    raise OtlpTracesError(path, f"unknown value {value!r}")


def _any_value(value: Any, path: str) -> Any:
    body = _object(value, path)
    if "stringValue" in body:
        return _text(body["stringValue"], f"{path}.stringValue")
    if "boolValue" in body:
        if not isinstance(body["boolValue"], bool):
            raise OtlpTracesError(f"{path}.boolValue", "expected true or false")
        return body["boolValue"]
    if "intValue" in body:
        raw = body["intValue"]
        if isinstance(raw, str) and re.fullmatch(r"-?\d+", raw):
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool) or not -(2**63) <= raw < 2**63:
            raise OtlpTracesError(f"{path}.intValue", f"expected a signed 64-bit integer, not {raw!r}")
        return raw
    if "doubleValue" in body:
        raw = body["doubleValue"]
        if isinstance(raw, str) and raw in ("NaN", "Infinity", "-Infinity"):
            return float(raw.replace("Infinity", "inf"))
        if not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw):
            raise OtlpTracesError(f"{path}.doubleValue", f"expected a number, not {raw!r}")
        return float(raw)
    if "arrayValue" in body:
        items = _list(
            _object(body["arrayValue"], f"{path}.arrayValue").get("values"), f"{path}.arrayValue.values"
        )
        values = [_any_value(item, f"{path}.arrayValue.values[{i}]") for i, item in enumerate(items)]
        if len({type(v) for v in values}) > 1:
            raise OtlpTracesError(f"{path}.arrayValue", "an attribute array must hold values of one type")
        if any(isinstance(v, tuple) for v in values):
            raise OtlpTracesError(f"{path}.arrayValue", "nested arrays cannot be span attributes")
        return tuple(values)
    if "kvlistValue" in body:
        return json.dumps(body["kvlistValue"], sort_keys=True)  # kept, as text: no value is lost
    if "bytesValue" in body:
        return _text(body["bytesValue"], f"{path}.bytesValue")
    if not body:
        return None
    raise OtlpTracesError(path, f"unknown value type {', '.join(sorted(body))}")


def _attributes(value: Any, path: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for index, item in enumerate(_list(value, path)):
        entry = _object(item, f"{path}[{index}]")
        key = _text(entry.get("key"), f"{path}[{index}].key")
        if not key:
            raise OtlpTracesError(f"{path}[{index}].key", "an attribute needs a key")
        converted = _any_value(entry.get("value", {}), f"{path}[{index}].value")
        if converted is not None:
            found[key] = converted
    return found


def _span(item: Any, path: str, resource: Mapping[str, Any], scope: str) -> TraceSpan:
    body = _object(item, path)
    start = _uint64(body.get("startTimeUnixNano"), f"{path}.startTimeUnixNano")
    end = _uint64(body.get("endTimeUnixNano"), f"{path}.endTimeUnixNano")
    if end < start:
        raise OtlpTracesError(f"{path}.endTimeUnixNano", "ends before it starts")
    status = _object(body.get("status") or {}, f"{path}.status")
    return TraceSpan(
        trace_id=_id(body.get("traceId"), f"{path}.traceId", 32),
        span_id=_id(body.get("spanId"), f"{path}.spanId", 16),
        parent_id=_parent_id(body.get("parentSpanId"), f"{path}.parentSpanId"),
        name=_text(body.get("name"), f"{path}.name"),
        kind=_enum(body.get("kind"), f"{path}.kind", _KINDS, "SPAN_KIND_"),
        start_ns=start,
        end_ns=end,
        attributes=_attributes(body.get("attributes"), f"{path}.attributes"),
        failed=_enum(status.get("code"), f"{path}.status.code", _STATUS, "STATUS_CODE_") == "error",
        status_message=_text(status.get("message"), f"{path}.status.message"),
        resource=resource,
        scope_name=scope,
    )


def parse_traces_data(document: Any) -> list[TraceSpan]:
    """Every span of an OTLP JSON ``TracesData`` object, or :class:`OtlpTracesError` for the first problem."""
    top = _object(document, "")
    spans: list[TraceSpan] = []
    for r_index, entry in enumerate(_list(top.get("resourceSpans"), "resourceSpans")):
        r_path = f"resourceSpans[{r_index}]"
        body = _object(entry, r_path)
        resource_body = _object(body.get("resource") or {}, f"{r_path}.resource")
        resource = _attributes(resource_body.get("attributes"), f"{r_path}.resource.attributes")
        for s_index, scope_entry in enumerate(_list(body.get("scopeSpans"), f"{r_path}.scopeSpans")):
            s_path = f"{r_path}.scopeSpans[{s_index}]"
            scope_body = _object(scope_entry, s_path)
            scope = _text(
                _object(scope_body.get("scope") or {}, f"{s_path}.scope").get("name"), f"{s_path}.scope.name"
            )
            for index, item in enumerate(_list(scope_body.get("spans"), f"{s_path}.spans")):
                spans.append(_span(item, f"{s_path}.spans[{index}]", resource, scope))
    return spans
