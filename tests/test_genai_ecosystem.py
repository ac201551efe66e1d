"""Next to the real GenAI ecosystem: the official OpenAI instrumentation and Arize Phoenix.

``opentelemetry-instrumentation-genai-openai`` (installed with the test
extras) instruments the real ``openai`` client the service talks to the
embedded model with; Phoenix (a real trace backend, started on loopback)
reads the spans back and derives its LLM/TOOL/CHAIN kinds, tokens and
messages from them as it would in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from ha_agent_tracing import load_config
from ha_agent_tracing.agent._background import free_port

from .agent_harness import Agent, running_agent, wait_until_answering
from .receivers import Phoenix, ReceivedSpan, Rotel

# One message the model answers with two tool calls and then a sentence (2 model calls),
# one it answers directly (1 model call).
MESSAGES = ["Turn off the kitchen light and tell me the temperature", "Hello there"]
MODEL_CALLS = 3


@contextmanager
def official_instrumentation(agent: Agent) -> Iterator[None]:
    """The official GenAI instrumentation on the service's provider, for the duration of the block."""
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=agent.runtime.provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _chat_all(agent: Agent) -> list[dict[str, Any]]:
    for message in MESSAGES:
        assert agent.chat(message).status_code == 200
    return agent.reports(len(MESSAGES))


def _report_tokens(reports: list[dict[str, Any]]) -> int:
    return sum(
        m["metadata"]["tokens_used"] for r in reports for m in r["metrics"] if m["name"] == "openai_api_call"
    )


def _tokens(span: ReadableSpan) -> int:
    attributes = dict(span.attributes or {})
    return int(str(attributes["gen_ai.usage.input_tokens"])) + int(
        str(attributes["gen_ai.usage.output_tokens"])
    )


def _llm_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if "gen_ai.usage.input_tokens" in (s.attributes or {})]


def test_with_the_official_instrumentation_each_call_has_one_llm_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its `chat` span carries gen_ai.* and the tokens; openai_api_call keeps the report's metadata."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    with running_agent(capture_message_content="span_only") as agent, official_instrumentation(agent):
        reports = _chat_all(agent)
        spans = agent.spans()
    llm = _llm_spans(spans)
    ours = [s for s in spans if s.name == "openai_api_call"]
    assert len(ours) == MODEL_CALLS
    assert len(llm) == MODEL_CALLS, [s.name for s in llm]
    assert {s.name for s in llm} == {"chat gpt-4o-mini"}
    assert {s.kind for s in llm} == {SpanKind.CLIENT}
    assert {s.instrumentation_scope.name for s in llm} == {"opentelemetry.instrumentation.genai.openai"}  # type: ignore[union-attr]
    assert {s.parent.span_id for s in llm} == {s.context.span_id for s in ours}  # type: ignore[union-attr]
    for span in ours:
        attributes = dict(span.attributes or {})
        assert [k for k in attributes if k.startswith("gen_ai.")] == []
        assert attributes["openinference.span.kind"] == "CHAIN"
    tokens = sum(_tokens(s) for s in llm)
    assert tokens == _report_tokens(reports) > 0
    # One capture setting serves both: the official span has the messages, ours the tool content.
    assert all("gen_ai.input.messages" in (s.attributes or {}) for s in llm)
    tools = [s for s in spans if s.name == "tool_execution"]
    assert tools and all("gen_ai.tool.call.arguments" in (s.attributes or {}) for s in tools)
    assert load_config().capture_message_content == "span_only"


def test_without_another_instrumentation_our_span_is_the_llm_span() -> None:
    """The same flow alone: one LLM span per model call, ours, with the same token total."""
    with running_agent() as agent:
        reports = _chat_all(agent)
        spans = agent.spans()
    llm = _llm_spans(spans)
    assert [s.name for s in llm] == ["openai_api_call"] * MODEL_CALLS
    tokens = sum(_tokens(s) for s in llm)
    assert tokens == _report_tokens(reports)


# ---------------------------------------------------------------- Phoenix


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    with Phoenix(tmp_path_factory.mktemp("phoenix-genai")) as server:
        yield server


