"""Process-wide setup: ``configure_tracing``, ``shutdown_tracing``, ``get_tracker``.

The only module with global state. ``configure_tracing()`` reads the
configuration once, builds (or joins) the tracer provider, attaches the
report processor and the exporters, and instruments the HTTP clients and,
if given, the FastAPI app::

    app = FastAPI()
    configure_tracing(app)          # everything from OTEL_* variables
    ...
    shutdown_tracing()              # flushes, bounded in time

Nothing queued is lost at exit: an app given to ``configure_tracing`` exports
what is queued when its lifespan shuts down (uvicorn runs that on SIGTERM, and
then dies by the signal before any ``atexit`` hook), and an ``atexit`` hook
calls ``shutdown_tracing()`` when the interpreter exits normally.

A second call is harmless: it instruments a newly given app and otherwise
returns the existing runtime, warning if it was asked for different settings.
The global OpenTelemetry provider cannot be replaced once set (an OTel rule),
so a provider that already exists (``opentelemetry-instrument``, or one the
application built) is joined rather than replaced.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.version import __version__ as sdk_version

from ha_agent_tracing._attributes import VARIANT_ATTRIBUTE
from ha_agent_tracing._config import TracingConfig, asked_settings, instrumentation_enabled, load_config
from ha_agent_tracing._lifespan import flush_at_shutdown
from ha_agent_tracing._tracker import PerformanceTracker
from ha_agent_tracing._version import __version__
from ha_agent_tracing.analysis._alerts import AlertEngine, WebhookNotifier
from ha_agent_tracing.analysis._rules import default_rules, parse_rules_file
from ha_agent_tracing.reports._history import History
from ha_agent_tracing.reports._processor import ReportProcessor
from ha_agent_tracing.reports._store import ReportStore
from ha_agent_tracing.telemetry._exporters import CountingBatchProcessor, build_exporters
from ha_agent_tracing.telemetry._genai import GenAISpanWatcher
from ha_agent_tracing.telemetry._instrumentation import instrument_app, instrument_http_clients, uninstrument
from ha_agent_tracing.telemetry._joined_provider import ignored_settings
from ha_agent_tracing.telemetry._log_limits import RepeatedLines
from ha_agent_tracing.telemetry._metrics import MetricsRuntime, SpanMetricsProcessor, build_metrics, meter_for
from ha_agent_tracing.telemetry._resource import detect_resource
from ha_agent_tracing.telemetry._sampling import RecordUnsampled, build_sampler
from ha_agent_tracing.telemetry._sdk_compat import batch_queue_length

__all__ = [
    "TracingRuntime",
    "configure_tracing",
    "flush_tracing",
    "get_runtime",
    "get_tracker",
    "shutdown_tracing",
]

logger = logging.getLogger("ha_agent_tracing")

_lock = threading.RLock()
_tracker: PerformanceTracker | None = None
_runtime: TracingRuntime | None = None
_exit_hook_registered = False


@dataclass
class TracingRuntime:
    """What ``configure_tracing`` set up; ``stats()`` reports on all of it."""

    config: TracingConfig
    tracker: PerformanceTracker
    processor: ReportProcessor | None
    provider: SdkTracerProvider | None
    owns_provider: bool
    exporters: list[CountingBatchProcessor] = field(default_factory=list[CountingBatchProcessor])
    apps: list[Any] = field(default_factory=list[Any])
    instrumentors: list[BaseInstrumentor] = field(default_factory=list[BaseInstrumentor])
    overrides: dict[str, Any] = field(default_factory=dict[str, Any])
    log_limits: RepeatedLines = field(default_factory=RepeatedLines)
    metrics: MetricsRuntime | None = None
    span_metrics: SpanMetricsProcessor | None = None
    alerts: AlertEngine | None = None
    webhook: WebhookNotifier | None = None

    @property
    def meter_provider(self) -> MeterProvider | None:
        """Where the metrics go, when metrics are on."""
        return self.metrics.provider if self.metrics is not None else None

    history: History | None = None
    """The report history (SQLite), or ``None`` when it is off."""

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded (``OTEL_SDK_DISABLED`` is not ``true``)."""
        return self.provider is not None

    def stats(self) -> dict[str, Any]:
        """Processor counters; per exporter exported, failed, dropped spans; log lines left out."""
        return {
            "enabled": self.enabled,
            "processor": self.processor.stats() if self.processor is not None else None,
            "exporters": [exporter.stats() for exporter in self.exporters],
            "suppressed_log_lines": self.log_limits.suppressed,
            "metrics": {
                "targets": self.metrics.targets if self.metrics is not None else [],
                **(self.span_metrics.stats() if self.span_metrics is not None else {}),
            },
            "alerts": {
                "rules": len(self.alerts.rules) if self.alerts is not None else 0,
                "firing": sum(a.state == "firing" for a in self.alerts.alerts()) if self.alerts else 0,
                "webhook": self.webhook.stats() if self.webhook is not None else None,
                "baseline_read_errors": self.alerts.baseline_read_errors if self.alerts else 0,
            },
            "history": self.history.stats() if self.history is not None else None,
        }


