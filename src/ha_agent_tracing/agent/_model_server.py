"""An embedded, deterministic, OpenAI-compatible chat model for offline runs.

``POST /v1/chat/completions`` answers like the OpenAI API: tool calls (several
in one turn when the user asks for several things), token usage, and
server-sent-event streaming with ``stream_options.include_usage``. Answers
depend only on the request, so tests can predict them:

* "turn off the kitchen light" → ``call_service(light, turn_off, light.kitchen)``
* "what's the temperature" → ``get_entity_states(domain=sensor)``
* "... and ..." → one tool call per clause, in one turn
* "when the sun sets turn on the porch light" → ``preview_automation`` with
  Home Assistant triggers and actions (sun, ``at 7:30``)
* after tool results → a sentence per result, errors included
* after the user confirmed a preview → the outcome the service put in the
  system message, word for word

Entities are resolved from the entity list in the system message, the way a
real model reads its context. ``latency_ms`` adds a fixed delay per call.
Every answer carries an ``x-request-id`` header, as the OpenAI API's do.

:class:`ModelFaults` makes it answer the way a provider sometimes does and a
chaos server such as llmock cannot: no ``choices``, no ``usage``, or a
``finish_reason`` of ``length`` (the answer cut at its token limit).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Request

# The class itself, not `fastapi.FastAPI`: under `opentelemetry-instrument` that name is
# replaced by an instrumented subclass, and the model stands in for an outside API.
from fastapi.applications import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from ha_agent_tracing.agent._tokens import count_message_tokens, get_counter
from ha_agent_tracing.telemetry._instrumentation import fastapi_native_telemetry_off

__all__ = ["ModelFaults", "create_model_app", "decide"]

Fault = Literal["empty_choices", "no_usage", "length"]


class ModelFaults:
    """Faults the embedded model injects into its next answers, in order (thread-safe)."""

    KINDS: tuple[Fault, ...] = ("empty_choices", "no_usage", "length")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def add(self, fault: Fault, times: int = 1) -> ModelFaults:
        """Answer the next ``times`` requests with ``fault``."""
        if fault not in self.KINDS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(self.KINDS)}")
        with self._lock:
            self._queue.extend(fault for _ in range(times))
        return self

    def take(self) -> Fault | None:
        """The fault for this request, if one is queued."""
        with self._lock:
            return self._queue.pop(0) if self._queue else None


_ENTITY_LINE = re.compile(r"^- (?P<id>[a-z_]+\.[a-z0-9_]+) \((?P<name>[^)]*)\)", re.MULTILINE)
_SERVICE_WORDS = {
    "turn on": "turn_on",
    "switch on": "turn_on",
    "turn off": "turn_off",
    "switch off": "turn_off",
    "toggle": "toggle",
    "open": "open_cover",
    "close": "close_cover",
    "unlock": "unlock",
    "lock": "lock",
}
_DOMAIN_WORDS = {"light": "light", "lamp": "light", "fan": "fan", "door": "cover", "garage": "cover"}


def _entities(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    return [(m["id"], m["name"].lower()) for m in _ENTITY_LINE.finditer(system)]


def _resolve(clause: str, entities: list[tuple[str, str]], service: str) -> str:
    """The entity a clause names: by friendly name, else a guess from 'the <name> <device>'."""
    words = set(re.findall(r"[a-z0-9]+", clause))
    wanted_domains = (
        {"lock"}
        if service in ("lock", "unlock")
        else {"cover"}
        if service in ("open_cover", "close_cover")
        else set()
    )
    best_id, best_len = "", 0
    for entity_id, name in entities:
        if wanted_domains and entity_id.split(".", 1)[0] not in wanted_domains:
            continue
        # The longest friendly name whose words all appear wins ("living room light" over "light").
        if name and set(name.split()) <= words and len(name) > best_len:
            best_id, best_len = entity_id, len(name)
    if best_id:
        return best_id
    match = re.search(r"the ([a-z0-9 ]+?) (light|lamp|fan|door)\b", clause)
    if match:
        return f"{_DOMAIN_WORDS[match.group(2)]}.{match.group(1).strip().replace(' ', '_')}"
    return "light.unknown"


def _clause_call(clause: str, entities: list[tuple[str, str]]) -> tuple[str, dict[str, Any]] | None:
    text = clause.lower().strip()
    if re.search(r"\b(when|every|whenever|at sunset|at sunrise|at \d{1,2}(:\d\d)?|automation)\b", text):
        return "preview_automation", _automation(clause, entities)
    for words, service in _SERVICE_WORDS.items():
        if re.search(rf"\b{words}\b", text):
            entity_id = _resolve(text, entities, service)
            return "call_service", {
                "domain": entity_id.split(".", 1)[0],
                "service": service,
                "entity_id": entity_id,
            }
    if re.search(r"\b(temperature|warm|cold|humid)", text):
        return "get_entity_states", {"domain": "sensor"}
    if re.search(r"\b(lights?|lamps?)\b", text) and re.search(r"\b(which|what|status|are|is|any)\b", text):
        return "get_entity_states", {"domain": "light"}
    if re.search(r"\b(status|state|devices|everything)\b", text):
        return "get_entity_states", {}
    return None


def _automation(clause: str, entities: list[tuple[str, str]]) -> dict[str, Any]:
    """A Home Assistant automation config from 'when the sun sets, turn on the porch light'."""
    text = clause.lower()
    triggers: list[dict[str, Any]] = []
    if re.search(r"\bsun ?sets?\b|\bsunset\b", text):
        triggers.append({"trigger": "sun", "event": "sunset"})
    elif re.search(r"\bsun ?rises?\b|\bsunrise\b", text):
        triggers.append({"trigger": "sun", "event": "sunrise"})
    elif at := re.search(r"\bat (\d{1,2})(?::(\d{2}))?\b", text):
        triggers.append({"trigger": "time", "at": f"{int(at.group(1)):02d}:{int(at.group(2) or 0):02d}:00"})
    actions: list[dict[str, Any]] = []
    action = re.search(r"((turn|switch) (on|off) .+)$", text)
    if action and (call := _clause_call(action.group(1), entities)) and call[0] == "call_service":
        args = call[1]
        actions.append(
            {"action": f"{args['domain']}.{args['service']}", "target": {"entity_id": args["entity_id"]}}
        )
    return {
        "alias": clause.strip()[:60],
        "description": clause.strip(),
        "triggers": triggers,
        "actions": actions,
    }


def _describe_result(name: str, content: str) -> str:
    try:
        result = json.loads(content)
    except json.JSONDecodeError:
        return f"The {name} tool answered something I could not read."
    if isinstance(result, dict) and "error" in result:
        return f"I could not do that: {result['error']}."
    if isinstance(result, dict) and "changed" in result:
        return " ".join(
            f"{s.get('friendly_name', s['entity_id'])} is now {s['state']}." for s in result["changed"]
        )
    if isinstance(result, dict) and "preview" in result:
        return f"I am ready to {result.get('summary', 'do that')}. Reply 'confirm' to go ahead."
    if isinstance(result, list):
        parts = [
            f"{s.get('friendly_name', s['entity_id'])} is {s['state']}{s.get('unit_of_measurement', '')}"
            for s in result
        ]
        return ("; ".join(parts) + ".") if parts else "I found no matching devices."
    return "Done."


def decide(messages: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    """The model's answer: text, or the tool calls to make (name, arguments)."""
    if not messages:
        return "Hello! How can I help with your home?", []
    last = messages[-1]
    if last.get("role") == "tool":
        names: dict[str, str] = {}
        for message in messages:
            for call in message.get("tool_calls") or ():
                names[call["id"]] = call["function"]["name"]
        results: list[str] = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(
                _describe_result(names.get(message.get("tool_call_id", ""), "tool"), message["content"])
            )
        return " ".join(reversed(results)), []
    text = str(last.get("content") or "")
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    # The service decides what counts as a confirmation and carries it out; the context says how it went.
    confirmed = re.search(
        r"The user confirmed: (.+?)\. Home Assistant's outcome: (.+?)\. Tell the user", system
    )
    if confirmed:
        what, outcome = confirmed.groups()
        if outcome.startswith("it failed"):
            return f"I could not {what}: {outcome.removeprefix('it failed: ')}.", []
        return f"Confirmed: {what}. Home Assistant: {outcome}.", []
    entities = _entities(messages)
    calls = [call for clause in re.split(r"\band\b|;", text) if (call := _clause_call(clause, entities))]
    if calls:
        return None, calls
    return (
        "I can tell you the state of your devices, switch things on and off, and draft automations. "
        "Try 'turn on the kitchen light'.",
        [],
    )


