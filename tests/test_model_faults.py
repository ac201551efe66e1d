"""Model calls that fail like real providers' do, against llmock (a chaos server on loopback).

For every fault: what the caller sees (status, Retry-After, a plain message),
what the report and the span record (attempts, provider status, error.type),
what the conversation keeps afterwards, how long it took, and the one WARNING
a failed chat logs. llmock cannot send an answer without ``choices``, without
``usage``, or with a request id; those faults come from the embedded model's
fault switches (``ModelFaults``), at the end of this file.

Time bounds are generous upper limits (a busy 2-core machine), never goals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from llmock.pytest_plugin import LLMock
from llmock.scenarios import Reply

from ha_agent_tracing.agent import EmbeddedHome, ModelFaults, create_model_app
from ha_agent_tracing.agent._background import BackgroundServer

from .agent_harness import Agent, running_agent

MARGIN_S = 1.5  # what a loaded machine may add to a bound


@contextmanager
def agent_on(llmock: LLMock, **overrides: Any) -> Iterator[Agent]:
    """The agent service talking to llmock, which answers in text unless a test scripts tool calls."""
    llmock.tool_mode("off")
    options: dict[str, Any] = {
        "openai_base_url": llmock.base_url("openai"),
        "openai_api_key": "llmock",
        "openai_timeout_s": 2.0,
    }
    options.update(overrides)
    with running_agent(**options) as agent:
        yield agent


def timed_chat(agent: Agent, message: str, conversation_id: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = agent.chat(message, conversation_id)
    return response, time.monotonic() - started


def history(agent: Agent, conversation_id: str) -> list[dict[str, Any]]:
    conversation, _ = agent.app.state.chat.conversations.get_or_create(conversation_id)
    return conversation.messages


def model_call(report: dict[str, Any]) -> dict[str, Any]:
    calls = [m for m in report["metrics"] if m["name"] == "openai_api_call"]
    assert len(calls) == 1
    return calls[0]


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("ha_agent_tracing")
    ]


def assert_failed_cleanly(
    agent: Agent,
    response: Any,
    caplog: pytest.LogCaptureFixture,
    *,
    status: int,
    error_type: str,
    attempts: int,
    detail: str,
) -> dict[str, Any]:
    """The caller's answer, the report, the span, the history and the log of one failed chat."""
    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert "Error" not in detail  # a plain sentence, no exception class names
    (report,) = agent.reports(1)
    # The request's own status follows HTTP's server rule: 5xx is an error, a 429 is the client's to retry.
    assert report["status"] == ("error" if status >= 500 else "ok")
    call = model_call(report)
    assert call["status"] == "error"
    assert call["metadata"]["error.type"] == error_type
    assert call["metadata"]["attempts"] == attempts
    assert "prompt_tokens" not in call["metadata"]  # nothing known, nothing recorded as 0
    assert "token_count_retrieval" not in {m["name"] for m in report["metrics"]}
    (span,) = agent.spans("openai_api_call")
    assert span.attributes is not None and span.attributes["error.type"] == error_type
    assert history(agent, "c") == []  # nothing saved
    (warning,) = warnings_logged(caplog)
    assert f"error.type={error_type}" in warning
    return call


@dataclass(frozen=True)
class Fault:
    """A provider fault scripted in llmock, and the answer the caller must get within ``bound_s``."""

    script: Callable[[LLMock], object]
    status: int
    error_type: str
    attempts: int
    detail: str
    bound_s: float
    at_least_s: float = 0.0
    retry_after: str | None = None
    settings: dict[str, Any] = field(default_factory=dict[str, Any])


