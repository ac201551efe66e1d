"""OpenTelemetry metrics derived from the spans already recorded.

No second timing: :class:`SpanMetricsProcessor` is a span processor whose
``on_end`` turns finished spans into histogram measurements.

* ``ha_agent_tracing.metric.duration`` (s): every tracked metric, attributes
  ``metric`` (its name), ``operation`` (its request's report operation) and
  ``status`` (``ok``/``error``). A metric's operation is known only when its
  request's local root ends, so a request's metric measurements wait for it
  (bounded, like the report processor's pending requests).
* ``ha_agent_tracing.operation.duration`` (s): every reported request (the
  local root span), attributes ``operation`` and ``status``.
* ``gen_ai.client.operation.duration`` (s) and ``gen_ai.client.token.usage``
  (``{token}``) from every span that carries ``gen_ai.operation.name`` (the
  model calls; not ``execute_tool``, a tool run in this process), with the
  GenAI semantic conventions' attributes and buckets.
  Spans of the official GenAI instrumentation are left alone: it records
  these metrics itself.

The same measurements feed the embedded alert evaluator as
:class:`Observation` tuples (``sinks``), whether or not metrics are exported.

**Recording is off the request thread.** ``on_end`` only works out what to
record (cheap bookkeeping, the attribute dicts reused) and queues each
measurement with its span's context; the SDK's ``Histogram.record`` (attribute
hashing, the bucket search, the exemplar reservoir: ≈10 µs a measurement) runs
on a background thread that drains the queue every
:data:`RECORDING_INTERVAL_S`, and at every collection of the meter provider
(an observable instrument's callback that observes nothing), at
``force_flush`` and at ``shutdown``. So a collection or an export holds every
measurement of the spans that ended before it, each with the context of its
span (the exemplar's trace and span ids); only the exemplar's timestamp is the
time of recording, up to that interval after the span ended.

:func:`build_metrics` makes the ``MeterProvider`` from the configuration:
``otlp`` and ``console`` readers export every ``OTEL_METRIC_EXPORT_INTERVAL``;
``prometheus`` serves a scrape endpoint on loopback by default.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider
from opentelemetry.metrics import Observation as Observed
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

from ha_agent_tracing._config import (
    OTLP_METRICS_HEADERS,
    TracingConfig,
    default_otlp_endpoint,
    settle_otlp_headers,
)
from ha_agent_tracing._internal import InternalErrors
from ha_agent_tracing._version import __version__
from ha_agent_tracing.reports._fold import OPERATION_ATTRIBUTE
from ha_agent_tracing.reports._processor import TRACER_NAME
from ha_agent_tracing.telemetry._exporters import otlp_transport, send_only_headers
from ha_agent_tracing.telemetry._sdk_compat import attribute_dict, span_fields

__all__ = [
    "DURATION_BUCKETS_S",
    "GEN_AI_DURATION_BUCKETS_S",
    "GEN_AI_TOKEN_BUCKETS",
    "INSTRUMENTS",
    "METRIC_DURATION",
    "OPERATION_DURATION",
    "RECORDING_INTERVAL_S",
    "MetricsRuntime",
    "Observation",
    "SpanMetricsProcessor",
    "build_metrics",
]

logger = logging.getLogger("ha_agent_tracing")

METRIC_DURATION = "ha_agent_tracing.metric.duration"
OPERATION_DURATION = "ha_agent_tracing.operation.duration"
GEN_AI_OPERATION_DURATION = "gen_ai.client.operation.duration"
GEN_AI_TOKEN_USAGE = "gen_ai.client.token.usage"

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""0.01 ms to 60 s, about three buckets a decade."""

GEN_AI_DURATION_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""The GenAI semantic conventions' boundaries for ``gen_ai.client.operation.duration``."""

GEN_AI_TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
"""The GenAI semantic conventions' boundaries for ``gen_ai.client.token.usage``."""

