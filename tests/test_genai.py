"""GenAI semantic conventions: content in the parts format, capture modes, one LLM span per call, resource."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ha_agent_tracing import load_config
from ha_agent_tracing._setup import build_provider
from ha_agent_tracing._version import __version__
from ha_agent_tracing.genai import (
    ChatCall,
    GenAISpanWatcher,
    input_messages,
    output_messages,
    record_content,
    server_attributes,
    tool_attributes,
    tool_definitions,
)

from .agent_harness import running_agent

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "call_service",
            "description": "Call a Home Assistant service.",
            "parameters": {"type": "object", "properties": {"entity_id": {"type": "string"}}},
        },
    }
]


def test_openai_messages_become_parts_with_tool_calls_and_results() -> None:
    """System, user, an assistant tool-call turn and the tool's JSON result, in the conventions' shape."""
    messages = [
        {"role": "system", "content": "You control a home."},
        {"role": "user", "content": "Turn off the kitchen light"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "call_service", "arguments": '{"entity_id": "light.kitchen"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"changed": []}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "not json"},
    ]
    assert input_messages(messages) == [
        {"role": "system", "parts": [{"type": "text", "content": "You control a home."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Turn off the kitchen light"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "call_service",
                    "arguments": {"entity_id": "light.kitchen"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"changed": []}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_2", "response": "not json"}]},
    ]


def test_a_tool_call_answer_is_an_output_message_with_tool_call_parts() -> None:
    """The turn that was recorded as {"content": null} before: its tool calls are the output."""
    calls = [{"id": "c1", "name": "call_service", "arguments": '{"entity_id": "light.a"}'}]
    assert output_messages(None, calls, "tool_calls") == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "c1",
                    "name": "call_service",
                    "arguments": {"entity_id": "light.a"},
                }
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert output_messages("Done.", (), "stop") == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Done."}], "finish_reason": "stop"}
    ]


def test_tool_definitions_and_tool_span_attributes() -> None:
    """Schemas become gen_ai.tool.definitions; a tool span gets its type and description."""
    assert tool_definitions(TOOLS) == [
        {
            "type": "function",
            "name": "call_service",
            "description": "Call a Home Assistant service.",
            "parameters": {"type": "object", "properties": {"entity_id": {"type": "string"}}},
        }
    ]
    assert tool_attributes("call_service", "c1", TOOLS) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "call_service",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.tool.description": "Call a Home Assistant service.",
    }
    assert "gen_ai.tool.description" not in tool_attributes("unknown", "c2", TOOLS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8123/v1/", {"server.address": "127.0.0.1", "server.port": 8123}),
        ("https://api.openai.com/v1", {"server.address": "api.openai.com", "server.port": 443}),
        ("not a url", {}),
        (None, {}),
    ],
)
def test_server_attributes(url: str | None, expected: dict[str, Any]) -> None:
    """server.address and server.port, the port from the scheme when the URL has none."""
    assert server_attributes(url) == expected
    assert server_attributes(url) == expected  # parsed once, the same answer again


def test_server_attributes_are_a_new_dict_every_call() -> None:
    """The parsed URL is remembered, but a caller changing its dict changes no later answer."""
    first = server_attributes("http://127.0.0.1:9/v1")
    first["server.port"] = 1
    assert server_attributes("http://127.0.0.1:9/v1") == {"server.address": "127.0.0.1", "server.port": 9}
    assert server_attributes("http://localhost/v1") == {"server.address": "localhost", "server.port": 80}


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ("span_only", "span_only"),
        ("EVENT_ONLY", "event_only"),
        ("span_and_event", "span_and_event"),
        ("no_content", "no_content"),
        ("true", "span_only"),
        ("False", "no_content"),
    ],
)
def test_capture_accepts_the_official_values_and_true_false(raw: str, mode: str) -> None:
    """The official package's words and ours read the same variable without a warning."""
    config = load_config({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": raw})
    assert config.capture_message_content == mode


def _record(mode: Any) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s") as span:
        record_content(span, mode, {"gen_ai.input.messages": [{"role": "user", "parts": []}], "x": None})
    (finished,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes or {})) for e in finished.events]
    return dict(finished.attributes or {}), events


