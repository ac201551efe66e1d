"""The tracker: the reference document's API, recording OpenTelemetry spans.

Each tracked metric is one span: its name is the metric name, its attributes
the metadata. Reports are read back from the tracker's store, which the
:class:`~ha_agent_tracing.ReportProcessor` fills as requests finish::

    tracker = get_tracker()
    with tracker.track("rate_limit_check", exceeded=False) as metric:
        metric.set("exceeded", limiter.hit(client))

    @tracker.track("tool_execution")
    async def run_tool(...): ...

    tracker.set_operation("chat_request")        # names the current request's report
    with tracker.operation("nightly_sync"): ...  # a root operation outside any server span

    tracker.get_reports(); tracker.get_average_duration("chat_request")
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, Status, StatusCode, Tracer, TracerProvider

from ha_agent_tracing._attributes import SCHEMA_URL, keyword_attributes, to_attribute_value, to_attributes
from ha_agent_tracing._version import __version__
from ha_agent_tracing.reports._fold import OPERATION_ATTRIBUTE
from ha_agent_tracing.reports._processor import TRACER_NAME
from ha_agent_tracing.reports._store import ReportStore
from ha_agent_tracing.reports._types import Report

__all__ = ["Metric", "PerformanceTracker"]

P = ParamSpec("P")
R = TypeVar("R")


def _check_name(kind: str, name: object) -> str:
    if isinstance(name, str) and name and not name.isspace():
        return name
    raise ValueError(f"{kind} name must be a non-empty string, not {name!r}")


class Metric:
    """One tracked metric: a context manager around one span, or a decorator.

    As a context manager it is used once. As a decorator, every call of the
    decorated function records a new metric with the same name and metadata.
    """

    __slots__ = ("_attributes", "_span", "_token", "_tracker", "name")

    def __init__(self, tracker: PerformanceTracker, name: str, attributes: dict[str, Any]) -> None:
        self._tracker = tracker
        self.name = name
        self._attributes = attributes
        self._span: Span | None = None
        self._token: object = None

    def __enter__(self) -> Metric:
        if self._span is not None:
            raise RuntimeError(f"metric {self.name!r} was already entered; call tracker.track() again")
        tracker = self._tracker
        tracer = tracker._tracer or tracker.tracer
        # The current context read once, for the span's parent and for the context made
        # current with it (each step would otherwise read it again).
        current = context_api.get_current()
        self._span = span = tracer.start_span(self.name, current, attributes=self._attributes)
        self._token = context_api.attach(trace.set_span_in_context(span, current))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is None:
            return
        if exc is not None:
            self.record_error(exc)
        context_api.detach(self._token)  # type: ignore[arg-type]
        span.end()

    def set(self, key: str, value: Any) -> None:
        """Set one metadata value; ``None`` is left out, other objects become ``str``."""
        span = self._span
        if type(span) is NonRecordingSpan:
            return  # tracing is off or the request is not recorded: nothing to convert
        converted = to_attribute_value(value)
        if converted is None:
            return
        if span is None:
            self._attributes[key] = converted
        else:
            span.set_attribute(key, converted)

    def record_error(self, exc: BaseException) -> None:
        """Mark the metric failed with ``exc`` without raising: for errors the code handles."""
        span = self._span
        if span is not None and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def update(self, metadata: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Set several metadata values at once (one call into the span, not one per value)."""
        span = self._span
        if type(span) is NonRecordingSpan:
            return
        attributes = to_attributes({**metadata, **more}) if metadata else keyword_attributes(more)
        if span is None:
            self._attributes.update(attributes)
        else:
            span.set_attributes(attributes)

    @property
    def span(self) -> Span:
        """The OpenTelemetry span (a non-recording one before entry or when tracing is off)."""
        return self._span if self._span is not None else trace.INVALID_SPAN

    @property
    def duration(self) -> float | None:
        """Milliseconds the metric took, once it has ended (``None`` before, or when not recorded)."""
        span = self._span
        start = getattr(span, "start_time", None)
        end = getattr(span, "end_time", None)
        if start is None or end is None:
            return None
        return (end - start) / 1e6

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function: each call is one metric."""
        tracker, name, attributes = self._tracker, self.name, self._attributes
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with Metric(tracker, name, dict(attributes)):
                    return await func(*args, **kwargs)

            return run_async

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            with Metric(tracker, name, dict(attributes)):
                return func(*args, **kwargs)

        return run


class PerformanceTracker:
    """Records metrics as spans and answers the reference document's queries.

    Args:
        tracer_provider: the provider to record with; the global one if omitted
            (resolved lazily, so a tracker made before ``configure_tracing`` works).
        store: where the reports of this tracker's requests are read from.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, store: ReportStore | None = None
    ) -> None:
        self._provider = tracer_provider
        self._tracer: Tracer | None = None
        self.store = store if store is not None else ReportStore()

    def use_provider(self, tracer_provider: TracerProvider | None) -> None:
        """Record with ``tracer_provider`` from now on (``None``: the global provider)."""
        self._provider = tracer_provider
        self._tracer = None

    @property
    def tracer(self) -> Tracer:
        """The OpenTelemetry tracer of the tracker's metrics."""
        tracer = self._tracer
        if tracer is None:
            tracer = self._tracer = trace.get_tracer(
                TRACER_NAME, __version__, tracer_provider=self._provider, schema_url=SCHEMA_URL
            )
        return tracer

    # ---------------------------------------------------------------- recording

    def track(self, name: str, /, **metadata: Any) -> Metric:
        """A metric ``name`` with ``metadata``: ``with tracker.track(...)`` or ``@tracker.track(...)``."""
        return Metric(self, _check_name("metric", name), keyword_attributes(metadata))

    def operation(self, name: str, /, **metadata: Any) -> Metric:
        """A span that names its report's operation.

        Outside any span it is the root of a new trace, and its own report;
        inside a request it names that request's report.
        """
        attributes = keyword_attributes(metadata)
        attributes[OPERATION_ATTRIBUTE] = _check_name("operation", name)
        return Metric(self, name, attributes)

    def set_operation(self, name: str) -> None:
        """Name the operation of the current request's report (e.g. ``chat_request``)."""
        _check_name("operation", name)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(OPERATION_ATTRIBUTE, name)

    # ---------------------------------------------------------------- queries

    def get_reports(self) -> list[Report]:
        """Every stored report, oldest first."""
        return self.store.reports()

    def get_reports_for_operation(self, operation: str) -> list[Report]:
        """The stored reports of one operation, oldest first."""
        return self.store.reports(operation=operation)

    def get_average_duration(self, operation: str) -> float:
        """Mean total duration (ms) of an operation's stored reports; 0.0 when there are none."""
        return self.store.average_duration(operation)

    def get_summary(self, operation: str | None = None) -> dict[str, Any]:
        """Count, mean, p50, p95, p99 and max of each operation's total and of each metric."""
        return self.store.summary(operation)

    def export_reports(self) -> str:
        """Every stored report as a JSON array."""
        return self.store.export()

    def clear_reports(self) -> None:
        """Forget every stored report."""
        self.store.clear()
