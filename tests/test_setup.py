"""configure_tracing / shutdown_tracing with a FastAPI app over real HTTP on loopback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import httpx2
import pytest
from fastapi import BackgroundTasks, FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ha_agent_tracing import (
    TracingRuntime,
    configure_tracing,
    flush_tracing,
    get_runtime,
    get_tracker,
    shutdown_tracing,
)
from ha_agent_tracing.agent._background import BackgroundServer
from ha_agent_tracing.telemetry._exporters import CountingBatchProcessor


def make_app() -> FastAPI:
    app = FastAPI()
    tracker = get_tracker()

    def after_response() -> None:
        with tracker.track("background_save"):
            time.sleep(0.005)

    @app.post("/api/v1/chat")
    async def chat(body: dict[str, str], background: BackgroundTasks) -> dict[str, str]:
        tracker.set_operation("chat_request")
        with tracker.track("rate_limit_check", exceeded=False):
            pass
        with tracker.track("conversation_management", conversation_id=body.get("conversation_id")):
            time.sleep(0.002)  # noqa: ASYNC251 - a blocking step is what the metric measures
        background.add_task(after_response)
        return {"ok": "yes"}

    @app.get("/api/v1/performance/reports")
    async def reports() -> Any:
        return tracker.get_reports()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exported: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    yield provider
    provider.shutdown()


def wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_one_report_per_request_with_the_documented_structure(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    """Each chat request over real HTTP gives exactly one report, operation chat_request, in ms."""
    app = make_app()
    runtime = configure_tracing(app, tracer_provider=provider, exporters="none")
    with BackgroundServer(app) as server:
        for n in range(5):
            response = httpx.post(f"{server.url}/api/v1/chat", json={"conversation_id": f"conv_{n}"})
            assert response.status_code == 200
        httpx.get(f"{server.url}/api/v1/performance/reports")
        httpx.get(f"{server.url}/health")
        wait_for(lambda: sum(len(r["metrics"]) for r in get_tracker().get_reports()) == 15)
    stats = runtime.processor.stats()  # type: ignore[union-attr]
    assert stats["unreported_traces"] == 7, "the test client's own calls make no report"
    reports = get_tracker().get_reports()
    assert len(reports) == 5
    for n, report in enumerate(reports):
        assert report["operation"] == "chat_request"
        assert report["root_span"] == "POST /api/v1/chat"
        names = [m["name"] for m in report["metrics"]]
        assert names == ["rate_limit_check", "conversation_management", "background_save"]
        assert report["metrics"][1]["metadata"] == {"conversation_id": f"conv_{n}"}
        assert report["metrics"][1]["duration"] >= 2.0  # slept 2 ms: the unit is ms
        assert report["total_duration"] < 5_000
        assert abs(report["timestamp"] - time.time()) < 60
    server_spans = [s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in server_spans] == ["POST /api/v1/chat"] * 5, (
        "performance and health are not traced"
    )
    assert not [s for s in exported.get_finished_spans() if "http send" in s.name or "http receive" in s.name]


def test_configure_twice_is_harmless_and_warns_on_different_settings(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The second call returns the same runtime; different settings are not silently ignored."""
    app = make_app()
    first = configure_tracing(app, tracer_provider=provider, exporters="none")
    assert configure_tracing(app, tracer_provider=provider, exporters="none") is first
    assert first.apps == [app]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert configure_tracing(tracer_provider=provider, exporters="console") is first
    assert any("already called" in r.getMessage() for r in caplog.records)


