"""OTLP/JSON traces -> spans, strictly validated: what the browser relay and trace readers parse.

A pure module: bytes (or an already decoded object) in, typed spans out, or an
:class:`OtlpJsonError` that names the first bad field by its path. Nothing is
dropped silently and nothing half-parsed is returned::

    from ha_agent_tracing.reports import parse_otlp_json, to_span_record

    spans = parse_otlp_json(body)                         # ExportTraceServiceRequest, hex ids
    spans = parse_otlp_json(jaeger_answer, ids="auto")    # also base64 ids (protobuf's JSON mapping)
    records = [to_span_record(s, source="browser", is_metric=True) for s in spans]

It follows the OTLP/JSON encoding of the OpenTelemetry protocol specification:
field names in lowerCamelCase (snake_case is accepted too, as protobuf JSON
parsers do), ``traceId``/``spanId``/``parentSpanId`` as case-insensitive hex
(32 and 16 digits; an empty ``parentSpanId`` means no parent), 64-bit integers
(``startTimeUnixNano``, ``intValue``) as JSON numbers or decimal strings, enums
(``kind``, ``status.code``) as integers or their names, unknown fields ignored.
Only with ``ids="auto"`` are ids also read as base64 (24 and 12 characters),
for readers of backends that encode them the protobuf way; the lengths of the
two encodings never coincide. ``resourceSpans`` holds ``scopeSpans`` (the older
``instrumentationLibrarySpans`` is read too).

Attribute values become what an OpenTelemetry attribute can carry: a
``kvlistValue`` is kept as a JSON string and a ``bytesValue`` as its base64
text, so no value is lost; arrays must be of one primitive type. An empty
value (``"value": {}`` or no ``value`` field, how OTLP encodes null) has no attribute counterpart:
its key is left out, as an SDK leaves out an attribute set to ``None``, and the
span is kept. A value object holding anything else must hold exactly one value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ha_agent_tracing.reports._records import SpanRecord, SpanSource

__all__ = [
    "OtlpEvent",
    "OtlpJsonError",
    "OtlpLimits",
    "OtlpLink",
    "OtlpSpan",
    "parse_otlp_json",
    "to_span_record",
]

AttributeValue = (
    str | bool | int | float | tuple[str, ...] | tuple[bool, ...] | tuple[int, ...] | tuple[float, ...]
)

SpanKindName = Literal["unspecified", "internal", "server", "client", "producer", "consumer"]
StatusName = Literal["unset", "ok", "error"]

_KINDS: tuple[SpanKindName, ...] = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUSES: tuple[StatusName, ...] = ("unset", "ok", "error")
_HEX = re.compile(r"^[0-9a-fA-F]*$")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1
# Span flags (OTLP 1.1): the low 8 bits are the W3C trace flags; these two say whether the parent is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


class OtlpJsonError(ValueError):
    """The payload is not valid OTLP/JSON traces, or is over a limit; ``path`` names where.

    ``too_large`` is true when the payload is well-formed but over a size limit
    (an HTTP receiver answers 413 to those, 400 to the rest).
    """

    def __init__(self, path: str, problem: str, *, too_large: bool = False) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem
        self.too_large = too_large


@dataclass(frozen=True)
class OtlpLimits:
    """Bounds a payload must keep; ``None`` is unbounded. The defaults suit untrusted input."""

    max_spans: int | None = 512
    max_attributes: int | None = 128
    max_events: int | None = 128
    max_links: int | None = 128
    max_string_length: int | None = 4096
    max_array_length: int | None = 128
    max_name_length: int | None = 256

    @classmethod
    def unbounded(cls) -> OtlpLimits:
        """No limits: for trusted input such as a trace backend's answer."""
        return cls(None, None, None, None, None, None, None)


