"""One model call that fails the way real providers fail, within a time budget.

:func:`call_model` sends one chat completion request (plain or streamed) and
retries it itself — the openai client's own retries are off — so that:

* the whole call, retries and ``Retry-After`` waits included, ends within
  ``timeout_s`` (and within the chat request's deadline): a wait that would
  overrun the budget is not made;
* 408, 409, 429, 5xx and connection failures are retried at most
  ``max_retries`` times, after the provider's ``Retry-After`` (or
  ``retry-after-ms``) or a short exponential backoff; other statuses are not;
* a streamed answer counts only if it ends with a finish reason: a stream that
  stops early, a chunk that is not JSON, a dropped connection or an answer
  with no choices is a :class:`ModelCallError`, never a (partial) answer;
* every outcome carries the attempts made, the provider's last status code
  and request id, and a low-cardinality ``error.type`` (the GenAI semantic
  conventions' attribute): the HTTP status (``"429"``), or ``timeout``,
  ``connection_error``, ``truncated_stream``, ``malformed_chunk``,
  ``empty_choices``, ``provider_error``.

Usage the provider did not report stays unknown (``None``), never 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

from ha_agent_tracing.agent._tools import ToolCall

__all__ = ["ModelCallError", "ModelTurn", "call_model"]

_RETRYABLE = frozenset({408, 409, 429})
_BACKOFF_S = 0.25
_BACKOFF_MAX_S = 4.0


@dataclass
class ModelTurn:
    """What one model call produced, and how it went."""

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list[ToolCall])
    finish_reason: str | None = None
    model: str | None = None
    response_id: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 0
    status_code: int | None = None
    request_id: str | None = None
    chunk_count: int | None = None
    time_to_first_chunk_ms: float | None = None

    @property
    def tokens_used(self) -> int | None:
        """Prompt plus completion tokens; ``None`` when the provider did not say."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


class ModelCallError(Exception):
    """A model call that gave no usable answer; ``str()`` is a plain sentence for the user.

    ``status`` is what the chat endpoint answers: 429 or 503 (with
    ``retry_after_s``) when the provider is rate-limiting or overloaded, 504
    when the time budget ran out, 502 otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        status: int = 502,
        retry_after_s: float | None = None,
        attempts: int = 1,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        self.status_code = status_code
        self.request_id = request_id


class _StreamFault(Exception):
    """An answer that arrived (status 200) but cannot be used."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status_code: int | None = None
        self.request_id: str | None = None