def test_without_export_the_service_says_once_how_to_turn_it_on(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """No exporter named and no endpoint: one hint, no warnings, no exporter."""
    caplog.set_level(logging.INFO, logger="ha_agent_tracing")
    runtime = configure_tracing(tracer_provider=provider)
    assert runtime.exporters == []
    hints = [r for r in caplog.records if "OTEL_EXPORTER_OTLP_ENDPOINT" in r.getMessage()]
    assert len(hints) == 1 and hints[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("protocol", "module"),
    [
        ("grpc", "opentelemetry.exporter.otlp.proto.grpc"),
        ("http/protobuf", "opentelemetry.exporter.otlp.proto.http"),
    ],
)
def test_the_protocol_picks_the_exporter(provider: TracerProvider, protocol: str, module: str) -> None:
    """grpc → the gRPC exporter; http/protobuf → the HTTP exporter."""
    runtime = configure_tracing(tracer_provider=provider, exporters="otlp", otlp_protocol=protocol)
    (batch,) = runtime.exporters
    assert isinstance(batch, CountingBatchProcessor)
    assert type(batch.exporter.delegate).__module__.startswith(module)


@contextmanager
def exporting_to_a_black_hole(spans: int) -> Iterator[TracingRuntime]:
    """Tracing that exports to a collector that accepts connections and never answers; ``spans`` made."""
    # Its own provider: the exporter stays stuck after a bounded shutdown returns, and a
    # second, unbounded SDK shutdown of that provider would wait for it.
    provider = TracerProvider(shutdown_on_exit=False)
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        port = black_hole.getsockname()[1]
        runtime = configure_tracing(
            tracer_provider=provider,
            exporters="otlp",
            otlp_traces_endpoint=f"http://127.0.0.1:{port}/v1/traces",
            otlp_timeout_ms=30_000,
        )
        tracker = get_tracker()
        for _ in range(spans):
            with tracker.operation("chat_request"):
                pass
        yield runtime


def test_shutdown_is_bounded_when_the_collector_never_answers(caplog: pytest.LogCaptureFixture) -> None:
    """A collector that never replies cannot hold shutdown past its bound; the spans left are counted."""
    with exporting_to_a_black_hole(spans=10):
        started = time.monotonic()
        finished = shutdown_tracing(timeout_s=1.0)
        elapsed = time.monotonic() - started
    assert finished is False
    assert elapsed < 2.0
    warnings = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(warnings) == 1
    assert "about 10 spans, queued or being sent" in warnings[0]


def test_flush_is_bounded_when_the_collector_never_answers(caplog: pytest.LogCaptureFixture) -> None:
    """flush_tracing() (what an app's shutdown runs) returns at its bound too; tracing stays on."""
    with exporting_to_a_black_hole(spans=3) as runtime:
        started = time.monotonic()
        finished = flush_tracing(timeout_s=1.0)
        elapsed = time.monotonic() - started
        assert get_runtime() is runtime, "a flush leaves tracing set up"
        shutdown_tracing(timeout_s=0.5)
    assert finished is False
    assert elapsed < 2.0
    assert any("tracing flush did not finish within 1.0 s" in r.getMessage() for r in caplog.records)


def test_shutdown_is_quick_when_nothing_is_exported(provider: TracerProvider) -> None:
    """With no exporter, shutdown finishes and reports success; reports stay readable."""
    configure_tracing(tracer_provider=provider)
    with get_tracker().operation("chat_request"):
        pass
    assert shutdown_tracing(timeout_s=5) is True
    assert len(get_tracker().get_reports_for_operation("chat_request")) >= 1


def test_sdk_disabled_records_nothing_and_the_app_runs(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    """OTEL_SDK_DISABLED=true: no spans, no reports, requests still served."""
    app = make_app()
    runtime = configure_tracing(app, sdk_disabled=True)
    assert runtime.enabled is False
    before = len(get_tracker().get_reports())
    with BackgroundServer(app) as server:
        assert httpx.post(f"{server.url}/api/v1/chat", json={}).status_code == 200
    assert len(get_tracker().get_reports()) == before
    assert exported.get_finished_spans() == ()


def test_garbage_limits_in_the_environment_do_not_stop_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's SpanLimits would raise on these; configure_tracing warns and starts."""
    for var in (
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
    ):
        monkeypatch.setenv(var, "garbage")
    from ha_agent_tracing._config import load_config
    from ha_agent_tracing._setup import build_provider

    provider = build_provider(load_config())
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("long", "x" * 10_000)
    assert provider.resource.attributes["service.name"] == "ha-ai-agent-service"


def test_attribute_length_limit_cuts_long_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT is applied to span attributes."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    from ha_agent_tracing._config import load_config
    from ha_agent_tracing._setup import build_provider

    provider = build_provider(load_config())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("long", "x" * 100)
    assert exporter.get_finished_spans()[0].attributes["long"] == "x" * 8  # type: ignore[index]


async def test_outgoing_calls_through_httpx_and_httpx2_are_traced(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    """Both client libraries produce a client span under the current metric; shutdown undoes it."""
    configure_tracing(tracer_provider=provider, exporters="none")
    tracker = get_tracker()
    app = make_app()
    with BackgroundServer(app) as server:
        with tracker.operation("calls"):
            async with httpx2.AsyncClient() as client2:
                await client2.get(f"{server.url}/docs")
            async with httpx.AsyncClient() as client1:
                await client1.get(f"{server.url}/docs")
        client_spans = [s for s in exported.get_finished_spans() if s.kind is SpanKind.CLIENT]
        assert len(client_spans) == 2
        scopes = {s.instrumentation_scope.name for s in client_spans}  # type: ignore[union-attr]
        assert scopes == {"opentelemetry.instrumentation.httpx"}
        shutdown_tracing()
        exported.clear()
        async with httpx2.AsyncClient() as client2:
            await client2.get(f"{server.url}/docs")
        assert exported.get_finished_spans() == ()
