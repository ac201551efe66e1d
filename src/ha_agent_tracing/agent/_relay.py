"""``POST /api/v1/telemetry/traces``: the chat page's spans, relayed.

A browser cannot reach the collector from behind Home Assistant ingress, and a
plain collector answers no CORS preflight, so the page sends its OTLP/JSON to
the service it came from. The relay:

* takes ``application/json`` only (415 otherwise); bodies over
  ``HA_AGENT_MAX_BODY_BYTES`` and requests of more than
  ``HA_AGENT_TELEMETRY_MAX_SPANS`` spans get 413;
* validates every span (:func:`parse_otlp_json`: ids, times, attributes,
  limits) and accepts only spans of the page's service
  (``HA_AGENT_TELEMETRY_SERVICE_NAME``); anything else is 400 with the reason,
  and nothing of a bad request is kept;
* rate-limits per client (``HA_AGENT_TELEMETRY_RATE_LIMIT`` per
  ``HA_AGENT_RATE_LIMIT_WINDOW``; 429 with ``Retry-After``);
* sends the spans on through the service's own exporters when export is on
  (never anywhere the request names: it is not a proxy), and
* joins them to the report of their trace, as ``source: "browser"`` metrics.

A failure in forwarding or joining is the telemetry's, not the page's: it is
logged once, counted, and the page still gets 200. The relay is never traced.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal, get_args

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from ha_agent_tracing._internal import InternalErrors
from ha_agent_tracing._setup import get_runtime
from ha_agent_tracing.agent._rate_limit import RateLimiter
from ha_agent_tracing.agent._settings import AgentSettings
from ha_agent_tracing.reports import OtlpJsonError, OtlpLimits, OtlpSpan, parse_otlp_json, to_span_record
from ha_agent_tracing.telemetry._forward import forward_spans

__all__ = ["BROWSER_TRACER_NAME", "RejectReason", "RelayStats", "install_relay", "relay_router"]

logger = logging.getLogger("ha_agent_tracing.agent")

BROWSER_TRACER_NAME = "ha_agent_tracing.browser"
"""The instrumentation scope of performanceTracker.ts: its spans are the report's browser metrics."""


RejectReason = Literal["media_type", "compressed", "rate_limited", "too_large", "invalid", "service"]
"""Why the relay refused a request: 415 (not JSON, compressed), 429, 413, 400 (bad span, other service)."""

_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)


class RelayStats:
    """What the relay received, accepted, forwarded, joined and refused (thread-safe counters).

    ``snapshot()`` is what ``GET /api/v1/performance/stats`` shows as ``relay``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {
            "requests": 0,
            "accepted_requests": 0,
            "accepted_spans": 0,
            "forwarded_spans": 0,
            "joined_spans": 0,
            "rejected_requests": 0,
            "internal_errors": 0,
        }
        self.rejected: dict[RejectReason, int] = dict.fromkeys(_REASONS, 0)

    def add(self, **counts: int) -> None:
        """Add to the named counters."""
        with self._lock:
            for key, value in counts.items():
                self.counts[key] = self.counts.get(key, 0) + value

    def reject(self, reason: RejectReason) -> None:
        """Count one refused request and why."""
        with self._lock:
            self.counts["rejected_requests"] += 1
            self.rejected[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters now, with the refused requests by reason under ``rejected``."""
        with self._lock:
            return {**self.counts, "rejected": dict(self.rejected)}


def _reject(
    stats: RelayStats,
    reason: RejectReason,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    stats.reject(reason)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_relay(app: FastAPI, settings: AgentSettings) -> None:
    """Serve the relay when ``HA_AGENT_TELEMETRY_RELAY=on``; its counters are ``app.state.relay_stats``."""
    if settings.telemetry_relay != "on":
        return
    app.state.relay_stats = RelayStats()
    app.include_router(relay_router(settings, app.state.relay_stats))


def relay_router(settings: AgentSettings, stats: RelayStats) -> APIRouter:
    """The relay endpoint, bounded as ``settings`` say, counting into ``stats``."""
    limiter = RateLimiter(settings.telemetry_rate_limit, settings.rate_limit_window_s)
    limits = OtlpLimits(max_spans=settings.telemetry_max_spans)
    service = settings.telemetry_service_name
    errors = InternalErrors("browser span relay")
    router = APIRouter(tags=["telemetry"])

    @router.post("/api/v1/telemetry/traces", status_code=200)
    async def relay(request: Request) -> Any:
        """Take the chat page's spans (OTLP/JSON), validate them, forward and join them."""
        stats.add(requests=1)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return _reject(stats, "media_type", 415, "OTLP/JSON only: Content-Type must be application/json")
        if request.headers.get("content-encoding", "identity").strip().lower() != "identity":
            return _reject(stats, "compressed", 415, "compressed bodies are not accepted")
        client = request.client.host if request.client else "unknown"
        allowed, retry_after = limiter.check(client)
        if not allowed:
            headers = {"Retry-After": RateLimiter.retry_after_header(retry_after)}
            return _reject(
                stats, "rate_limited", 429, "too many telemetry requests from this client", headers
            )
        body = await request.body()
        try:
            spans = parse_otlp_json(body, limits=limits)
        except OtlpJsonError as exc:
            reason: RejectReason = "too_large" if exc.too_large else "invalid"
            return _reject(stats, reason, 413 if exc.too_large else 400, f"not accepted: {exc}")
        for span in spans:
            if span.service_name != service:
                return _reject(
                    stats,
                    "service",
                    400,
                    f"only spans of service {service!r} are accepted, not {span.service_name!r}",
                )
        stats.add(accepted_requests=1, accepted_spans=len(spans))
        try:
            _deliver(spans, stats)
        except Exception as exc:  # noqa: BLE001 - telemetry must never fail the page
            errors.record(exc)
            stats.add(internal_errors=1)
        return {}

    return router


def _deliver(spans: list[OtlpSpan], stats: RelayStats) -> None:
    runtime = get_runtime()
    if runtime is None or not runtime.enabled or not spans:
        return
    if runtime.exporters:
        stats.add(forwarded_spans=forward_spans(runtime.exporters, spans))
    if runtime.processor is not None:
        # The tracker's spans are the page's metrics; any other span of the page stays in the trace only.
        records = [
            to_span_record(span, source="browser", is_metric=span.scope_name == BROWSER_TRACER_NAME)
            for span in spans
        ]
        stats.add(joined_spans=runtime.processor.add_records(records))
