"""The OpenTelemetry GenAI semantic conventions for your agent's model and tool calls.

Use it around the model calls your own agent makes, next to the tracker::

    from ha_agent_tracing import get_runtime, get_tracker
    from ha_agent_tracing.genai import ChatCall, record_content, tool_attributes

    call = ChatCall(model="gpt-4o-mini", server=client.base_url,
                    capture=get_runtime().config.capture_message_content)
    with tracker.track("openai_api_call") as metric, call.on(metric.span):
        call.request(messages, tools)                 # content kept only when captured
        response = await client.chat.completions.create(model=..., messages=messages, tools=tools)
        call.response(model=response.model, response_id=response.id,
                      input_tokens=response.usage.prompt_tokens,
                      output_tokens=response.usage.completion_tokens,
                      reason=response.choices[0].finish_reason,
                      content=response.choices[0].message.content,
                      tool_calls=response.choices[0].message.tool_calls or ())

    with tracker.track("tool_execution", **tool_attributes(name, call_id, tools)) as metric:
        record_content(metric.span, mode, {"gen_ai.tool.call.arguments": arguments})

The span gets the ``gen_ai.*`` attributes unless another GenAI
instrumentation (``opentelemetry-instrumentation-genai-openai``,
OpenInference) recorded the same call on an LLM span of its own: each model
call is counted once.
"""

from __future__ import annotations

from ha_agent_tracing._attributes import SCHEMA_URL, SEMCONV_VERSION
from ha_agent_tracing._config import CAPTURE_MODES, CaptureMode
from ha_agent_tracing.telemetry._genai import (
    DETAILS_EVENT,
    OPENINFERENCE_SPAN_KIND,
    ChatCall,
    GenAISpanWatcher,
    finish_reason,
    input_messages,
    output_messages,
    record_content,
    server_attributes,
    system_instructions,
    tool_attributes,
    tool_definitions,
)

__all__ = [
    "CAPTURE_MODES",
    "DETAILS_EVENT",
    "OPENINFERENCE_SPAN_KIND",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "CaptureMode",
    "ChatCall",
    "GenAISpanWatcher",
    "finish_reason",
    "input_messages",
    "output_messages",
    "record_content",
    "server_attributes",
    "system_instructions",
    "tool_attributes",
    "tool_definitions",
]
