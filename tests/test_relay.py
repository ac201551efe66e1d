"""``POST /api/v1/telemetry/traces``: the chat page's span relay, over real HTTP on loopback.

What it accepts reaches a real OTLP receiver (rotel) through the service's own
exporter; what it refuses gets 400/413/415/429 with the reason, never 500, and
nothing of a refused request is forwarded.
"""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from .agent_harness import Agent, running_agent
from .receivers import Rotel

SERVICE = "ai-automation-ui"
RELAY = "/api/v1/telemetry/traces"


def browser_payload(trace_id: str | None = None, spans: int = 2, service: str = SERVICE) -> dict[str, Any]:
    """What performanceTracker.ts's exporter sends: a send_message root and its metrics."""
    trace_id = trace_id or secrets.token_hex(16)
    root = secrets.token_hex(8)
    t0 = 1_764_000_000_000_000_000
    items: list[dict[str, Any]] = [
        {
            "traceId": trace_id,
            "spanId": root,
            "name": "send_message",
            "kind": 1,
            "startTimeUnixNano": str(t0),
            "endTimeUnixNano": str(t0 + 300_000_000),
            "attributes": [{"key": "ha_agent_tracing.operation", "value": {"stringValue": "send_message"}}],
            "status": {"code": 0},
            "events": [],
            "links": [],
            "flags": 1,
        }
    ]
    for n in range(spans - 1):
        items.append(
            {
                "traceId": trace_id,
                "spanId": secrets.token_hex(8),
                "parentSpanId": root,
                "name": "ui_update",
                "kind": 1,
                "startTimeUnixNano": str(t0 + (n + 1) * 1_000_000),
                "endTimeUnixNano": str(t0 + (n + 1) * 1_000_000 + 500_000),
                "attributes": [
                    {"key": "operation", "value": {"stringValue": "add_user_message"}},
                    {"key": "message_length", "value": {"intValue": 12}},
                ],
                "status": {"code": 0},
                "flags": 1,
            }
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "ha_agent_tracing.browser"}, "spans": items}],
            }
        ]
    }


def post(agent: Agent, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with suppress_http_instrumentation():
        return httpx.post(
            agent.url + RELAY,
            content=content,
            headers={"content-type": "application/json", **headers},
            timeout=10,
        )


@pytest.fixture(scope="module")
def agent() -> Any:
    """One service for the tests of what the relay refuses (tracing itself is reset after each test)."""
    with running_agent() as running:
        yield running


def test_spans_of_the_page_are_accepted(agent: Agent) -> None:
    answer = post(agent, browser_payload())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    assert agent.app.state.relay_stats.snapshot()["accepted_spans"] >= 2


BAD = [
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not UTF-8"),
    (b"[]", 400, "expected an object"),
    (b"{}", 400, "resourceSpans: is required"),
    (
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "x"}]}]}]}',
        400,
        "traceId: expected 32 hex digits",
    ),
]


@pytest.mark.parametrize(("body", "status", "reason"), BAD)
def test_garbage_gets_400_with_the_reason(agent: Agent, body: bytes, status: int, reason: str) -> None:
    answer = post(agent, body)
    assert answer.status_code == status
    assert reason in answer.json()["detail"]


def test_malformed_ids_are_refused(agent: Agent) -> None:
    for field, value in [("traceId", "0" * 32), ("spanId", "abcd"), ("parentSpanId", "g" * 16)]:
        payload = browser_payload(spans=2)
        payload["resourceSpans"][0]["scopeSpans"][0]["spans"][1][field] = value
        answer = post(agent, payload)
        assert answer.status_code == 400, (field, answer.text)
        assert field in answer.json()["detail"]


def test_only_the_pages_service_is_accepted(agent: Agent) -> None:
    answer = post(agent, browser_payload(service="ha-ai-agent-service"))
    assert answer.status_code == 400
    assert "only spans of service 'ai-automation-ui'" in answer.json()["detail"]
    nameless = browser_payload()
    del nameless["resourceSpans"][0]["resource"]
    assert post(agent, nameless).status_code == 400


