"""OpenTelemetry metrics derived from the recorded spans: instruments, attributes, readers, settings."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from ha_agent_tracing import configure_tracing, get_tracker, load_config

from .agent_harness import running_agent, serve_command
from .conftest import make_tracing

# Written out here, not read from the code under test.
DURATION_BUCKETS = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
]  # fmt: skip
GEN_AI_DURATION_BUCKETS = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
]  # fmt: skip
GEN_AI_TOKEN_BUCKETS = [
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
]  # fmt: skip
CHAT_METRICS = {
    "rate_limit_check",
    "conversation_management",
    "pending_preview_check",
    "message_assembly",
    "context_refresh",
    "openai_api_call",
    "tool_execution",
    "token_count_retrieval",
}


def attrs(point: HistogramDataPoint) -> dict[str, Any]:
    return dict(point.attributes or {})


def points(reader: InMemoryMetricReader) -> dict[str, list[HistogramDataPoint]]:
    """Histogram points by instrument name."""
    found: dict[str, list[HistogramDataPoint]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)  # type: ignore[arg-type]
    return found


def units(reader: InMemoryMetricReader) -> dict[str, str]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric.unit or ""
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


@pytest.fixture
def meters() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield provider, reader
    provider.shutdown()


def test_a_chat_request_records_every_instrument_from_its_spans(
    meters: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """Per-metric and per-operation durations equal the reports' durations; GenAI and HTTP metrics exist."""
    provider, reader = meters
    with running_agent(meter_provider=provider, tracing={"alerts": False}) as agent:
        for message in ("Which lights are on?", "Turn off the kitchen light and tell me the temperature"):
            assert agent.chat(message).status_code == 200
        reports = agent.reports(2)
        found = points(reader)
        unit = units(reader)

    assert unit["ha_agent_tracing.metric.duration"] == "s"
    assert unit["ha_agent_tracing.operation.duration"] == "s"
    assert unit["gen_ai.client.operation.duration"] == "s"
    assert unit["gen_ai.client.token.usage"] == "{token}"
    assert "http.server.duration" in found
    assert "http.client.duration" in found

    by_metric: dict[str, HistogramDataPoint] = {}
    for point in found["ha_agent_tracing.metric.duration"]:
        assert attrs(point)["operation"] == "chat_request"
        assert attrs(point)["status"] == "ok"
        assert list(point.explicit_bounds) == DURATION_BUCKETS
        by_metric[str(attrs(point)["metric"])] = point
    assert set(by_metric) == CHAT_METRICS
    for name, point in by_metric.items():
        durations = [m["duration"] for r in reports for m in r["metrics"] if m["name"] == name]
        assert point.count == len(durations)
        assert point.sum == pytest.approx(sum(durations) / 1000, rel=1e-9, abs=1e-12)

    (operation,) = found["ha_agent_tracing.operation.duration"]
    assert attrs(operation) == {"operation": "chat_request", "status": "ok"}
    assert operation.count == 2
    assert operation.sum == pytest.approx(sum(r["total_duration"] for r in reports) / 1000, rel=1e-9)

    calls = [m for r in reports for m in r["metrics"] if m["name"] == "openai_api_call"]
    gen_ai = found["gen_ai.client.operation.duration"]
    for point in gen_ai:
        assert attrs(point)["gen_ai.operation.name"] == "chat"
        assert attrs(point)["gen_ai.request.model"] == "gpt-4o-mini"
        assert "gen_ai.provider.name" in attrs(point)
        assert list(point.explicit_bounds) == GEN_AI_DURATION_BUCKETS
    assert sum(p.count for p in gen_ai) == len(calls)
    assert sum(p.sum for p in gen_ai) == pytest.approx(sum(m["duration"] for m in calls) / 1000, rel=1e-9)
    tokens: dict[str, int] = {}
    for point in found["gen_ai.client.token.usage"]:
        assert list(point.explicit_bounds) == GEN_AI_TOKEN_BUCKETS
        kind = str(attrs(point)["gen_ai.token.type"])
        tokens[kind] = tokens.get(kind, 0) + int(point.sum)
    assert tokens == {
        "input": sum(m["metadata"]["gen_ai.usage.input_tokens"] for m in calls),
        "output": sum(m["metadata"]["gen_ai.usage.output_tokens"] for m in calls),
    }


