"""Conversations kept in memory, bounded, with their pending automation preview."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONVERSATION_ID", "Conversation", "ConversationStore"]

CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Conversation:
    """One conversation: its id, its user/assistant turns, a pending preview."""

    id: str
    messages: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    pending_preview: dict[str, Any] | None = None
    updated: float = field(default_factory=time.monotonic)


class ConversationStore:
    """The last ``max_conversations`` conversations, least recently used dropped first."""

    def __init__(self, max_conversations: int = 1000) -> None:
        self._max = max_conversations
        self._lock = threading.Lock()
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()

    def get_or_create(self, conversation_id: str | None) -> tuple[Conversation, bool]:
        """The conversation with this id, or a new one; and whether it is new."""
        with self._lock:
            if conversation_id is not None and conversation_id in self._conversations:
                self._conversations.move_to_end(conversation_id)
                conversation = self._conversations[conversation_id]
                conversation.updated = time.monotonic()
                return conversation, False
            conversation = Conversation(conversation_id or f"conv_{secrets.token_hex(8)}")
            self._conversations[conversation.id] = conversation
            while len(self._conversations) > self._max:
                self._conversations.popitem(last=False)
            return conversation, True

    def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with this id, if it is still kept; reading it does not refresh it."""
        with self._lock:
            return self._conversations.get(conversation_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._conversations)
