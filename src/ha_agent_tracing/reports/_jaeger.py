"""Reports from traces kept in Jaeger, read through its query API v3 (OTLP JSON).

The spans Jaeger returns are parsed by the one OTLP/JSON parser
(:func:`~ha_agent_tracing.reports.parse_otlp_json`, the browser relay's, every
field checked; no size limits: Jaeger is trusted), turned into
:class:`SpanRecord` s, grouped by local root as the report processor groups
them in process, and folded by the same :func:`fold`: a report read back from
Jaeger is the report the service built in memory. ::

    from ha_agent_tracing.reports import read_jaeger

    reports = read_jaeger("http://localhost:16686", service="ha-ai-agent-service",
                          since=time.time() - 3600, until=time.time(), limit=200)

``GET /api/v3/traces`` needs a time window (``query.start_time_min`` and
``..._max``, RFC 3339); ``query.num_traces`` caps the traces. One trace:
``GET /api/v3/traces/{trace_id}``. Jaeger answers ``{"result": TracesData}``,
or ``{"error": {"httpCode", "message"}}``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ha_agent_tracing.reports._fold import deployment_attributes, fold
from ha_agent_tracing.reports._otlp_json import (
    OtlpJsonError,
    OtlpLimits,
    OtlpSpan,
    parse_otlp_json,
    to_span_record,
)
from ha_agent_tracing.reports._processor import TRACER_NAME
from ha_agent_tracing.reports._records import SpanRecord
from ha_agent_tracing.reports._types import Report

__all__ = ["JaegerError", "is_metric_span", "read_jaeger", "read_jaeger_trace", "reports_from_otlp_spans"]

# Jaeger keeps an OpenTelemetry scope as this tag when it stores spans in its own model.
_SCOPE_TAG = "otel.scope.name"


class JaegerError(RuntimeError):
    """Jaeger could not be read, or answered something that is not a trace; the message says why."""


def is_metric_span(span: OtlpSpan) -> bool:
    """Whether a span read back from a trace backend is a tracked metric (the tracker's scope)."""
    return span.scope_name == TRACER_NAME or span.attributes.get(_SCOPE_TAG) == TRACER_NAME


def reports_from_otlp_spans(spans: Iterable[OtlpSpan], *, service: str | None = None) -> list[Report]:
    """Fold spans (of any number of traces) into reports, one per local root, oldest first.

    Only spans of ``service`` (their resource's ``service.name``) take part when
    it is given. A local root is a span whose parent is absent from the
    service's spans of the trace; each other span joins the root
    above it. As in process, a group makes a report when its root is a server
    span or it holds a tracked metric.
    """
    by_trace: dict[int, dict[int, OtlpSpan]] = {}
    for span in spans:
        if service is not None and span.service_name != service:
            continue
        by_trace.setdefault(span.trace_id, {})[span.span_id] = span
    reports: list[Report] = []
    for members in by_trace.values():
        groups: dict[int, list[SpanRecord]] = {}
        roots: dict[int, OtlpSpan] = {}
        for span in members.values():
            root = _local_root(span, members)
            roots[root.span_id] = root
            groups.setdefault(root.span_id, []).append(_record(span))
        for root_id, records in groups.items():
            root = roots[root_id]
            if root.kind != "server" and not any(r.is_metric for r in records):
                continue
            root_record = next(r for r in records if r.span_id == root_id)
            root_record.extra = deployment_attributes(root.resource)
            reports.append(fold(root_record, records))
    reports.sort(key=lambda r: r["timestamp"])
    return reports


def _record(span: OtlpSpan) -> SpanRecord:
    record = to_span_record(span, is_metric=is_metric_span(span))
    # A span a backend keeps was exported, so it was sampled, whatever its flags say: the SDKs'
    # OTLP encoders put only the parent-is-remote bits there (Python's sends 0x100 or 0x300).
    record.sampled = True
    return record


def _local_root(span: OtlpSpan, members: dict[int, OtlpSpan]) -> OtlpSpan:
    seen: set[int] = set()
    while span.parent_id is not None and span.parent_id in members:
        if span.span_id in seen:  # a cycle in malformed data: stop where it closes
            break
        seen.add(span.span_id)
        span = members[span.parent_id]
    return span


Fetch = Callable[[str, float], tuple[int, bytes]]


def _fetch(url: str, timeout_s: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JaegerError(f"cannot reach {url} ({reason})") from None


def _spans(url: str, status: int, body: bytes, *, not_found_is_empty: bool) -> list[OtlpSpan]:
    try:
        document: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise JaegerError(f"{url} answered {status} with a body that is not JSON") from None
    if status != 200:
        message = ""
        if isinstance(document, dict) and isinstance(document.get("error"), dict):
            message = str(document["error"].get("message", ""))
        if status == 404 and not_found_is_empty:
            return []
        raise JaegerError(f"{url} answered {status}" + (f": {message}" if message else ""))
    if not isinstance(document, dict) or not isinstance(document.get("result", {}), dict):
        raise JaegerError(f"{url}: expected {{'result': {{'resourceSpans': [...]}}}} (Jaeger's query API v3)")
    result = document.get("result") or {}
    if not result.get("resourceSpans"):
        return []
    try:
        return parse_otlp_json(result, limits=OtlpLimits.unbounded())
    except OtlpJsonError as exc:
        raise JaegerError(f"{url}: not OTLP JSON: {exc}") from None


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def read_jaeger(
    base_url: str,
    *,
    service: str,
    since: float,
    until: float,
    operation: str | None = None,
    limit: int = 200,
    timeout_s: float = 30.0,
    fetch: Fetch = _fetch,
) -> list[Report]:
    """Reports of ``service``'s traces that started between ``since`` and ``until`` (epoch seconds).

    ``operation`` is the root span's name in Jaeger (``POST /api/v1/chat``);
    ``limit`` caps the traces. Raises :class:`JaegerError` when Jaeger cannot
    be reached or answers with an error or with something that is not OTLP JSON.
    """
    if not service:
        raise ValueError("service is required: Jaeger searches one service at a time")
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number of at least 1, not {limit!r}")
    query = {
        "query.service_name": service,
        "query.start_time_min": _rfc3339(since),
        "query.start_time_max": _rfc3339(until),
        "query.num_traces": str(limit),
    }
    if operation:
        query["query.operation_name"] = operation
    url = f"{base_url.rstrip('/')}/api/v3/traces?{urllib.parse.urlencode(query)}"
    status, body = fetch(url, timeout_s)
    return reports_from_otlp_spans(_spans(url, status, body, not_found_is_empty=True), service=service)


def read_jaeger_trace(
    base_url: str,
    trace_id: str,
    *,
    service: str | None = None,
    timeout_s: float = 30.0,
    fetch: Fetch = _fetch,
) -> list[Report]:
    """The reports of one trace (32 hex digits); its server spans' reports, oldest first."""
    if len(trace_id) != 32 or not all(c in "0123456789abcdefABCDEF" for c in trace_id):
        raise ValueError(f"a trace id is 32 hexadecimal digits, not {trace_id!r}")
    url = f"{base_url.rstrip('/')}/api/v3/traces/{trace_id.lower()}"
    status, body = fetch(url, timeout_s)
    return reports_from_otlp_spans(_spans(url, status, body, not_found_is_empty=False), service=service)