def test_exemplars_carry_the_trace_of_the_measured_span() -> None:
    """A sampled request's measurement keeps its trace id as an exemplar."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = make_tracing()
    configure_tracing(tracer_provider=tracing.provider, meter_provider=meters, alerts=False)
    tracker = get_tracker()
    with tracker.operation("nightly_sync"), tracker.track("fetch"):
        pass
    (report,) = tracker.get_reports()
    (point,) = points(reader)["ha_agent_tracing.metric.duration"]
    assert {f"{e.trace_id:032x}" for e in point.exemplars} == {report["trace_id"]}
    meters.shutdown()


def test_a_failed_metric_is_measured_with_status_error() -> None:
    """A metric whose block raised is recorded with status=error, under its request's operation."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = make_tracing()
    configure_tracing(tracer_provider=tracing.provider, meter_provider=meters, alerts=False)
    tracker = get_tracker()
    with tracker.operation("nightly_sync"):
        with pytest.raises(RuntimeError), tracker.track("tool_execution"):
            raise RuntimeError("boom")
        with tracker.track("tool_execution"):
            pass
    found = points(reader)["ha_agent_tracing.metric.duration"]
    statuses = sorted((str(attrs(p)["status"]), str(attrs(p)["operation"]), p.count) for p in found)
    assert statuses == [("error", "nightly_sync", 1), ("ok", "nightly_sync", 1)]
    meters.shutdown()


def test_an_outgoing_call_outside_any_request_records_no_operation() -> None:
    """A bare client span is no report and no operation measurement."""
    from opentelemetry.trace import SpanKind

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = make_tracing()
    configure_tracing(tracer_provider=tracing.provider, meter_provider=meters, alerts=False)
    tracing.provider.get_tracer("httpx").start_span("GET", kind=SpanKind.CLIENT).end()
    assert "ha_agent_tracing.operation.duration" not in points(reader)
    tracing.provider.get_tracer("fastapi").start_span("GET /health", kind=SpanKind.SERVER).end()
    (point,) = points(reader)["ha_agent_tracing.operation.duration"]
    assert attrs(point)["operation"] == "GET /health"
    meters.shutdown()


def test_metrics_waiting_for_a_root_that_never_ends_are_bounded() -> None:
    """Past max_pending_traces the oldest waiting request is dropped and counted."""
    from ha_agent_tracing.telemetry._metrics import SpanMetricsProcessor

    tracing = make_tracing()
    processor = SpanMetricsProcessor(None, [lambda observations: None], max_pending_traces=3)
    tracing.provider.add_span_processor(processor)
    tracer = tracing.tracker.tracer
    roots = [tracer.start_span(f"root{i}") for i in range(5)]
    for root in roots:
        from opentelemetry import trace

        with trace.use_span(root, end_on_exit=False), tracing.tracker.track("step"):
            pass
    assert processor.stats()["pending_traces"] == 3
    assert processor.stats()["evicted_traces"] == 2
    for root in roots:
        root.end()
    assert processor.stats()["pending_traces"] == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_prometheus_endpoint_listens_on_loopback_by_default() -> None:
    """OTEL_METRICS_EXPORTER=prometheus serves /metrics on 127.0.0.1 with the instruments' series."""
    tracing = make_tracing()
    runtime = configure_tracing(
        tracer_provider=tracing.provider, metrics_exporter="prometheus", prometheus_port=0, alerts=False
    )
    assert runtime.metrics is not None
    (server,) = runtime.metrics.servers
    assert server.server_address[0] == "127.0.0.1"
    tracker = get_tracker()
    with tracker.operation("chat_request"), tracker.track("openai_api_call"):
        pass
    body = httpx.get(f"http://127.0.0.1:{runtime.metrics.prometheus_port}/metrics", timeout=5).text
    assert (
        'ha_agent_tracing_metric_duration_seconds_bucket{le="0.005",metric="openai_api_call",'
        'operation="chat_request"'
    ) in body
    assert 'ha_agent_tracing_operation_duration_seconds_count{operation="chat_request"' in body