def test_capture_modes_put_content_on_span_event_both_or_nowhere() -> None:
    """span_only: attributes; event_only: the details event; span_and_event: both; no_content: nothing."""
    encoded = '[{"role":"user","parts":[]}]'
    event = ("gen_ai.client.inference.operation.details", {"gen_ai.input.messages": encoded})
    assert _record("span_only") == ({"gen_ai.input.messages": encoded}, [])
    assert _record("event_only") == ({}, [event])
    assert _record("span_and_event") == ({"gen_ai.input.messages": encoded}, [event])
    assert _record("no_content") == ({}, [])


def _watched_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(GenAISpanWatcher())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_the_call_span_carries_gen_ai_when_no_other_instrumentation_does() -> None:
    """Alone, the wrapping span is the LLM span: request, response, server and stream attributes."""
    provider, exporter = _watched_provider()
    call = ChatCall(model="m", server="http://127.0.0.1:9/v1", capture="span_only")
    with provider.get_tracer("t").start_as_current_span("openai_api_call") as span, call.on(span):
        call.request([{"role": "user", "content": "hi"}], TOOLS)
        call.response(
            model="m-1", response_id="r1", input_tokens=7, output_tokens=3, reason="stop", content="yo"
        )
    (finished,) = exporter.get_finished_spans()
    attributes = dict(finished.attributes or {})
    assert call.delegated is False
    assert {
        k: v for k, v in attributes.items() if not k.startswith("gen_ai.input") and "messages" not in k
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m",
        "gen_ai.request.stream": False,
        "openinference.span.kind": "LLM",
        "server.address": "127.0.0.1",
        "server.port": 9,
        "gen_ai.response.model": "m-1",
        "gen_ai.response.id": "r1",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.tool.definitions": json.dumps(tool_definitions(TOOLS), separators=(",", ":")),
    }
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"]))[0]["parts"] == [
        {"type": "text", "content": "yo"}
    ]


def test_an_llm_span_of_another_instrumentation_inside_takes_the_gen_ai_attributes() -> None:
    """Another instrumentation's chat span inside: the wrapper keeps no gen_ai.* and is a CHAIN step."""
    provider, exporter = _watched_provider()
    tracer = provider.get_tracer("t")
    call = ChatCall(model="m", server="http://127.0.0.1:9/v1", capture="span_only")
    with tracer.start_as_current_span("openai_api_call") as span, call.on(span):
        call.request([{"role": "user", "content": "hi"}])
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
            pass
        call.response(input_tokens=7, output_tokens=3, reason="stop", content="yo")
    wrapper = next(s for s in exporter.get_finished_spans() if s.name == "openai_api_call")
    assert call.delegated is True
    assert dict(wrapper.attributes or {}) == {"openinference.span.kind": "CHAIN"}


def test_a_streamed_call_records_time_to_first_chunk_in_seconds() -> None:
    """gen_ai.response.time_to_first_chunk is seconds from the request, only for streamed calls."""
    provider, exporter = _watched_provider()
    call = ChatCall(model="m", stream=True)
    with provider.get_tracer("t").start_as_current_span("openai_api_call") as span, call.on(span):
        call.first_chunk()
    (finished,) = exporter.get_finished_spans()
    attributes = finished.attributes or {}
    assert attributes["gen_ai.request.stream"] is True
    assert 0 <= float(attributes["gen_ai.response.time_to_first_chunk"]) < 1  # type: ignore[arg-type]


# ---------------------------------------------------------------- resource and schema


@pytest.mark.parametrize(
    ("environ", "service_name"),
    [
        ({}, "ha-ai-agent-service"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes", "OTEL_SERVICE_NAME": "from-name"},
            "from-name",
        ),
    ],
)
def test_service_name_precedence_follows_the_specification(
    environ: dict[str, str], service_name: str
) -> None:
    """OTEL_SERVICE_NAME, then service.name in OTEL_RESOURCE_ATTRIBUTES, then the default."""
    provider = build_provider(load_config(environ))
    assert provider.resource.attributes["service.name"] == service_name


def test_service_version_is_the_package_version_unless_given() -> None:
    """service.version on the resource: the installed package's, or the user's from the attributes."""
    assert build_provider(load_config({})).resource.attributes["service.version"] == __version__
    given = load_config({"OTEL_RESOURCE_ATTRIBUTES": "service.version=9.9"})
    assert build_provider(given).resource.attributes["service.version"] == "9.9"


