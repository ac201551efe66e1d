"""The reference agent service over real HTTP: every metric, tools, 429, tokens, streaming."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from opentelemetry.trace import SpanKind, StatusCode

from .agent_harness import running_agent

EXPECTED_METADATA: dict[str, set[str]] = {
    "rate_limit_check": {"exceeded"},
    "conversation_management": {"conversation_id", "is_new", "message_count"},
    "pending_preview_check": set(),
    "message_assembly": {"system_message_length", "message_count", "token_count"},
    "context_refresh": {"cache_hit"},
    "openai_api_call": {
        "iteration",
        "message_count",
        "tool_count",
        "tokens_used",
        "prompt_tokens",
        "completion_tokens",
        "has_tool_calls",
        "tool_calls_count",
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
    },
    "tool_execution": {"tool_name", "success", "result_length", "gen_ai.tool.name", "gen_ai.tool.call.id"},
    "token_count_retrieval": set(),
}


def by_name(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for metric in report["metrics"]:
        found.setdefault(metric["name"], []).append(metric)
    return found


def test_every_documented_metric_with_its_metadata() -> None:
    """A two-tool request records each metric of the reference under its name and metadata keys."""
    with running_agent() as agent:
        response = agent.chat("Turn off the kitchen light and tell me the temperature", "conv_a")
        assert response.status_code == 200
        body = response.json()
        (report,) = agent.reports(1)
    assert set(body) == {
        "conversation_id",
        "message",
        "tool_calls",
        "iterations",
        "tokens_used",
        "response_time_ms",
        "truncated",
        "awaiting_confirmation",
    }
    assert body["awaiting_confirmation"] is None
    assert body["conversation_id"] == "conv_a"
    assert body["iterations"] == 2
    assert [c["name"] for c in body["tool_calls"]] == ["call_service", "get_entity_states"]
    assert "Kitchen Light is now off" in body["message"]
    assert report["operation"] == "chat_request"
    assert report["root_span"] == "POST /api/v1/chat"
    metrics = by_name(report)
    assert set(metrics) == set(EXPECTED_METADATA)
    for name, keys in EXPECTED_METADATA.items():
        for metric in metrics[name]:
            assert keys <= set(metric["metadata"]), (name, keys - set(metric["metadata"]))
    calls = metrics["openai_api_call"]
    assert [c["metadata"]["iteration"] for c in calls] == [1, 2]
    assert calls[0]["metadata"]["has_tool_calls"] is True
    assert calls[0]["metadata"]["tool_calls_count"] == 2
    assert calls[0]["metadata"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert calls[1]["metadata"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert calls[0]["metadata"]["gen_ai.operation.name"] == "chat"
    assert metrics["context_refresh"][0]["parent"] == "message_assembly"
    conversation = metrics["conversation_management"][0]["metadata"]
    assert conversation == {"conversation_id": "conv_a", "is_new": True, "message_count": 0}
    assert metrics["rate_limit_check"][0]["metadata"]["exceeded"] is False
    assert all(t["metadata"]["success"] is True for t in metrics["tool_execution"])


def test_two_tool_calls_of_one_turn_run_concurrently_under_the_request() -> None:
    """The two tool spans overlap in time and both are children of the server span."""
    with running_agent(home_latency_ms=50) as agent:
        assert agent.chat("Switch on the coffee maker and turn on the office fan").status_code == 200
        agent.reports(1)
        first, second = sorted(agent.spans("tool_execution"), key=lambda s: s.start_time or 0)
        (server,) = [s for s in agent.spans() if s.kind is SpanKind.SERVER]
    assert second.start_time is not None and first.end_time is not None
    assert second.start_time < first.end_time, "the second tool started before the first ended"
    assert first.parent is not None and second.parent is not None and server.context is not None
    assert first.parent.span_id == second.parent.span_id == server.context.span_id


def test_over_the_rate_limit_is_429_with_retry_after_and_still_reported() -> None:
    """The request over the limit gets 429 + Retry-After; its report records the check."""
    with running_agent(rate_limit=2, rate_limit_window_s=30) as agent:
        assert agent.chat("Hello").status_code == 200
        assert agent.chat("Hello").status_code == 200
        refused = agent.chat("Hello")
        reports = agent.reports(3)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert "rate limit" in refused.json()["detail"]
    last = reports[-1]
    assert [m["name"] for m in last["metrics"]] == ["rate_limit_check"]
    assert last["metrics"][0]["metadata"]["exceeded"] is True


def openai_messages(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The OpenAI chat messages that GenAI-convention messages (parts) were recorded from."""
    messages: list[dict[str, Any]] = []
    for message in recorded:
        parts = message["parts"]
        if message["role"] == "tool":
            (part,) = parts
            response = part["response"]
            content = response if isinstance(response, str) else json.dumps(response)
            messages.append({"role": "tool", "tool_call_id": part["id"], "content": content})
            continue
        text = "".join(p["content"] for p in parts if p["type"] == "text")
        entry: dict[str, Any] = {"role": message["role"], "content": text or None}
        calls = [p for p in parts if p["type"] == "tool_call"]
        if calls:
            entry["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                }
                for c in calls
            ]
        messages.append(entry)
    return messages