def test_a_taken_prometheus_port_is_an_error_and_the_service_carries_on(
    lib_logs: pytest.LogCaptureFixture,
) -> None:
    """The scrape endpoint cannot bind: one ERROR naming the variable; tracing still works."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        tracing = make_tracing()
        runtime = configure_tracing(
            tracer_provider=tracing.provider,
            metrics_exporter="prometheus",
            prometheus_port=port,
            alerts=False,
        )
    assert runtime.metrics is None
    errors = [r.getMessage() for r in lib_logs.records if r.levelno == logging.ERROR]
    assert any("OTEL_EXPORTER_PROMETHEUS_PORT" in e for e in errors)
    with get_tracker().operation("still_traced"):
        pass
    assert get_tracker().get_reports()[0]["operation"] == "still_traced"


@pytest.mark.parametrize(
    ("variable", "value", "fallback"),
    [
        ("OTEL_METRICS_EXPORTER", "prometheus,statsd", "('prometheus',)"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "-5", "60000"),
        ("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes", "'trace_based'"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "http", "9464"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json", "'http/protobuf'"),
    ],
)
def test_bad_metrics_variables_warn_once_and_fall_back(
    lib_logs: pytest.LogCaptureFixture, variable: str, value: str, fallback: str
) -> None:
    """Each bad value gives one warning naming the variable, the value and what is used instead."""
    load_config({variable: value})
    warnings = [r.getMessage() for r in lib_logs.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if variable in w]) == 1
    (warning,) = [w for w in warnings if variable in w]
    assert repr(value) in warning and f"using {fallback}" in warning


def test_metrics_follow_the_otlp_endpoint_like_traces() -> None:
    """Unset OTEL_METRICS_EXPORTER: otlp when an endpoint is set (to /v1/metrics), else no metrics."""
    assert load_config({}).metrics_exporters == ()
    config = load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert config.metrics_exporters == ("otlp",)
    assert config.otlp_metrics_endpoint == "http://collector:4318/v1/metrics"
    grpc = load_config(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert grpc.otlp_metrics_endpoint == "http://c:4317"
    assert load_config({"OTEL_METRICS_EXPORTER": "none"}).metrics_exporters == ()


def test_the_console_exporter_prints_every_instrument(tmp_path: Path) -> None:
    """`serve` with OTEL_METRICS_EXPORTER=console prints the instruments after real chat requests."""
    env = {
        **os.environ,
        "HA_AGENT_PORT": str(free_port()),
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "HA_AGENT_MODEL_LATENCY_MS": "1",
        "HA_AGENT_HOME_LATENCY_MS": "1",
    }
    log = tmp_path / "serve.log"
    expected = [
        "ha_agent_tracing.metric.duration",
        "ha_agent_tracing.operation.duration",
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "http.server.duration",
        "http.client.duration",
    ]
    with serve_command(env, log) as base:
        response = httpx.post(f"{base}/api/v1/chat", json={"message": "Turn on the garage light"}, timeout=30)
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while not all(f'"name": "{name}"' in log.read_text() for name in expected):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)


def test_the_metrics_benchmark_runs() -> None:
    """benchmarks/metrics.py --quick prints a row per condition (a smoke run; no timing is checked)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "metrics.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[3:] if line.strip()]
    assert rows == ["reports", "metrics", "metrics+alerts", "metrics,"]


