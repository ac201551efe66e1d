"""The report's structure, as types users and editors can check against.

A report is a plain ``dict`` (JSON-ready, what the reports API returns); these
``TypedDict`` s name its keys. The reference document's keys come first, then
the ones this project adds so a report can be cross-referenced with its trace.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from ha_agent_tracing.reports._records import SpanSource

__all__ = ["Report", "ReportMetric", "ReportStatus"]

ReportStatus = Literal["ok", "error"]


class ReportMetric(TypedDict):
    """One tracked metric of a request (one span the tracker created)."""

    name: str
    """The metric's name, e.g. ``openai_api_call``."""
    duration: float
    """Milliseconds."""
    metadata: dict[str, Any]
    """The span's attributes, except the library's own (``ha_agent_tracing.*``)."""
    start_offset: float
    """Milliseconds after the request's root span started (negative for a browser span before it)."""
    parent: str | None
    """Name of the nearest enclosing metric, if any, through spans that are not metrics."""
    parent_span_id: str | None
    """The direct parent span (metric or not), 16 hex digits."""
    span_id: str
    """16 hex digits."""
    status: ReportStatus
    source: SpanSource
    """``server`` (recorded in this process) or ``browser`` (received from the chat page)."""
    error: NotRequired[str]
    """The failure's description, only when ``status`` is ``error``."""


class Report(TypedDict):
    """One request: the reference document's report plus its trace's coordinates."""

    operation: str
    """Stable operation name (``chat_request``), never a per-request id."""
    total_duration: float
    """Milliseconds: the local root span's duration."""
    timestamp: float
    """Epoch seconds when the root span started."""
    metrics: list[ReportMetric]
    """Tracked metrics, in order of start."""
    trace_id: str
    """32 hex digits."""
    span_id: str
    """The root span's id, 16 hex digits; ``(trace_id, span_id)`` identifies a report."""
    root_span: str
    """The root span's name (``POST /api/v1/chat``)."""
    status: ReportStatus
    sampled: bool
    """Whether the trace was sampled, i.e. exported to a collector too."""
    truncated: bool
    """Whether spans were left out because the request had more than the per-request cap."""
    service_version: str | None
    """The deployment's ``service.version`` (resource attribute), when known."""
    variant: str | None
    """The deployment's variant: ``HA_AGENT_TRACING_VARIANT``."""
    truncated_spans: NotRequired[int]
    """How many spans were left out, only when ``truncated``."""