def test_report_token_counts_equal_the_models_usage() -> None:
    """Re-sending the recorded prompt to the model gives exactly the usage in the report."""
    with running_agent(capture_message_content=True) as agent:
        body = agent.chat("Which lights are on?").json()
        (report,) = agent.reports(1)
    calls = by_name(report)["openai_api_call"]
    totals = by_name(report)["token_count_retrieval"][0]["metadata"]
    assert body["tokens_used"] == totals["tokens_used"]
    assert totals["prompt_tokens"] == sum(c["metadata"]["prompt_tokens"] for c in calls)
    assert totals["completion_tokens"] == sum(c["metadata"]["completion_tokens"] for c in calls)
    import asyncio

    from ha_agent_tracing.agent import create_model_app
    from ha_agent_tracing.agent._background import BackgroundServer
    from ha_agent_tracing.agent._tools import TOOL_SCHEMAS

    async def replay(url: str) -> list[tuple[int, int]]:
        client = AsyncOpenAI(api_key="x", base_url=f"{url}/v1")
        try:
            found = []
            for call in calls:
                messages = openai_messages(json.loads(call["metadata"]["gen_ai.input.messages"]))
                answer = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=messages,  # type: ignore[arg-type]
                    tools=TOOL_SCHEMAS,  # type: ignore[arg-type]
                )
                assert answer.usage is not None
                found.append((answer.usage.prompt_tokens, answer.usage.completion_tokens))
            return found
        finally:
            await client.close()

    with BackgroundServer(create_model_app(0)) as model:
        replayed = asyncio.run(replay(model.url))
    recorded = [(c["metadata"]["prompt_tokens"], c["metadata"]["completion_tokens"]) for c in calls]
    assert replayed == recorded
    assert all(c["metadata"]["gen_ai.usage.input_tokens"] == c["metadata"]["prompt_tokens"] for c in calls)


def test_a_failing_tool_is_reported_to_the_model_and_recorded_not_a_500() -> None:
    """An unknown entity: 200 with the error in the answer; tool_execution success=false, status error."""
    with running_agent() as agent:
        response = agent.chat("Turn on the garage light")
        (report,) = agent.reports(1)
    assert response.status_code == 200
    assert "light.garage does not exist" in response.json()["message"]
    assert response.json()["tool_calls"][0]["success"] is False
    (tool,) = by_name(report)["tool_execution"]
    assert tool["metadata"]["success"] is False
    assert tool["status"] == "error"
    assert "does not exist" in tool["error"]
    assert report["status"] == "ok"


def test_streaming_responses_are_assembled_and_counted() -> None:
    """With HA_AGENT_STREAM=true the model streams; tool calls and usage come through the stream."""
    with running_agent(stream=True) as agent:
        body = agent.chat("Turn off the kitchen light and tell me the temperature").json()
        (report,) = agent.reports(1)
    assert [c["name"] for c in body["tool_calls"]] == ["call_service", "get_entity_states"]
    assert "Kitchen Light is now off" in body["message"]
    calls = by_name(report)["openai_api_call"]
    for call in calls:
        assert call["metadata"]["stream"] is True
        assert call["metadata"]["chunk_count"] > 2
        assert 0 < call["metadata"]["time_to_first_chunk_ms"] <= call["duration"]
        assert call["metadata"]["prompt_tokens"] > 0
    assert body["tokens_used"] == sum(c["metadata"]["tokens_used"] for c in calls)


async def test_the_embedded_model_streams_usage_like_the_api() -> None:
    """The real openai client reads the model's SSE stream; the last chunk carries usage."""
    from ha_agent_tracing.agent import create_model_app
    from ha_agent_tracing.agent._background import BackgroundServer

    with BackgroundServer(create_model_app(0)) as model:
        client = AsyncOpenAI(api_key="x", base_url=f"{model.url}/v1")
        try:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            plain = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
        finally:
            await client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and plain.usage is not None
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_a_model_that_cannot_be_reached_is_a_502_and_the_failure_is_recorded() -> None:
    """OPENAI_BASE_URL pointing nowhere: 502 with a clear message; the metric is marked error."""
    with running_agent(openai_base_url="http://127.0.0.1:9/v1", openai_timeout_s=2) as agent:
        response = agent.chat("Hello")
        (report,) = agent.reports(1)
        (call,) = agent.spans("openai_api_call")
    assert response.status_code == 502
    assert response.json()["detail"] == "The model provider could not be reached."
    assert call.status.status_code is StatusCode.ERROR
    assert report["status"] == "error"


