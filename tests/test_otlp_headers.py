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


def _export_once(recorder: HeaderRecorder, protocol: str, **settings: Any) -> list[dict[str, str]]:
    """One span exported through a configured pipeline; the headers of each request the recorder got."""
    provider = TracerProvider(shutdown_on_exit=False)
    configure_tracing(
        tracer_provider=provider,
        exporters="otlp",
        otlp_protocol=protocol,
        otlp_traces_endpoint=recorder.endpoint(protocol, "traces"),
        **settings,
    )
    with get_tracker().operation("nightly_sync"):
        pass
    assert shutdown_tracing(timeout_s=5)
    provider.shutdown()
    return recorder.headers("traces")


ENV_HEADERS = "x-from-env=1,authorization=Bearer%20from-env"


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize(
    "argument", [{"authorization": "Bearer from-argument", "x-team": "agents"}, {}], ids=["headers", "none"]
)
def test_the_headers_argument_replaces_the_variables(
    monkeypatch: pytest.MonkeyPatch,
    recorder: HeaderRecorder,
    variable: str,
    protocol: str,
    argument: dict[str, str],
) -> None:
    """``otlp_headers=...`` is what is sent: no entry of the variable joins it; an empty one sends none."""
    monkeypatch.setenv(variable, ENV_HEADERS)
    (headers,) = _export_once(recorder, protocol, otlp_headers=argument)
    assert {k: headers.get(k) for k in ("authorization", "x-team", "x-from-env")} == {
        "authorization": argument.get("authorization"),
        "x-team": argument.get("x-team"),
        "x-from-env": None,
    }


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_without_the_argument_the_variables_headers_are_sent(
    monkeypatch: pytest.MonkeyPatch, recorder: HeaderRecorder, protocol: str
) -> None:
    """The traces variable wins over the general one, as the specification orders them."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1,authorization=Bearer%20general")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", ENV_HEADERS)
    (headers,) = _export_once(recorder, protocol)
    assert (headers["authorization"], headers["x-from-env"]) == ("Bearer from-env", "1")
    assert "x-general" not in headers


def _export_metrics_once(recorder: HeaderRecorder, protocol: str, **settings: Any) -> list[dict[str, str]]:
    """One tracked metric measured and its metrics exported (at shutdown); the headers of each request."""
    provider = TracerProvider(shutdown_on_exit=False)
    configure_tracing(
        tracer_provider=provider,
        exporters="none",
        metrics_exporter="otlp",
        otlp_metrics_protocol=protocol,
        otlp_metrics_endpoint=recorder.endpoint(protocol, "metrics"),
        **settings,
    )
    with get_tracker().operation("nightly_sync"):
        pass
    assert shutdown_tracing(timeout_s=5)
    provider.shutdown()
    return recorder.headers("metrics")


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize(
    "argument", [{"authorization": "Bearer from-argument", "x-team": "agents"}, {}], ids=["headers", "none"]
)
def test_the_metrics_headers_argument_replaces_the_variables(
    monkeypatch: pytest.MonkeyPatch,
    recorder: HeaderRecorder,
    variable: str,
    protocol: str,
    argument: dict[str, str],
) -> None:
    """``otlp_metrics_headers=...`` is what the metrics exporter sends, as for spans."""
    monkeypatch.setenv(variable, ENV_HEADERS)
    sent = _export_metrics_once(recorder, protocol, otlp_metrics_headers=argument)
    assert sent, "the metrics reached the receiver"
    assert {k: sent[0].get(k) for k in ("authorization", "x-team", "x-from-env")} == {
        "authorization": argument.get("authorization"),
        "x-team": argument.get("x-team"),
        "x-from-env": None,
    }


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_without_the_argument_the_metrics_variables_headers_are_sent(
    monkeypatch: pytest.MonkeyPatch, recorder: HeaderRecorder, protocol: str
) -> None:
    """The metrics variable wins over the general one."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1,authorization=Bearer%20general")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", ENV_HEADERS)
    sent = _export_metrics_once(recorder, protocol)
    assert sent, "the metrics reached the receiver"
    assert (sent[0]["authorization"], sent[0]["x-from-env"]) == ("Bearer from-env", "1")
    assert "x-general" not in sent[0]
