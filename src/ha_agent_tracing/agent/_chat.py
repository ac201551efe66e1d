"""The chat flow, instrumented with every metric of the reference document.

One request: ``rate_limit_check`` → ``conversation_management`` →
``pending_preview_check`` → ``message_assembly`` (with ``context_refresh``
inside) → per model turn ``openai_api_call`` and, for the tools it asks for,
concurrent ``tool_execution`` → ``token_count_retrieval``.

Message text and tool arguments are not recorded unless
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for them (``span_only``,
``event_only``, ``span_and_event`` or ``true``); by default only their lengths
are. The GenAI semantic conventions (attributes, content in the parts format,
one LLM span per model call) come from ``ha_agent_tracing.genai``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI
from opentelemetry import trace
from pydantic import BaseModel

from ha_agent_tracing._tracker import Metric, PerformanceTracker
from ha_agent_tracing.agent._context import HomeContext, assemble_messages
from ha_agent_tracing.agent._conversations import Conversation, ConversationStore
from ha_agent_tracing.agent._home import Home
from ha_agent_tracing.agent._rate_limit import RateLimiter
from ha_agent_tracing.agent._settings import AgentSettings
from ha_agent_tracing.agent._tokens import get_counter
from ha_agent_tracing.agent._tools import TOOL_SCHEMAS, ToolCall, ToolError, run_tool
from ha_agent_tracing.genai import ChatCall, record_content, system_instructions, tool_attributes

__all__ = ["ChatResult", "ChatService", "ModelError", "RateLimited"]

logger = logging.getLogger("ha_agent_tracing.agent")

_CONFIRMATION = re.compile(r"^\s*(yes|confirm|create it|do it|ok)\b", re.IGNORECASE)


class RateLimited(Exception):
    """The client is over its rate limit; ``retry_after_s`` says when to come back."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class ModelError(Exception):
    """The model could not be reached or refused the request."""


class ChatResult(BaseModel):
    """What the chat endpoint answers (also its HTTP response model)."""

    conversation_id: str
    message: str
    tool_calls: list[dict[str, Any]]
    iterations: int
    tokens_used: int
    response_time_ms: float


@dataclass
class _Turn:
    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str | None
    model: str | None = None
    response_id: str | None = None
    usage: dict[str, int] = field(default_factory=dict[str, int])


