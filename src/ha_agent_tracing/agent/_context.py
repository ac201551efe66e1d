"""The Home Assistant context (cached) and the assembly of the model's messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ha_agent_tracing._tracker import PerformanceTracker
from ha_agent_tracing.agent._exposed import Exposure
from ha_agent_tracing.agent._home import Home
from ha_agent_tracing.agent._tokens import TokenCounter, count_message_tokens

__all__ = ["Assembly", "HomeContext", "assemble_messages"]

_INSTRUCTIONS = (
    "You are the Home Assistant agent. Use the tools to read device states, call services and draft "
    "automations; never invent entity ids. Answer briefly.\n\nEntities:\n"
)


class HomeContext:
    """The system message describing the exposed entities, rebuilt at most every ``ttl_s`` seconds."""

    def __init__(
        self,
        home: Home,
        tracker: PerformanceTracker,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        exposure: Exposure | None = None,
    ) -> None:
        self._home = home
        self._exposure = exposure or Exposure()
        self._tracker = tracker
        self._ttl = ttl_s
        self._clock = clock
        self._cached: str | None = None
        self._built_at = 0.0
        self._lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        """Forget the cached context (devices changed state)."""
        self._cached = None

    async def system_message(self) -> str:
        """The cached context, or a fresh one; recorded as the ``context_refresh`` metric."""
        with self._tracker.track("context_refresh") as metric:
            if self._cached is not None and self._clock() - self._built_at < self._ttl:
                metric.set("cache_hit", True)
                return self._cached
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:  # one rebuild at a time; waiters reuse it
                if self._cached is not None and self._clock() - self._built_at < self._ttl:
                    metric.set("cache_hit", True)
                    return self._cached
                metric.set("cache_hit", False)
                try:
                    states = await self._home.states()
                except Exception as exc:  # noqa: BLE001 - an unreachable home degrades the answer, not the request
                    metric.record_error(exc)
                    return self._cached or _INSTRUCTIONS + "(Home Assistant is unreachable right now.)"
                exposed = self._exposure.filter(states)
                lines = [
                    f"- {s['entity_id']} ({s.get('attributes', {}).get('friendly_name', '')}): {s['state']}"
                    for s in exposed
                ]
                metric.update(entity_count=len(lines), hidden_entity_count=len(states) - len(exposed))
                self._cached = _INSTRUCTIONS + "\n".join(lines)
                self._built_at = self._clock()
                return self._cached


@dataclass
class Assembly:
    """The messages for the model, their token count and what was left out."""

    messages: list[dict[str, Any]]
    token_count: int
    truncated: int


def assemble_messages(
    system: str,
    history: list[dict[str, Any]],
    user_message: str,
    budget: int,
    counter: TokenCounter,
) -> Assembly:
    """System message, as much recent history as fits ``budget`` tokens, then the new message.

    The system message and the new message are always sent; history is cut
    from the oldest turn, so the model sees the most recent context.
    """
    head = [{"role": "system", "content": system}]
    tail = [{"role": "user", "content": user_message}]
    used = count_message_tokens(head + tail, counter)
    kept: list[dict[str, Any]] = []
    for message in reversed(history):
        cost = count_message_tokens([message], counter) - count_message_tokens([], counter)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    messages = head + kept + tail
    return Assembly(messages, count_message_tokens(messages, counter), len(history) - len(kept))
