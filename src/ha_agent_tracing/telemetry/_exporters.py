"""Span exporters built from configuration, and the accounting around them.

Every exporter is wrapped in :class:`CountingExporter`, which counts the spans
that reached the backend and those that did not, and logs one warning when
export starts failing and one line when it recovers, instead of a line per
failed batch. Its counters are part of ``TracingRuntime.stats()``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.util.re import parse_env_headers

from ha_agent_tracing._config import OTLP_HEADERS, TracingConfig, default_otlp_endpoint, settle_otlp_headers
from ha_agent_tracing._internal import InternalErrors
from ha_agent_tracing.telemetry._sdk_compat import (
    batch_queue_length,
    otlp_http_headers,
    set_otlp_grpc_headers,
)

__all__ = [
    "CountingBatchProcessor",
    "CountingExporter",
    "build_exporters",
    "otlp_transport",
    "send_only_headers",
]

logger = logging.getLogger("ha_agent_tracing")


class CountingExporter(SpanExporter):
    """Forwards to ``delegate``; counts exported and failed spans; logs state changes once."""

    def __init__(self, delegate: SpanExporter, target: str) -> None:
        self.delegate = delegate
        self.target = target
        self._lock = threading.Lock()
        self._failing = False
        self.exported = 0
        self.failed = 0
        self._in_flight = 0
        self._errors = InternalErrors(f"exporter to {target}")

    @property
    def in_flight(self) -> int:
        """Spans handed to the delegate whose export has not returned yet."""
        return self._in_flight

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export a batch; never raises."""
        with self._lock:
            self._in_flight += len(spans)
        try:
            result = self.delegate.export(spans)
        except Exception as exc:  # noqa: BLE001 - a broken exporter must not reach the worker thread
            self._errors.record(exc)
            result = SpanExportResult.FAILURE
        with self._lock:
            self._in_flight -= len(spans)
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
                recovered, self._failing = self._failing, False
                changed = recovered
            else:
                self.failed += len(spans)
                changed = not self._failing
                self._failing = True
            failed = self.failed
        if changed and result is SpanExportResult.SUCCESS:
            logger.warning(
                "span export to %s recovered; %d spans were lost while it failed", self.target, failed
            )
        elif changed:
            logger.warning(
                "span export to %s failed; %d spans dropped. The application carries on; "
                "further failures are counted until export recovers",
                self.target,
                len(spans),
            )
        return result

    def shutdown(self) -> None:
        """Shut the delegate down."""
        try:
            self.delegate.shutdown()
        except Exception as exc:  # noqa: BLE001
            self._errors.record(exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the delegate."""
        try:
            return self.delegate.force_flush(timeout_millis)
        except Exception as exc:  # noqa: BLE001
            self._errors.record(exc)
            return False

    def stats(self) -> dict[str, Any]:
        """Exported and failed span counts, and whether export is failing now."""
        with self._lock:
            return {
                "target": self.target,
                "exported_spans": self.exported,
                "failed_spans": self.failed,
                "failing": self._failing,
                "internal_errors": self._errors.count,
            }


class CountingBatchProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting spans dropped because its queue was full."""

    def __init__(self, exporter: CountingExporter, config: TracingConfig) -> None:
        super().__init__(
            exporter,
            max_queue_size=config.bsp_max_queue_size,
            schedule_delay_millis=config.bsp_schedule_delay_ms,
            max_export_batch_size=config.bsp_max_export_batch_size,
            export_timeout_millis=config.bsp_export_timeout_ms,
        )
        self.exporter = exporter
        self._max_queue = config.bsp_max_queue_size
        self.queue_dropped = 0

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a sampled span for export, counting it when the queue is full."""
        # The queue length first: it is almost never full, and cheaper to read than the flags.
        if batch_queue_length(self) >= self._max_queue:
            ctx = span.context
            if ctx is not None and ctx.trace_flags.sampled:
                self.queue_dropped += 1
        super().on_end(span)

    def stats(self) -> dict[str, Any]:
        """The exporter's counters plus spans dropped at the queue."""
        return {**self.exporter.stats(), "queue_dropped_spans": self.queue_dropped}


def otlp_transport(protocol: str, endpoint: str, insecure: bool | None, compression: str) -> dict[str, Any]:
    """The transport keyword arguments of the SDK's OTLP exporters, traces' and metrics' alike."""
    if protocol == "grpc":
        from grpc import Compression as GrpcCompression

        return {
            "insecure": insecure if insecure is not None else endpoint.startswith("http://"),
            "compression": GrpcCompression.Gzip if compression == "gzip" else GrpcCompression.NoCompression,
        }
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

    return {
        "compression": {
            "gzip": HttpCompression.Gzip,
            "deflate": HttpCompression.Deflate,
            "none": HttpCompression.NoCompression,
        }[compression]
    }


# Headers the SDK's HTTP exporter sets itself; a header variable naming one cannot take it away.
_TRANSPORT_HEADERS = frozenset({"content-type", "content-encoding", "user-agent"})


def send_only_headers(exporter: object, headers: Mapping[str, str], variables: Sequence[str]) -> None:
    """Make an SDK OTLP exporter send ``headers``, and no other entry of the header ``variables``.

    ``headers`` is the resolved setting (the argument, else the variables), but
    the SDK reads ``variables`` (signal's first, then ``OTEL_EXPORTER_OTLP_HEADERS``)
    again itself: the HTTP exporter adds their entries to the headers it is
    given, the gRPC one sends them instead when it is given none.
    """
    if set_otlp_grpc_headers(exporter, headers):
        return
    sent = otlp_http_headers(exporter)
    if sent is None:
        return
    raw = next((os.environ[var] for var in variables if os.environ.get(var)), "")
    asked = {name.lower() for name in headers}
    for name in parse_env_headers(raw, liberal=True):
        if name not in asked and name not in _TRANSPORT_HEADERS:
            sent.pop(name, None)


def _otlp_exporter(config: TracingConfig) -> tuple[SpanExporter, str]:
    endpoint = config.otlp_endpoint or default_otlp_endpoint(config.otlp_protocol)
    timeout_s = config.otlp_timeout_ms / 1000.0
    headers = dict(config.otlp_headers)
    settle_otlp_headers()  # the SDK reads the variables again: leave it only what was kept, warned once
    transport = otlp_transport(config.otlp_protocol, endpoint, config.otlp_insecure, config.otlp_compression)
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter: SpanExporter = GrpcExporter(
            endpoint=endpoint, headers=headers, timeout=timeout_s, **transport
        )
        target = f"{endpoint} (OTLP/gRPC)"
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=endpoint, headers=headers, timeout=timeout_s, **transport)
        target = f"{endpoint} (OTLP/HTTP)"
    send_only_headers(exporter, headers, OTLP_HEADERS.env)
    return exporter, target


def build_exporters(config: TracingConfig) -> list[CountingBatchProcessor]:
    """One batch processor per configured exporter, each wrapped for accounting."""
    processors: list[CountingBatchProcessor] = []
    for name in config.exporters:
        if name == "otlp":
            exporter, target = _otlp_exporter(config)
        else:
            exporter, target = ConsoleSpanExporter(service_name=config.service_name), "console"
        processors.append(CountingBatchProcessor(CountingExporter(exporter, target), config))
    return processors