@dataclass(frozen=True, slots=True)
class OtlpEvent:
    """A span event: name, epoch nanoseconds, attributes."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class OtlpLink:
    """A link to another span."""

    trace_id: int
    span_id: int
    trace_state: str
    attributes: Mapping[str, AttributeValue]
    flags: int = 0


@dataclass(frozen=True, slots=True)
class OtlpSpan:
    """One span as the payload carried it, with its resource and instrumentation scope.

    Ids are integers (``trace_id`` 128 bits, ``span_id``/``parent_id`` 64 bits),
    times epoch nanoseconds. ``flags`` holds the W3C trace flags (bit 0:
    sampled); ``parent_is_remote`` is ``None`` when the payload does not say.
    """

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: SpanKindName
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    status: StatusName = "unset"
    status_message: str = ""
    trace_state: str = ""
    flags: int = 1
    parent_is_remote: bool | None = None
    events: tuple[OtlpEvent, ...] = ()
    links: tuple[OtlpLink, ...] = ()
    dropped_attributes: int = 0
    dropped_events: int = 0
    dropped_links: int = 0
    resource: Mapping[str, AttributeValue] = field(default_factory=dict[str, AttributeValue])
    scope_name: str = ""
    scope_version: str = ""

    @property
    def service_name(self) -> str | None:
        """The resource's ``service.name``, if it has a string one."""
        name = self.resource.get("service.name")
        return name if isinstance(name, str) else None

    @property
    def sampled(self) -> bool:
        """Whether the W3C sampled flag is set."""
        return bool(self.flags & 0x01)


# ------------------------------------------------------------------ field access


def _get(obj: Mapping[str, Any], camel: str) -> Any:
    """A field by its lowerCamelCase name, or its snake_case one (protobuf JSON parsers accept both)."""
    if camel in obj:
        return obj[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return obj.get(snake)


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise OtlpJsonError(path, f"expected an object, got {_kind(value)}")
    return value  # type: ignore[return-value]


def _list(value: Any, path: str, *, limit: int | None = None, what: str = "items") -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OtlpJsonError(path, f"expected an array, got {_kind(value)}")
    if limit is not None and len(value) > limit:  # type: ignore[arg-type]
        raise OtlpJsonError(path, f"{len(value)} {what}; at most {limit} are accepted", too_large=True)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, Mapping) else type(value).__name__


def _string(
    value: Any, path: str, limits: OtlpLimits, *, required: bool = False, cap: int | None = None
) -> str:
    if value is None:
        if required:
            raise OtlpJsonError(path, "is required")
        return ""
    if not isinstance(value, str):
        raise OtlpJsonError(path, f"expected a string, got {_kind(value)}")
    bound = cap if cap is not None else limits.max_string_length
    if bound is not None and len(value) > bound:
        raise OtlpJsonError(path, f"{len(value)} characters; at most {bound} are accepted")
    return value


def _integer(value: Any, path: str, low: int, high: int, *, required: bool = False) -> int:
    """An integer given as a JSON number or a decimal string (protobuf's JSON form of 64-bit ints)."""
    if value is None:
        if required:
            raise OtlpJsonError(path, "is required")
        return 0
    if isinstance(value, bool):
        raise OtlpJsonError(path, "expected an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value)
    ):
        number = int(value)
    else:
        raise OtlpJsonError(path, f"expected an integer (a number or a decimal string), got {value!r:.40}")
    if not low <= number <= high:
        raise OtlpJsonError(path, f"{number} is out of range")
    return number


