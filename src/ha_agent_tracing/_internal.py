"""Failures inside the telemetry itself: logged once, counted, never raised.

The third tier of this project's errors (see ``_settings`` for the first
two). A processor, exporter wrapper or tracker hook that fails records the
exception here and returns; the application carries on untouched.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["InternalErrors"]

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
