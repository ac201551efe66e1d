"""Flushing at an ASGI app's shutdown: what a server that dies by its signal still runs.

uvicorn answers SIGTERM with a graceful shutdown, the app's lifespan included,
and then re-raises the signal: the process dies by it, so neither code after
``uvicorn.run()`` nor ``atexit`` hooks run. An app's lifespan shutdown is the
last code that runs for sure, and the place to export what is still queued.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["flush_at_shutdown"]

logger = logging.getLogger("ha_agent_tracing")

_MARK = "_ha_agent_tracing_flushes_at_shutdown"


def flush_at_shutdown(app: Any, flush: Callable[[], object]) -> bool:
    """Make ``app`` call ``flush`` (in a worker thread) after its own lifespan shutdown; once per app.

    Works for Starlette and FastAPI apps (their ``router.lifespan_context``);
    returns whether ``app`` flushes at shutdown after this call.
    """
    router: Any = getattr(app, "router", None)
    original = getattr(router, "lifespan_context", None)
    if original is None:
        logger.debug("%r has no lifespan to flush spans in; the atexit hook remains", app)
        return False
    if getattr(original, _MARK, False):
        return True

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        try:
            async with original(target) as state:
                yield state
        finally:
            # Spans the app's own shutdown made are queued by now. anyio comes with Starlette.
            from anyio.to_thread import run_sync

            await run_sync(flush)

    setattr(lifespan, _MARK, True)
    router.lifespan_context = lifespan
    return True
