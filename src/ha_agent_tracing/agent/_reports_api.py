"""``/api/v1/performance/*``: the reports over HTTP, behind a bearer token.

They expose internal data, so they are mounted only when
``HA_AGENT_TRACING_REPORTS_API=on``, and then every call needs
``Authorization: Bearer <HA_AGENT_TRACING_API_TOKEN>``. Plain loopback
development may opt out with ``HA_AGENT_TRACING_API_ALLOW_LOOPBACK=true``:
then clients on 127.0.0.0/8 or ::1 need no token. Enabled without a token
and without that opt-out, the endpoints answer 503 saying what to set.
These paths are never traced, so reading reports creates none. The reads
are plain ``def`` endpoints: FastAPI runs them in its thread pool, so folding
and copying reports never holds up the event loop that serves chat requests.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ha_agent_tracing._setup import get_runtime
from ha_agent_tracing._tracker import PerformanceTracker
from ha_agent_tracing.agent._settings import AgentSettings
from ha_agent_tracing.analysis import (
    INSIGHTS_SAMPLE,
    InsightsAnswer,
    ReportQueries,
    parse_bucket,
    parse_time,
)

__all__ = ["reports_router"]

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _time(name: str, raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from None


def reports_router(settings: AgentSettings, tracker: PerformanceTracker) -> APIRouter:
    """The performance endpoints, guarded as ``settings`` say."""

    def authorize(request: Request) -> None:
        if settings.api_allow_loopback and _is_loopback(request.client.host if request.client else None):
            return
        if not settings.api_token:
            raise HTTPException(
                503,
                "the performance endpoints need HA_AGENT_TRACING_API_TOKEN (or, on loopback only, "
                "HA_AGENT_TRACING_API_ALLOW_LOOPBACK=true)",
            )
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode(), settings.api_token.encode()):
            raise HTTPException(
                401, "invalid bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )

    router = APIRouter(prefix="/api/v1/performance", tags=["performance"], dependencies=[Depends(authorize)])

    def queries() -> ReportQueries:
        runtime = get_runtime()
        return ReportQueries(tracker.store, runtime.history if runtime is not None else None)

    @router.get("/reports")
    def reports(
        operation: str | None = None,
        limit: Annotated[int | None, Query(ge=0, le=10_000)] = None,
        since: str | None = None,
        until: str | None = None,
        order: Literal["time", "slowest"] = "time",
    ) -> dict[str, Any]:
        """Reports (memory and history) started in ``[since, until)``, oldest first; ``limit``: newest N.

        ``order=slowest``: the slowest first, ``limit`` keeps the N slowest.
        """
        start, end = _time("since", since), _time("until", until)
        found = queries().reports(start, end, operation, limit, slowest=order == "slowest")
        return {"count": len(found), "reports": found}

    @router.get("/reports/{trace_id}")
    def report(trace_id: str) -> dict[str, Any]:
        """The report of one trace (32 hex digits), from memory or history."""
        if not _TRACE_ID.match(trace_id):
            raise HTTPException(422, "trace_id must be 32 hexadecimal digits")
        found = queries().get(trace_id)
        if found is None:
            raise HTTPException(404, f"no report for trace {trace_id.lower()} (it may have been pushed out)")
        return dict(found)

    @router.get("/summary")
    def summary(
        operation: str | None = None,
        since: str | None = None,
        until: str | None = None,
        bucket: str | None = None,
    ) -> dict[str, Any]:
        """Per operation: count, mean, p50, p95, p99, max of the total and each metric (ms).

        With ``bucket`` (``5m``, ``1h``, ...): per time bucket and metric, count, p50, p95,
        p99 and errors, over ``since`` (default: 24 hours before ``until``) to ``until`` (default: now).
        """
        start, end = _time("since", since), _time("until", until)
        if bucket is None:
            return queries().summary(start, end, operation)
        try:
            return queries().timeline(start, end, parse_bucket(bucket), operation)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @router.get("/export")
    def export() -> Response:
        """Every stored report as a JSON file."""
        return Response(
            tracker.store.export(),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="performance-reports.json"'},
        )

    # The answer is typed for readers (InsightsAnswer) but not validated again on the way out.
    @router.get("/insights", response_model=None)
    def insights(
        operation: str | None = None,
        since: str | None = None,
        until: str | None = None,
        top: Annotated[int, Query(ge=0, le=100)] = 5,
        sample: Annotated[int, Query(ge=1, le=10_000)] = INSIGHTS_SAMPLE,
    ) -> InsightsAnswer:
        """Where the time goes (``ha-agent-tracing analyze``) per operation, over ``[since, until)``.

        From history (and memory) when history is on, else memory. At most ``sample``
        reports per operation are analysed: more in the range are sampled evenly in time.
        A plain ``def``: FastAPI runs it on a worker thread, so the analysis never stalls chat requests.
        """
        start, end = _time("since", since), _time("until", until)
        return queries().insights(start, end, operation, top=top, sample=sample)

    @router.get("/config")
    async def config() -> dict[str, Any]:
        """What the dashboard needs: the Jaeger UI its trace links point to, and history's state."""
        runtime = get_runtime()
        history = runtime.history if runtime is not None else None
        return {"jaeger_url": settings.jaeger_url, "history": "off" if history is None else history.state}

    @router.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        """The tracing pipeline's own counters: reports, dropped and exported spans; the relay's."""
        runtime = get_runtime()
        found: dict[str, Any] = runtime.stats() if runtime is not None else {"enabled": False}
        relay = getattr(request.app.state, "relay_stats", None)  # set when the browser relay is on
        found["relay"] = relay.snapshot() if relay is not None else None
        return found

    @router.get("/alerts")
    async def alerts() -> dict[str, Any]:
        """The embedded alerts: per rule that has fired, its latest state (firing first)."""
        runtime = get_runtime()
        engine = runtime.alerts if runtime is not None else None
        return {"alerts": [alert.as_dict() for alert in engine.alerts()] if engine is not None else []}

    outer = APIRouter()
    outer.include_router(router)

    @outer.get("/api/v1/performance/access", tags=["performance"])
    async def access(request: Request) -> dict[str, bool]:
        """Whether this client needs the token: the dashboard asks before it shows its token form."""
        loopback = _is_loopback(request.client.host if request.client else None)
        return {"token_required": not (settings.api_allow_loopback and loopback)}

    return outer