def get_tracker() -> PerformanceTracker:
    """The process-wide tracker, as in the reference document's ``get_tracker()``."""
    global _tracker
    with _lock:
        if _tracker is None:
            _tracker = PerformanceTracker()
        return _tracker


def get_runtime() -> TracingRuntime | None:
    """The runtime that ``configure_tracing`` set up, if any."""
    return _runtime


def _resource(config: TracingConfig) -> Resource:
    # Built here rather than by Resource.create(), which would parse
    # OTEL_RESOURCE_ATTRIBUTES a second time with its own error handling.
    # Later entries win: detectors, then our defaults, then the user's attributes.
    return Resource(
        {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": sdk_version,
            **detect_resource(config.resource_detectors),
            "service.version": __version__,
            **config.resource_attributes,
            **({VARIANT_ATTRIBUTE: config.variant} if config.variant else {}),
            "service.name": config.service_name,
        }
    )


def _span_limits(config: TracingConfig) -> SpanLimits:
    # Every limit is passed explicitly: SpanLimits() reads the environment
    # itself and raises on a bad value, which would stop the service.
    def limit(value: int | None) -> int:
        return SpanLimits.UNSET if value is None else value

    return SpanLimits(
        max_attributes=limit(config.attribute_count_limit),
        max_events=limit(config.span_event_count_limit),
        max_links=limit(config.span_link_count_limit),
        max_span_attributes=limit(config.span_attribute_count_limit or config.attribute_count_limit),
        max_event_attributes=limit(config.attribute_count_limit),
        max_link_attributes=limit(config.attribute_count_limit),
        max_attribute_length=limit(config.attribute_value_length_limit),
        max_span_attribute_length=limit(
            config.span_attribute_value_length_limit
            if config.span_attribute_value_length_limit is not None
            else config.attribute_value_length_limit
        ),
    )


def build_provider(config: TracingConfig) -> SdkTracerProvider:
    """A tracer provider with the configured resource, sampler and limits."""
    sampler = build_sampler(config.sampler, config.sampler_arg)
    if config.report_unsampled:
        sampler = RecordUnsampled(sampler)
    return SdkTracerProvider(
        sampler=sampler,
        resource=_resource(config),
        span_limits=_span_limits(config),
        shutdown_on_exit=False,
    )


def _sized_tracker(config: TracingConfig) -> PerformanceTracker:
    """The process-wide tracker, its store holding ``config.max_reports`` reports."""
    tracker = get_tracker()
    if tracker.store.max_reports != config.max_reports:
        tracker.store = ReportStore(config.max_reports)
    return tracker


def open_history(config: TracingConfig, tracker: PerformanceTracker) -> History | None:
    """The report history the configuration asks for, fed every report the tracker's store receives."""
    if config.history_path is None:
        return None
    history = History(
        config.history_path,
        retention_days=config.history_retention_days,
        max_bytes=config.history_max_mb * 1024 * 1024,
        # The report processor tells its store's listeners of every span that joins a report
        # after it was put (late spans, the browser's): nothing needs folding again later.
        settle_s=0,
    )
    tracker.store.add_listener(history.record)
    return history


def _attach(
    config: TracingConfig, provider: SdkTracerProvider, tracker: PerformanceTracker
) -> ReportProcessor:
    processor = ReportProcessor(
        tracker.store,
        max_pending_traces=config.max_pending_traces,
        pending_timeout_s=config.pending_timeout_s,
        late_span_window_s=config.late_span_window_s,
        max_spans_per_request=config.max_spans_per_request,
    )
    provider.add_span_processor(processor)
    # Tells a model call whether another GenAI instrumentation made its LLM span (counted once).
    provider.add_span_processor(GenAISpanWatcher())
    return processor