class ChatService:
    """Runs chat requests against the model and the home, recording each step."""

    def __init__(
        self,
        settings: AgentSettings,
        tracker: PerformanceTracker,
        home: Home,
        client: AsyncOpenAI,
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.home = home
        self.client = client
        self.conversations = ConversationStore()
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_limit_window_s)
        self.context = HomeContext(home, tracker, settings.context_ttl_s)
        self.counter = get_counter()

    async def chat(self, message: str, conversation_id: str | None, client_id: str) -> ChatResult:
        """Answer one chat message; raises :class:`RateLimited` or :class:`ModelError`."""
        if trace.get_current_span().is_recording():
            self.tracker.set_operation("chat_request")  # the server span is the report's root
            return await self._chat(message, conversation_id, client_id)
        # No server span (its instrumentation is off or excludes this URL): the request
        # gets a root of its own, so its metrics still make one report.
        with self.tracker.operation("chat_request"):
            return await self._chat(message, conversation_id, client_id)

    async def _chat(self, message: str, conversation_id: str | None, client_id: str) -> ChatResult:
        started = time.perf_counter()
        track = self.tracker.track

        with track("rate_limit_check") as metric:
            allowed, retry_after = self.limiter.check(client_id)
            metric.update(exceeded=not allowed, limit=self.limiter.limit)
        if not allowed:
            raise RateLimited(retry_after)

        with track("conversation_management") as metric:
            conversation, is_new = self.conversations.get_or_create(conversation_id)
            metric.update(
                conversation_id=conversation.id, is_new=is_new, message_count=len(conversation.messages)
            )

        with track("pending_preview_check") as metric:
            pending = conversation.pending_preview
            confirmed = self._check_pending_preview(conversation, message)
            metric.update(has_pending_preview=pending is not None, confirmed=confirmed)

        with track("message_assembly") as metric:
            system = await self.context.system_message()
            if confirmed and pending is not None:
                alias = json.dumps(pending["alias"])
                system += f"\n\nThe user confirmed the draft automation {alias}; it is now active."
            elif conversation.pending_preview is not None:
                system += (
                    f"\n\nA draft automation awaits confirmation: {json.dumps(conversation.pending_preview)}"
                )
            assembly = assemble_messages(
                system, conversation.messages, message, self.settings.history_token_budget, self.counter
            )
            metric.update(
                system_message_length=len(system),
                message_count=len(assembly.messages),
                token_count=assembly.token_count,
                token_count_method=self.counter.method,
                truncated_messages=assembly.truncated,
                message_length=len(message),
            )
            record_content(
                metric.span,
                self.settings.capture_message_content,
                {"gen_ai.system_instructions": system_instructions(system)},
            )

        messages = assembly.messages
        usages: list[dict[str, int]] = []
        summaries: list[dict[str, Any]] = []
        answer = ""
        iteration = 0
        for iteration in range(1, self.settings.max_iterations + 1):
            turn = await self._call_model(messages, iteration)
            usages.append(turn.usage)
            if not turn.tool_calls:
                answer = turn.content or ""
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": turn.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in turn.tool_calls
                    ],
                }
            )
            if self.settings.parallel_tools:
                results = await asyncio.gather(
                    *(self._run_tool(conversation, call) for call in turn.tool_calls)
                )
            else:  # HA_AGENT_PARALLEL_TOOLS=false: one after another, to measure what concurrency saves
                results = [await self._run_tool(conversation, call) for call in turn.tool_calls]
            for call, (content, success) in zip(turn.tool_calls, results, strict=True):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
                summaries.append({"id": call.id, "name": call.name, "success": success})
        else:
            answer = f"I stopped after {self.settings.max_iterations} steps without a final answer."

        with track("token_count_retrieval") as metric:
            prompt = sum(u.get("prompt_tokens", 0) for u in usages)
            completion = sum(u.get("completion_tokens", 0) for u in usages)
            metric.update(
                tokens_used=prompt + completion,
                prompt_tokens=prompt,
                completion_tokens=completion,
                iterations=iteration,
            )

        conversation.messages.append({"role": "user", "content": message})
        conversation.messages.append({"role": "assistant", "content": answer})
        return ChatResult(
            conversation_id=conversation.id,
            message=answer,
            tool_calls=summaries,
            iterations=iteration,
            tokens_used=prompt + completion,
            response_time_ms=(time.perf_counter() - started) * 1000,
        )

    def _check_pending_preview(self, conversation: Conversation, message: str) -> bool:
        if conversation.pending_preview is None or not _CONFIRMATION.match(message):
            return False
        logger.info("automation %r confirmed", conversation.pending_preview.get("alias"))
        conversation.pending_preview = None
        return True

    async def _call_model(self, messages: list[dict[str, Any]], iteration: int) -> _Turn:
        call = ChatCall(
            model=self.settings.model,
            server=self.client.base_url,
            stream=self.settings.stream,
            capture=self.settings.capture_message_content,
        )
        with (
            self.tracker.track(
                "openai_api_call",
                iteration=iteration,
                message_count=len(messages),
                tool_count=len(TOOL_SCHEMAS),
                stream=self.settings.stream,
            ) as metric,
            call.on(metric.span),
        ):
            call.request(messages, TOOL_SCHEMAS)
            try:
                stream = self.settings.stream
                turn = await (self._stream_turn(messages, metric, call) if stream else self._turn(messages))
            except Exception as exc:
                raise ModelError(f"the model call failed: {type(exc).__name__}") from exc
            prompt = turn.usage.get("prompt_tokens", 0)
            completion = turn.usage.get("completion_tokens", 0)
            metric.update(
                tokens_used=prompt + completion,
                prompt_tokens=prompt,
                completion_tokens=completion,
                has_tool_calls=bool(turn.tool_calls),
                tool_calls_count=len(turn.tool_calls),
            )
            call.response(
                model=turn.model,
                response_id=turn.response_id,
                input_tokens=prompt,
                output_tokens=completion,
                reason=turn.finish_reason,
                content=turn.content,
                tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in turn.tool_calls],
            )
            return turn

    async def _turn(self, messages: list[dict[str, Any]]) -> _Turn:
        response = await self.client.chat.completions.create(
            model=self.settings.model,
            messages=messages,  # type: ignore[arg-type]
            tools=TOOL_SCHEMAS,  # type: ignore[arg-type]
        )
        choice = response.choices[0]
        calls = [
            ToolCall(c.id, c.function.name, c.function.arguments)
            for c in choice.message.tool_calls or ()
            if c.type == "function"
        ]
        usage = response.usage
        return _Turn(
            content=choice.message.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            model=response.model,
            response_id=response.id,
            usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
            if usage
            else {},
        )

    async def _stream_turn(self, messages: list[dict[str, Any]], metric: Metric, llm: ChatCall) -> _Turn:
        started = time.perf_counter()
        stream = await self.client.chat.completions.create(
            model=self.settings.model,
            messages=messages,  # type: ignore[arg-type]
            tools=TOOL_SCHEMAS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        content: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        turn = _Turn(None, [], None)
        chunks = 0
        async for chunk in stream:
            if chunks == 0:
                metric.set("time_to_first_chunk_ms", (time.perf_counter() - started) * 1000)
                llm.first_chunk()
            chunks += 1
            turn.model, turn.response_id = chunk.model, chunk.id
            if chunk.usage is not None:
                turn.usage = {
                    "prompt_tokens": chunk.usage.prompt_tokens,
                    "completion_tokens": chunk.usage.completion_tokens,
                }
            for choice in chunk.choices:
                if choice.delta.content:
                    content.append(choice.delta.content)
                for delta in choice.delta.tool_calls or ():
                    call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    if delta.id:
                        call["id"] = delta.id
                    if delta.function and delta.function.name:
                        call["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
                if choice.finish_reason:
                    turn.finish_reason = choice.finish_reason
        metric.set("chunk_count", chunks)
        turn.content = "".join(content) or None
        turn.tool_calls = [ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
        return turn

    async def _run_tool(self, conversation: Conversation, call: ToolCall) -> tuple[str, bool]:
        with self.tracker.track(
            "tool_execution",
            tool_name=call.name,
            arguments_length=len(call.arguments),
            **tool_attributes(call.name, call.id, TOOL_SCHEMAS),
        ) as metric:
            capture = self.settings.capture_message_content
            record_content(metric.span, capture, {"gen_ai.tool.call.arguments": call.arguments})
            success = False
            try:
                result = await run_tool(self.home, conversation, call)
                success = True
            except ToolError as exc:
                metric.record_error(exc)
                result = json.dumps({"error": str(exc)})
            except Exception as exc:
                metric.record_error(exc)
                logger.exception("tool %s failed", call.name)
                result = json.dumps({"error": f"the tool failed ({type(exc).__name__})"})
            if success and call.name == "call_service":
                self.context.invalidate()
            metric.update(success=success, result_length=len(result))
            record_content(metric.span, capture, {"gen_ai.tool.call.result": result})
            return result, success
