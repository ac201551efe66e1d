"""Log lines that outside input can multiply, limited: one of a kind per minute, the rest counted.

OpenTelemetry's propagators log a warning for every malformed entry of an
incoming header: one garbage ``baggage`` header of 180 entries is 180 lines,
and a client can send it with every request. :class:`RepeatedLines` lets the
first record of each kind (logger, level, message template) through, drops
the repeats for ``window_s`` seconds and counts them; the next line of that
kind after the window says how many were left out. ``configure_tracing``
installs it on the propagators' loggers and ``shutdown_tracing`` removes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

__all__ = ["PROPAGATOR_LOGGERS", "RepeatedLines"]

PROPAGATOR_LOGGERS = (
    "opentelemetry.baggage.propagation",
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.trace.span",  # TraceState.from_header: one line per bad tracestate pair
)
"""Loggers that write one line per malformed piece of an incoming request's headers."""


class RepeatedLines(logging.Filter):
    """Passes the first record of each kind per ``window_s`` seconds; counts the others in ``suppressed``."""

    def __init__(self, window_s: float = 60.0, max_kinds: int = 256) -> None:
        super().__init__()
        self.window_s = window_s
        self.max_kinds = max_kinds
        self.suppressed = 0
        self._lock = threading.Lock()
        # kind -> (when its window started, records of it left out since)
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._loggers: list[logging.Logger] = []

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is logged."""
        kind = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.window_s:
                self._kinds[kind] = (seen[0], seen[1] + 1)
                self.suppressed += 1
                return False
            if seen is None and len(self._kinds) >= self.max_kinds:
                self._kinds.pop(next(iter(self._kinds)))  # the oldest kind; memory stays bounded
            self._kinds[kind] = (now, 0)
        left_out = seen[1] if seen is not None else 0
        if left_out and isinstance(record.msg, str):
            record.msg += f" ({left_out} more like this in the last {self.window_s:g} s were not logged)"
        return True

    def install(self, names: Iterable[str] = PROPAGATOR_LOGGERS) -> RepeatedLines:
        """Attach to the loggers ``names``."""
        for name in names:
            target = logging.getLogger(name)
            target.addFilter(self)
            self._loggers.append(target)
        return self

    def remove(self) -> None:
        """Detach from every logger :meth:`install` attached to."""
        for target in self._loggers:
            target.removeFilter(self)
        self._loggers.clear()
