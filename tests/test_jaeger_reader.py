"""Reports read back from Jaeger's query API v3 (OTLP JSON) over real HTTP on loopback.

The fixture is a response in Jaeger's documented shape (``{"result": TracesData}``,
hex ids, nanoseconds as strings). A second test serialises the real spans of
the running reference service the same way and checks that the reports folded
from Jaeger's answer equal the ones the service folded in process.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ha_agent_tracing._cli import main
from ha_agent_tracing.reports import JaegerError, read_jaeger, read_jaeger_trace

from .agent_harness import running_agent

FIXTURE = Path(__file__).parent / "fixtures" / "jaeger_v3_traces.json"
TRACE_ID = "5b8efff798038103d269b633813fc60c"


@contextmanager
def jaeger(answers: dict[str, tuple[int, bytes]]) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server answering Jaeger's v3 paths from ``answers`` (path -> status, body)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            status, body = answers.get(
                urlsplit(self.path).path, (404, b'{"error": {"httpCode": 404, "message": "not found"}}')
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_recorded_response_folds_into_the_report_worked_out_by_hand() -> None:
    with jaeger({"/api/v3/traces": (200, FIXTURE.read_bytes())}) as (url, seen):
        reports = read_jaeger(
            url, service="ha-ai-agent-service", since=1795770000.0, until=1795777200.0, limit=20
        )
    query = parse_qs(urlsplit(seen[0]).query)
    assert query == {
        "query.service_name": ["ha-ai-agent-service"],
        "query.start_time_min": ["2026-11-27T09:00:00Z"],
        "query.start_time_max": ["2026-11-27T11:00:00Z"],
        "query.num_traces": ["20"],
    }
    (report,) = reports
    assert {k: v for k, v in report.items() if k != "metrics"} == {
        "operation": "chat_request",
        "total_duration": 120.0,
        "timestamp": 1795773600.0,
        "trace_id": TRACE_ID,
        "span_id": "eee19b7ec3c1b174",
        "root_span": "POST /api/v1/chat",
        "status": "ok",
        "sampled": True,
        "truncated": False,
        "service_version": "1.4.0",
        "variant": "sequential",
    }
    common = {"parent": None, "parent_span_id": "eee19b7ec3c1b174", "source": "server"}
    assert report["metrics"] == [
        {"name": "rate_limit_check", "duration": pytest.approx(0.1), "start_offset": 0.5, "span_id": "0000000000000a01",
         "metadata": {"exceeded": False, "limit": 30}, "status": "ok", **common},
        {"name": "openai_api_call", "duration": 80.0, "start_offset": 1.0, "span_id": "0000000000000a02",
         "metadata": {"iteration": 1, "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.finish_reasons": ["tool_calls"]},
         "status": "ok", **common},
        {"name": "tool_execution", "duration": 20.5, "start_offset": 81.0, "span_id": "0000000000000a03",
         "metadata": {"tool_name": "call_service", "success": False}, "status": "error",
         "error": "ToolError: unknown entity light.attic", **common},
    ]  # fmt: skip


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    return {"arrayValue": {"values": [_value(v) for v in value]}}


def jaeger_answer(spans: list[ReadableSpan]) -> bytes:
    """Spans as Jaeger's query API v3 returns them: OTLP JSON in ``result``, hex ids, times as strings."""
    kinds = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
    resources: dict[Any, dict[str, list[dict[str, Any]]]] = {}
    for span in spans:
        context = span.get_span_context()
        assert context is not None and span.start_time is not None and span.end_time is not None
        status: dict[str, Any] = {}
        if span.status.status_code is StatusCode.ERROR:
            status = {"code": 2, "message": span.status.description or ""}
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        resources.setdefault(span.resource, {}).setdefault(scope, []).append(
            {
                "traceId": f"{context.trace_id:032x}",
                "spanId": f"{context.span_id:016x}",
                "parentSpanId": f"{span.parent.span_id:016x}" if span.parent else "",
                "name": span.name,
                "kind": kinds[span.kind.name],
                "startTimeUnixNano": str(span.start_time),
                "endTimeUnixNano": str(span.end_time),
                "attributes": [{"key": k, "value": _value(v)} for k, v in (span.attributes or {}).items()],
                "status": status,
                # As the SDK's OTLP encoder sets them: parent-is-remote known (0x100), and remote (0x200);
                # the sampled bit is not there.
                "flags": 0x100 | (0x200 if span.parent is not None and span.parent.is_remote else 0),
            }
        )
    document = {
        "result": {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": k, "value": _value(v)} for k, v in resource.attributes.items()]
                    },
                    "scopeSpans": [
                        {"scope": {"name": name}, "spans": items} for name, items in scopes.items()
                    ],
                }
                for resource, scopes in resources.items()
            ]
        }
    }
    return json.dumps(document).encode()