def test_context_is_cached_until_a_service_call_changes_the_home() -> None:
    """context_refresh: miss, then hit within the TTL, then miss after a device changed."""
    with running_agent() as agent:
        agent.chat("Hello", "c")
        agent.chat("Which lights are on?", "c")
        agent.chat("Turn on the bedroom light", "c")
        agent.chat("Hello", "c")
        reports = agent.reports(4)
    hits = [by_name(r)["context_refresh"][0]["metadata"]["cache_hit"] for r in reports]
    assert hits == [False, True, True, False]


def test_history_is_truncated_to_the_token_budget() -> None:
    """A long conversation with a small budget sends only the newest turns, and says how many it left out."""
    with running_agent(history_token_budget=400) as agent:
        for n in range(6):
            agent.chat(f"Hello number {n}, " + "tell me something " * 10, "long")
        reports = agent.reports(6)
    assembly = [by_name(r)["message_assembly"][0]["metadata"] for r in reports]
    assert assembly[0]["truncated_messages"] == 0
    assert assembly[-1]["truncated_messages"] > 0
    assert all(a["token_count"] <= 400 for a in assembly)
    managed = [by_name(r)["conversation_management"][0]["metadata"]["message_count"] for r in reports]
    assert managed == [0, 2, 4, 6, 8, 10]


def test_a_draft_automation_is_pending_until_confirmed() -> None:
    """preview_automation leaves a pending preview; 'confirm' creates it and the answer says so."""
    with running_agent() as agent:
        drafted = agent.chat("When the sun sets turn on the porch light", "auto").json()
        confirmed = agent.chat("confirm", "auto").json()
        answer = confirmed["message"]
        reports = agent.reports(2)
    assert (
        drafted["awaiting_confirmation"]
        == 'create the automation "When the sun sets turn on the porch light"'
    )
    assert confirmed["awaiting_confirmation"] is None
    checks = [by_name(r)["pending_preview_check"][0]["metadata"] for r in reports]
    assert checks == [
        {"has_pending_preview": False, "confirmed": False, "cancelled": False},
        {
            "has_pending_preview": True,
            "confirmed": True,
            "cancelled": False,
            "preview_kind": "automation",
            "executed": True,
        },
    ]
    assert "created automation.when_the_sun_sets_turn_on_the_porch_light" in answer


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({}, 422, "message"),
        ({"message": ""}, 422, "at least 1 character"),
        ({"message": "   "}, 422, "blank"),
        ({"message": 42}, 422, "string"),
        ({"message": "hi", "conversation_id": "../../etc"}, 422, "pattern"),
        ({"message": "x" * 5000}, 413, "at most 4000"),
    ],
)
def test_invalid_chat_bodies_say_what_is_wrong(body: dict[str, Any], status: int, detail: str) -> None:
    """Bad bodies get 422 (or 413 for size) with a message naming the problem, never a 500."""
    import httpx

    with running_agent() as agent:
        response = httpx.post(f"{agent.url}/api/v1/chat", json=body, timeout=10)
    assert response.status_code == status
    assert detail in json.dumps(response.json())


def test_a_body_over_the_byte_limit_is_refused_before_parsing() -> None:
    """A body larger than HA_AGENT_MAX_BODY_BYTES is 413 whether declared or streamed."""
    import httpx

    with running_agent(max_body_bytes=1000) as agent:
        declared = httpx.post(f"{agent.url}/api/v1/chat", content=b"{" + b" " * 5000 + b"}", timeout=10)

        def chunks() -> Any:
            for _ in range(10):
                yield b" " * 500

        streamed = httpx.post(f"{agent.url}/api/v1/chat", content=chunks(), timeout=10)
        not_json = httpx.post(f"{agent.url}/api/v1/chat", content=b"not json", timeout=10)
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "1000 bytes" in streamed.json()["detail"]
    assert not_json.status_code == 422


def test_with_the_http_instrumentations_off_a_request_still_makes_one_report() -> None:
    """With the HTTP instrumentations off, the service opens each request's root itself.

    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi,httpx,httpx2: no server or client
    spans, and every metric of a request still lands in one report.
    """
    with running_agent(tracing={"disabled_instrumentations": "fastapi,httpx,httpx2"}) as agent:
        first = agent.chat("Turn off the kitchen light")
        second = agent.chat("Which lights are on?")
        assert first.status_code == second.status_code == 200
        reports = agent.reports(expected=2)
        kinds = {span.kind for span in agent.spans()}
    assert len(reports) == 2
    assert all(r["root_span"] == "chat_request" for r in reports)
    assert SpanKind.SERVER not in kinds
    assert SpanKind.CLIENT not in kinds
    names = by_name(reports[0])
    assert {"rate_limit_check", "openai_api_call", "tool_execution", "token_count_retrieval"} <= set(names)