def test_otlp_metrics_reach_a_collector_with_exemplars() -> None:
    """OTEL_METRICS_EXPORTER=otlp posts the instruments to /v1/metrics; exemplars carry the trace id."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    received: list[ExportMetricsServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/metrics":
                received.append(ExportMetricsServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracing = make_tracing()
        runtime = configure_tracing(
            tracer_provider=tracing.provider,
            metrics_exporter="otlp",
            otlp_metrics_endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/metrics",
            alerts=False,
        )
        tracker = get_tracker()
        with tracker.operation("chat_request"), tracker.track("openai_api_call"):
            pass
        (report,) = tracker.get_reports()
        assert runtime.metrics is not None
        runtime.metrics.provider.force_flush()  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
    metrics = {
        m.name: m
        for request in received
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {"ha_agent_tracing.metric.duration", "ha_agent_tracing.operation.duration"} <= set(metrics)
    (point,) = metrics["ha_agent_tracing.metric.duration"].histogram.data_points
    assert {a.key: a.value.string_value for a in point.attributes} == {
        "metric": "openai_api_call",
        "operation": "chat_request",
        "status": "ok",
    }
    assert [e.trace_id.hex() for e in point.exemplars] == [report["trace_id"]]


def test_measurements_are_recorded_off_the_request_thread() -> None:
    """The request's thread only queues a measurement; the SDK's Histogram.record runs elsewhere."""
    import threading

    from ha_agent_tracing import get_runtime

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = make_tracing()
    configure_tracing(tracer_provider=tracing.provider, meter_provider=meters, alerts=False)
    runtime = get_runtime()
    assert runtime is not None and runtime.span_metrics is not None
    processor = runtime.span_metrics
    recorded_on: list[int] = []
    histogram = processor._metric  # pyright: ignore[reportPrivateUsage]
    assert histogram is not None

    class Spy:
        def record(self, *args: Any, **kwargs: Any) -> None:
            recorded_on.append(threading.get_ident())
            histogram.record(*args, **kwargs)

    processor._metric = Spy()  # type: ignore[assignment]  # pyright: ignore[reportPrivateUsage]
    tracker = get_tracker()
    with tracker.operation("nightly_sync"), tracker.track("fetch"), tracker.track("parse"):
        pass
    deadline = time.monotonic() + 10
    while len(recorded_on) < 2 and time.monotonic() < deadline:  # no collection: the thread records
        time.sleep(0.01)
    assert len(recorded_on) == 2
    assert threading.get_ident() not in recorded_on
    assert processor.stats()["queued_measurements"] == 0
    found = points(reader)["ha_agent_tracing.metric.duration"]
    assert sorted(str(attrs(p)["metric"]) for p in found) == ["fetch", "parse"]
    meters.shutdown()


def test_a_collection_right_after_a_request_holds_its_measurements() -> None:
    """What is still queued is recorded before a collection reads the instruments; the hook is not exported."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = make_tracing()
    configure_tracing(tracer_provider=tracing.provider, meter_provider=meters, alerts=False)
    tracker = get_tracker()
    for _ in range(20):
        with tracker.operation("nightly_sync"), tracker.track("fetch"):
            pass
    found = points(reader)  # at once: the recording thread waits before it records a batch
    (point,) = found["ha_agent_tracing.metric.duration"]
    (operation,) = found["ha_agent_tracing.operation.duration"]
    assert (point.count, operation.count) == (20, 20)
    assert set(found) == {"ha_agent_tracing.metric.duration", "ha_agent_tracing.operation.duration"}
    meters.shutdown()


def test_the_queue_of_measurements_is_bounded_and_what_it_drops_is_counted() -> None:
    """With the recording thread held up, past max_queued a measurement is dropped and counted."""
    from ha_agent_tracing.telemetry._metrics import SpanMetricsProcessor

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = make_tracing()
    processor = SpanMetricsProcessor(meters.get_meter("test"), max_queued=3)
    tracing.provider.add_span_processor(processor)
    tracker = tracing.tracker
    with processor._recording:  # pyright: ignore[reportPrivateUsage]  # what a starved thread looks like
        with tracker.operation("nightly_sync"):
            for name in ("a", "b", "c", "d"):
                with tracker.track(name):
                    pass
        stats = processor.stats()
    assert (stats["queued_measurements"], stats["dropped_measurements"]) == (3, 2), stats
    found = points(reader)
    recorded = sorted(str(attrs(p)["metric"]) for p in found["ha_agent_tracing.metric.duration"])
    assert recorded == ["a", "b", "c"], "the first three were kept; d and the operation were dropped"
    assert "ha_agent_tracing.operation.duration" not in found
    meters.shutdown()
