"""The OpenTelemetry GenAI semantic conventions, for the spans of an agent's model and tool calls.

Followed version: the GenAI conventions as of semantic conventions
:data:`SEMCONV_VERSION` (the last release before they moved to a repository of
their own); the tracker's tracer names it in its ``schema_url``.

* **Content in the parts format.** OpenAI chat messages become
  ``[{"role": ..., "parts": [{"type": "text" | "tool_call" | "tool_call_response", ...}]}]``,
  tool schemas become ``gen_ai.tool.definitions``; Phoenix and Langfuse read
  these and show nothing for raw OpenAI JSON.
* **Where content goes** follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
  as the official ``opentelemetry-instrumentation-genai-openai`` reads it:
  ``span_only``, ``event_only`` (a span event named
  ``gen_ai.client.inference.operation.details``), ``span_and_event``,
  ``no_content``; ``true`` means ``span_only`` and ``false`` ``no_content``.
* **One LLM span per model call.** :class:`ChatCall` writes the ``gen_ai.*``
  attributes on the span it wraps, unless another GenAI instrumentation (the
  official one, OpenInference, ...) opened an LLM span of its own inside it
  during the call: then that span is the call's one LLM span, and the wrapping
  span is marked a CHAIN step so that tokens and cost are counted once.
  Detecting that needs :class:`GenAISpanWatcher` on the provider, which
  ``configure_tracing`` adds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from ha_agent_tracing._attributes import SCHEMA_URL, SEMCONV_VERSION
from ha_agent_tracing._config import CAPTURE_MODES, CaptureMode
from ha_agent_tracing.reports import TRACER_NAME
from ha_agent_tracing.telemetry._sdk_compat import attribute_dict, span_fields

__all__ = [
    "CAPTURE_MODES",
    "DETAILS_EVENT",
    "OPENINFERENCE_SPAN_KIND",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "CaptureMode",
    "ChatCall",
    "GenAISpanWatcher",
    "capture_on_events",
    "capture_on_span",
    "finish_reason",
    "input_messages",
    "output_messages",
    "record_content",
    "server_attributes",
    "system_instructions",
    "to_json",
    "tool_attributes",
    "tool_definitions",
]


DETAILS_EVENT = "gen_ai.client.inference.operation.details"
"""The event that carries content in the ``event_only`` and ``span_and_event`` modes."""

OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
"""OpenInference's span kind (``LLM``, ``TOOL``, ``CHAIN``, ...): read by Phoenix, no dependency needed."""

# Operations whose span is an inference (an LLM span) in the conventions.
_INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "responses"})


def capture_on_span(mode: CaptureMode) -> bool:
    """Whether ``mode`` puts content on span attributes."""
    return mode in ("span_only", "span_and_event")


def capture_on_events(mode: CaptureMode) -> bool:
    """Whether ``mode`` puts content on events."""
    return mode in ("event_only", "span_and_event")


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept as it is (the conventions' string encoding of structured values)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# ---------------------------------------------------------------- content in the parts format


def _get(item: Any, key: str) -> Any:
    """A field of an OpenAI message, whether a plain dict or an SDK model."""
    if isinstance(item, Mapping):
        return item.get(key)  # type: ignore[union-attr]
    return getattr(item, key, None)


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as data when they are JSON, else as the text the model sent."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for piece in content or ():
        kind = _get(piece, "type")
        if kind == "text" and isinstance(_get(piece, "text"), str):
            parts.append({"type": "text", "content": _get(piece, "text")})
        elif kind is not None:
            parts.append({"type": str(kind)})  # an image, audio, ...: its kind, never its bytes
    return parts


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in tool_calls or ():
        function = _get(call, "function")
        parts.append(
            {
                "type": "tool_call",
                "id": _get(call, "id"),
                "name": _get(function, "name") if function is not None else _get(call, "name"),
                "arguments": _arguments(
                    _get(function, "arguments") if function is not None else _get(call, "arguments")
                ),
            }
        )
    return parts


def _tool_response(content: Any) -> Any:
    if isinstance(content, str):
        return _arguments(content)  # a JSON result is kept as data, like arguments
    return content


def input_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """OpenAI chat messages as ``gen_ai.input.messages`` (system messages included, as sent)."""
    result: list[dict[str, Any]] = []
    for message in messages:
        role = str(_get(message, "role") or "user")
        if role == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": _get(message, "tool_call_id"),
                    "response": _tool_response(_get(message, "content")),
                }
            ]
        else:
            parts = _text_parts(_get(message, "content"))
            if role == "assistant":
                parts += _tool_call_parts(_get(message, "tool_calls"))
        entry: dict[str, Any] = {"role": role, "parts": parts}
        if isinstance(name := _get(message, "name"), str):
            entry["name"] = name
        result.append(entry)
    return result