INSTRUMENTS: tuple[tuple[str, str, str], ...] = (
    (METRIC_DURATION, "s", "Duration of each tracked metric (a span of the tracker)"),
    (OPERATION_DURATION, "s", "Duration of each reported request (its local root span)"),
    (GEN_AI_OPERATION_DURATION, "s", "GenAI operation duration"),
    (GEN_AI_TOKEN_USAGE, "{token}", "Number of input and output tokens used"),
)
"""Name, unit and description of every instrument this module records."""

_GEN_AI_OPERATION = "gen_ai.operation.name"
_GEN_AI_ATTRIBUTES = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
)
# Instrumentations that record the GenAI metrics themselves.
_GEN_AI_SELF_MEASURED = ("opentelemetry.instrumentation.genai", "opentelemetry.instrumentation.openai")
# Tool calls run in this process: they are not a client's call to a model.
_NOT_CLIENT_OPERATIONS = frozenset({"execute_tool"})
_NO_EXEMPLAR = Context()
_NS_PER_S = 1e9

RECORDING_INTERVAL_S = 0.05
"""Longest a measurement waits in the queue before the background thread records it."""

# An observable instrument whose callback records the queue and observes nothing: not exported.
_COLLECT_HOOK = "ha_agent_tracing.internal.record_queued"


class Observation(NamedTuple):
    """One finished measurement, as the alert evaluator reads it."""

    kind: str
    """``metric`` (a tracked metric) or ``operation`` (a whole request)."""
    name: str
    """The metric's name, or the operation's."""
    operation: str
    duration_ms: float
    error: bool
    end_s: float
    """Epoch seconds at which the span ended."""


# A tracked metric waiting for its request's root: name, start ns, end ns, error, context.
_Pending = tuple[str, int, int, bool, Any]
# A measurement queued for the recording thread: instrument, value, attributes, span context.
_Queued = tuple[Histogram, float, Any, Any]


class _Request:
    __slots__ = ("metrics", "operation")

    def __init__(self) -> None:
        self.operation: str | None = None
        self.metrics: list[_Pending] = []