def test_resource_detectors_named_in_the_variable_run(lib_logs: pytest.LogCaptureFixture) -> None:
    """The SDK's process detector adds this process's pid; an unknown name warns and is skipped."""
    config = load_config({"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process,nonesuch"})
    attributes = build_provider(config).resource.attributes
    assert attributes["process.pid"] == os.getpid()
    assert "service.instance.id" in attributes
    assert any("'nonesuch'" in r.getMessage() for r in lib_logs.records if r.levelname == "WARNING")
    assert "process.pid" not in build_provider(load_config({})).resource.attributes


def test_the_trackers_spans_name_the_semconv_schema() -> None:
    """The tracker's tracer carries a schema_url naming the conventions version followed."""
    with running_agent() as agent:
        agent.chat("Which lights are on?")
        spans = agent.spans("openai_api_call")
    assert {s.instrumentation_scope.schema_url for s in spans} == {"https://opentelemetry.io/schemas/1.41.0"}  # type: ignore[union-attr]


def test_the_agent_records_content_in_parts_and_tool_spans_in_full() -> None:
    """Through the service: parts-format content, tool definitions, tool type and description."""
    with running_agent(capture_message_content="span_only") as agent:
        agent.chat("Turn off the kitchen light")
        calls = agent.spans("openai_api_call")
        (tool,) = agent.spans("tool_execution")
    first = dict(calls[0].attributes or {})
    assert json.loads(str(first["gen_ai.output.messages"]))[0]["parts"][0]["type"] == "tool_call"
    assert [d["name"] for d in json.loads(str(first["gen_ai.tool.definitions"]))] == [
        "get_entity_states",
        "call_service",
        "preview_automation",
    ]
    second_input = json.loads(str(dict(calls[1].attributes or {})["gen_ai.input.messages"]))
    assert second_input[-1]["parts"][0]["type"] == "tool_call_response"
    assert first["server.address"] == "127.0.0.1" and isinstance(first["server.port"], int)
    attributes = dict(tool.attributes or {})
    assert attributes["gen_ai.tool.type"] == "function"
    assert str(attributes["gen_ai.tool.description"]).startswith("Call a Home Assistant service")
    assert "gen_ai.tool.call.arguments" in attributes


def test_without_capture_no_content_is_recorded_anywhere() -> None:
    """The default: no messages, definitions, arguments or results on any span or event."""
    with running_agent() as agent:
        agent.chat("Turn off the kitchen light")
        spans = agent.spans()
    keys = {k for s in spans for k in (s.attributes or {})} | {
        k for s in spans for e in s.events for k in (e.attributes or {})
    }
    content = {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.definitions",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
    assert keys & content == set()


def test_a_failed_call_still_names_its_request() -> None:
    """The block raises: the span keeps operation, provider, model and server for error views."""
    provider, exporter = _watched_provider()
    call = ChatCall(model="m", server="http://127.0.0.1:9/v1")
    with (
        pytest.raises(ConnectionError),
        provider.get_tracer("t").start_as_current_span("openai_api_call") as span,
        call.on(span),
    ):
        raise ConnectionError("refused")
    (finished,) = exporter.get_finished_spans()
    attributes = dict(finished.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "m"
    assert attributes["server.port"] == 9
    assert "gen_ai.usage.input_tokens" not in attributes


def test_a_streamed_call_through_the_service_has_stream_and_time_to_first_chunk() -> None:
    """HA_AGENT_STREAM=true: gen_ai.request.stream and a first-chunk time within the call, in seconds."""
    with running_agent(stream=True) as agent:
        agent.chat("Which lights are on?")
        calls = agent.spans("openai_api_call")
    assert calls
    for span in calls:
        attributes = dict(span.attributes or {})
        assert attributes["gen_ai.request.stream"] is True
        first = float(str(attributes["gen_ai.response.time_to_first_chunk"]))
        assert span.end_time is not None and span.start_time is not None
        assert 0 < first < (span.end_time - span.start_time) / 1e9
        # the report's own figure is milliseconds, measured from the request on
        assert abs(first * 1000 - float(str(attributes["time_to_first_chunk_ms"]))) < 50