def test_reports_from_jaeger_equal_the_in_process_fold_of_the_same_spans() -> None:
    """The reference service's real spans, as Jaeger would return them, fold into the same reports."""
    with running_agent(home_latency_ms=5, tracing={"variant": "parallel"}) as agent:
        for message in [
            "Switch on the coffee maker and turn on the office fan",
            "Turn on the attic light",
            "Hello",
        ]:
            assert agent.chat(message).status_code == 200
        in_process = agent.reports(3)
        spans = agent.spans()
    trace_ids = sorted(r["trace_id"] for r in in_process)
    with jaeger({"/api/v3/traces": (200, jaeger_answer(spans))}) as (url, _):
        read_back = read_jaeger(url, service="ha-ai-agent-service", since=0.0, until=4e9)
    assert sorted(r["trace_id"] for r in read_back) == trace_ids
    by_trace = {r["trace_id"]: r for r in read_back}
    for report in in_process:
        assert by_trace[report["trace_id"]] == report
    assert {r["variant"] for r in read_back} == {"parallel"}
    assert any(m["status"] == "error" for r in read_back for m in r["metrics"]), (
        "the failed tool call came back"
    )


def test_one_trace_by_id_and_errors_said_plainly() -> None:
    body = FIXTURE.read_bytes()
    with jaeger(
        {
            f"/api/v3/traces/{TRACE_ID}": (200, body),
            "/api/v3/traces": (500, b'{"error": {"httpCode": 500, "message": "storage down"}}'),
        }
    ) as (url, _):
        (report,) = read_jaeger_trace(url, TRACE_ID.upper(), service="ha-ai-agent-service")
        assert report["trace_id"] == TRACE_ID
        with pytest.raises(JaegerError, match="answered 404: not found"):
            read_jaeger_trace(url, "0" * 32)
        with pytest.raises(JaegerError, match="answered 500: storage down"):
            read_jaeger(url, service="s", since=0.0, until=1.0)
    with (
        jaeger(
            {
                "/api/v3/traces": (
                    200,
                    b'{"result": {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}}',
                )
            }
        ) as (url, _),
        pytest.raises(JaegerError, match=r"not OTLP JSON: resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]"),
    ):
        read_jaeger(url, service="s", since=0.0, until=1.0)
    with (
        jaeger({"/api/v3/traces": (200, b"<html>")}) as (url, _),
        pytest.raises(JaegerError, match="not JSON"),
    ):
        read_jaeger(url, service="s", since=0.0, until=1.0)
    with jaeger({}) as (url, _):
        assert read_jaeger(url, service="s", since=0.0, until=1.0) == [], "no traces found is an empty set"
    with pytest.raises(JaegerError, match="cannot reach"):
        read_jaeger(url, service="s", since=0.0, until=1.0)
    with pytest.raises(ValueError, match="32 hexadecimal digits"):
        read_jaeger_trace(url, "abc")


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ([{"key": "k", "value": {"text": "a"}}], r"attributes\[0\]\.value: expected one of"),
        (
            [{"key": "k", "value": {"intValue": "1"}}, {"key": "k", "value": {"stringValue": "2"}}],
            r"attributes\[1\]\.key: 'k' appears twice",
        ),
        ([{"key": "k", "value": {"bytesValue": "not base64!"}}], r"bytesValue: is not base64"),
    ],
    ids=["value-of-no-known-kind", "key-twice", "bytes-not-base64"],
)
def test_an_answer_that_would_lose_a_value_is_an_error(attributes: list[Any], problem: str) -> None:
    """An attribute with no value, a key given twice: an error naming it, never a report missing a value."""
    document = json.loads(FIXTURE.read_bytes())
    span = document["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"] = attributes
    with (
        jaeger({"/api/v3/traces": (200, json.dumps(document).encode())}) as (url, _),
        pytest.raises(
            JaegerError, match=r"not OTLP JSON: resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\."
        ) as raised,
    ):
        read_jaeger(url, service="ha-ai-agent-service", since=1795770000.0, until=1795777200.0)
    assert re.search(problem, str(raised.value)), raised.value


def test_a_null_attribute_of_any_service_does_not_stop_the_read() -> None:
    """OTLP encodes null as an empty value; a trace holding one reads, with that key left out."""
    document = json.loads(FIXTURE.read_bytes())
    span = document["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"] = [*span.get("attributes", []), {"key": "peer.cleared", "value": {}}]
    with jaeger({"/api/v3/traces": (200, json.dumps(document).encode())}) as (url, _):
        reports = read_jaeger(url, service="ha-ai-agent-service", since=1795770000.0, until=1795777200.0)
    assert reports, "the trace is read"
    assert not any("peer.cleared" in (m.get("metadata") or {}) for r in reports for m in r["metrics"])


def test_compare_and_analyze_read_jaeger_sources(capsys: pytest.CaptureFixture[str]) -> None:
    with jaeger({"/api/v3/traces": (200, FIXTURE.read_bytes())}) as (url, seen):
        source = (
            f"jaeger:{url}#service=ha-ai-agent-service&since=2026-11-27T09:00:00Z&until=2026-11-27T11:00:00Z"
        )
        assert main(["analyze", source]) == 0
        assert "chat_request: 1 requests" in capsys.readouterr().out
        assert main(["compare", source, source, "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["operations"]["chat_request"]["measures"][0]["verdict"] == "too few"
        assert main(["analyze", f"jaeger:{url}"]) == 2
        assert "needs #service=" in capsys.readouterr().err
    assert "query.num_traces=200" in seen[0]