def _enum(value: Any, path: str, names: Sequence[str], prefix: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and not value.isdigit():
        wanted = value.upper()
        for index, name in enumerate(names):
            if wanted == f"{prefix}{name.upper()}":
                return index
        raise OtlpJsonError(path, f"unknown value {value!r:.40}")
    number = _integer(value, path, 0, 2**31 - 1)
    if number >= len(names):
        raise OtlpJsonError(path, f"unknown value {number}")
    return number


def _id(
    value: Any, path: str, size: int, ids: Literal["hex", "auto"], *, optional: bool = False
) -> int | None:
    """A trace id (16 bytes) or span id (8 bytes): hex, or with ``ids="auto"`` also base64; never all zero."""
    if value is None or value == "":
        if optional:
            return None
        raise OtlpJsonError(path, "is required")
    if not isinstance(value, str):
        raise OtlpJsonError(path, f"expected a hex string, got {_kind(value)}")
    if len(value) == 2 * size and _HEX.match(value):
        number = int(value, 16)
    elif ids == "auto" and len(value) == 4 * ((size + 2) // 3):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise OtlpJsonError(path, "is neither hex nor base64") from None
        if len(raw) != size:
            raise OtlpJsonError(path, f"base64 of {len(raw)} bytes; {size} expected")
        number = int.from_bytes(raw, "big")
    else:
        base = " (or base64)" if ids == "auto" else ""
        raise OtlpJsonError(path, f"expected {2 * size} hex digits{base}, got {value!r:.48}")
    if number == 0:
        raise OtlpJsonError(path, "an all-zero id is invalid")
    return number


# ------------------------------------------------------------------ values


def _any_value(value: Any, path: str, limits: OtlpLimits, *, depth: int = 0) -> AttributeValue:
    obj = _object(value, path)
    present = [key for key in _VALUE_KEYS if key in obj]
    if len(present) != 1:
        if not present:
            raise OtlpJsonError(path, "expected one of " + ", ".join(_VALUE_KEYS[::2]))
        raise OtlpJsonError(path, f"more than one value: {', '.join(present)}")
    key = present[0]
    inner = obj[key]
    where = f"{path}.{key}"
    if key in ("stringValue", "string_value"):
        return _string(inner, where, limits, required=True)
    if key in ("boolValue", "bool_value"):
        if not isinstance(inner, bool):
            raise OtlpJsonError(where, f"expected a boolean, got {_kind(inner)}")
        return inner
    if key in ("intValue", "int_value"):
        return _integer(inner, where, *_INT64, required=True)
    if key in ("doubleValue", "double_value"):
        return _double(inner, where)
    if key in ("bytesValue", "bytes_value"):
        text = _string(inner, where, limits, required=True)
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise OtlpJsonError(where, "is not base64") from None
        return text
    if key in ("arrayValue", "array_value"):
        items = _list(_get(_object(inner, where), "values"), f"{where}.values", limit=limits.max_array_length)
        converted = [
            _any_value(item, f"{where}.values[{i}]", limits, depth=depth + 1) for i, item in enumerate(items)
        ]
        if any(isinstance(item, tuple) for item in converted):
            raise OtlpJsonError(where, "arrays of arrays cannot be attribute values")
        kinds = {type(item) for item in converted}
        if kinds == {int, float}:
            converted = [float(item) for item in converted]  # type: ignore[arg-type]
        elif len(kinds) > 1:
            raise OtlpJsonError(where, "array values must all be of one type")
        return tuple(converted)  # type: ignore[return-value]
    # kvlistValue: nested maps cannot be attribute values; kept, whole, as JSON text.
    if depth > 8:
        raise OtlpJsonError(where, "nested too deeply")
    pairs = _list(_get(_object(inner, where), "values"), f"{where}.values", limit=limits.max_array_length)
    nested = _attributes(pairs, f"{where}.values", limits, depth=depth + 1)
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in nested.items()}, sort_keys=True)


_VALUE_KEYS = (
    "stringValue",
    "string_value",
    "boolValue",
    "bool_value",
    "intValue",
    "int_value",
    "doubleValue",
    "double_value",
    "arrayValue",
    "array_value",
    "kvlistValue",
    "kvlist_value",
    "bytesValue",
    "bytes_value",
)


