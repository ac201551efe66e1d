"""The httpx/httpx2 instrumentation normalises headers only for the headers it captures.

``lazy_header_normalisation`` replaces a private function of the contrib
package: these tests pin that it is still there, that the replacement returns
what the original does, and that captured headers still reach the spans of
real requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from opentelemetry.instrumentation import httpx as httpx_instrumentation
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ha_agent_tracing.agent._background import BackgroundServer
from ha_agent_tracing.telemetry._instrumentation import lazy_header_normalisation


def installed() -> Any:
    """The instrumentation's ``_normalize_headers`` as it is now (typed loosely: tests pass httpx2 too)."""
    return httpx_instrumentation._normalize_headers  # pyright: ignore[reportPrivateUsage]


def original() -> Any:
    current = installed()
    return getattr(current, "__wrapped__", current)


HEADER_INPUTS: list[Any] = [
    None,
    [],
    {},
    httpx2.Headers(),
    httpx2.Headers([("Accept", "a, b ,c"), ("X-Dup", "1"), ("x-dup", "2,3"), ("Content-Type", "json")]),
    httpx2.Headers([("X-Stainless-Lang", "python"), ("Authorization", "Bearer k"), ("Empty", "")]),
    httpx.Headers([("Accept", "a,b"), ("ACCEPT", "c"), ("X-One", " 1 ")]),
    httpx2.Headers([(b"X-Latin-\xc4", b"v")]),  # a name that is not ASCII: the original's own rule
    {"Accept": ["a", "b"], "X-One": "1"},
    [(b"Accept", b"a"), (b"X-One", b"1")],
]


@pytest.mark.parametrize("headers", HEADER_INPUTS)
def test_the_lazy_normalisation_gives_what_the_instrumentation_s_own_gives(headers: Any) -> None:
    assert lazy_header_normalisation()
    module = httpx if isinstance(headers, httpx.Headers) else httpx2
    lazy = installed()(headers, module)
    expected = original()(headers, module)
    assert dict(lazy) == expected
    assert bool(lazy) == bool(expected)
    assert list(lazy) == list(expected)  # the same order of names


def test_it_is_installed_once_and_normalises_nothing_until_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lazy_header_normalisation()
    first = installed()
    assert lazy_header_normalisation()
    assert installed() is first
    calls: list[Any] = []
    headers = httpx2.Headers([("Accept", "a,b")])
    monkeypatch.setattr(headers, "multi_items", lambda: calls.append(1) or [("accept", "a,b")])
    lazy = first(headers, httpx2)
    assert lazy and not calls  # truth needs no normalising
    assert lazy["accept"] == ["a", "b"]
    assert len(lazy) == 1 and calls == [1]  # once, then kept


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"x-answer", b"42, 43")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(echo, lifespan="off") as running:
        yield running


def client_spans(server: BackgroundServer, exporter: InMemorySpanExporter) -> list[Any]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with httpx2.Client() as client:
        instrument: Any = HTTPX2ClientInstrumentor.instrument_client
        instrument(client, tracer_provider=provider)
        assert client.get(f"{server.url}/", headers={"X-Asked": "yes, please"}).status_code == 200
    return list(exporter.get_finished_spans())


def test_captured_headers_still_reach_the_span(
    server: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", "x-asked")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", "x-answer")
    assert lazy_header_normalisation()
    (span,) = client_spans(server, InMemorySpanExporter())
    attributes = dict(span.attributes or {})
    assert attributes["http.request.header.x_asked"] == ("yes", "please")
    assert attributes["http.response.header.x_answer"] == ("42", "43")


def test_without_captured_headers_no_header_is_normalised(
    server: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", raising=False)
    assert lazy_header_normalisation()
    from ha_agent_tracing.telemetry import _instrumentation

    normalised: list[Any] = []
    real = _instrumentation._normalise_headers  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(
        _instrumentation, "_normalise_headers", lambda *args: normalised.append(args) or real(*args)
    )
    (span,) = client_spans(server, InMemorySpanExporter())
    assert not any(key.startswith("http.request.header.") for key in span.attributes or {})
    assert normalised == []