def configure_tracing(
    app: Any = None,
    *,
    tracer_provider: SdkTracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    **overrides: Any,
) -> TracingRuntime:
    """Set up tracing from ``OTEL_*`` variables; keyword ``overrides`` win over the environment.

    Args:
        app: a FastAPI app to instrument (it may also be passed on a later call).
        tracer_provider: use this SDK provider instead of the global one
            (tests inject their own); it is not made global.
        meter_provider: record metrics there instead of building a meter
            provider from ``OTEL_METRICS_EXPORTER``; it is not made global.
        **overrides: setting names of :class:`TracingConfig`, e.g.
            ``service_name="chat"``, ``exporters="none"``, ``max_reports=500``.
    """
    global _runtime
    with _lock:
        runtime = _runtime
        if runtime is None:
            runtime = _runtime = _configure(tracer_provider, meter_provider, overrides)
            _register_exit_hook()
        elif overrides != runtime.overrides or (
            tracer_provider is not None and tracer_provider is not runtime.provider
        ):
            logger.warning(
                "configure_tracing() was already called; keeping the first configuration. "
                "Call shutdown_tracing() first to configure tracing anew"
            )
        if app is not None and runtime.enabled:
            if instrumentation_enabled(runtime.config, "fastapi") and instrument_app(
                app, runtime.provider, runtime.config.fastapi_excluded_urls, runtime.meter_provider
            ):
                runtime.apps.append(app)
            flush_at_shutdown(app, flush_tracing)
        return runtime