def _double(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise OtlpJsonError(path, "expected a number, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif value in ("NaN", "Infinity", "-Infinity"):
        number = float(value.replace("Infinity", "inf"))
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise OtlpJsonError(path, f"expected a number, got {value!r:.40}") from None
    else:
        raise OtlpJsonError(path, f"expected a number, got {_kind(value)}")
    if math.isinf(number) and isinstance(value, int | float):
        raise OtlpJsonError(path, "is out of range")
    return number


def _attributes(
    items: Sequence[Any], path: str, limits: OtlpLimits, *, depth: int = 0
) -> dict[str, AttributeValue]:
    if limits.max_attributes is not None and len(items) > limits.max_attributes:
        raise OtlpJsonError(path, f"{len(items)} attributes; at most {limits.max_attributes} are accepted")
    result: dict[str, AttributeValue] = {}
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        pair = _object(item, where)
        key = _string(_get(pair, "key"), f"{where}.key", limits, required=True, cap=limits.max_name_length)
        if not key:
            raise OtlpJsonError(f"{where}.key", "must not be empty")
        if key in result:
            raise OtlpJsonError(f"{where}.key", f"{key!r} appears twice")
        raw = _get(pair, "value")
        if _is_empty_value(raw):
            continue  # OTLP's empty value (null): an OpenTelemetry attribute has no counterpart
        result[key] = _any_value(raw, f"{where}.value", limits, depth=depth)
    return result


def _is_empty_value(value: Any) -> bool:
    """An ``AnyValue`` with no value set (``{}``, or the field left out): valid OTLP, the encoding of null."""
    return value is None or (isinstance(value, Mapping) and not value)


def _attribute_list(obj: Mapping[str, Any], path: str, limits: OtlpLimits) -> dict[str, AttributeValue]:
    return _attributes(_list(_get(obj, "attributes"), f"{path}.attributes"), f"{path}.attributes", limits)


# ------------------------------------------------------------------ spans


def _times(span: Mapping[str, Any], path: str) -> tuple[int, int]:
    start = _integer(
        _get(span, "startTimeUnixNano"), f"{path}.startTimeUnixNano", 1, _UINT64_MAX, required=True
    )
    end = _integer(_get(span, "endTimeUnixNano"), f"{path}.endTimeUnixNano", 1, _UINT64_MAX, required=True)
    if end < start:
        raise OtlpJsonError(f"{path}.endTimeUnixNano", "is before startTimeUnixNano")
    return start, end


def _span(
    span: Mapping[str, Any],
    path: str,
    limits: OtlpLimits,
    ids: Literal["hex", "auto"],
    resource: Mapping[str, AttributeValue],
    scope: tuple[str, str],
) -> OtlpSpan:
    trace_id = _id(_get(span, "traceId"), f"{path}.traceId", 16, ids)
    span_id = _id(_get(span, "spanId"), f"{path}.spanId", 8, ids)
    parent_id = _id(_get(span, "parentSpanId"), f"{path}.parentSpanId", 8, ids, optional=True)
    assert trace_id is not None and span_id is not None
    name = _string(_get(span, "name"), f"{path}.name", limits, required=True, cap=limits.max_name_length)
    if not name:
        raise OtlpJsonError(f"{path}.name", "must not be empty")
    start, end = _times(span, path)
    kind = _KINDS[_enum(_get(span, "kind"), f"{path}.kind", _KINDS, "SPAN_KIND_")]
    status_obj = _get(span, "status")
    status: StatusName = "unset"
    message = ""
    if status_obj is not None:
        status_obj = _object(status_obj, f"{path}.status")
        status = _STATUSES[_enum(_get(status_obj, "code"), f"{path}.status.code", _STATUSES, "STATUS_CODE_")]
        message = _string(_get(status_obj, "message"), f"{path}.status.message", limits)
    flags_value = _get(span, "flags")
    flags = _integer(flags_value, f"{path}.flags", 0, 2**32 - 1) if flags_value is not None else 1
    remote: bool | None = bool(flags & _IS_REMOTE) if flags & _HAS_IS_REMOTE else None
    events_in = _list(_get(span, "events"), f"{path}.events", limit=limits.max_events, what="events")
    events = tuple(_event(e, f"{path}.events[{i}]", limits) for i, e in enumerate(events_in))
    links_in = _list(_get(span, "links"), f"{path}.links", limit=limits.max_links, what="links")
    links = tuple(_link(link, f"{path}.links[{i}]", limits, ids) for i, link in enumerate(links_in))
    return OtlpSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=end,
        attributes=_attribute_list(span, path, limits),
        status=status,
        status_message=message,
        trace_state=_string(_get(span, "traceState"), f"{path}.traceState", limits),
        flags=flags & 0xFF if flags_value is not None else 1,
        parent_is_remote=remote,
        events=events,
        links=links,
        dropped_attributes=_integer(
            _get(span, "droppedAttributesCount"), f"{path}.droppedAttributesCount", 0, 2**32
        ),
        dropped_events=_integer(_get(span, "droppedEventsCount"), f"{path}.droppedEventsCount", 0, 2**32),
        dropped_links=_integer(_get(span, "droppedLinksCount"), f"{path}.droppedLinksCount", 0, 2**32),
        resource=resource,
        scope_name=scope[0],
        scope_version=scope[1],
    )


def _event(value: Any, path: str, limits: OtlpLimits) -> OtlpEvent:
    event = _object(value, path)
    name = _string(_get(event, "name"), f"{path}.name", limits, required=True, cap=limits.max_name_length)
    time_ns = _integer(_get(event, "timeUnixNano"), f"{path}.timeUnixNano", 0, _UINT64_MAX, required=True)
    return OtlpEvent(name, time_ns, _attribute_list(event, path, limits))


def _link(value: Any, path: str, limits: OtlpLimits, ids: Literal["hex", "auto"]) -> OtlpLink:
    link = _object(value, path)
    trace_id = _id(_get(link, "traceId"), f"{path}.traceId", 16, ids)
    span_id = _id(_get(link, "spanId"), f"{path}.spanId", 8, ids)
    assert trace_id is not None and span_id is not None
    flags = _integer(_get(link, "flags"), f"{path}.flags", 0, 2**32 - 1)
    return OtlpLink(
        trace_id,
        span_id,
        _string(_get(link, "traceState"), f"{path}.traceState", limits),
        _attribute_list(link, path, limits),
        flags & 0xFF,
    )


def parse_otlp_json(
    payload: bytes | str | Mapping[str, Any],
    *,
    ids: Literal["hex", "auto"] = "hex",
    limits: OtlpLimits | None = None,
) -> list[OtlpSpan]:
    """Every span of an OTLP/JSON ``ExportTraceServiceRequest`` (or a ``TracesData``), validated.

    Args:
        payload: the JSON text (UTF-8 bytes or str) or the decoded object.
        ids: ``"hex"`` (the OTLP/JSON encoding) or ``"auto"``: hex, or base64.
        limits: bounds for untrusted input; default :class:`OtlpLimits()`.
            Use ``OtlpLimits.unbounded()`` for a trusted source.

    Raises:
        OtlpJsonError: the first problem, with its path
            (``resourceSpans[0].scopeSpans[0].spans[3].traceId: ...``); nothing
            is returned for a payload with any bad span.
    """
    if ids not in ("hex", "auto"):
        raise ValueError(f"ids must be 'hex' or 'auto', not {ids!r}")
    limits = OtlpLimits() if limits is None else limits
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")  # JSON exchanged between systems is UTF-8 (RFC 8259)
        except UnicodeDecodeError:
            raise OtlpJsonError("", "the body is not UTF-8") from None
    if isinstance(payload, str):
        try:
            decoded = json.loads(payload)
        except RecursionError:
            raise OtlpJsonError("", "the JSON is nested too deeply") from None
        except ValueError as exc:
            raise OtlpJsonError("", f"not JSON: {exc}") from None
    else:
        decoded = payload
    top = _object(decoded, "")
    resource_spans = _get(top, "resourceSpans")
    if resource_spans is None:
        raise OtlpJsonError("resourceSpans", "is required")
    spans: list[OtlpSpan] = []
    for r_index, resource_value in enumerate(_list(resource_spans, "resourceSpans")):
        r_path = f"resourceSpans[{r_index}]"
        entry = _object(resource_value, r_path)
        resource_obj = _get(entry, "resource")
        resource = (
            _attribute_list(_object(resource_obj, f"{r_path}.resource"), f"{r_path}.resource", limits)
            if resource_obj is not None
            else {}
        )
        scope_key = "scopeSpans" if _get(entry, "scopeSpans") is not None else "instrumentationLibrarySpans"
        for s_index, scope_value in enumerate(_list(_get(entry, scope_key), f"{r_path}.{scope_key}")):
            s_path = f"{r_path}.{scope_key}[{s_index}]"
            scope_entry = _object(scope_value, s_path)
            scope_obj = _get(scope_entry, "scope") or _get(scope_entry, "instrumentationLibrary")
            scope = ("", "")
            if scope_obj is not None:
                scope_obj = _object(scope_obj, f"{s_path}.scope")
                scope = (
                    _string(_get(scope_obj, "name"), f"{s_path}.scope.name", limits),
                    _string(_get(scope_obj, "version"), f"{s_path}.scope.version", limits),
                )
            items = _list(_get(scope_entry, "spans"), f"{s_path}.spans")
            if limits.max_spans is not None and len(spans) + len(items) > limits.max_spans:
                raise OtlpJsonError(
                    "resourceSpans", f"more than {limits.max_spans} spans in one request", too_large=True
                )
            for index, item in enumerate(items):
                path = f"{s_path}.spans[{index}]"
                spans.append(_span(_object(item, path), path, limits, ids, resource, scope))
    return spans


def to_span_record(span: OtlpSpan, *, source: SpanSource = "server", is_metric: bool = False) -> SpanRecord:
    """The compact record a report is folded from; ``source`` and ``is_metric`` say what the span is."""
    failed = span.status == "error"
    return SpanRecord(
        name=span.name,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_id=span.parent_id,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        attributes=dict(span.attributes),
        is_metric=is_metric,
        failed=failed,
        error=(span.status_message or None) if failed else None,
        kind="internal" if span.kind == "unspecified" else span.kind,
        parent_is_remote=bool(span.parent_is_remote),
        source=source,
        sampled=span.sampled,
    )
