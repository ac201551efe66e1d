"""Load and soak: one report per request under concurrency; memory flat over 100k spans."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import httpx2
import pytest

from .agent_harness import running_agent
from .conftest import make_tracing

pytestmark = pytest.mark.slow

REQUESTS = 1000
IN_FLIGHT = 100


async def _fire(url: str) -> list[dict[str, Any]]:
    messages = [
        "Turn off the kitchen light and tell me the temperature (request {n})",
        "Which lights are on? (request {n})",
        "Hello there (request {n})",
        "Turn on the garage light (request {n})",
    ]
    gate = asyncio.Semaphore(IN_FLIGHT)
    limits = httpx2.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one(n: int) -> dict[str, Any]:
            async with gate:
                body = {"message": messages[n % len(messages)].format(n=n), "conversation_id": f"load_{n}"}
                response = await client.post("/api/v1/chat", json=body)
                assert response.status_code == 200, response.text
                return response.json()

        return await asyncio.gather(*(one(n) for n in range(REQUESTS)))


def test_a_thousand_requests_with_a_hundred_in_flight() -> None:
    """Exactly one report per request, and every metric in its own request's report."""
    with running_agent(
        rate_limit=100_000, model_latency_ms=0, home_latency_ms=0, tracing={"max_reports": 2 * REQUESTS}
    ) as agent:
        answers = asyncio.run(_fire(agent.url))
        reports = agent.reports(REQUESTS)
        stats = agent.runtime.stats()["processor"]
    assert len(reports) == REQUESTS
    assert stats["orphan_spans"] == 0 and stats["evicted_traces"] == 0
    by_conversation: dict[str, dict[str, Any]] = {}
    for report in reports:
        names = [m["name"] for m in report["metrics"]]
        for single in (
            "rate_limit_check",
            "conversation_management",
            "message_assembly",
            "token_count_retrieval",
        ):
            assert names.count(single) == 1, (single, names)
        conversation = next(m for m in report["metrics"] if m["name"] == "conversation_management")
        by_conversation[conversation["metadata"]["conversation_id"]] = report
    assert len(by_conversation) == REQUESTS
    for answer in answers:
        report = by_conversation[answer["conversation_id"]]
        calls = [m for m in report["metrics"] if m["name"] == "openai_api_call"]
        tools = [m for m in report["metrics"] if m["name"] == "tool_execution"]
        totals = next(m for m in report["metrics"] if m["name"] == "token_count_retrieval")["metadata"]
        assert [c["metadata"]["iteration"] for c in calls] == list(range(1, answer["iterations"] + 1))
        assert {t["metadata"]["gen_ai.tool.call.id"] for t in tools} == {
            c["id"] for c in answer["tool_calls"]
        }
        assert totals["tokens_used"] == answer["tokens_used"]


def test_memory_stays_flat_over_a_soak_of_100k_spans(caplog: pytest.LogCaptureFixture) -> None:
    """100k spans, some roots never ending: pending, lingering and stored state stay bounded; memory flat."""
    setup = make_tracing(max_pending_traces=50)
    tracker = setup.tracker
    # No in-memory exporter in a soak: it would keep every span by design.
    setup.provider._active_span_processor._span_processors = (setup.processor,)

    def operations(count: int) -> None:
        for n in range(count):
            with tracker.operation("soak", n=n):
                for step in range(8):
                    with tracker.track("step", step=step):
                        pass
            if n % 100 == 0:
                tracker.tracer.start_span("stuck")  # a root that never ends (and is leaked)

    operations(1_000)  # warm up: every bound is reached
    gc.collect()
    tracemalloc.start()
    checkpoints = []
    for _ in range(3):
        operations(4_000)  # 36k spans per phase, 108k in all
        gc.collect()
        checkpoints.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    stats = setup.processor.stats()
    assert stats["pending_traces"] <= 50
    assert stats["lingering_traces"] <= 100, "no more requests wait for late spans than reports are stored"
    assert stats["tracked_spans"] <= 50 * 8 + 100 * 8
    assert stats["stored_reports"] == 100
    assert stats["evicted_traces"] >= 130 - 50, "130 roots never ended; at most 50 may stay pending"
    first, _, third = checkpoints
    assert third - first < 256_000, (
        f"memory grew by {third - first} bytes over the last 72k spans: {checkpoints}"
    )
    evictions = [r for r in caplog.records if "dropped an unfinished request" in r.getMessage()]
    assert len(evictions) == 1, "one warning, then summaries at most once a minute"
