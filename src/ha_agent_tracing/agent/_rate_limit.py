"""A per-client sliding-window rate limit, bounded in memory."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``limit`` requests per client in any ``window_s`` seconds."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, client: str) -> tuple[bool, float]:
        """Count one request; returns (allowed, seconds until the next one would be)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(client)
            if hits is None:
                hits = self._hits[client] = deque()
                while len(self._hits) > self._max_clients:
                    self._hits.popitem(last=False)
            self._hits.move_to_end(client)
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return False, max(hits[0] + self.window_s - now, 0.0)
            hits.append(now)
            return True, 0.0

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """The Retry-After value: whole seconds, at least 1."""
        return str(max(1, math.ceil(seconds)))
