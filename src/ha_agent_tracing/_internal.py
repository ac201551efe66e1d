"""Failures inside the telemetry itself: logged once, counted, never raised.

The third tier of this project's errors (see ``_settings`` for the first
two). A processor, exporter wrapper or tracker hook that fails records the
exception here and returns; the application carries on untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["InternalErrors", "RateLimitedWarning"]

logger = logging.getLogger("ha_agent_tracing")


class InternalErrors:
    """Counts internal failures of one component; logs the first with its traceback."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        """How many failures were recorded."""
        return self._count

    def record(self, exc: BaseException) -> None:
        """Count ``exc``; log it in full the first time, at debug level after that."""
        with self._lock:
            self._count += 1
            first = self._count == 1
        if first:
            logger.error(
                "internal error in the %s; the application is not affected, later errors are only counted",
                self.component,
                exc_info=exc,
            )
        else:
            logger.debug("internal error in the %s", self.component, exc_info=exc)


class RateLimitedWarning:
    """A warning said at once the first time, then at most once per ``interval_s`` with a count.

    For conditions that can repeat thousands of times a second under load
    (dropped requests, say): the log says it happened and how often; the
    exact numbers live in the counters.
    """

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        """Log ``message`` now, or count it towards the next summary."""
        now = self._clock()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self._interval
        if suppressed:
            message += " (and %d more like it since the last warning)"
            args = (*args, suppressed)
        logger.warning(message, *args)