class SpanMetricsProcessor(SpanProcessor):
    """Records the instruments above from finished spans; feeds ``sinks`` with observations.

    Args:
        meter: where the histograms are created; ``None`` records none (alerts only).
        sinks: called with each request's observations when its root ends
            (on the request's thread: they must be quick, e.g. a deque append).
        max_pending_traces: most requests whose metrics wait for their root.
        max_queued: most measurements waiting for the recording thread; past it
            (the thread starved of CPU) new ones are dropped and counted in
            ``dropped_measurements``, so memory stays bounded.
        exemplars: whether measurements carry the span's context (for exemplars).
    """

    def __init__(
        self,
        meter: Meter | None,
        sinks: Sequence[Callable[[list[Observation]], None]] = (),
        *,
        max_pending_traces: int = 10_000,
        max_queued: int = 100_000,
        exemplars: bool = True,
    ) -> None:
        self._sinks = list(sinks)
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, _Request] = OrderedDict()
        self._finished: OrderedDict[int, str] = OrderedDict()
        self._max_pending = max_pending_traces
        self._exemplars = exemplars
        self._errors = InternalErrors("span metrics processor")
        self.evicted_traces = 0
        self._max_queued = max_queued
        self.dropped_measurements = 0
        self._closed = False
        self._metric: Histogram | None = None
        self._operation: Histogram | None = None
        self._gen_ai_duration: Histogram | None = None
        self._gen_ai_tokens: Histogram | None = None
        self._attributes: dict[tuple[str, str, str], dict[str, str]] = {}
        self._queued: deque[_Queued] = deque()
        self._recording = threading.Lock()  # one drain at a time (the thread, a collection, a flush)
        self._wake = threading.Event()
        self._idle = True  # the recording thread waits for a measurement: the next one wakes it
        self._thread: threading.Thread | None = None
        self.recorded = 0
        """Measurements recorded by the SDK so far."""
        self.recording_cpu_s = 0.0
        """CPU seconds spent recording them (off the request thread, in the SDK)."""
        if meter is not None:
            boundaries = (
                DURATION_BUCKETS_S,
                DURATION_BUCKETS_S,
                GEN_AI_DURATION_BUCKETS_S,
                GEN_AI_TOKEN_BUCKETS,
            )
            self._metric, self._operation, self._gen_ai_duration, self._gen_ai_tokens = (
                meter.create_histogram(
                    name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
                )
                for (name, unit, description), buckets in zip(INSTRUMENTS, boundaries, strict=True)
            )
            meter.create_observable_gauge(_COLLECT_HOOK, callbacks=[self._record_before_collection])

    def stats(self) -> dict[str, int]:
        """Requests waiting for their root, evicted ones and internal errors."""
        with self._lock:
            pending = len(self._pending)
        return {
            "pending_traces": pending,
            "evicted_traces": self.evicted_traces,
            "queued_measurements": len(self._queued),
            "dropped_measurements": self.dropped_measurements,
            "internal_errors": self._errors.count,
        }

    # ------------------------------------------------------------ recording, off the request thread

    def _queue(self, histogram: Histogram, value: float, attributes: Any, span_context: Any) -> None:
        if len(self._queued) >= self._max_queued:
            self.dropped_measurements += 1
            return
        self._queued.append((histogram, value, attributes, span_context))
        if self._idle:
            self._idle = False
            if self._thread is None:
                self._start_thread()
            self._wake.set()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="ha-agent-tracing-metrics", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            time.sleep(RECORDING_INTERVAL_S)  # let a batch gather
            self.record_queued()
            self._idle = True
            if self._queued:  # queued after the drain, before idle was set: nobody woke us
                self._idle = False
                self._wake.set()

    def record_queued(self) -> int:
        """Record every queued measurement now; returns how many. Never raises."""
        queued = self._queued
        count = 0
        with self._recording:
            started = time.thread_time()
            while True:
                try:
                    histogram, value, attributes, span_context = queued.popleft()
                except IndexError:
                    break
                try:
                    histogram.record(value, attributes, context=self._exemplar(span_context))
                except Exception as exc:  # noqa: BLE001 - telemetry never breaks the application
                    self._errors.record(exc)
                count += 1
            self.recorded += count
            self.recording_cpu_s += time.thread_time() - started
        return count

    def _record_before_collection(self, options: CallbackOptions) -> list[Observed]:
        self.record_queued()
        return []

    def on_end(self, span: ReadableSpan) -> None:
        """Record what a finished span measured; never raises."""
        if self._closed:
            return
        try:
            self._on_end(span)
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the application
            self._errors.record(exc)

    def _exemplar(self, ctx: Any) -> Context | None:
        if not self._exemplars or ctx is None:
            return _NO_EXEMPLAR
        return trace.set_span_in_context(NonRecordingSpan(ctx))

    def _on_end(self, span: ReadableSpan) -> None:
        # One C-level read of the fields and the plain attribute dict: the public properties
        # cost a Python call each, and a missing key read through them raises and catches a
        # KeyError inside the SDK's mapping (most spans have neither attribute looked up here).
        name, ctx, parent, start, end, kind, status, raw_attributes, scope = span_fields(span)
        attributes = attribute_dict(raw_attributes)
        scope_name = scope.name if scope is not None else ""
        error = status.status_code is StatusCode.ERROR
        gen_ai_operation = attributes.get(_GEN_AI_OPERATION)
        if (
            gen_ai_operation is not None
            and gen_ai_operation not in _NOT_CLIENT_OPERATIONS
            and not scope_name.startswith(_GEN_AI_SELF_MEASURED)
            and start is not None
            and end is not None
        ):
            self._record_gen_ai(ctx, (end - start) / _NS_PER_S, error, attributes)
        if ctx is None or start is None or end is None:
            return
        trace_id = ctx.trace_id
        tracked = scope_name == TRACER_NAME
        if parent is not None and not parent.is_remote:
            if not tracked:
                return
            entry: _Pending = (name, start, end, error, ctx)
            named = attributes.get(OPERATION_ATTRIBUTE)
            with self._lock:
                operation = self._finished.get(trace_id)
                if operation is None:
                    request = self._pending.get(trace_id)
                    if request is None:
                        request = self._pending[trace_id] = _Request()
                        if len(self._pending) > self._max_pending:
                            self._pending.popitem(last=False)
                            self.evicted_traces += 1
                    request.metrics.append(entry)
                    if isinstance(named, str) and request.operation is None:
                        request.operation = named
                    return
            self._emit(operation, [entry], None)
            return
        with self._lock:
            request = self._pending.pop(trace_id, None)
        if request is None and not tracked and kind is not SpanKind.SERVER:
            return  # a bare outgoing call outside any request: no report, no metric
        named = attributes.get(OPERATION_ATTRIBUTE)
        if not isinstance(named, str):
            named = request.operation if request is not None and request.operation else name
        with self._lock:
            self._finished[trace_id] = named
            if len(self._finished) > 1000:
                self._finished.popitem(last=False)
        root: _Pending = (named, start, end, error, ctx)
        self._emit(named, request.metrics if request is not None else [], root)

    def _emit(self, operation: str, metrics: list[_Pending], root: _Pending | None) -> None:
        observations: list[Observation] = []
        cache = self._attributes
        histogram = self._metric
        for name, start, end, error, ctx in metrics:
            seconds = (end - start) / _NS_PER_S
            status = "error" if error else "ok"
            if histogram is not None:
                key = (name, operation, status)
                attrs = cache.get(key)
                if attrs is None:
                    attrs = cache[key] = {"metric": name, "operation": operation, "status": status}
                    if len(cache) > 10_000:
                        cache.clear()
                self._queue(histogram, seconds, attrs, ctx)
            if self._sinks:
                observations.append(
                    Observation("metric", name, operation, seconds * 1000, error, end / _NS_PER_S)
                )
        if root is not None:
            name, start, end, error, ctx = root
            seconds = (end - start) / _NS_PER_S
            if self._operation is not None:
                status = "error" if error else "ok"
                self._queue(self._operation, seconds, {"operation": operation, "status": status}, ctx)
            if self._sinks:
                observations.append(
                    Observation("operation", operation, operation, seconds * 1000, error, end / _NS_PER_S)
                )
        for sink in self._sinks:
            sink(observations)

    def _record_gen_ai(self, context: Any, seconds: float, error: bool, attributes: Any) -> None:
        if self._gen_ai_duration is None or self._gen_ai_tokens is None:
            return
        common = {key: attributes[key] for key in _GEN_AI_ATTRIBUTES if key in attributes}
        duration_attrs = common
        if error:
            duration_attrs = {**common, "error.type": str(attributes.get("error.type", "_OTHER"))}
        self._queue(self._gen_ai_duration, seconds, duration_attrs, context)
        for token_type, key in (
            ("input", "gen_ai.usage.input_tokens"),
            ("output", "gen_ai.usage.output_tokens"),
        ):
            value = attributes.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self._queue(self._gen_ai_tokens, value, {**common, "gen_ai.token.type": token_type}, context)

    def shutdown(self) -> None:
        """Record what is queued, then stop; forget requests still waiting for their root."""
        self._closed = True
        self._wake.set()
        self.record_queued()
        with self._lock:
            self._pending.clear()
            self._finished.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Record every queued measurement now (exporting is the meter provider's)."""
        self.record_queued()
        return True


@dataclass
class MetricsRuntime:
    """The meter provider and what serves or exports its metrics."""

    provider: MeterProvider
    owns_provider: bool
    targets: list[str] = field(default_factory=list[str])
    servers: list[Any] = field(default_factory=list[Any])
    prometheus_port: int | None = None

    def shutdown(self, timeout_s: float) -> None:
        """Stop the scrape endpoint; flush and shut down the provider if it is ours."""
        for server in self.servers:
            try:
                server.shutdown()
                server.server_close()
            except Exception:
                logger.debug("could not stop the Prometheus endpoint", exc_info=True)
        if self.owns_provider and isinstance(self.provider, SdkMeterProvider):
            self.provider.shutdown(timeout_millis=timeout_s * 1000)


def _otlp_metric_exporter(config: TracingConfig) -> tuple[Any, str]:
    endpoint = config.otlp_metrics_endpoint or default_otlp_endpoint(config.otlp_metrics_protocol, "metrics")
    timeout_s = config.otlp_metrics_timeout_ms / 1000.0
    headers = dict(config.otlp_metrics_headers)
    settle_otlp_headers()  # the SDK reads the variables again: leave it only what was kept, warned once
    transport = otlp_transport(
        config.otlp_metrics_protocol, endpoint, config.otlp_metrics_insecure, config.otlp_metrics_compression
    )
    if config.otlp_metrics_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        exporter: Any = GrpcExporter(endpoint=endpoint, headers=headers, timeout=timeout_s, **transport)
        target = f"{endpoint} (OTLP/gRPC)"
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        exporter = HttpExporter(endpoint=endpoint, headers=headers, timeout=timeout_s, **transport)
        target = f"{endpoint} (OTLP/HTTP)"
    send_only_headers(exporter, headers, OTLP_METRICS_HEADERS.env)  # the SDK would add the variables' again
    return exporter, target


def _exemplar_filter(name: str) -> Any:
    from opentelemetry.sdk.metrics import (
        AlwaysOffExemplarFilter,
        AlwaysOnExemplarFilter,
        TraceBasedExemplarFilter,
    )

    return {
        "always_on": AlwaysOnExemplarFilter,
        "always_off": AlwaysOffExemplarFilter,
    }.get(name, TraceBasedExemplarFilter)()


def build_metrics(config: TracingConfig, resource: Resource) -> MetricsRuntime | None:
    """A meter provider with the configured readers; ``None`` when no metrics exporter is on.

    A scrape endpoint that cannot bind (the port is taken) is logged and left out;
    the service carries on with the other readers.
    """
    readers: list[MetricReader] = []
    targets: list[str] = []
    servers: list[Any] = []
    port: int | None = None
    interval = config.metric_export_interval_ms
    timeout = config.metric_export_timeout_ms
    for name in config.metrics_exporters:
        if name == "otlp":
            exporter, target = _otlp_metric_exporter(config)
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=interval, export_timeout_millis=timeout
                )
            )
            targets.append(target)
        elif name == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(), export_interval_millis=interval, export_timeout_millis=timeout
                )
            )
            targets.append("console")
        elif name == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry(auto_describe=True)
            try:
                server, _thread = start_http_server(
                    config.prometheus_port, addr=config.prometheus_host, registry=registry
                )
            except OSError as exc:
                logger.error(
                    "the Prometheus scrape endpoint could not listen on %s:%s (%s); metrics are not served "
                    "there. Set OTEL_EXPORTER_PROMETHEUS_PORT to a free port",
                    config.prometheus_host,
                    config.prometheus_port,
                    exc,
                )
                continue
            readers.append(PrometheusMetricReader(registry=registry))
            servers.append(server)
            port = server.server_address[1]
            targets.append(f"http://{config.prometheus_host}:{port}/metrics (Prometheus scrape)")
    if not readers:
        return None
    provider = SdkMeterProvider(
        metric_readers=readers,
        resource=resource,
        exemplar_filter=_exemplar_filter(config.metrics_exemplar_filter),
        shutdown_on_exit=False,
    )
    return MetricsRuntime(
        provider, owns_provider=True, targets=targets, servers=servers, prometheus_port=port
    )


def meter_for(provider: MeterProvider) -> Meter:
    """The meter this library records its instruments with."""
    return provider.get_meter(TRACER_NAME, __version__)