def _call_id(messages: list[dict[str, Any]], index: int) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
    return f"call_{digest[:16]}_{index}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def create_model_app(latency_ms: int = 25, faults: ModelFaults | None = None) -> FastAPI:
    """The embedded model as an ASGI app (serve it with uvicorn); ``faults`` to inject failures."""
    # A stand-in for the OpenAI API, an outside service: it makes no spans of its own.
    app = FastAPI(
        title="embedded model",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **fastapi_native_telemetry_off(),
    )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "embedded"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _error(400, "'messages' must be a list of message objects")
        model = str(body.get("model") or "gpt-4o-mini")
        counter = get_counter(model)
        tools = body.get("tools") or []
        fault = faults.take() if faults is not None else None
        headers = {"x-request-id": f"req_{secrets.token_hex(12)}"}
        content, calls = decide(messages)
        tool_calls = [
            {
                "id": _call_id(messages, i),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(calls)
        ]
        prompt_tokens = count_message_tokens(messages, counter) + (
            counter.count(json.dumps(tools)) if tools else 0
        )
        completion_tokens = counter.count(content or "") + sum(
            counter.count(c["function"]["name"]) + counter.count(c["function"]["arguments"])
            for c in tool_calls
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        finish = "tool_calls" if tool_calls else "stop"
        if fault == "length":  # cut at the token limit: half the text, half of each tool call's arguments
            finish = "length"
            content = content[: len(content) // 2] if content else content
            for call in tool_calls:
                arguments = call["function"]["arguments"]
                call["function"]["arguments"] = arguments[: len(arguments) // 2]
        ident = "chatcmpl-" + _call_id(messages, len(calls))[5:21]
        created = int(time.time())
        response_model = f"{model}-embedded"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream(
                    ident,
                    created,
                    response_model,
                    content,
                    tool_calls,
                    finish,
                    None if fault == "no_usage" else usage,
                    include_usage,
                    latency_ms,
                    no_choices=fault == "empty_choices",
                ),
                media_type="text/event-stream",
                headers=headers,
            )
        await asyncio.sleep(latency_ms / 1000)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        answer: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": response_model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }
        if fault == "empty_choices":
            answer["choices"] = []
        if fault == "no_usage":
            del answer["usage"]
        return JSONResponse(answer, headers=headers)

    return app


async def _stream(
    ident: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, int] | None,
    include_usage: bool,
    latency_ms: int,
    *,
    no_choices: bool = False,
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": []
            if no_choices
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if include_usage:
            payload["usage"] = None
        return f"data: {json.dumps(payload)}\n\n"

    await asyncio.sleep(latency_ms / 2000)
    yield chunk({"role": "assistant", "content": ""})
    pieces = re.findall(r"\S+\s*", content or "")
    for piece in pieces:
        await asyncio.sleep(latency_ms / 2000 / max(len(pieces), 1))
        yield chunk({"content": piece})
    for index, call in enumerate(tool_calls):
        start = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [start]})
        arguments = call["function"]["arguments"]
        for offset in range(0, len(arguments), 16):
            yield chunk(
                {"tool_calls": [{"index": index, "function": {"arguments": arguments[offset : offset + 16]}}]}
            )
    yield chunk({}, finish)
    if include_usage and usage is not None:
        final = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"