def _retry_after(headers: Any) -> float | None:
    """The provider's ``retry-after-ms`` or ``retry-after`` (seconds), if it sent a usable one."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name) if headers is not None else None
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue  # an HTTP date: rare from model providers; fall back to backoff
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _backoff(attempt: int) -> float:
    return min(_BACKOFF_MAX_S, _BACKOFF_S * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _status_error(exc: openai.APIStatusError, attempts: int, retry_after: float | None) -> ModelCallError:
    status = exc.status_code
    common: dict[str, Any] = {
        "error_type": str(status),
        "attempts": attempts,
        "status_code": status,
        "request_id": exc.request_id,
    }
    if status == 429:
        return ModelCallError(
            "The model provider is rate-limiting requests; try again later.",
            status=429,
            retry_after_s=retry_after if retry_after is not None else 1.0,
            **common,
        )
    if status == 503:
        return ModelCallError(
            "The model provider is overloaded; try again later.",
            status=503,
            retry_after_s=retry_after if retry_after is not None else 1.0,
            **common,
        )
    if status >= 500:
        return ModelCallError(f"The model provider failed (HTTP {status}).", **common)
    return ModelCallError(f"The model provider refused the request (HTTP {status}).", **common)


async def call_model(
    client: AsyncOpenAI,
    request: dict[str, Any],
    *,
    stream: bool,
    timeout_s: float,
    max_retries: int,
    deadline: float | None = None,
    on_first_chunk: Callable[[], None] | None = None,
) -> ModelTurn:
    """One chat completion within ``timeout_s`` (and before ``deadline``, a ``time.monotonic()``).

    ``on_first_chunk`` is called when a streamed answer's first chunk arrives.
    """
    started = time.monotonic()
    end = started + timeout_s
    if deadline is not None:
        end = min(end, deadline)
    attempt = 0
    while True:
        attempt += 1
        remaining = end - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                turn = await _attempt(client, request, stream, remaining, on_first_chunk)
        except (TimeoutError, openai.APITimeoutError) as exc:
            by_deadline = deadline is not None and deadline < started + timeout_s
            raise ModelCallError(
                "The model did not answer before the request's deadline."
                if by_deadline
                else f"The model did not answer within {timeout_s:.3g} s.",
                error_type="timeout",
                status=504,
                attempts=attempt,
            ) from exc
        except openai.APIStatusError as exc:
            retry_after = _retry_after(exc.response.headers)
            retryable = exc.status_code in _RETRYABLE or exc.status_code >= 500
            wait = retry_after if retry_after is not None else _backoff(attempt)
            if retryable and attempt <= max_retries and time.monotonic() + wait < end:
                await asyncio.sleep(wait)
                continue
            raise _status_error(exc, attempt, retry_after) from exc
        except openai.APIConnectionError as exc:
            wait = _backoff(attempt)
            if attempt <= max_retries and time.monotonic() + wait < end:
                await asyncio.sleep(wait)
                continue
            raise ModelCallError(
                "The model provider could not be reached.", error_type="connection_error", attempts=attempt
            ) from exc
        except _StreamFault as exc:
            raise ModelCallError(
                f"The model's answer broke off ({exc}).",
                error_type=exc.error_type,
                attempts=attempt,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        turn.attempts = attempt
        return turn


async def _attempt(
    client: AsyncOpenAI,
    request: dict[str, Any],
    stream: bool,
    timeout_s: float,
    on_first_chunk: Callable[[], None] | None,
) -> ModelTurn:
    if stream:
        return await _streamed(client, request, timeout_s, on_first_chunk)
    raw = await client.chat.completions.with_raw_response.create(**request, timeout=timeout_s)
    response = raw.parse()
    turn = ModelTurn(status_code=raw.status_code, request_id=raw.request_id)
    if not response.choices:
        fault = _StreamFault("empty_choices", "the answer had no choices")
        fault.status_code, fault.request_id = raw.status_code, raw.request_id
        raise fault
    choice = response.choices[0]
    turn.content = choice.message.content
    turn.tool_calls = [
        ToolCall(c.id, c.function.name, c.function.arguments)
        for c in choice.message.tool_calls or ()
        if c.type == "function"
    ]
    turn.finish_reason = choice.finish_reason
    turn.model, turn.response_id = response.model, response.id
    if response.usage is not None:
        turn.prompt_tokens = response.usage.prompt_tokens
        turn.completion_tokens = response.usage.completion_tokens
    return turn


async def _streamed(
    client: AsyncOpenAI, request: dict[str, Any], timeout_s: float, on_first_chunk: Callable[[], None] | None
) -> ModelTurn:
    started = time.perf_counter()
    raw = await client.chat.completions.with_raw_response.create(
        **request, stream=True, stream_options={"include_usage": True}, timeout=timeout_s
    )
    turn = ModelTurn(status_code=raw.status_code, request_id=raw.request_id, chunk_count=0)
    try:
        return await _read_stream(raw.parse(), turn, started, on_first_chunk)
    except _StreamFault as fault:
        fault.status_code, fault.request_id = turn.status_code, turn.request_id
        raise


async def _read_stream(
    stream: Any, turn: ModelTurn, started: float, on_first_chunk: Callable[[], None] | None
) -> ModelTurn:
    content: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    saw_choice = False
    try:
        async for chunk in stream:
            if turn.chunk_count == 0:
                turn.time_to_first_chunk_ms = (time.perf_counter() - started) * 1000
                if on_first_chunk is not None:
                    on_first_chunk()
            turn.chunk_count = (turn.chunk_count or 0) + 1
            turn.model, turn.response_id = chunk.model, chunk.id
            if chunk.usage is not None:
                turn.prompt_tokens = chunk.usage.prompt_tokens
                turn.completion_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                saw_choice = True
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
    except json.JSONDecodeError as exc:
        raise _StreamFault("malformed_chunk", "a streamed chunk was not valid JSON") from exc
    except (openai.APITimeoutError, openai.APIStatusError, TimeoutError, asyncio.CancelledError):
        raise
    except openai.APIConnectionError as exc:
        raise _StreamFault("connection_error", "the connection dropped mid-stream") from exc
    except openai.APIError as exc:  # an error event inside the stream
        raise _StreamFault("provider_error", "the provider sent an error in the stream") from exc
    except Exception as exc:  # the transport dropped the stream (httpx2 errors and the like)
        raise _StreamFault("connection_error", "the connection dropped mid-stream") from exc
    finally:
        await stream.close()
    if not saw_choice:
        raise _StreamFault("empty_choices", "the stream had no choices")
    if turn.finish_reason is None:
        raise _StreamFault("truncated_stream", "the stream ended without a finish reason")
    turn.content = "".join(content) or None
    turn.tool_calls = [ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
    return turn
