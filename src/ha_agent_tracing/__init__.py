"""Performance tracing for an AI chat-agent service, on OpenTelemetry.

Every tracked metric is a span; a span processor folds each finished request
into the report the team's reference document describes, kept in a bounded
in-memory store; an OTLP exporter optionally ships the same spans to a
collector and Jaeger. Configuration comes from the standard ``OTEL_*``
variables.

    from fastapi import FastAPI
    from ha_agent_tracing import configure_tracing, get_tracker

    app = FastAPI()
    configure_tracing(app)
    tracker = get_tracker()

    @app.post("/api/v1/chat")
    async def chat(...):
        tracker.set_operation("chat_request")
        with tracker.track("rate_limit_check", exceeded=False) as metric:
            ...

    tracker.get_reports(); tracker.get_average_duration("chat_request")
"""

from __future__ import annotations

from ha_agent_tracing._config import TracingConfig, load_config, protect_opentelemetry_imports

# Before anything below imports the OpenTelemetry SDK, which raises at import
# time on some bad variables: a typo in the environment must not stop the app.
protect_opentelemetry_imports()

from ha_agent_tracing._setup import (
    TracingRuntime,
    configure_tracing,
    flush_tracing,
    get_runtime,
    get_tracker,
    shutdown_tracing,
)
from ha_agent_tracing._tracker import Metric, PerformanceTracker
from ha_agent_tracing._version import __version__
from ha_agent_tracing.reports import (
    OPERATION_ATTRIBUTE,
    TRACER_NAME,
    Report,
    ReportEntry,
    ReportMetric,
    ReportProcessor,
    ReportStore,
    SpanRecord,
    fold,
    is_tracked_metric,
    summarize,
)
from ha_agent_tracing.telemetry._exporters import CountingExporter
from ha_agent_tracing.telemetry._sampling import RecordUnsampled

__all__ = [
    "OPERATION_ATTRIBUTE",
    "TRACER_NAME",
    "CountingExporter",
    "Metric",
    "PerformanceTracker",
    "RecordUnsampled",
    "Report",
    "ReportEntry",
    "ReportMetric",
    "ReportProcessor",
    "ReportStore",
    "SpanRecord",
    "TracingConfig",
    "TracingRuntime",
    "__version__",
    "configure_tracing",
    "flush_tracing",
    "fold",
    "get_runtime",
    "get_tracker",
    "is_tracked_metric",
    "load_config",
    "shutdown_tracing",
    "summarize",
]
