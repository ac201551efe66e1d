"""Every read of an OpenTelemetry SDK attribute that is not public API, in one place.

The SDK keeps a few things behind underscores that this project reads for
speed or accounting. Each read is here, with a fallback to public API (or a
neutral answer) if a future SDK renames it; ``tests/test_sdk_compat.py`` pins
every one against the installed SDK, so an upgrade that breaks one fails a
test instead of silently taking the slow path or losing a counter.

- :data:`span_fields`: a finished span's fields in one C-level call (the
  public properties cost a Python call each, on every span).
- :func:`attribute_dict`: the plain dict behind the SDK's ``BoundedAttributes``
  (read-only once the span ended), kept instead of a copy.
- :func:`batch_queue_length`: spans waiting in a ``BatchSpanProcessor``.
- :func:`is_instrumented_app`: whether the FastAPI instrumentation already
  wrapped an app.
- :func:`otlp_http_headers`, :func:`set_otlp_grpc_headers`: the headers an
  OTLP exporter sends, which the SDK otherwise merges with (HTTP) or replaces
  by (gRPC, when given none) the ``OTEL_EXPORTER_OTLP_*HEADERS`` variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "PRIVATE_SPAN_FIELDS",
    "PUBLIC_SPAN_FIELDS",
    "attribute_dict",
    "batch_queue_length",
    "is_instrumented_app",
    "otlp_http_headers",
    "set_otlp_grpc_headers",
    "span_fields",
    "span_parent",
    "uses_private_span_fields",
]

# The order is the tuple span_fields() returns: name, context, parent, start, end,
# kind, status, attributes, instrumentation scope.
PRIVATE_SPAN_FIELDS = (
    "_name",
    "_context",
    "_parent",
    "_start_time",
    "_end_time",
    "_kind",
    "_status",
    "_attributes",
    "_instrumentation_scope",
)
PUBLIC_SPAN_FIELDS = (
    "name",
    "context",
    "parent",
    "start_time",
    "end_time",
    "kind",
    "status",
    "attributes",
    "instrumentation_scope",
)


def _private_fields_match() -> bool:
    """Whether a ReadableSpan stores each public property under the private name read here."""
    # An explicit empty resource: the default would run the resource detectors of the environment.
    probe = ReadableSpan(name="probe", attributes={"k": 1}, resource=Resource.get_empty())
    try:
        private = attrgetter(*PRIVATE_SPAN_FIELDS)(probe)
    except AttributeError:
        return False
    public = attrgetter(*PUBLIC_SPAN_FIELDS)(probe)
    # attributes: the public property may wrap the same mapping in a read-only view.
    return all(a is b for a, b in zip(private[:7], public[:7], strict=True)) and (
        private[7] is public[7] or dict(private[7]) == dict(public[7])
    )


uses_private_span_fields = _private_fields_match()
"""Whether :data:`span_fields` reads the SDK's private fields (else its public properties)."""

span_fields: Callable[[ReadableSpan], tuple[Any, ...]] = attrgetter(
    *(PRIVATE_SPAN_FIELDS if uses_private_span_fields else PUBLIC_SPAN_FIELDS)
)
"""``(name, context, parent, start_time, end_time, kind, status, attributes, scope)`` of a span."""

span_parent: Callable[[ReadableSpan], Any] = attrgetter(
    PRIVATE_SPAN_FIELDS[2] if uses_private_span_fields else PUBLIC_SPAN_FIELDS[2]
)
"""A span's parent ``SpanContext`` (``None`` for a root), read on every span's start."""


def attribute_dict(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The plain dict behind a finished span's attributes, or a copy when there is none.

    A finished span's ``BoundedAttributes`` no longer change; keeping its inner
    dict costs nothing, where a copy would cost a dict per span.
    """
    if attributes is None:
        return {}
    raw = getattr(attributes, "_dict", None)
    if type(raw) is dict:
        return raw  # pyright: ignore[reportUnknownVariableType]
    if type(attributes) is dict:
        return attributes
    return dict(attributes)


def batch_queue_length(processor: object) -> int:
    """Spans queued in an SDK ``BatchSpanProcessor`` (0 if the SDK no longer exposes the queue)."""
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    try:
        return len(queue) if queue is not None else 0  # pyright: ignore[reportArgumentType]
    except TypeError:
        return 0


def is_instrumented_app(app: object) -> bool:
    """Whether ``FastAPIInstrumentor`` already instrumented ``app`` (its own private flag)."""
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))


def otlp_http_headers(exporter: object) -> dict[str, str] | None:
    """The headers an SDK OTLP/HTTP exporter sends with each request, as the live dict it sends.

    ``None`` if the SDK no longer keeps them there (its HTTP client's header dict).
    """
    headers = getattr(getattr(exporter, "_client", None), "_headers", None)
    return headers if type(headers) is dict else None  # pyright: ignore[reportUnknownVariableType]


def set_otlp_grpc_headers(exporter: object, headers: Mapping[str, str]) -> bool:
    """Make an SDK OTLP/gRPC exporter send exactly ``headers`` as its metadata.

    ``False`` (and nothing changed) if the SDK no longer keeps them where it did
    (a tuple of pairs in ``_headers``).
    """
    if type(getattr(exporter, "_headers", None)) is not tuple:
        return False
    exporter._headers = tuple(headers.items())  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    return True
