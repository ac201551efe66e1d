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
from typing import Any

from openai import AsyncOpenAI
from opentelemetry import trace
from pydantic import BaseModel

from ha_agent_tracing._tracker import PerformanceTracker
from ha_agent_tracing.agent._context import HomeContext, assemble_messages
from ha_agent_tracing.agent._conversations import Conversation, ConversationStore
from ha_agent_tracing.agent._exposed import Exposure
from ha_agent_tracing.agent._home import Home, HomeError
from ha_agent_tracing.agent._model_call import ModelCallError, ModelTurn, call_model
from ha_agent_tracing.agent._rate_limit import RateLimiter
from ha_agent_tracing.agent._settings import AgentSettings
from ha_agent_tracing.agent._tokens import get_counter
from ha_agent_tracing.agent._tools import (
    TOOL_SCHEMAS,
    ToolCall,
    ToolError,
    Tools,
    describe_preview,
    execute_preview,
    run_tool,
)
from ha_agent_tracing.genai import ChatCall, record_content, system_instructions, tool_attributes

__all__ = ["ChatResult", "ChatService", "ModelError", "RateLimited"]

logger = logging.getLogger("ha_agent_tracing.agent")

_CONFIRMATION = re.compile(r"^\s*(yes|confirm|create it|do it|ok)\b", re.IGNORECASE)
_CANCELLATION = re.compile(r"^\s*(no|cancel|stop|don't|do not)\b", re.IGNORECASE)

_DEADLINE_GRACE_S = 0.25

ModelError = ModelCallError
"""The chat got no usable answer: ``status`` (429, 503, 502 or 504), ``retry_after_s``, a plain message."""


