"""Pins every read of an SDK-private attribute against the installed OpenTelemetry SDK."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from ha_agent_tracing.telemetry import _sdk_compat
from ha_agent_tracing.telemetry._instrumentation import instrument_app


def _finished_span() -> ReadableSpan:
    finished: list[ReadableSpan] = []
    provider = TracerProvider(shutdown_on_exit=False)

    class Keep(BatchSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            finished.append(span)

    provider.add_span_processor(Keep(_Blocked()))
    tracer = provider.get_tracer("pinned", "1.0")
    with tracer.start_as_current_span("parent"):
        span = tracer.start_span("child", kind=SpanKind.CLIENT, attributes={"k": 1, "t": (1, 2)})
        span.set_status(Status(StatusCode.ERROR, "boom"))
        span.end()
    return finished[0]


class _Blocked(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(5)
        return SpanExportResult.SUCCESS


def test_the_private_span_fields_are_the_public_properties_values() -> None:
    """span_fields reads the SDK's private fields, and each is what its public property returns."""
    assert _sdk_compat.uses_private_span_fields, "the SDK renamed a ReadableSpan field: update the seam"
    span = _finished_span()
    fields = _sdk_compat.span_fields(span)
    public = (
        span.name,
        span.context,
        span.parent,
        span.start_time,
        span.end_time,
        span.kind,
        span.status,
        span.attributes,
        span.instrumentation_scope,
    )
    assert fields[:7] == public[:7]
    assert dict(fields[7]) == dict(public[7] or {}) == {"k": 1, "t": (1, 2)}
    assert fields[8] == public[8]
    assert _sdk_compat.span_parent(span) == span.parent


def test_attribute_dict_is_the_plain_dict_inside_the_sdk_s_attributes() -> None:
    """No copy: the very dict behind BoundedAttributes (a finished span's are read-only)."""
    span = _finished_span()
    held = _sdk_compat.span_fields(span)[7]
    inner = _sdk_compat.attribute_dict(held)
    assert type(inner) is dict
    assert inner == {"k": 1, "t": (1, 2)}
    assert inner is span._attributes._dict  # type: ignore[attr-defined]  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType]
    assert _sdk_compat.attribute_dict(held) is inner
    assert _sdk_compat.attribute_dict(span.attributes) == inner  # a read-only view: copied
    assert _sdk_compat.attribute_dict(None) == {}
    assert _sdk_compat.attribute_dict({"a": 1}) == {"a": 1}


def test_batch_queue_length_counts_the_sdk_s_queued_spans() -> None:
    """Spans waiting behind a blocked export are seen in the SDK's queue."""
    exporter = _Blocked()
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000, max_export_batch_size=512)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("pinned")
    for _ in range(3):
        tracer.start_span("queued").end()
    try:
        assert _sdk_compat.batch_queue_length(processor) == 3
        assert _sdk_compat.batch_queue_length(object()) == 0
    finally:
        exporter.release.set()
        processor.shutdown()


def test_is_instrumented_app_sees_the_fastapi_instrumentation_s_flag() -> None:
    """False before FastAPIInstrumentor wraps the app, True after."""
    app = FastAPI()
    assert not _sdk_compat.is_instrumented_app(app)
    provider = TracerProvider(shutdown_on_exit=False)
    assert instrument_app(app, provider)
    try:
        assert _sdk_compat.is_instrumented_app(app)
    finally:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.uninstrument_app(app)


def test_otlp_http_headers_is_the_dict_the_http_exporters_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """The span and metric exporters' header dicts, with the variable's entries the SDK merged in."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=1")
    for exporter in (
        OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", headers={"x-arg": "2"}),
        OTLPMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics", headers={"x-arg": "2"}),
    ):
        headers = _sdk_compat.otlp_http_headers(exporter)
        assert headers is not None
        assert (headers["x-from-env"], headers["x-arg"]) == ("1", "2")
        exporter.shutdown()
    assert _sdk_compat.otlp_http_headers(object()) is None


def test_set_otlp_grpc_headers_replaces_the_grpc_exporters_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given no headers, the gRPC exporters keep the variable's as a tuple of pairs; it is replaced."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=1")
    for exporter in (
        OTLPSpanExporter(endpoint="http://127.0.0.1:9", headers={}),
        OTLPMetricExporter(endpoint="http://127.0.0.1:9", headers={}),
    ):
        assert exporter._headers == (("x-from-env", "1"),)  # pyright: ignore[reportPrivateUsage]
        assert _sdk_compat.set_otlp_grpc_headers(exporter, {"x-arg": "2"})
        assert exporter._headers == (("x-arg", "2"),)  # pyright: ignore[reportPrivateUsage]
        exporter.shutdown()
    assert not _sdk_compat.set_otlp_grpc_headers(object(), {})