def finish_reason(reason: str | None) -> str:
    """An OpenAI finish reason in the conventions' words (``tool_calls`` → ``tool_call``)."""
    if reason in ("tool_calls", "function_call"):
        return "tool_call"
    return reason or "error"


def output_messages(
    content: str | None, tool_calls: Sequence[Any] = (), reason: str | None = None
) -> list[dict[str, Any]]:
    """One model answer as ``gen_ai.output.messages``: its text and the tool calls it asks for."""
    parts = _text_parts(content) + _tool_call_parts(tool_calls)
    return [{"role": "assistant", "parts": parts, "finish_reason": finish_reason(reason)}]


def system_instructions(text: str) -> list[dict[str, Any]]:
    """A system prompt as ``gen_ai.system_instructions``."""
    return [{"type": "text", "content": text}]


def tool_definitions(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """OpenAI tool schemas as ``gen_ai.tool.definitions``."""
    result: list[dict[str, Any]] = []
    for tool in tools:
        kind = str(_get(tool, "type") or "function")
        function = _get(tool, "function")
        if kind == "function" and function is not None:
            entry: dict[str, Any] = {"type": "function", "name": _get(function, "name")}
            if (description := _get(function, "description")) is not None:
                entry["description"] = description
            if (parameters := _get(function, "parameters")) is not None:
                entry["parameters"] = parameters
            result.append(entry)
        else:
            result.append({"type": kind, "name": _get(tool, "name") or kind})
    return result


def tool_attributes(name: str, call_id: str | None, tools: Iterable[Any] = ()) -> dict[str, AttributeValue]:
    """The attributes of an ``execute_tool`` span; type and description from the tool's schema."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
    }
    if call_id:
        attributes["gen_ai.tool.call.id"] = call_id
    for tool in tools:
        function = _get(tool, "function")
        if function is not None and _get(function, "name") == name:
            description = _get(function, "description")
            if isinstance(description, str) and description:
                attributes["gen_ai.tool.description"] = description
            break
    return attributes


def server_attributes(base_url: Any) -> dict[str, AttributeValue]:
    """``server.address`` and ``server.port`` of the API a client calls (port from the scheme if unsaid)."""
    return dict(_server_attributes(str(base_url)))


@lru_cache(maxsize=64)
def _server_attributes(url: str) -> tuple[tuple[str, AttributeValue], ...]:
    """The attributes of one base URL, parsed once: a client calls the same few URLs on every request."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ()
    if not parts.hostname:
        return ()
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    if port is None:
        return (("server.address", parts.hostname),)
    return (("server.address", parts.hostname), ("server.port", port))


def record_content(span: Span, mode: CaptureMode, content: Mapping[str, Any]) -> None:
    """Put content attributes on ``span`` and/or an event, as ``mode`` says; ``None`` values are left out.

    Structured values (messages, definitions) are JSON strings, as the conventions
    encode them on spans.
    """
    if mode == "no_content" or not span.is_recording():
        return
    attributes = {
        key: value if isinstance(value, str) else to_json(value)
        for key, value in content.items()
        if value is not None
    }
    if not attributes:
        return
    if capture_on_span(mode):
        span.set_attributes(attributes)
    if capture_on_events(mode):
        span.add_event(DETAILS_EVENT, attributes)


# ---------------------------------------------------------------- one LLM span per call


@dataclass
class _Watch:
    span: Span
    other_llm_span: bool = False


_WATCHED: ContextVar[_Watch | None] = ContextVar("ha_agent_tracing_genai_call", default=None)


def _is_llm_span(attributes: Mapping[str, Any]) -> bool:
    return (
        attributes.get("gen_ai.operation.name") in _INFERENCE_OPERATIONS
        or attributes.get(OPENINFERENCE_SPAN_KIND) == "LLM"
    )


class GenAISpanWatcher(SpanProcessor):
    """Notices an LLM span that another instrumentation opens inside a :class:`ChatCall`.

    ``on_start`` runs in the code that starts the span, so the call being
    watched is in its context. It also gives each tracked metric an
    OpenInference span kind, so that trace viewers such as Phoenix do not show
    it as "unknown": ``TOOL`` for ``execute_tool`` spans, ``CHAIN`` for the
    others (a :class:`ChatCall` sets ``LLM`` or ``CHAIN`` when it ends).
    """

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        """Mark the watched call as instrumented elsewhere when an LLM span starts inside it."""
        # The plain attribute dict and the fields in one read: through the public property a
        # lookup of a missing key raises and catches a KeyError inside the SDK's mapping.
        fields = span_fields(span)
        attributes = attribute_dict(fields[7])
        scope = fields[8]
        if scope is not None and scope.name == TRACER_NAME and OPENINFERENCE_SPAN_KIND not in attributes:
            tool = attributes.get("gen_ai.operation.name") == "execute_tool"
            span.set_attribute(OPENINFERENCE_SPAN_KIND, "TOOL" if tool else "CHAIN")
            return
        watch = _WATCHED.get()
        if watch is None or span is watch.span:
            return
        if _is_llm_span(attributes):
            watch.other_llm_span = True

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do at the end."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True


@dataclass
class ChatCall:
    """The GenAI side of one chat-completion call, written on a span of the caller's.

    ::

        call = ChatCall(model="gpt-4o-mini", server=client.base_url, capture="span_only")
        with tracker.track("openai_api_call") as metric, call.on(metric.span):
            call.request(messages, tools)
            response = await client.chat.completions.create(...)
            call.response(model=response.model, input_tokens=..., output_tokens=..., ...)

    At the end of the ``with`` block the span gets the request attributes
    (even when the call failed), the response attributes and, as the capture
    mode says, the content; or, if another instrumentation made its own LLM
    span for this call, only ``openinference.span.kind=CHAIN``.
    """

    model: str
    provider: str = "openai"
    operation: str = "chat"
    server: Any = None
    stream: bool = False
    capture: CaptureMode = "no_content"
    _response: dict[str, AttributeValue] = field(default_factory=dict[str, AttributeValue])
    _content: dict[str, Any] = field(default_factory=dict[str, Any])
    _started: float = 0.0
    _first_chunk_s: float | None = None
    _delegated: bool | None = None

    @property
    def delegated(self) -> bool | None:
        """After the call: whether another instrumentation's span carries its ``gen_ai.*`` (None before)."""
        return self._delegated

    @contextmanager
    def on(self, span: Span) -> Iterator[ChatCall]:
        """Watch the call on ``span`` and write its attributes when the block ends."""
        watch = _Watch(span)
        token = _WATCHED.set(watch)
        self._started = time.perf_counter()
        try:
            yield self
        finally:
            _WATCHED.reset(token)
            self._delegated = watch.other_llm_span
            if span.is_recording():
                span.set_attributes(self._attributes())
                if not self._delegated:
                    record_content(span, self.capture, self._content)

    def request(self, messages: Iterable[Any], tools: Iterable[Any] = ()) -> None:
        """The messages and tool schemas sent; kept only when content is captured."""
        if self.capture != "no_content":
            self._content["gen_ai.input.messages"] = input_messages(messages)
            self._content["gen_ai.tool.definitions"] = tool_definitions(tools) or None

    def first_chunk(self) -> None:
        """A streamed response's first chunk arrived (sets ``gen_ai.response.time_to_first_chunk``)."""
        if self._first_chunk_s is None:
            self._first_chunk_s = time.perf_counter() - self._started

    def response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        reason: str | None = None,
        content: str | None = None,
        tool_calls: Sequence[Any] = (),
    ) -> None:
        """What the model answered."""
        values: dict[str, AttributeValue | None] = {
            "gen_ai.response.model": model,
            "gen_ai.response.id": response_id,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.response.finish_reasons": (reason,) if reason else None,  # as the provider says
        }
        self._response.update({k: v for k, v in values.items() if v is not None})
        if self.capture != "no_content":
            self._content["gen_ai.output.messages"] = output_messages(content, tool_calls, reason)

    def _attributes(self) -> dict[str, AttributeValue]:
        if self._delegated:
            return {OPENINFERENCE_SPAN_KIND: "CHAIN"}
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": self.provider,
            "gen_ai.request.model": self.model,
            "gen_ai.request.stream": self.stream,
            OPENINFERENCE_SPAN_KIND: "LLM",
            **server_attributes(self.server),
            **self._response,
        }
        if self.stream and self._first_chunk_s is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = self._first_chunk_s
        return attributes