def _register_exit_hook() -> None:
    """``shutdown_tracing()`` at interpreter exit, registered once (the SDK's own hook is off)."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(shutdown_tracing)
        _exit_hook_registered = True


def _metrics(
    config: TracingConfig, provider: SdkTracerProvider, injected: bool, meter_provider: MeterProvider | None
) -> MetricsRuntime | None:
    """The meter provider: the one given, the global SDK one to join, or one built from the settings."""
    if meter_provider is not None:
        return MetricsRuntime(meter_provider, owns_provider=False, targets=["the given meter provider"])
    current = metrics_api.get_meter_provider()
    if not injected and isinstance(current, SdkMeterProvider):
        logger.info("recording metrics on the meter provider that is already set up")
        return MetricsRuntime(current, owns_provider=False, targets=["the existing meter provider"])
    built = build_metrics(config, provider.resource)
    if built is not None:
        if not injected and not isinstance(current, SdkMeterProvider):
            metrics_api.set_meter_provider(built.provider)
        logger.info("exporting metrics to %s", ", ".join(built.targets))
    return built


def _alerts(
    config: TracingConfig, history: History | None
) -> tuple[AlertEngine | None, WebhookNotifier | None]:
    """The embedded alert evaluator and its webhook, from the settings (rule problems logged).

    With a report history, regression rules read their baseline window from it.
    """
    if not config.alerts:
        return None, None
    if config.alert_rules:
        rules, problems = parse_rules_file(config.alert_rules)
        for problem in problems:
            logger.error("%s", problem)
    else:
        rules = default_rules()
    if not rules:
        logger.warning("no alert rules to evaluate; embedded alerting is idle")
        return None, None
    webhook = None
    if config.alert_webhook:
        webhook = WebhookNotifier(
            config.alert_webhook,
            max_queue=config.alert_webhook_queue,
            retries=config.alert_webhook_retries,
            labels={"service": config.service_name},
        )
    engine = AlertEngine(rules, notify=webhook, interval_s=config.alert_interval_s, history=history).start()
    logger.info("evaluating %d alert rule(s) every %g s", len(rules), config.alert_interval_s)
    return engine, webhook


def _configure(
    tracer_provider: SdkTracerProvider | None,
    meter_provider: MeterProvider | None,
    overrides: dict[str, Any],
) -> TracingRuntime:
    config = load_config(**overrides)
    tracker = _sized_tracker(config)
    if config.sdk_disabled:
        logger.info("OTEL_SDK_DISABLED=true: tracing and performance reports are off")
        return TracingRuntime(config, tracker, None, None, owns_provider=False, overrides=dict(overrides))

    owns = False
    provider = tracer_provider
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, SdkTracerProvider):
            provider = current
            logger.info("joining the tracer provider that is already set up")
        else:
            provider = build_provider(config)
            trace.set_tracer_provider(provider)
            owns = True
    if not owns:
        sampler = build_sampler(config.sampler, config.sampler_arg)
        asked = asked_settings(**overrides)
        ignored = ignored_settings(provider, config, asked, sampler, _span_limits(config))
        if ignored:
            logger.warning(
                "the tracer provider that is already set up keeps its own settings; ignored: %s",
                "; ".join(ignored),
            )
    tracker.use_provider(provider)
    processor = _attach(config, provider, tracker)
    exporters = build_exporters(config)
    for exporter in exporters:
        provider.add_span_processor(exporter)
    if exporters:
        logger.info("exporting spans to %s", ", ".join(e.exporter.target for e in exporters))
    else:
        logger.info(
            "spans are kept for in-process reports only; to send them to a collector set "
            "OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318) or OTEL_TRACES_EXPORTER=otlp"
        )
    metrics = _metrics(config, provider, tracer_provider is not None, meter_provider)
    history = open_history(config, tracker)
    alerts, webhook = _alerts(config, history)
    span_metrics = None
    if metrics is not None or alerts is not None:
        span_metrics = SpanMetricsProcessor(
            meter_for(metrics.provider) if metrics is not None else None,
            [alerts.observe] if alerts is not None else [],
            max_pending_traces=config.max_pending_traces,
            exemplars=config.metrics_exemplar_filter != "always_off",
        )
        provider.add_span_processor(span_metrics)
    instrumentors = instrument_http_clients(
        provider,
        lambda name: instrumentation_enabled(config, name),
        metrics.provider if metrics is not None else None,
    )
    return TracingRuntime(
        config,
        tracker,
        processor,
        provider,
        owns_provider=owns,
        exporters=exporters,
        instrumentors=instrumentors,
        overrides=dict(overrides),
        log_limits=RepeatedLines().install(),
        metrics=metrics,
        span_metrics=span_metrics,
        alerts=alerts,
        webhook=webhook,
        history=history,
    )


def attach_to_existing(provider: SdkTracerProvider) -> TracingRuntime:
    """Attach the report processor to a provider someone else built and set up (idempotent)."""
    global _runtime
    with _lock:
        if _runtime is None:
            config = load_config()
            tracker = _sized_tracker(config)
            tracker.use_provider(provider)
            processor = _attach(config, provider, tracker)
            limits = RepeatedLines().install()
            _runtime = TracingRuntime(
                config,
                tracker,
                processor,
                provider,
                False,
                log_limits=limits,
                history=open_history(config, tracker),
            )
        return _runtime


def flush_tracing(timeout_s: float | None = None) -> bool:
    """Export every span queued now, within ``timeout_s``; tracing stays set up.

    Bounded like :func:`shutdown_tracing`; returns ``False`` when the bound cut
    the flush short. ``configure_tracing(app)`` calls it when the app shuts down.
    """
    with _lock:
        runtime = _runtime
    if runtime is None or runtime.provider is None or not (runtime.exporters or runtime.history):
        return True
    bound = timeout_s if timeout_s is not None else runtime.config.shutdown_timeout_s

    def flush(deadline: float) -> None:
        if runtime.history is not None:
            runtime.history.flush(max(0.0, deadline - time.monotonic()))
        for exporter in runtime.exporters:
            exporter.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000))

    return _bounded(runtime, bound, flush, "flush")


def shutdown_tracing(timeout_s: float | None = None) -> bool:
    """Flush and stop what ``configure_tracing`` set up, within ``timeout_s``.

    Waits at most ``timeout_s`` (default ``HA_AGENT_TRACING_SHUTDOWN_TIMEOUT``,
    5 s) even when the collector is unreachable; returns ``False`` when that
    bound cut the flush short. Reports already made stay readable.
    """
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is None:
        return True
    uninstrument(runtime.apps, runtime.instrumentors)
    runtime.log_limits.remove()
    runtime.tracker.use_provider(None)
    if runtime.alerts is not None:
        runtime.alerts.stop()
    bound = timeout_s if timeout_s is not None else runtime.config.shutdown_timeout_s
    if runtime.provider is None:
        return True

    def stop(deadline: float) -> None:
        if runtime.history is not None:  # local and quick: before a slow collector can eat the bound
            runtime.tracker.store.remove_listener(runtime.history.record)
            runtime.history.close(max(0.0, deadline - time.monotonic()))
        for exporter in runtime.exporters:
            remaining_ms = max(0.0, deadline - time.monotonic()) * 1000
            exporter.force_flush(int(remaining_ms))
            exporter.shutdown()
        if runtime.processor is not None:
            runtime.processor.shutdown()
        if runtime.span_metrics is not None:
            runtime.span_metrics.shutdown()
        if runtime.owns_provider:
            runtime.provider.shutdown()  # type: ignore[union-attr]
        if runtime.metrics is not None:
            runtime.metrics.shutdown(max(0.0, deadline - time.monotonic()))
        if runtime.webhook is not None:
            runtime.webhook.close(max(0.0, deadline - time.monotonic()))

    return _bounded(runtime, bound, stop, "shutdown")


def _bounded(runtime: TracingRuntime, bound: float, work: Callable[[float], None], what: str) -> bool:
    """Run ``work(deadline)`` on a daemon thread; wait at most ``bound`` seconds for it."""
    deadline = time.monotonic() + bound
    done = threading.Event()

    def run() -> None:
        try:
            work(deadline)
        except Exception:
            logger.exception("error during tracing %s", what)
        finally:
            done.set()

    threading.Thread(target=run, name=f"ha-agent-tracing-{what}", daemon=True).start()
    finished = done.wait(bound)
    if not finished:
        lost = sum(batch_queue_length(e) + e.exporter.in_flight for e in runtime.exporters)
        logger.warning(
            "tracing %s did not finish within %.1f s; about %d spans, queued or being sent, "
            "were not exported",
            what,
            bound,
            lost,
        )
    return finished