FAULTS = {
    # Retry-After: 20 with a 2 s budget: no wait at all; the provider's Retry-After is passed on.
    "429-retry-after-over-budget": Fault(
        lambda m: m.rate_limit(retry_after=20, times=None),
        429, "429", 1, "The model provider is rate-limiting requests; try again later.", 2, retry_after="20",
    ),
    # Retry-After 1.2 s twice with a 2 s budget: one wait fits, the second does not.
    "429-waits-count-against-the-budget": Fault(
        lambda m: m.rate_limit(retry_after=1.2, times=None),
        429, "429", 2, "The model provider is rate-limiting requests; try again later.", 2, 1.2, "2",
    ),
    # 503 on every attempt: retried twice after backoff, then 503 with a Retry-After.
    "503-after-the-retries": Fault(
        lambda m: m.outage(status=503),
        503, "503", 3, "The model provider is overloaded; try again later.", 5, retry_after="1",
        settings={"openai_timeout_s": 5.0},
    ),
    "500-after-the-retries": Fault(
        lambda m: m.outage(status=500), 502, "500", 3, "The model provider failed (HTTP 500).", 2
    ),
    "401-not-retried": Fault(
        lambda m: m.fail(401, times=None), 502, "401", 1, "The model provider refused the request (HTTP 401).", 2
    ),
    "slow-answer": Fault(
        lambda m: m.delay(6, times=None), 504, "timeout", 1, "The model did not answer within 2 s.", 2, 2
    ),
    # HA_AGENT_CHAT_TIMEOUT=1 under a 5 s model timeout: the model call gets what is left.
    "chat-deadline": Fault(
        lambda m: m.delay(6, times=None),
        504, "timeout", 1, "The model did not answer before the request's deadline.", 1, 1,
        settings={"openai_timeout_s": 5.0, "chat_timeout_s": 1.0},
    ),
    "stalled-stream": Fault(
        lambda m: m.stall(after_chunks=2, seconds=10, times=None),
        504, "timeout", 1, "The model did not answer within 2 s.", 2, 2, settings={"stream": True},
    ),
    "slow-first-chunk": Fault(
        lambda m: m.slow_first_token(6, times=None),
        504, "timeout", 1, "The model did not answer within 2 s.", 2, 2, settings={"stream": True},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", FAULTS)
def test_a_provider_fault_gets_a_clear_bounded_answer(
    llmock: LLMock, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Status, Retry-After and a plain message, in bounded time; the report and log say what happened."""
    fault = FAULTS[name]
    fault.script(llmock)
    with agent_on(llmock, **fault.settings) as agent:
        response, took = timed_chat(agent, "Hello", "c")
        call = assert_failed_cleanly(
            agent,
            response,
            caplog,
            status=fault.status,
            error_type=fault.error_type,
            attempts=fault.attempts,
            detail=fault.detail,
        )
    assert response.headers.get("Retry-After") == fault.retry_after
    if fault.error_type.isdigit():
        assert call["metadata"]["http.response.status_code"] == int(fault.error_type)
        assert len(llmock.requests) == fault.attempts
    assert fault.at_least_s <= took < fault.bound_s + MARGIN_S


def test_the_chat_deadline_bounds_a_request_held_up_by_the_home() -> None:
    """A home that takes 3 s per call with HA_AGENT_CHAT_TIMEOUT=1: 504 in about 1 s, nothing saved."""
    with running_agent(home_latency_ms=3000, chat_timeout_s=1.0) as agent:
        response, took = timed_chat(agent, "Which lights are on?", "c")
        saved = history(agent, "c")
    assert response.status_code == 504
    assert response.json() == {"detail": "The request did not finish within 1 s."}
    assert saved == []
    assert 1 <= took < 1 + MARGIN_S


def test_a_429_then_success_is_one_call_of_two_attempts(llmock: LLMock) -> None:
    """The retry waits the provider's Retry-After; the report says 2 attempts and the final 200."""
    llmock.rate_limit(retry_after=0.3, times=1)
    with agent_on(llmock) as agent:
        response, took = timed_chat(agent, "Hello", "c")
        (report,) = agent.reports(1)
    assert response.status_code == 200
    call = model_call(report)
    assert call["status"] == "ok"
    assert call["metadata"]["attempts"] == 2
    assert call["metadata"]["http.response.status_code"] == 200
    assert "error.type" not in call["metadata"]
    waited = llmock.requests[1].started_at - llmock.requests[0].ended_at
    assert waited >= 0.3
    assert took < 2 + MARGIN_S
    llmock.assert_resilient()


@pytest.mark.parametrize(
    ("fault", "error_type", "detail"),
    [
        (
            "truncate",
            "truncated_stream",
            "The model's answer broke off (the stream ended without a finish reason).",
        ),
        ("corrupt", "malformed_chunk", "The model's answer broke off (a streamed chunk was not valid JSON)."),
        (
            "disconnect",
            "connection_error",
            "The model's answer broke off (the connection dropped mid-stream).",
        ),
    ],
)
def test_a_broken_stream_is_an_error_never_an_answer(
    llmock: LLMock, caplog: pytest.LogCaptureFixture, fault: str, error_type: str, detail: str
) -> None:
    """Truncated, corrupt or dropped stream: 502, nothing saved, and the half-sent tool call never runs."""
    home = EmbeddedHome()
    llmock.call_tool(
        "call_service",
        {"domain": "light", "service": "turn_on", "entity_id": "light.living_room"},
        times=None,
    )
    getattr(llmock, fault)(after_chunks=3, times=None)
    with agent_on(llmock, stream=True, home=home) as agent:
        response, took = timed_chat(agent, "Turn on the living room light", "c")
        assert_failed_cleanly(
            agent, response, caplog, status=502, error_type=error_type, attempts=1, detail=detail
        )
        (report,) = agent.reports(1)
    assert "tool_execution" not in {m["name"] for m in report["metrics"]}
    assert home._states["light.living_room"]["state"] == "off"
    assert took < 2 + MARGIN_S


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_cut_at_the_token_limit_is_marked(llmock: LLMock, stream: bool) -> None:
    """finish_reason=length: the answer is given, flagged truncated, and the report says so."""
    llmock.add(Reply(text="The kitchen light is", finish_reason="length"))
    with agent_on(llmock, stream=stream) as agent:
        response, _ = timed_chat(agent, "Is the kitchen light on?", "c")
        (report,) = agent.reports(1)
        saved = history(agent, "c")
    body = response.json()
    assert response.status_code == 200
    assert body["truncated"] is True and body["message"] == "The kitchen light is"
    call = model_call(report)
    assert call["metadata"]["output_truncated"] is True
    assert call["metadata"]["gen_ai.response.finish_reasons"] == ["length"]
    assert saved[-1] == {"role": "assistant", "content": "The kitchen light is"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_streamed_or_plain_answer_records_status_and_usage(llmock: LLMock, stream: bool) -> None:
    """A good answer: one attempt, 200, usage as llmock reported it; the history keeps the turn."""
    llmock.reply("All good.")
    with agent_on(llmock, stream=stream) as agent:
        response, _ = timed_chat(agent, "Hello", "c")
        (report,) = agent.reports(1)
        saved = history(agent, "c")
    assert response.status_code == 200 and response.json()["message"] == "All good."
    call = model_call(report)
    assert call["metadata"]["attempts"] == 1
    assert call["metadata"]["http.response.status_code"] == 200
    assert call["metadata"]["prompt_tokens"] > 0
    assert call["metadata"]["gen_ai.usage.input_tokens"] == call["metadata"]["prompt_tokens"]
    assert call["metadata"]["output_truncated"] is False
    assert saved == [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "All good."}]


# --- faults llmock cannot make: the embedded model's switches ---------------------------------


@contextmanager
def agent_on_embedded(faults: ModelFaults, **overrides: Any) -> Iterator[Agent]:
    base = {"openai_api_key": "embedded", **overrides}
    with (
        BackgroundServer(create_model_app(0, faults)) as model,
        running_agent(openai_base_url=f"{model.url}/v1", **base) as agent,
    ):
        yield agent


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_choices_is_an_error(caplog: pytest.LogCaptureFixture, stream: bool) -> None:
    """No choices at all: 502, nothing saved, one WARNING."""
    with agent_on_embedded(ModelFaults().add("empty_choices"), stream=stream) as agent:
        response, _ = timed_chat(agent, "Hello", "c")
        call = assert_failed_cleanly(
            agent,
            response,
            caplog,
            status=502,
            error_type="empty_choices",
            attempts=1,
            detail=f"The model's answer broke off (the {'stream' if stream else 'answer'} had no choices).",
        )
    assert call["metadata"]["provider_request_id"].startswith("req_")


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_usage_stays_unknown(stream: bool) -> None:
    """No usage from the provider: tokens are absent from the report and null in the answer, never 0."""
    with agent_on_embedded(ModelFaults().add("no_usage"), stream=stream) as agent:
        response, _ = timed_chat(agent, "Hello", "c")
        (report,) = agent.reports(1)
    assert response.status_code == 200 and response.json()["tokens_used"] is None
    call = model_call(report)
    assert not {"prompt_tokens", "tokens_used", "gen_ai.usage.input_tokens"} & set(call["metadata"])
    (totals,) = [m for m in report["metrics"] if m["name"] == "token_count_retrieval"]
    assert totals["metadata"] == {"usage_known": False, "iterations": 1}


def test_the_providers_request_id_is_recorded() -> None:
    """x-request-id of the answer is in the report and on the span."""
    with agent_on_embedded(ModelFaults()) as agent:
        timed_chat(agent, "Hello", "c")
        (report,) = agent.reports(1)
        (span,) = agent.spans("openai_api_call")
    request_id = model_call(report)["metadata"]["provider_request_id"]
    assert request_id.startswith("req_")
    assert span.attributes is not None and span.attributes["provider_request_id"] == request_id


def test_tool_calls_cut_at_the_token_limit_are_never_run(caplog: pytest.LogCaptureFixture) -> None:
    """finish_reason=length on a tool-call turn: the cut arguments are not acted on; 502."""
    home = EmbeddedHome()
    with agent_on_embedded(ModelFaults().add("length"), home=home) as agent:
        response, _ = timed_chat(agent, "Turn on the living room light", "c")
        assert_failed_cleanly(
            agent,
            response,
            caplog,
            status=502,
            error_type="length",
            attempts=1,
            detail="The model's answer was cut off at its token limit.",
        )
    assert home._states["light.living_room"]["state"] == "off"
