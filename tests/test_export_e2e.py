"""End to end: chat requests through the reference service, exported to real OTLP receivers.

What each receiver got is compared with the in-process report of the same
trace, field for field: names, parent links, durations, metadata, and the
``service.name`` resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agent_harness import Agent, running_agent
from .receivers import Phoenix, ReceivedSpan, Rotel

pytestmark = pytest.mark.receiver

MESSAGES = ["Turn off the kitchen light and tell me the temperature", "Turn on the garage light", "Hello"]
# Durations go through microsecond storage in Phoenix; rotel keeps nanoseconds.
TOLERANCE_MS = 0.002


def chat_and_report(agent: Agent) -> list[dict[str, Any]]:
    for message in MESSAGES:
        assert agent.chat(message, "e2e").status_code == 200
    return agent.reports(len(MESSAGES))


def span_ids(*reports: dict[str, Any]) -> set[str]:
    """The root and metric span ids of reports: what a receiver must have got."""
    return {r["span_id"] for r in reports} | {m["span_id"] for r in reports for m in r["metrics"]}


def assert_matches(report: dict[str, Any], received: list[ReceivedSpan], tolerance_ms: float = 0.0) -> None:
    """The receiver holds the report's root and every metric, identical in what the report says."""
    by_id = {span.span_id: span for span in received if span.trace_id == report["trace_id"]}
    root = by_id.get(report["span_id"])
    assert root is not None, "the root span reached the receiver"
    assert root.name == report["root_span"]
    # The root's parent, if any, is remote: here the test client's own traced HTTP call.
    assert root.parent_id not in {m["span_id"] for m in report["metrics"]}
    assert abs(root.duration_ms - report["total_duration"]) <= tolerance_ms
    for metric in report["metrics"]:
        span = by_id.get(metric["span_id"])
        assert span is not None, f"{metric['name']} reached the receiver"
        assert span.name == metric["name"]
        assert span.parent_id == (metric["parent_span_id"] or report["span_id"])
        assert abs(span.duration_ms - metric["duration"]) <= tolerance_ms, metric["name"]
        for key, value in metric["metadata"].items():
            assert span.attributes.get(key) == value, (metric["name"], key)
        if metric["parent"] is not None:
            assert by_id[span.parent_id].name == metric["parent"]  # type: ignore[index]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_reach_rotel_and_match_the_report(tmp_path: Path, protocol: str) -> None:
    """Over OTLP/gRPC and OTLP/HTTP: every metric span with its attributes, links and durations."""
    with Rotel(tmp_path) as rotel:
        endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
        tracing = {
            "exporters": "otlp",
            "otlp_protocol": protocol,
            "otlp_traces_endpoint": endpoint,
            "bsp_schedule_delay_ms": 100,
        }
        with running_agent(tracing=tracing) as agent:
            reports = chat_and_report(agent)
            received = rotel.wait_for_spans(span_ids(*reports))
            stats = agent.runtime.stats()["exporters"][0]
    for report in reports:
        assert_matches(report, received)
    roots = [s for s in received if s.span_id in {r["span_id"] for r in reports}]
    assert {s.resource.get("service.name") for s in roots} == {"ha-ai-agent-service"}
    assert {s.resource.get("telemetry.sdk.language") for s in roots} == {"python"}
    model_calls = {m["span_id"] for r in reports for m in r["metrics"] if m["name"] == "openai_api_call"}
    http_children = {s.parent_id for s in received if s.name == "POST" and s.parent_id in model_calls}
    assert http_children == model_calls, "each model call's HTTP request (through httpx2) is traced under it"
    assert stats["failed_spans"] == 0


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    with Phoenix(tmp_path_factory.mktemp("phoenix")) as server:
        yield server


@pytest.mark.phoenix
def test_spans_reach_phoenix_and_match_the_report(phoenix: Phoenix) -> None:
    """Direct to Phoenix over OTLP/HTTP; the resource routes them to the project it names."""
    tracing = {
        "exporters": "otlp",
        "otlp_traces_endpoint": phoenix.otlp_http_endpoint,
        "bsp_schedule_delay_ms": 100,
        "resource_attributes": "openinference.project.name=ha-agent-direct",
    }
    with running_agent(tracing=tracing) as agent:
        reports = chat_and_report(agent)
        received = {
            r["trace_id"]: phoenix.wait_for_spans(r["trace_id"], span_ids(r), project="ha-agent-direct")
            for r in reports
        }
    for report in reports:
        assert_matches(report, received[report["trace_id"]], TOLERANCE_MS)
    assert phoenix.spans(reports[0]["trace_id"]) == [], "nothing landed in the default project"


@pytest.mark.phoenix
def test_app_to_rotel_to_phoenix_like_app_to_collector_to_jaeger(tmp_path: Path, phoenix: Phoenix) -> None:
    """The production shape: the service exports to a collector (rotel), which forwards to the backend."""
    with Rotel(tmp_path, forward_to=f"{phoenix.url}", forward_protocol="http") as rotel:
        tracing = {
            "exporters": "otlp",
            "otlp_protocol": "grpc",
            "otlp_traces_endpoint": rotel.grpc_endpoint,
            "bsp_schedule_delay_ms": 100,
            "service_name": "ha-agent-chain",
        }
        with running_agent(tracing=tracing) as agent:
            reports = chat_and_report(agent)
            at_rotel = rotel.wait_for_spans(span_ids(*reports))
            at_phoenix = {r["trace_id"]: phoenix.wait_for_spans(r["trace_id"], span_ids(r)) for r in reports}
    for report in reports:
        assert_matches(report, at_rotel)
        assert_matches(report, at_phoenix[report["trace_id"]], TOLERANCE_MS)
    assert {s.resource.get("service.name") for s in at_rotel if s.parent_id is None} == {"ha-agent-chain"}