class RateLimited(Exception):
    """The client is over its rate limit; ``retry_after_s`` says when to come back."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class ChatResult(BaseModel):
    """What the chat endpoint answers (also its HTTP response model)."""

    conversation_id: str
    message: str
    tool_calls: list[dict[str, Any]]
    iterations: int
    tokens_used: int | None
    response_time_ms: float
    truncated: bool = False
    awaiting_confirmation: str | None = None
    """What the conversation's pending preview would do, while it waits for "confirm" (or "cancel")."""


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
        exposure = Exposure(settings.exposed_entities)
        self.tools = Tools(home, exposure, settings.confirm_domains)
        self.context = HomeContext(home, tracker, settings.context_ttl_s, exposure=exposure)
        self.counter = get_counter(settings.model)

    async def chat(self, message: str, conversation_id: str | None, client_id: str) -> ChatResult:
        """Answer one chat message; raises :class:`RateLimited` or :class:`ModelError`."""
        try:
            if trace.get_current_span().is_recording():
                self.tracker.set_operation("chat_request")  # the server span is the report's root
                return await self._chat(message, conversation_id, client_id)
            # No server span (its instrumentation is off or excludes this URL): the request
            # gets a root of its own, so its metrics still make one report.
            with self.tracker.operation("chat_request"):
                return await self._chat(message, conversation_id, client_id)
        except ModelError as exc:
            logger.warning(
                "chat request failed: %s (error.type=%s, attempts=%d, provider status=%s, request id=%s)",
                exc,
                exc.error_type,
                exc.attempts,
                exc.status_code,
                exc.request_id,
            )
            raise

    async def _chat(self, message: str, conversation_id: str | None, client_id: str) -> ChatResult:
        started = time.perf_counter()
        track = self.tracker.track

        with track("rate_limit_check") as metric:
            allowed, retry_after = self.limiter.check(client_id)
            metric.update(exceeded=not allowed, limit=self.limiter.limit)
        if not allowed:
            raise RateLimited(retry_after)

        timeout = self.settings.chat_timeout_s
        try:
            # Model calls end at the deadline on their own (and say so in the report); the grace
            # lets them, and still bounds a request held up elsewhere (a slow home, a slow tool).
            async with asyncio.timeout(timeout + _DEADLINE_GRACE_S):
                return await self._answer(message, conversation_id, started, time.monotonic() + timeout)
        except TimeoutError as exc:
            raise ModelError(
                f"The request did not finish within {timeout:.3g} s.", error_type="timeout", status=504
            ) from exc

    async def _answer(
        self, message: str, conversation_id: str | None, started: float, deadline: float
    ) -> ChatResult:
        track = self.tracker.track
        with track("conversation_management") as metric:
            conversation, is_new = self.conversations.get_or_create(conversation_id)
            metric.update(
                conversation_id=conversation.id, is_new=is_new, message_count=len(conversation.messages)
            )

        summaries: list[dict[str, Any]] = []
        with track("pending_preview_check") as metric:
            pending = conversation.pending_preview
            confirmed = pending is not None and bool(_CONFIRMATION.match(message))
            cancelled = pending is not None and not confirmed and bool(_CANCELLATION.match(message))
            metric.update(has_pending_preview=pending is not None, confirmed=confirmed, cancelled=cancelled)
            if cancelled:
                conversation.pending_preview = None
            outcome = ""
            if confirmed and pending is not None:
                conversation.pending_preview = None
                outcome, executed = await self._execute_preview(pending)
                metric.update(preview_kind=pending.get("kind"), executed=executed)
                if not executed:
                    metric.record_error(HomeError(outcome))
                summaries.append(
                    {"id": "confirmed_preview", "name": pending.get("kind"), "success": executed}
                )

        with track("message_assembly") as metric:
            system = await self.context.system_message()
            if confirmed and pending is not None:
                system += (
                    f"\n\nThe user confirmed: {describe_preview(pending)}. "
                    f"Home Assistant's outcome: {outcome}. Tell the user exactly this outcome."
                )
            elif cancelled and pending is not None:
                system += f"\n\nThe user cancelled: {describe_preview(pending)}. Nothing was done; say so."
            elif conversation.pending_preview is not None:
                waiting = conversation.pending_preview
                system += (
                    f"\n\nAwaiting the user's confirmation to {describe_preview(waiting)}: "
                    + json.dumps(waiting)
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
        turns: list[ModelTurn] = []
        answer = ""
        truncated = False
        iteration = 0
        for iteration in range(1, self.settings.max_iterations + 1):
            turn = await self._call_model(messages, iteration, deadline)
            turns.append(turn)
            if not turn.tool_calls:
                answer = turn.content or ""
                truncated = turn.finish_reason == "length"
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
            # Unknown usage stays unknown: one turn without it leaves the totals unknown, not low.
            known = all(t.tokens_used is not None for t in turns)
            prompt = sum(t.prompt_tokens or 0 for t in turns) if known else None
            completion = sum(t.completion_tokens or 0 for t in turns) if known else None
            total = prompt + completion if prompt is not None and completion is not None else None
            metric.update(
                tokens_used=total,
                prompt_tokens=prompt,
                completion_tokens=completion,
                usage_known=known,
                iterations=iteration,
            )

        conversation.messages.append({"role": "user", "content": message})
        conversation.messages.append({"role": "assistant", "content": answer})
        return ChatResult(
            conversation_id=conversation.id,
            message=answer,
            tool_calls=summaries,
            iterations=iteration,
            tokens_used=total,
            response_time_ms=(time.perf_counter() - started) * 1000,
            truncated=truncated,
            awaiting_confirmation=(
                describe_preview(conversation.pending_preview) if conversation.pending_preview else None
            ),
        )

    async def _execute_preview(self, preview: dict[str, Any]) -> tuple[str, bool]:
        """Carry out a confirmed preview in Home Assistant: (what happened, whether it worked)."""
        try:
            outcome = await execute_preview(self.tools, preview)
        except HomeError as exc:
            logger.info("confirmed preview failed: %s", exc)
            return f"it failed: {exc}", False
        finally:
            self.context.invalidate()
        logger.info("confirmed preview carried out: %s", outcome)
        return outcome, True

    async def _call_model(self, messages: list[dict[str, Any]], iteration: int, deadline: float) -> ModelTurn:
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
                turn = await call_model(
                    self.client,
                    {"model": self.settings.model, "messages": messages, "tools": TOOL_SCHEMAS},
                    stream=self.settings.stream,
                    timeout_s=self.settings.openai_timeout_s,
                    max_retries=self.settings.openai_max_retries,
                    deadline=deadline,
                    on_first_chunk=call.first_chunk,
                )
                if turn.finish_reason == "length" and turn.tool_calls:
                    # Arguments cut off at the token limit: never act on them.
                    raise ModelCallError(
                        "The model's answer was cut off at its token limit.",
                        error_type="length",
                        attempts=turn.attempts,
                        status_code=turn.status_code,
                        request_id=turn.request_id,
                    )
            except ModelCallError as exc:
                metric.update(
                    attempts=exc.attempts,
                    provider_request_id=exc.request_id,
                    retry_after_s=exc.retry_after_s,
                    **{"error.type": exc.error_type, "http.response.status_code": exc.status_code},
                )
                raise
            metric.update(
                attempts=turn.attempts,
                provider_request_id=turn.request_id,
                tokens_used=turn.tokens_used,
                prompt_tokens=turn.prompt_tokens,
                completion_tokens=turn.completion_tokens,
                has_tool_calls=bool(turn.tool_calls),
                tool_calls_count=len(turn.tool_calls),
                output_truncated=turn.finish_reason == "length",
                chunk_count=turn.chunk_count,
                time_to_first_chunk_ms=turn.time_to_first_chunk_ms,
                **{"http.response.status_code": turn.status_code},
            )
            call.response(
                model=turn.model,
                response_id=turn.response_id,
                input_tokens=turn.prompt_tokens,
                output_tokens=turn.completion_tokens,
                reason=turn.finish_reason,
                content=turn.content,
                tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in turn.tool_calls],
            )
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
                result = await run_tool(self.tools, conversation, call)
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
