"""OTEL_EXPORTER_OTLP_*HEADERS: one warning per bad value, and the kept headers reach the collector.

The SDK's OTLP exporters read these variables themselves (the HTTP exporter
merges them into whatever headers it is given) and log "Header format
invalid!" for every entry they cannot parse: the same bad value must not be
reported twice, once by us and once by them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from ha_agent_tracing import configure_tracing, get_tracker, shutdown_tracing

BAD = "x-team=agents,not a header,authorization=Bearer%20abc,bad name=1,=nokey,x-split=a%0D%0Ab"


class Collector:
    """An OTLP/HTTP endpoint on loopback that answers 200 and keeps each request's headers."""

    def __init__(self) -> None:
        received: list[dict[str, str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_bad_headers_value_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, protocol: str
) -> None:
    """Ours is the only warning, whichever exporter reads the variable after us."""
    monkeypatch.setenv(variable, BAD)
    caplog.set_level(logging.WARNING)  # every logger: the SDK's included
    provider = TracerProvider(shutdown_on_exit=False)
    configure_tracing(
        tracer_provider=provider,
        exporters="otlp",
        otlp_protocol=protocol,
        otlp_traces_endpoint="http://127.0.0.1:9/v1/traces",
    )
    shutdown_tracing(timeout_s=0.5)
    provider.shutdown()
    about_headers = [r.getMessage() for r in caplog.records if "eader" in r.getMessage()]
    assert len(about_headers) == 1, about_headers
    assert about_headers[0].startswith(f"{variable}={BAD!r} is not valid")
    assert "'not a header', 'bad name=1', '=nokey', 'x-split=a%0D%0Ab'" in about_headers[0]


def test_the_kept_headers_are_sent_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, collector: Collector
) -> None:
    """The valid entries, decoded, reach the collector; the invalid ones never do."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", BAD)
    provider = TracerProvider(shutdown_on_exit=False)
    configure_tracing(tracer_provider=provider, exporters="otlp", otlp_traces_endpoint=collector.url)
    with get_tracker().operation("nightly_sync"):
        pass
    assert shutdown_tracing(timeout_s=5)
    provider.shutdown()
    (headers,) = collector.received
    assert headers["x-team"] == "agents"
    assert headers["authorization"] == "Bearer abc"
    assert not {"not a header", "bad name", "x-split", ""} & set(headers)
