"""Entry point for applications started under ``opentelemetry-instrument``.

The distro builds and sets the tracer provider from the ``OTEL_*`` variables
and loads the instrumentors; this hook (group ``opentelemetry_post_instrument``)
then attaches the report processor to that provider, so ``get_tracker()``
reports work without calling ``configure_tracing``, keeps the performance
endpoints and health checks of the FastAPI apps made afterwards untraced, and
lets the httpx instrumentations normalise headers only when they capture some. It never raises: a failure
here must not stop the application from starting.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

__all__ = ["attach_report_processor"]

logger = logging.getLogger("ha_agent_tracing")


def attach_report_processor() -> None:
    """Attach the report processor to the global SDK provider, if there is one."""
    try:
        from ha_agent_tracing._setup import attach_to_existing
        from ha_agent_tracing.telemetry._instrumentation import (
            exclude_under_auto_instrumentation,
            lazy_header_normalisation,
        )

        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            logger.debug("no SDK tracer provider is set up; performance reports stay off")
            return
        runtime = attach_to_existing(provider)
        exclude_under_auto_instrumentation(runtime.config.fastapi_excluded_urls)
        lazy_header_normalisation()  # the launcher's httpx instrumentations: headers only when captured
    except Exception:
        logger.exception("could not attach the performance report processor; the application is not affected")
