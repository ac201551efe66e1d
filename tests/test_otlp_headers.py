"""OTLP export headers: one warning per bad value, the kept headers sent, the argument over the variables.

The SDK's OTLP exporters read OTEL_EXPORTER_OTLP_*HEADERS themselves (the HTTP
exporter merges them into whatever headers it is given, the gRPC one sends
them when it is given none) and log "Header format invalid!" for every entry
they cannot parse: the same bad value must not be reported twice, once by us
and once by them, and ``configure_tracing(otlp_headers=...)`` must be what is
sent, as every argument wins over its variable. Each request's headers are
read at a real receiver on loopback (HTTP/protobuf and gRPC).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from ha_agent_tracing import configure_tracing, get_tracker, shutdown_tracing

from .receivers import HeaderRecorder

BAD = "x-team=agents,not a header,authorization=Bearer%20abc,bad name=1,=nokey,x-split=a%0D%0Ab"


@pytest.fixture
def recorder() -> Iterator[HeaderRecorder]:
    with HeaderRecorder() as server:
        yield server


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
    monkeypatch: pytest.MonkeyPatch, recorder: HeaderRecorder
) -> None:
    """The valid entries, decoded, reach the collector; the invalid ones never do."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", BAD)
    (headers,) = _export_once(recorder, "http/protobuf")
    assert headers["x-team"] == "agents"
    assert headers["authorization"] == "Bearer abc"
    assert not {"not a header", "bad name", "x-split", ""} & set(headers)


def _export_once(
    recorder: HeaderRecorder, protocol: str, signal: str = "traces", **settings: Any
) -> list[dict[str, str]]:
    """One span (or its metrics, sent at shutdown) exported; the headers of each request the recorder got."""
    provider = TracerProvider(shutdown_on_exit=False)
    if signal == "traces":
        pipeline = {"exporters": "otlp", "otlp_protocol": protocol}
    else:
        pipeline = {"exporters": "none", "metrics_exporter": "otlp", "otlp_metrics_protocol": protocol}
    configure_tracing(
        tracer_provider=provider,
        **pipeline,
        **{f"otlp_{signal}_endpoint": recorder.endpoint(protocol, signal)},
        **settings,
    )
    with get_tracker().operation("nightly_sync"):
        pass
    assert shutdown_tracing(timeout_s=5)
    provider.shutdown()
    sent = recorder.headers(signal)
    assert sent, f"the {signal} reached the receiver"
    return sent[:1]


ENV_HEADERS = "x-from-env=1,authorization=Bearer%20from-env"


@pytest.mark.parametrize("signal", ["traces", "metrics"])
@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_{SIGNAL}_HEADERS"])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize(
    "argument", [{"authorization": "Bearer from-argument", "x-team": "agents"}, {}], ids=["headers", "none"]
)
def test_the_headers_argument_replaces_the_variables(
    monkeypatch: pytest.MonkeyPatch,
    recorder: HeaderRecorder,
    signal: str,
    variable: str,
    protocol: str,
    argument: dict[str, str],
) -> None:
    """``otlp_headers=...`` (``otlp_metrics_headers=...``) is what is sent: no entry of a variable joins it."""
    monkeypatch.setenv(variable.format(SIGNAL=signal.upper()), ENV_HEADERS)
    argument_name = "otlp_headers" if signal == "traces" else "otlp_metrics_headers"
    (headers,) = _export_once(recorder, protocol, signal, **{argument_name: argument})
    assert {k: headers.get(k) for k in ("authorization", "x-team", "x-from-env")} == {
        "authorization": argument.get("authorization"),
        "x-team": argument.get("x-team"),
        "x-from-env": None,
    }


@pytest.mark.parametrize("signal", ["traces", "metrics"])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_without_the_argument_the_variables_headers_are_sent(
    monkeypatch: pytest.MonkeyPatch, recorder: HeaderRecorder, signal: str, protocol: str
) -> None:
    """The signal's variable wins over the general one, as the specification orders them."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1,authorization=Bearer%20general")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", ENV_HEADERS)
    (headers,) = _export_once(recorder, protocol, signal)
    assert (headers["authorization"], headers["x-from-env"]) == ("Bearer from-env", "1")
    assert "x-general" not in headers