def test_other_media_types_and_compression_get_415(agent: Agent) -> None:
    assert post(agent, browser_payload(), **{"content-type": "text/plain"}).status_code == 415
    assert post(agent, browser_payload(), **{"content-type": "application/x-protobuf"}).status_code == 415
    assert post(agent, browser_payload(), **{"content-encoding": "gzip"}).status_code == 415


def test_too_many_spans_get_413() -> None:
    with running_agent(telemetry_max_spans=5) as agent:
        assert post(agent, browser_payload(spans=5)).status_code == 200
        answer = post(agent, browser_payload(spans=6))
        assert answer.status_code == 413
        assert "more than 5 spans" in answer.json()["detail"]


def test_an_oversized_body_gets_413_before_it_is_read(agent: Agent) -> None:
    payload = browser_payload()
    payload["padding"] = "x" * 70_000  # unknown fields are ignored, but the body limit holds
    assert post(agent, payload).status_code == 413


def test_other_methods_are_not_allowed(agent: Agent) -> None:
    with suppress_http_instrumentation():
        assert httpx.get(agent.url + RELAY, timeout=10).status_code == 405


def test_per_client_rate_limit_answers_429_with_retry_after() -> None:
    with running_agent(telemetry_rate_limit=3) as agent:
        statuses = [post(agent, browser_payload()).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = post(agent, browser_payload())
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_the_relay_can_be_turned_off() -> None:
    with running_agent(telemetry_relay="off") as agent:
        assert post(agent, browser_payload()).status_code == 404
        assert agent.api("/stats").json()["relay"] is None


def test_the_stats_endpoint_counts_what_the_relay_accepted_and_refused_and_why() -> None:
    """Good and bad batches over HTTP; GET /api/v1/performance/stats shows each under ``relay``."""
    reasons = ["media_type", "compressed", "rate_limited", "too_large", "invalid", "service"]
    with running_agent(telemetry_max_spans=5, telemetry_rate_limit=5) as agent:
        counters = ["requests", "accepted_requests", "accepted_spans", "forwarded_spans", "joined_spans"]
        counters += ["rejected_requests", "internal_errors"]
        assert agent.api("/stats").json()["relay"] == {
            **dict.fromkeys(counters, 0),
            "rejected": dict.fromkeys(reasons, 0),
        }
        statuses = [
            post(agent, browser_payload(spans=3)).status_code,
            post(agent, browser_payload(spans=2)).status_code,
            post(agent, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "x"}]}]}]}').status_code,
            post(agent, browser_payload(service="somebody-else")).status_code,
            post(agent, browser_payload(spans=6)).status_code,
            post(agent, browser_payload(), **{"content-type": "text/plain"}).status_code,
            post(agent, browser_payload(), **{"content-encoding": "gzip"}).status_code,
            post(agent, browser_payload()).status_code,  # the sixth through the rate limiter
        ]
        assert statuses == [200, 200, 400, 400, 413, 415, 415, 429]
        answer = agent.api("/stats")
    assert answer.status_code == 200
    assert answer.json()["relay"] == {
        "requests": 8,
        "accepted_requests": 2,
        "accepted_spans": 5,
        "forwarded_spans": 0,  # export is off in this service
        "joined_spans": 5,  # each batch has its root: a browser-only report of its own
        "rejected_requests": 6,
        "internal_errors": 0,
        "rejected": {
            "media_type": 1,
            "compressed": 1,
            "rate_limited": 1,
            "too_large": 1,
            "invalid": 1,
            "service": 1,
        },
    }
    assert answer.json()["enabled"] is True, "the pipeline's own counters are still there"


