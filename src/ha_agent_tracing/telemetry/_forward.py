"""Spans received from elsewhere (the browser relay), sent on through this process's own exporters.

Relayed spans go into the same batch processors as the service's own spans, so
they reach the collector with the same endpoint, headers, compression, queue
bounds and accounting; nothing here opens a connection of its own, and nothing
in the payload chooses where spans go. Each span keeps its own resource
(``service.name`` of the page) and instrumentation scope::

    from ha_agent_tracing.telemetry._forward import forward_spans

    forwarded = forward_spans(runtime.exporters, parse_otlp_json(body))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from ha_agent_tracing.reports._otlp_json import OtlpSpan

__all__ = ["forward_spans", "to_readable_span"]

_KINDS = {
    "unspecified": SpanKind.INTERNAL,
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


def _trace_state(header: str) -> TraceState:
    if not header:
        return TraceState()
    # from_header drops invalid members (and warns) rather than raising.
    return TraceState.from_header([header])


def _status(span: OtlpSpan) -> Status:
    if span.status == "error":
        return Status(StatusCode.ERROR, span.status_message or None)
    return Status(StatusCode.OK) if span.status == "ok" else Status(StatusCode.UNSET)


def to_readable_span(
    span: OtlpSpan,
    *,
    resource: Resource | None = None,
    scope: InstrumentationScope | None = None,
) -> ReadableSpan:
    """The SDK's finished-span object for ``span``, as an exporter takes it.

    ``resource`` and ``scope`` default to the span's own; pass shared objects to
    let an exporter group many spans under one resource.
    """
    flags = TraceFlags(span.flags & 0xFF)
    state = _trace_state(span.trace_state)
    context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=flags, trace_state=state)
    parent = None
    if span.parent_id is not None:
        parent = SpanContext(
            span.trace_id, span.parent_id, is_remote=bool(span.parent_is_remote), trace_flags=flags
        )
    events = [Event(e.name, dict(e.attributes), timestamp=e.time_ns) for e in span.events]
    links = [
        Link(
            SpanContext(link.trace_id, link.span_id, is_remote=True, trace_flags=TraceFlags(link.flags)),
            dict(link.attributes),
        )
        for link in span.links
    ]
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource if resource is not None else Resource(dict(span.resource)),
        attributes=dict(span.attributes),
        events=events,
        links=links,
        kind=_KINDS[span.kind],
        status=_status(span),
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=scope or InstrumentationScope(span.scope_name, span.scope_version or None),
    )


def forward_spans(processors: Sequence[SpanProcessor], spans: Sequence[OtlpSpan]) -> int:
    """Hand every span to every processor's ``on_end`` (their exporters send it); returns the span count.

    Spans of one resource and scope share one ``Resource`` and one
    ``InstrumentationScope``, as spans recorded here do.
    """
    if not processors:
        return 0
    resources: dict[tuple[Any, ...], Resource] = {}
    scopes: dict[tuple[str, str], InstrumentationScope] = {}
    for span in spans:
        key = _resource_key(span.resource)
        resource = resources.get(key)
        if resource is None:
            resource = resources[key] = Resource(dict(span.resource))
        scope_key = (span.scope_name, span.scope_version)
        scope = scopes.get(scope_key)
        if scope is None:
            scope = scopes[scope_key] = InstrumentationScope(span.scope_name, span.scope_version or None)
        readable = to_readable_span(span, resource=resource, scope=scope)
        for processor in processors:
            processor.on_end(readable)
    return len(spans)


def _resource_key(attributes: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(attributes.items()))