def _phoenix_run(
    phoenix: Phoenix, capture: str, official: bool, project: str
) -> tuple[list[ReceivedSpan], list[dict[str, Any]]]:
    """Chat through the service exporting to Phoenix; every span as Phoenix has it, and the reports."""
    tracing = {
        "exporters": "otlp",
        "otlp_traces_endpoint": phoenix.otlp_http_endpoint,
        "resource_attributes": f"openinference.project.name={project}",
    }
    with running_agent(capture_message_content=capture, tracing=tracing) as agent:
        with official_instrumentation(agent) if official else nullcontext():
            reports = _chat_all(agent)
        sent: dict[str, set[str]] = {}
        for span in agent.spans():
            context = span.context
            assert context is not None
            sent.setdefault(f"{context.trace_id:032x}", set()).add(f"{context.span_id:016x}")
    # Leaving running_agent shut tracing down, which flushed the exporter.
    assert set(sent) == {r["trace_id"] for r in reports}
    found: list[ReceivedSpan] = []
    for trace_id, span_ids in sent.items():
        found.extend(phoenix.wait_for_spans(trace_id, span_ids, project=project))
    return found, reports


@pytest.mark.phoenix
@pytest.mark.parametrize("official", [False, True], ids=["alone", "with-official-instrumentation"])
def test_phoenix_counts_tokens_once_and_shows_messages_with_capture_on(
    phoenix: Phoenix, official: bool
) -> None:
    """Phoenix: exactly one LLM span per model call, the report's tokens, input and output messages."""
    project = f"genai-capture-{official}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
        spans, reports = _phoenix_run(phoenix, "span_only", official, project)
    llm = [s for s in spans if s.kind == "LLM"]
    assert len(llm) == MODEL_CALLS, [(s.name, s.kind) for s in spans]
    assert sum(int(s.attributes["llm.token_count.total"]) for s in llm) == _report_tokens(reports)
    for span in llm:
        keys = set(span.attributes)
        assert "llm.input_messages.0.message.role" in keys
        assert any(k.startswith("llm.output_messages.0.message.") for k in keys)
    outputs = [
        k for s in llm for k in s.attributes if k.startswith("llm.output_messages.0.message.tool_calls.")
    ]
    assert outputs, "the tool-call turn shows its tool calls as output"
    assert any(
        s.attributes.get(k) == "tool"
        for s in llm
        for k in s.attributes
        if k.startswith("llm.input_messages.")
    ), "a tool result is shown as a tool message"
    kinds = {s.name: s.kind for s in spans}
    assert kinds["tool_execution"] == "TOOL"
    assert kinds["rate_limit_check"] == kinds["message_assembly"] == "CHAIN"
    assert kinds["openai_api_call"] == ("CHAIN" if official else "LLM")


@pytest.mark.phoenix
def test_phoenix_shows_no_messages_with_capture_off(phoenix: Phoenix) -> None:
    """The default: Phoenix has the LLM spans and their tokens, and no message of any kind."""
    spans, reports = _phoenix_run(phoenix, "no_content", False, "genai-no-content")
    llm = [s for s in spans if s.kind == "LLM"]
    assert len(llm) == MODEL_CALLS
    assert sum(int(s.attributes["llm.token_count.total"]) for s in llm) == _report_tokens(reports)
    leaked = [
        k for s in spans for k in s.attributes if k.startswith(("llm.input_messages", "llm.output_messages"))
    ]
    assert leaked == []


# ---------------------------------------------------------------- under opentelemetry-instrument


def test_under_opentelemetry_instrument_the_official_package_joins_and_calls_count_once(
    tmp_path: Path,
) -> None:
    """The launcher loads the official instrumentation by its entry point; still one LLM span per call."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_", "OPENAI_"))}
    with Rotel(tmp_path) as rotel:
        env.update(
            HA_AGENT_PORT=str(port),
            HA_AGENT_MODEL_LATENCY_MS="1",
            HA_AGENT_HOME_LATENCY_MS="1",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rotel.http_endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        launcher = Path(sys.executable).parent / "opentelemetry-instrument"
        command = [str(launcher), str(Path(sys.executable).parent / "ha-agent-tracing"), "serve"]
        log = tmp_path / "serve.log"
        base = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_answering(f"{base}/health", process, log)
            for message in MESSAGES:
                with suppress_http_instrumentation():
                    assert (
                        httpx.post(f"{base}/api/v1/chat", json={"message": message}, timeout=30).status_code
                        == 200
                    )
            deadline = time.monotonic() + 20
            while True:
                spans = rotel.spans()
                ours = [s for s in spans if s.name == "openai_api_call"]
                if len(ours) >= MODEL_CALLS or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(15)
    llm = [s for s in spans if "gen_ai.usage.input_tokens" in s.attributes]
    assert len(ours) == MODEL_CALLS, log.read_text()[-2000:]
    assert [s.name for s in llm] == ["chat gpt-4o-mini"] * MODEL_CALLS
    assert {s.parent_id for s in llm} == {s.span_id for s in ours}
    assert all(s.attributes["openinference.span.kind"] == "CHAIN" for s in ours)
    assert not [s for s in spans if s.name in ("GET /health", "POST /v1/chat/completions")]