def test_relay_requests_are_not_traced() -> None:
    with running_agent() as agent:
        assert agent.chat("Hello").status_code == 200
        agent.reports(1)
        before = len(agent.spans())
        assert before > 0, "the service is traced"
        assert post(agent, browser_payload()).status_code == 200
        assert post(agent, b"garbage").status_code == 400
        assert len(agent.spans()) == before


def test_accepted_spans_reach_the_collector_and_refused_ones_never_do(tmp_path: Path) -> None:
    """Forwarded through the service's own OTLP exporter: resource, scope, ids, parents, attributes intact."""
    with Rotel(tmp_path) as rotel:
        tracing = {
            "exporters": "otlp",
            "otlp_traces_endpoint": rotel.http_endpoint,
            "bsp_schedule_delay_ms": 50,
        }
        with running_agent(tracing=tracing) as agent:
            good = browser_payload(spans=3)
            refused = copy.deepcopy(good)
            refused["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["endTimeUnixNano"] = "1"
            for span in refused["resourceSpans"][0]["scopeSpans"][0]["spans"]:
                span["traceId"] = secrets.token_hex(16)
            assert post(agent, refused).status_code == 400
            assert post(agent, good).status_code == 200
            sent = good["resourceSpans"][0]["scopeSpans"][0]["spans"]
            received = rotel.wait_for_spans({s["spanId"] for s in sent})
            assert agent.app.state.relay_stats.snapshot()["forwarded_spans"] == 3
    by_id = {s.span_id: s for s in received}
    for span in sent:
        got = by_id[span["spanId"]]
        assert got.trace_id == span["traceId"]
        assert got.name == span["name"]
        assert got.parent_id == span.get("parentSpanId")
        assert got.resource.get("service.name") == SERVICE
        assert (got.start_ns, got.end_ns) == (int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"]))
    assert by_id[sent[1]["spanId"]].attributes == {"operation": "add_user_message", "message_length": 12}
    refused_traces = {s["traceId"] for s in refused["resourceSpans"][0]["scopeSpans"][0]["spans"]}
    assert not [s for s in rotel.spans() if s.trace_id in refused_traces]


def test_accepted_spans_join_the_report_of_their_trace() -> None:
    """The page's spans become source=browser metrics of the server's report of the same trace."""
    with running_agent() as agent:
        _join(agent)


def _join(agent: Agent) -> None:
    payload = browser_payload(spans=3)
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    trace_id, api_call = spans[0]["traceId"], spans[1]["spanId"]
    answer = agent.chat("Which lights are on?", headers={"traceparent": f"00-{trace_id}-{api_call}-01"})
    assert answer.status_code == 200
    [report] = [r for r in agent.reports(1) if r["trace_id"] == trace_id]
    assert all(m["source"] == "server" for m in report["metrics"])
    before = agent.app.state.relay_stats.snapshot().get("joined_spans", 0)
    assert post(agent, payload).status_code == 200
    assert agent.app.state.relay_stats.snapshot()["joined_spans"] == before + 3
    joined = agent.api(f"/reports/{trace_id}").json()
    browser = [m for m in joined["metrics"] if m["source"] == "browser"]
    assert [m["name"] for m in browser] == ["send_message", "ui_update", "ui_update"]
    assert browser[1]["metadata"] == {"operation": "add_user_message", "message_length": 12}
    assert browser[1]["parent"] == "send_message"
    assert joined["operation"] == "chat_request"
    assert {m["name"] for m in joined["metrics"] if m["source"] == "server"} >= {
        "rate_limit_check",
        "openai_api_call",
    }


def test_spans_of_a_trace_the_service_never_saw_make_their_own_report() -> None:
    """The page's root and metrics alone (the chat request failed to arrive): a browser-only report."""
    payload = browser_payload(spans=2)
    trace_id = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    with running_agent() as agent:
        assert post(agent, payload).status_code == 200
        report = agent.api(f"/reports/{trace_id}").json()
    assert report["operation"] == "send_message"
    assert [(m["name"], m["source"]) for m in report["metrics"]] == [("ui_update", "browser")]
